"""The one check every reader makes before opening its file."""

from __future__ import annotations

import os
from pathlib import Path

from cryowarp.errors import MissingFileError

__all__ = ["require_file"]


def require_file(path: str | os.PathLike[str]) -> Path:
    """Return ``path`` as a :class:`~pathlib.Path` if it names an existing regular file.

    Raises
    ------
    MissingFileError
        Nothing exists at ``path`` (``"file not found"``), or it is a folder or another
        kind of non-regular file; the message names the path.
    """
    file = Path(path)
    if file.is_file():
        return file
    if file.is_dir():
        raise MissingFileError(file, "is a folder, not a file")
    if file.exists():
        raise MissingFileError(file, "is not a regular file")
    raise MissingFileError(file, "file not found")
