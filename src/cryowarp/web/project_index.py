"""An in-memory index of a project's items that the dashboard keeps up to date cheaply.

Each :meth:`ProjectIndex.refresh` lists ``items/`` (one ``stat`` per record) and re-reads only
the records whose size, modification time or inode changed, so a project of 5,000 items costs
one directory scan per poll once it is indexed. The settings file is re-read when it changes;
the step states of every item are recomputed only when the settings hashes change (a filter
edit does not). Records are written atomically by the pipeline; one that cannot be read (being
replaced on a filesystem without atomic renames, or damaged) keeps its previous row and is
listed in :attr:`IndexSnapshot.problems` until it reads again, so the dashboard never fails on
it. The event log is re-read when it grows.
"""

from __future__ import annotations

import hashlib
import math
import os
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryowarp.errors import CryowarpInputError
from cryowarp.pipeline.events import EventLog
from cryowarp.pipeline.items import ItemRecord, read_item_record
from cryowarp.pipeline.project import SETTINGS_FILE, Project, open_project
from cryowarp.pipeline.steps import settings_hashes, step_states
from cryowarp.preprocess.export.filters import FilterValues

__all__ = ["IndexSnapshot", "ItemRow", "ProjectIndex", "item_row"]


@dataclass(frozen=True)
class ItemRow:
    """What the overview shows of one item.

    ``state`` is ``done``, ``failed``, ``quarantined``, ``error`` or ``pending`` under the
    current settings; ``reason`` says why it is not done (``None`` when done or pending).
    """

    name: str
    acquired_at: float
    state: str
    reason: str | None
    figures: FilterValues
    record: ItemRecord = field(repr=False)


@dataclass(frozen=True)
class IndexSnapshot:
    """The index at one moment: rows in acquisition order (raw file time, then name)."""

    project: Project
    rows: tuple[ItemRow, ...]
    positions: Mapping[str, int]
    version: str
    events: tuple[Mapping[str, Any], ...]
    problems: Mapping[str, str]

    def row(self, name: str) -> ItemRow | None:
        index = self.positions.get(name)
        return None if index is None else self.rows[index]


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def item_row(record: ItemRecord, hashes: Mapping[str, str], folder: Path) -> ItemRow:
    """The row of ``record`` under the settings ``hashes`` (outputs checked in ``folder``)."""
    states = step_states(record, hashes, folder)
    state, reason = "done", None
    for step_name, step_state in states.items():
        if step_state != "done":
            previous = record.steps.get(step_name)
            state = "pending" if step_state == "blocked" else step_state
            if previous is not None and step_state != "pending":
                reason = previous.reason
            break
    return ItemRow(
        name=record.name,
        acquired_at=record.raw_mtime_ns / 1e9,
        state=state,
        reason=reason,
        figures=_figures(record),
        record=record,
    )


def _figures(record: ItemRecord) -> FilterValues:
    """The filter figures in a record's step results (a step that is not done gives none)."""
    results = {
        name: step.results
        for name, step in record.steps.items()
        if step.status in ("done", "failed")  # a failed CTF fit still says that it failed
    }
    ctf = results.get("ctf", {})
    ctf_step = record.steps.get("ctf")
    ctf_failed = None if ctf_step is None or "ctf" not in results else ctf_step.status == "failed"
    u, v = _number(ctf.get("defocus_u_um")), _number(ctf.get("defocus_v_um"))
    motion, picking = results.get("motion", {}), results.get("picking", {})
    particles = _number(picking.get("n_picks"))
    return FilterValues(
        name=record.name,
        ctf_failed=ctf_failed,
        ctf_failure_reason=None if not ctf_failed or ctf_step is None else ctf_step.reason,
        defocus_um=_number(ctf.get("defocus_um")),
        astigmatism_um=None if u is None or v is None else abs(u - v) / 2,
        ctf_resolution_a=_number(ctf.get("resolution_a")),
        total_drift_a=_number(motion.get("total_drift_a")),
        early_motion_a_per_frame=_number(motion.get("early_motion_a_per_frame")),
        particles=None if particles is None else int(particles),
        masked_fraction=_number(picking.get("masked_fraction")),
    )


def _file_key(stat: os.stat_result) -> tuple[int, int, int]:
    return (stat.st_mtime_ns, stat.st_size, stat.st_ino)


class ProjectIndex:
    """Keeps an :class:`IndexSnapshot` of the project in ``folder`` up to date.

    Thread-safe: concurrent :meth:`refresh` calls share one scan (a call within
    ``min_interval_s`` of the last scan returns that scan's snapshot).
    """

    def __init__(self, folder: str | os.PathLike[str], *, min_interval_s: float = 0.5) -> None:
        self._project = open_project(folder)
        self._min_interval_s = min_interval_s
        self._lock = threading.Lock()
        self._settings_key: tuple[int, int, int] | None = None
        self._hashes: dict[str, str] = {}
        self._entries: dict[str, tuple[tuple[int, int, int], ItemRow]] = {}
        self._problems: dict[str, str] = {}
        self._events_key: tuple[int, int, int] | None = None
        self._events: tuple[Mapping[str, Any], ...] = ()
        self._events_offset = 0
        self._snapshot: IndexSnapshot | None = None
        self._published_settings: tuple[int, int, int] | None = None
        self._scanned_at = -math.inf

    @property
    def folder(self) -> Path:
        return self._project.folder

    def refresh(self, *, force: bool = False) -> IndexSnapshot:
        """Bring the index up to date with the files and return the snapshot."""
        with self._lock:
            now = time.monotonic()
            if (
                not force
                and self._snapshot is not None
                and now - self._scanned_at < self._min_interval_s
            ):
                return self._snapshot
            self._scan()
            self._scanned_at = time.monotonic()
            assert self._snapshot is not None
            return self._snapshot

    # -- scanning --------------------------------------------------------------------------

    def _scan(self) -> None:
        problems_before = dict(self._problems)
        rows_stale = self._reload_settings()
        changed = rows_stale or self._snapshot is None
        seen: set[str] = set()
        items_folder = self._project.items_folder
        try:
            entries = list(os.scandir(items_folder))
        except FileNotFoundError:
            entries = []
        for entry in entries:
            if not entry.name.endswith(".json") or entry.name.startswith("."):
                continue
            try:
                key = _file_key(entry.stat())
            except FileNotFoundError:
                continue  # replaced or removed between listing and stat
            seen.add(entry.name)
            cached = self._entries.get(entry.name)
            if cached is not None and cached[0] == key and not rows_stale:
                continue
            self._read_entry(Path(entry.path), key, cached)
            changed = True
        for gone in set(self._entries) - seen:
            del self._entries[gone]
            changed = True
        for gone in set(self._problems) - seen - {SETTINGS_FILE}:
            del self._problems[gone]
            changed = True
        changed |= self._reload_events()
        changed |= self._settings_key != self._published_settings
        changed |= self._problems != problems_before
        if changed:  # else the last snapshot still holds
            self._publish()

    def _read_entry(
        self,
        path: Path,
        key: tuple[int, int, int],
        cached: tuple[tuple[int, int, int], ItemRow] | None,
    ) -> None:
        try:
            record = read_item_record(path)
        except (CryowarpInputError, OSError) as error:
            self._problems[path.name] = str(error)
            if cached is not None:  # keep the last good row; try again next time
                self._entries[path.name] = ((-1, -1, -1), cached[1])
            return
        self._problems.pop(path.name, None)
        self._entries[path.name] = (key, item_row(record, self._hashes, self._project.folder))

    def _reload_settings(self) -> bool:
        """Re-read the settings when the file changed; whether every row must be redone."""
        path = self._project.folder / SETTINGS_FILE
        try:
            key = _file_key(path.stat())
        except OSError:
            return False
        if key == self._settings_key:
            return False
        try:
            project = open_project(self._project.folder)
            hashes = settings_hashes(project)
        except (CryowarpInputError, OSError) as error:
            self._problems[SETTINGS_FILE] = str(error)  # keep the last good settings
            return False
        self._problems.pop(SETTINGS_FILE, None)
        self._project, self._settings_key = project, key
        stale = hashes != self._hashes
        self._hashes = hashes
        return stale

    def _reload_events(self) -> bool:
        """Read what was appended to the event log since the last scan (all of it when the
        file was replaced or shortened); whether anything changed."""
        path = self._project.events_path
        try:
            stat = path.stat()
        except OSError:
            had = self._events_key is not None
            self._events_key, self._events, self._events_offset = None, (), 0
            return had
        key = _file_key(stat)
        if key == self._events_key:
            return False
        same_file = self._events_key is not None and self._events_key[2] == stat.st_ino
        if not same_file or stat.st_size < self._events_offset:
            self._events, self._events_offset = (), 0
        new, self._events_offset = EventLog.read_from(path, self._events_offset)
        self._events = (*self._events, *new)
        self._events_key = key
        return True

    def _publish(self) -> None:
        rows = sorted((row for _, row in self._entries.values()), key=_order)
        digest = hashlib.sha1(usedforsecurity=False)
        for name in sorted(self._entries):
            digest.update(f"{name}:{self._entries[name][0]};".encode())
        digest.update(f"settings:{self._settings_key};events:{self._events_key}".encode())
        digest.update(repr(sorted(self._problems.items())).encode())
        self._published_settings = self._settings_key
        self._snapshot = IndexSnapshot(
            project=self._project,
            rows=tuple(rows),
            positions={row.name: i for i, row in enumerate(rows)},
            version=digest.hexdigest()[:16],
            events=self._events,
            problems=dict(self._problems),
        )


def _order(row: ItemRow) -> tuple[float, str]:
    return (row.acquired_at, row.name)
