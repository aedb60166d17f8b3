"""A processing project: a folder holding the settings file, the per-item records and every
output (docs/pipeline.md, "Project folder").

Layout (``<name>`` is an item's name, the stem of its raw movie when first seen)::

    cryowarp.json              settings (ProjectSettings, schema-versioned)
    items/<name>.json          one record per item (cryowarp.pipeline.items)
    inputs/<name><suffix>      link to the raw movie (outputs are named after the item)
    average/, motion/, …       motion correction outputs (docs/motion.md layout)
    ctf/<name>_ctf.json|.png   CTF estimation outputs
    logs/events.jsonl          event log (one JSON object per line)
    .cryowarp/locks/, .cryowarp/staging/   per-item locks and outputs being written

Relative paths in the settings (raw pattern, gain, defects) are relative to the project folder.
"""

from __future__ import annotations

import glob
import json
import os
from dataclasses import dataclass
from pathlib import Path

from pydantic import ValidationError

from cryowarp.errors import CryowarpInputError, FileFormatError, InvalidValuesError
from cryowarp.io.files import require_file, write_text_atomically
from cryowarp.pipeline.settings import ProjectSettings, migrate
from cryowarp.preprocess.motion.settings import MovieInputSettings

__all__ = [
    "OUTPUT_FOLDERS",
    "SETTINGS_FILE",
    "Project",
    "init_project",
    "load_settings",
    "open_project",
    "save_settings",
]

SETTINGS_FILE = "cryowarp.json"
OUTPUT_FOLDERS = ("items", "inputs", "average", "aligned", "motion", "ctf", "logs", ".cryowarp")
"""Folders of the project that cryowarp writes; raw files are never looked for inside them."""


@dataclass(frozen=True)
class Project:
    """An opened project: its folder (absolute) and its settings."""

    folder: Path
    settings: ProjectSettings

    # -- paths -----------------------------------------------------------------------------

    @property
    def settings_path(self) -> Path:
        return self.folder / SETTINGS_FILE

    @property
    def items_folder(self) -> Path:
        return self.folder / "items"

    @property
    def events_path(self) -> Path:
        return self.folder / "logs" / "events.jsonl"

    def record_path(self, name: str) -> Path:
        """The record of item ``name``."""
        return self.items_folder / f"{name}.json"

    def input_link(self, name: str, suffix: str) -> Path:
        """The link to the raw movie of item ``name`` (its suffix tells the format)."""
        return self.folder / "inputs" / f"{name}{suffix}"

    def lock_path(self, name: str) -> Path:
        """The lock file that one process holds while it works on item ``name``."""
        return self.folder / ".cryowarp" / "locks" / f"{name}.lock"

    def staging_folder(self, name: str) -> Path:
        """Where the outputs of item ``name`` are written before they are moved into place."""
        return self.folder / ".cryowarp" / "staging" / name

    def resolve(self, path_text: str) -> Path:
        """``path_text`` as an absolute, normalised path (relative ones are relative to the
        project folder)."""
        return Path(os.path.abspath(self.folder / Path(path_text).expanduser()))

    # -- settings-derived ------------------------------------------------------------------

    def movie_input_settings(self) -> MovieInputSettings:
        """The movie settings with the gain and defect paths made absolute."""
        movie = self.settings.data.movie
        changes = {
            name: str(self.resolve(value))
            for name in ("gain_path", "defects_path")
            if (value := getattr(movie, name)) is not None
        }
        return movie.model_copy(update=changes)

    def raw_files(self) -> list[Path]:
        """The raw movies the pattern matches now, sorted, each once: regular files only, not
        the gain or defect file and nothing inside the project's own output folders."""
        pattern = str(self.resolve(self.settings.data.pattern))
        excluded = {
            self.resolve(p).resolve()
            for p in (self.settings.data.movie.gain_path, self.settings.data.movie.defects_path)
            if p is not None
        }
        own = [(self.folder / f).resolve() for f in OUTPUT_FOLDERS]
        found: list[Path] = []
        for match in sorted(glob.glob(pattern, recursive=True)):
            path = Path(match)
            real = path.resolve()
            if not path.is_file() or real in excluded:
                continue
            if any(real.is_relative_to(folder) for folder in own):
                continue
            found.append(Path(os.path.abspath(path)))
        return list(dict.fromkeys(found))

    def with_settings(self, settings: ProjectSettings) -> Project:
        """The same project with other settings (not saved; see :func:`save_settings`)."""
        return Project(self.folder, settings)


def init_project(
    folder: str | os.PathLike[str], settings: ProjectSettings, *, overwrite: bool = False
) -> Project:
    """Create a project in ``folder`` (created if needed) with ``settings``.

    Raises
    ------
    CryowarpInputError
        ``folder`` holds a project already and ``overwrite`` is false.
    """
    root = Path(os.path.abspath(folder))
    settings_path = root / SETTINGS_FILE
    if settings_path.exists() and not overwrite:
        raise CryowarpInputError(
            settings_path,
            "a project exists here already",
            "change its settings with `cryowarp settings set`, or choose another folder",
        )
    root.mkdir(parents=True, exist_ok=True)
    for name in ("items", "logs"):
        (root / name).mkdir(exist_ok=True)
    save_settings(settings_path, settings)
    return Project(root, settings)


def open_project(folder: str | os.PathLike[str]) -> Project:
    """Open the project in ``folder`` (settings of older versions are migrated in memory).

    Raises
    ------
    MissingFileError
        ``folder`` holds no settings file (not a project; create one with ``cryowarp init``).
    FileFormatError, InvalidValuesError
        From :func:`load_settings`.
    """
    root = Path(os.path.abspath(folder))
    if not (root / SETTINGS_FILE).exists():
        require_file(root / SETTINGS_FILE)  # raises with the path
    return Project(root, load_settings(root / SETTINGS_FILE))


def load_settings(path: str | os.PathLike[str]) -> ProjectSettings:
    """Read, migrate and validate a settings file.

    Raises
    ------
    MissingFileError
        No such file.
    FileFormatError
        Not a JSON object, or of a schema version newer than this cryowarp reads.
    InvalidValuesError
        A key is unknown or a value invalid (the message lists every problem).
    """
    file = require_file(path)
    try:
        document = json.loads(file.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise FileFormatError(file, f"not a JSON settings file ({error})") from error
    if not isinstance(document, dict):
        raise FileFormatError(file, "the settings file must hold a JSON object")
    try:
        current = migrate(document)
    except ValueError as error:
        raise FileFormatError(file, str(error)) from error
    try:
        return ProjectSettings.model_validate(current)
    except ValidationError as error:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or '(top)'}: {e['msg']}" for e in error.errors()
        )
        raise InvalidValuesError(file, f"invalid settings: {problems}") from error


def save_settings(path: str | os.PathLike[str], settings: ProjectSettings) -> None:
    """Write ``settings`` as indented JSON, atomically (always in the current version)."""
    text = json.dumps(settings.model_dump(mode="json"), indent=2, ensure_ascii=False)
    write_text_atomically(path, text + "\n")
