"""Find a project's raw movies and keep one record per item (docs/pipeline.md, "Items").

An item is identified by its content (size and SHA-256 of the first MiB,
:func:`~cryowarp.pipeline.items.raw_identity`), so a moved or renamed movie keeps its item,
its name and its outputs. Records are only ever changed under the item's lock, starting from
the record on disk, so discovery never overwrites what a worker recorded.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

from cryowarp.errors import CryowarpInputError
from cryowarp.pipeline._item_files import clean_leftovers, item_lock, link_input, sweep_leftovers
from cryowarp.pipeline.events import EventLog
from cryowarp.pipeline.items import ItemRecord, raw_identity, read_item_record, write_item_record
from cryowarp.pipeline.project import Project

__all__ = ["discover_items", "read_records", "register_raw_file", "update_record"]


def read_records(project: Project, *, events: EventLog | None = None) -> dict[str, ItemRecord]:
    """Every readable item record (name → record); an unreadable one is reported as a
    ``record_unreadable`` event and skipped (its item is found again as new)."""
    records: dict[str, ItemRecord] = {}
    if not project.items_folder.is_dir():
        return records
    for path in sorted(project.items_folder.glob("*.json")):
        try:
            record = read_item_record(path)
        except CryowarpInputError as error:
            if events is not None:
                events.append("record_unreadable", path=str(path), reason=str(error))
            continue
        records[record.name] = record
    return records


def update_record(
    project: Project, name: str, change: Callable[[ItemRecord | None], ItemRecord | None]
) -> ItemRecord | None:
    """Under the item's lock, apply ``change`` to the record on disk (``None`` if there is
    none) and write the result (nothing when it returns ``None``). Returns the record now on
    disk, or ``None`` when the item is locked by another process."""
    with item_lock(project, name) as locked:
        if not locked:
            return None
        clean_leftovers(project, name)
        path = project.record_path(name)
        current = read_item_record(path) if path.is_file() else None
        updated = change(current)
        if updated is None:
            return current
        link_input(project, name, Path(updated.raw_path))
        write_item_record(path, updated)
        return updated


def _unique_name(stem: str, taken: set[str]) -> str:
    if stem not in taken:
        return stem
    index = 2
    while f"{stem}_{index}" in taken:
        index += 1
    return f"{stem}_{index}"


def register_raw_file(
    project: Project,
    path: Path,
    records: dict[str, ItemRecord],
    *,
    complete_at: float | None = None,
    events: EventLog | None = None,
) -> ItemRecord | None:
    """Find or make the item of the raw file ``path``; ``records`` (name → record) is updated.
    Returns ``None`` when the file vanished or its item is locked by another process.

    Same path, size and modification time as a record: that item (nothing is hashed). Same
    path, other content: that item, every step made stale. Another path with the identity of
    an item whose raw file is gone: that item, moved. Otherwise a new item named after the
    file's stem (``_2``, ``_3``, … on a clash). ``complete_at`` (Unix seconds, from the
    watcher) is recorded once, for the latency of watch mode.
    """
    raw = Path(os.path.abspath(path))
    try:
        stat = raw.stat()
    except OSError:
        return None
    known = next((r for r in records.values() if r.raw_path == str(raw)), None)
    if (
        known is not None
        and known.identity.size_bytes == stat.st_size
        and known.raw_mtime_ns == stat.st_mtime_ns
        and (complete_at is None or known.complete_at is not None)
    ):
        return known
    try:
        identity = raw_identity(raw)
    except CryowarpInputError:
        return None
    found = {"raw_path": str(raw), "raw_mtime_ns": stat.st_mtime_ns, "identity": identity}

    def refresh(current: ItemRecord | None) -> ItemRecord | None:
        if current is None:
            return None
        changes: dict[str, object] = dict(found)
        if current.identity != identity:  # the file was rewritten: redo everything
            changes["steps"] = {
                n: s.model_copy(update={"status": "stale"}) for n, s in current.steps.items()
            }
        if complete_at is not None and current.complete_at is None:
            changes["complete_at"] = complete_at
        return current.model_copy(update=changes)

    if known is None:
        known = next(
            (
                r
                for r in records.values()
                if r.identity == identity and not Path(r.raw_path).exists()
            ),
            None,
        )
        if known is not None and events is not None:
            events.append("item_moved", item=known.name, old_path=known.raw_path, path=str(raw))
    if known is not None:
        updated = update_record(project, known.name, refresh)
    else:
        name = _unique_name(raw.stem, set(records))
        new = ItemRecord(
            name=name,
            raw_path=str(raw),
            raw_mtime_ns=stat.st_mtime_ns,
            identity=identity,
            first_seen_at=time.time(),
            complete_at=complete_at,
        )
        updated = update_record(project, name, lambda current: current or new)
        if updated is not None and events is not None:
            events.append("item_discovered", item=name, path=str(raw))
    if updated is not None:
        records[updated.name] = updated
    return updated


def discover_items(
    project: Project, *, events: EventLog | None = None, new_files: bool = True
) -> list[ItemRecord]:
    """Register every raw file the pattern matches (:func:`register_raw_file`), after removing
    what killed processes left behind; returns every record, sorted by name.

    With ``new_files=False`` only files already known by their path are looked at (in watch
    mode the watcher decides when a new file is complete, so a file still being written is
    not taken for a broken one)."""
    sweep_leftovers(project)
    records = read_records(project, events=events)
    known = {r.raw_path for r in records.values()}
    for path in project.raw_files():
        if new_files or str(path) in known:
            register_raw_file(project, path, records, events=events)
    return [records[name] for name in sorted(records)]
