"""A dashboard served from a background thread of the calling process: for a notebook, a
script that processes and shows at once, tests and benchmarks.

Example::

    from cryowarp.web.background import start_dashboard
    dashboard = start_dashboard("proj")      # serves on a free port of 127.0.0.1
    print(dashboard.url)
    ...
    dashboard.stop()
"""

from __future__ import annotations

import os
import socket
import threading
import time
from dataclasses import dataclass
from typing import Any

__all__ = ["RunningDashboard", "free_port", "start_dashboard"]


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port on ``host`` that is free now."""
    with socket.socket() as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


@dataclass
class RunningDashboard:
    """A dashboard being served: its base URL (ending in ``/``) and how to stop it."""

    url: str
    server: Any  # uvicorn.Server
    thread: threading.Thread

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stop serving and wait (at most ``timeout_s``) for the thread to end."""
        self.server.should_exit = True
        self.thread.join(timeout=timeout_s)

    def __enter__(self) -> RunningDashboard:
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()


def start_dashboard(
    project_folder: str | os.PathLike[str],
    *,
    port: int = 0,
    token: str | None = None,
    min_refresh_interval_s: float = 0.5,
    start_timeout_s: float = 60.0,
) -> RunningDashboard:
    """Serve the dashboard of ``project_folder`` on 127.0.0.1 from a daemon thread.

    Parameters
    ----------
    port:
        TCP port; 0 takes a free one.
    token:
        Access token to require (none by default on 127.0.0.1).
    min_refresh_interval_s:
        Requests within this many seconds share one scan of the project.
    start_timeout_s:
        How long to wait for the server to listen.

    Raises
    ------
    RuntimeError
        The server did not start in time.
    """
    import uvicorn

    from cryowarp.web.app import create_app

    chosen = port or free_port()
    app = create_app(project_folder, token=token, min_refresh_interval_s=min_refresh_interval_s)
    config = uvicorn.Config(app, host="127.0.0.1", port=chosen, log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="cryowarp-dashboard", daemon=True)
    thread.start()
    deadline = time.monotonic() + start_timeout_s
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            server.should_exit = True
            raise RuntimeError(f"the dashboard did not start on 127.0.0.1:{chosen}")
        time.sleep(0.02)
    return RunningDashboard(f"http://127.0.0.1:{chosen}/", server, thread)
