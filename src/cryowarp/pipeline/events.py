"""The structured event log of a run: one JSON object per line, read by ``cryowarp status``
and the dashboard.

Every line is ``{"time": <Unix seconds>, "pid": <process id>, "kind": <kind>, ...fields}``.
The kinds the pipeline writes, with their fields (more may be added; readers ignore kinds and
fields they do not know):

============================  ================================================================
kind                          fields
============================  ================================================================
``run_started``               ``workers``, ``cluster``, ``watch``
``run_finished``              ``n_done``, ``n_failed``
``item_discovered``           ``item``, ``path``
``file_complete``             ``item``, ``path``, ``size_bytes``, ``complete_at``
``file_failed``               ``path``, ``reason`` (the watcher gave up on an unreadable file)
``step_started``              ``item``, ``step``, ``worker``
``step_finished``             ``item``, ``step``, ``duration_s``
``step_failed``               ``item``, ``step``, ``error``
``item_quarantined``          ``item``, ``reason``
``item_done``                 ``item``, ``latency_s`` (= done time − ``complete_at`` of its file)
``memory_warning``            ``task_bytes``, ``budget_bytes``, ``device``, ``n_workers``
``export_finished``           ``what`` (micrographs, particles), ``out``, ``n_micrographs``,
                              ``n_particles``, ``n_failed`` (``cryowarp export`` on a project)
============================  ================================================================

Concurrency: :meth:`EventLog.append` opens the file with ``O_APPEND``, takes an exclusive
``flock`` on it, and writes each line with a single ``write()`` followed by ``fsync``. On a
local Linux filesystem an ``O_APPEND`` write to a regular file is not interleaved with other
appenders even without the lock (POSIX promises this only for pipes up to ``PIPE_BUF``, which
is why the lock is taken too); on NFS ``O_APPEND`` is emulated by the client, and the lock
(which Linux maps onto NFS byte-range locks) is what keeps lines whole. If a process died in
the middle of a line, the next append starts on a new line, and :meth:`EventLog.read` skips
the broken line.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import time
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

try:  # Unix only; elsewhere appends rely on O_APPEND alone
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

__all__ = [
    "RESERVED_FIELDS",
    "EventLog",
    "latency_summary",
    "latest_productive_run",
    "throughput_per_hour",
]

RESERVED_FIELDS = frozenset({"time", "pid", "kind"})


def _plain(value: Any) -> Any:
    """``value`` as something :func:`json.dumps` writes as strict JSON (non-finite floats
    become ``null``, paths strings, NumPy/torch scalars Python numbers)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if value is None or isinstance(value, (str, bool, int)):
        return value
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_plain(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, np.ndarray):
        return _plain(value.tolist())
    item = getattr(value, "item", None)  # NumPy and 0-d torch scalars
    if callable(item):
        with contextlib.suppress(Exception):
            return _plain(item())
    return str(value)


class EventLog:
    """Append-only JSON-lines log at ``path`` (created with its folder on the first append).

    Examples
    --------
    >>> log = EventLog(project / "events.jsonl")  # doctest: +SKIP
    >>> log.append("item_done", item="movie_001", latency_s=12.5)  # doctest: +SKIP
    >>> latency_summary(EventLog.read(log.path))  # doctest: +SKIP
    {'count': 1.0, 'median': 12.5, 'p90': 12.5, 'max': 12.5}
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def append(self, kind: str, /, **fields: Any) -> None:
        """Append one event; ``fields`` must not use the reserved names ``time``, ``pid`` and
        ``kind``. Values that JSON cannot hold are converted (see :func:`_plain`)."""
        clash = RESERVED_FIELDS & fields.keys()
        if clash:
            raise ValueError(f"event fields may not be named {sorted(clash)}")
        record = {"time": time.time(), "pid": os.getpid(), "kind": str(kind), **_plain(fields)}
        line = (json.dumps(record, allow_nan=False, ensure_ascii=False) + "\n").encode()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            if fcntl is not None:
                fcntl.flock(fd, fcntl.LOCK_EX)
            size = os.fstat(fd).st_size
            if size and os.pread(fd, 1, size - 1) != b"\n":
                line = b"\n" + line  # a writer died mid-line: do not glue onto its fragment
            written = os.write(fd, line)
            while written < len(line):  # only on a full disk or a signal
                written += os.write(fd, line[written:])
            os.fsync(fd)
        finally:
            os.close(fd)  # also releases the lock

    @staticmethod
    def read(path: str | Path) -> list[dict[str, Any]]:
        """All whole events in ``path``, oldest first; ``[]`` when the file does not exist yet.

        A line that is not a JSON object (the last line of a writer that crashed) is skipped.
        """
        try:
            return _parse_events(Path(path).read_bytes())
        except FileNotFoundError:
            return []

    @staticmethod
    def read_from(path: str | Path, offset: int) -> tuple[list[dict[str, Any]], int]:
        """The events on the whole lines from byte ``offset`` of ``path`` on (a last line without
        its newline may still be being written: it is left for later) and the offset to go on
        from next time, for readers that follow the log (the dashboard). ``([], 0)`` when the
        file does not exist."""
        try:
            with open(path, "rb") as handle:
                handle.seek(offset)
                data = handle.read()
        except FileNotFoundError:
            return [], 0
        end = data.rfind(b"\n") + 1
        return _parse_events(data[:end]), offset + end


def _parse_events(data: bytes) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    for raw in data.split(b"\n"):
        if not raw.strip():
            continue
        try:
            record = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError):
            continue
        if isinstance(record, dict) and "kind" in record:
            events.append(record)
    return events


def _done_events(events: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    return [e for e in events if e.get("kind") == "item_done"]


def latency_summary(events: Iterable[Mapping[str, Any]]) -> dict[str, float]:
    """``count``, ``median``, ``p90`` and ``max`` (seconds) of the ``latency_s`` of the
    ``item_done`` events — the time from a file being complete to its item being done.

    Percentiles interpolate linearly between order statistics; with no such event the count
    is 0 and the others are NaN.
    """
    latencies = [
        float(e["latency_s"])
        for e in _done_events(events)
        if isinstance(e.get("latency_s"), (int, float)) and math.isfinite(e["latency_s"])
    ]
    if not latencies:
        return {"count": 0.0, "median": math.nan, "p90": math.nan, "max": math.nan}
    values = np.asarray(latencies, dtype=np.float64)
    return {
        "count": float(values.size),
        "median": float(np.percentile(values, 50)),
        "p90": float(np.percentile(values, 90)),
        "max": float(values.max()),
    }


def throughput_per_hour(
    events: Iterable[Mapping[str, Any]],
    *,
    window_s: float | None = None,
    now: float | None = None,
) -> float:
    """Items done per hour.

    Without ``window_s``: the ``item_done`` events divided by the time from the first event
    of the log (normally ``run_started``) to the last ``item_done``. With ``window_s``: the
    ``item_done`` events in the last ``window_s`` seconds before ``now`` divided by
    ``window_s`` — the live rate. ``now`` (Unix seconds) defaults to the time of the latest
    event, so that a finished log gives a stable answer; a live view passes ``time.time()``.
    Returns 0.0 when nothing was done (or all in the same instant as the start).
    """
    events = list(events)
    times = [float(e["time"]) for e in events if isinstance(e.get("time"), (int, float))]
    done = [
        float(e["time"]) for e in _done_events(events) if isinstance(e.get("time"), (int, float))
    ]
    if not done:
        return 0.0
    if window_s is not None:
        if window_s <= 0:
            raise ValueError(f"window_s must be positive, got {window_s}")
        end = max(times) if now is None else now
        n = sum(1 for t in done if end - window_s < t <= end)
        return n * 3600.0 / window_s
    span_s = max(done) - min(times)
    return len(done) * 3600.0 / span_s if span_s > 0 else 0.0


def latest_productive_run(events: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """The events from the last ``run_started`` after which an item was done."""
    starts = [i for i, e in enumerate(events) if e.get("kind") == "run_started"] or [0]
    for begin, end in reversed(list(zip(starts, [*starts[1:], len(events)], strict=True))):
        window = list(events[begin:end])
        if any(e.get("kind") == "item_done" for e in window):
            return window
    return []
