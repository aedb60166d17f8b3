"""The types every processing step shares (:mod:`cryowarp.pipeline.steps` registers the
steps) and the file identity steps hash gain, defect and model files by."""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryowarp.errors import CryowarpInputError
from cryowarp.pipeline.items import Scalar, raw_identity
from cryowarp.pipeline.project import Project

__all__ = ["Step", "StepContext", "StepOutput", "file_identity", "finite_or_none"]


@dataclass(frozen=True)
class StepContext:
    """What a step gets: the project, the item, its raw movie (through the project's input
    link, whose stem is the item name), an empty staging folder and the device."""

    project: Project
    name: str
    movie_path: Path
    staging: Path
    device: str = "cpu"


@dataclass(frozen=True)
class StepOutput:
    """What a step made: files (name → path relative to the staging folder, which is the same
    path relative to the project), quality figures, and the reason when the algorithm ran but
    could not process the item (the step is then ``failed``)."""

    files: dict[str, str]
    results: dict[str, Scalar] = field(default_factory=dict)
    failure: str | None = None


@dataclass(frozen=True)
class Step:
    """One processing step.

    Attributes
    ----------
    name:
        Its name in item records and events.
    depends_on:
        The settings it reads, as a JSON-ready mapping (its hash input; files by content).
    run:
        Does the work (raises :class:`~cryowarp.errors.CryowarpInputError` for unusable input).
    possible_outputs:
        Every file (relative path) the step can write for an item name; those a rerun does not
        write again are deleted, so no output of older settings stays behind.
    """

    name: str
    depends_on: Callable[[Project], Mapping[str, Any]]
    run: Callable[[StepContext], StepOutput]
    possible_outputs: Callable[[str], list[str]]


def file_identity(path: Path) -> str:
    """``"<size>:<sha256 of the first MiB>"`` of a file, or ``"missing:<path>"``; cached by
    path, size and modification time (a gain is read once per process, not once per item)."""
    try:
        stat = path.stat()
    except OSError:
        return f"missing:{path}"
    return _cached_identity(str(path), stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=64)
def _cached_identity(path: str, size: int, mtime_ns: int) -> str:
    try:
        identity = raw_identity(path)
    except CryowarpInputError:
        return f"missing:{path}"
    return f"{identity.size_bytes}:{identity.head_sha256}"


def finite_or_none(value: float) -> float | None:
    """``value``, or ``None`` for NaN and ±inf (item records are strict JSON)."""
    return value if value == value and abs(value) != float("inf") else None
