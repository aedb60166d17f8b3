"""``cryowarp dashboard``: the live web dashboard of a project (docs/dashboard.md).

Serves the overview plots with their filter ranges and the item views on
http://127.0.0.1:8000/ while ``cryowarp run --watch`` processes the data. Bound to another
address (``--host 0.0.0.0`` to reach it from another computer) it needs an access token:
``--token``, else ``$CRYOWARP_DASHBOARD_TOKEN``, else a random one printed with the URL.

Examples::

    cryowarp dashboard proj                       # http://127.0.0.1:8000/
    cryowarp dashboard proj --port 8080
    cryowarp dashboard proj --host 0.0.0.0        # prints http://HOST:8000/?token=...
"""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Annotated

import typer

from cryowarp.errors import CryowarpError

__all__ = ["dashboard"]

TOKEN_VARIABLE = "CRYOWARP_DASHBOARD_TOKEN"


def dashboard(
    project: Annotated[Path, typer.Argument(help="The project folder.", metavar="PROJECT")],
    host: Annotated[
        str,
        typer.Option(
            help="Address to listen on. 127.0.0.1 (default): this computer only; any other "
            "address (e.g. 0.0.0.0) requires an access token."
        ),
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="TCP port.")] = 8000,
    token: Annotated[
        str | None,
        typer.Option(
            help=f"Access token (default: ${TOKEN_VARIABLE}; on a non-loopback address a "
            "random one is made and printed). Given on 127.0.0.1, it is required there too."
        ),
    ] = None,
) -> None:
    """Start the live web dashboard of PROJECT: quality plots with draggable filter ranges
    (saved to the project and used by `cryowarp export`), counts, throughput and latency, and
    per-item spectra, fits, averages, motion tracks, local defocus and picks.

    Example: cryowarp dashboard proj --port 8080
    """
    import uvicorn

    from cryowarp.web.access import is_loopback, new_token
    from cryowarp.web.app import create_app

    chosen = token or os.environ.get(TOKEN_VARIABLE) or None
    if chosen is None and not is_loopback(host):
        chosen = new_token()
    try:
        app = create_app(project, token=chosen, host=host)
    except CryowarpError as error:
        raise typer.BadParameter(str(error), param_hint="PROJECT") from error
    shown = socket.gethostname() if host in ("0.0.0.0", "::") else host
    shown = f"[{shown}]" if ":" in shown else shown
    url = f"http://{shown}:{port}/" + (f"?token={chosen}" if chosen else "")
    typer.echo(f"cryowarp dashboard of {Path(project).resolve()}")
    typer.echo(f"open {url}")
    if chosen and not is_loopback(host):
        typer.echo("anyone with this URL can change the project's filters; keep the token private")
    typer.echo("stop with Ctrl+C")
    uvicorn.run(app, host=host, port=port, log_level="warning")
