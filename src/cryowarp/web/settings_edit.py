"""Changes the dashboard makes to a project's settings: filter ranges and manual selection.

Each change reads the settings file as it is on disk now, changes only the ``filters`` keys
concerned, validates the whole and writes it atomically, under an exclusive lock
(``.cryowarp/settings.lock``) so that two dashboards or a `cryowarp settings set` at the same
moment do not lose each other's change. Filters redo no processing step.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Literal

from pydantic import ValidationError

from cryowarp.pipeline.project import SETTINGS_FILE, load_settings, save_settings
from cryowarp.preprocess.export.filters import ExportFilters, item_name

__all__ = ["Selection", "SettingsEditError", "set_filter_ranges", "set_selection"]

Selection = Literal["auto", "include", "exclude"]


class SettingsEditError(ValueError):
    """The change does not validate (the message says why); nothing was written."""


@contextlib.contextmanager
def _settings_lock(folder: Path) -> Iterator[None]:
    lock_path = folder / ".cryowarp" / "settings.lock"
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "a+b") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def _update_filters(
    folder: Path, change: Callable[[ExportFilters], Mapping[str, object]]
) -> ExportFilters:
    """Under the lock: the keys ``change(current filters)`` returns, set and saved."""
    path = folder / SETTINGS_FILE
    with _settings_lock(folder):
        settings = load_settings(path)
        document = settings.filters.model_dump(mode="json")
        document.update(change(settings.filters))
        try:
            filters = ExportFilters.model_validate(document)
        except ValidationError as error:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc']) or 'filters'}: {e['msg']}"
                for e in error.errors()
            )
            raise SettingsEditError(problems) from error
        if filters != settings.filters:
            save_settings(path, settings.model_copy(update={"filters": filters}))
        return filters


def set_filter_ranges(
    folder: str | os.PathLike[str], ranges: Mapping[str, float | int | None]
) -> ExportFilters:
    """Set the filter bounds in ``ranges`` (``None`` clears one) in the project's settings.

    Raises
    ------
    SettingsEditError
        The new filters do not validate (e.g. minimum above maximum); nothing is written.
    """
    return _update_filters(Path(folder), lambda _: dict(ranges))


def set_selection(folder: str | os.PathLike[str], name: str, selection: Selection) -> ExportFilters:
    """Mark item ``name`` as manually included (``filters.force_include``), excluded
    (``filters.exclude``) or left to the filters (``auto``: removed from both)."""

    def change(current: ExportFilters) -> dict[str, object]:
        exclude = [n for n in current.exclude if item_name(n) != name]
        forced = [n for n in current.force_include if item_name(n) != name]
        if selection == "exclude":
            exclude.append(name)
        elif selection == "include":
            forced.append(name)
        return {"exclude": exclude, "force_include": forced}

    return _update_filters(Path(folder), change)
