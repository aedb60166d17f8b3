"""Typed errors shared by every layer.

Every error a user can cause by handing cryowarp a bad file derives from
:class:`CryowarpInputError` and carries the offending ``path`` and a plain-language
``problem``, so that the pipeline can quarantine one item and carry on with the others.
The message always reads ``"<path>: <problem>"`` (plus an optional hint on what to do).
"""

from __future__ import annotations

from pathlib import Path

__all__ = [
    "CorruptFileError",
    "CryowarpError",
    "CryowarpInputError",
    "DimensionMismatchError",
    "FileFormatError",
    "InvalidValuesError",
    "MissingColumnError",
    "MissingFileError",
    "TruncatedFileError",
]


class CryowarpError(Exception):
    """Base class of every error cryowarp raises on purpose."""


class CryowarpInputError(CryowarpError):
    """A file given to cryowarp cannot be used.

    Attributes
    ----------
    path:
        The offending file (``None`` for in-memory data).
    problem:
        What is wrong, in words a user understands.
    hint:
        Optionally, what to do about it.
    """

    def __init__(self, path: str | Path | None, problem: str, hint: str | None = None) -> None:
        self.path = Path(path) if path is not None else None
        self.problem = problem
        self.hint = hint
        where = str(self.path) if self.path is not None else "<in-memory data>"
        message = f"{where}: {problem}"
        if hint:
            message += f" ({hint})"
        super().__init__(message)

    def __reduce__(self) -> tuple[type[CryowarpInputError], tuple[Path | None, str, str | None]]:
        # Pickled with its own arguments, so that errors cross process boundaries (workers).
        return (type(self), (self.path, self.problem, self.hint))


class MissingFileError(CryowarpInputError, FileNotFoundError):
    """The file does not exist or is not a regular file."""


class FileFormatError(CryowarpInputError):
    """The file is not of the expected format, or its header is inconsistent
    (wrong magic bytes, unknown MRC mode, header sizes that disagree)."""


class CorruptFileError(CryowarpInputError):
    """The file claims the right format but its content cannot be decoded."""


class TruncatedFileError(CorruptFileError):
    """The file is shorter than its header says (an interrupted copy or write)."""


class DimensionMismatchError(CryowarpInputError):
    """Two inputs that must agree in size do not (e.g. a gain reference and a movie)."""


class InvalidValuesError(CryowarpInputError):
    """The data contain values that cannot be processed (NaN, Inf, all zeros)."""


class MissingColumnError(CryowarpInputError):
    """A table (STAR, .cs, ...) lacks a column that is required."""
