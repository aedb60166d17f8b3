"""The one check every reader makes before opening its file, and the one way every writer
replaces a file atomically."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from cryowarp.errors import MissingFileError

__all__ = ["atomic_output", "require_file", "write_text_atomically"]


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


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it replaces ``path`` atomically.

    Readers never see a half-written file and a failed write leaves any old file intact
    (the temporary file is removed). A replaced file keeps its permissions; a new one gets
    those of any new file (``0o666`` less the umask), not the ``0o600`` of
    :func:`tempfile.mkstemp`.
    """
    file = Path(path)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{file.name}.", suffix=".tmp", dir=file.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        os.chmod(tmp, file.stat().st_mode & 0o777 if file.exists() else 0o666 & ~_umask())
        os.replace(tmp, file)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def write_text_atomically(path: str | os.PathLike[str], text: str) -> None:
    """Write ``text`` (UTF-8, ``\\n`` line ends) to ``path`` through :func:`atomic_output`."""
    with atomic_output(path) as tmp:
        tmp.write_text(text, encoding="utf-8", newline="\n")


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
