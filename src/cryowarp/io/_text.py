"""Text-file helpers shared by the IMOD, AreTomo and SerialEM readers."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import numpy.typing as npt

from cryowarp.errors import FileFormatError, InvalidValuesError
from cryowarp.io.files import require_file

__all__ = ["numeric_row", "numeric_table", "read_lines"]


def read_lines(path: str | Path) -> list[str]:
    """Lines of a text file (a UTF-8 BOM is dropped, undecodable bytes replaced).

    Raises
    ------
    MissingFileError
        ``path`` is not an existing regular file.
    FileFormatError
        The file exists but cannot be read.
    """
    file = require_file(path)
    try:
        return file.read_text(encoding="utf-8-sig", errors="replace").splitlines()
    except OSError as exc:
        raise FileFormatError(file, f"cannot be read ({exc.strerror})") from exc


def numeric_row(path: Path, line_number: int, line: str, n_columns: int, what: str) -> list[float]:
    """Parse one line of exactly ``n_columns`` whitespace-separated finite floats.

    Raises
    ------
    FileFormatError
        Wrong number of fields or a non-numeric field (the message names the line).
    InvalidValuesError
        NaN or Inf on the line.
    """
    fields = line.split()
    if len(fields) != n_columns:
        raise FileFormatError(
            path,
            f"line {line_number}: expected {n_columns} columns for {what}, "
            f"found {len(fields)}: {line.strip()!r}",
        )
    try:
        values = [float(field) for field in fields]
    except ValueError:
        raise FileFormatError(
            path, f"line {line_number}: non-numeric value in {line.strip()!r}"
        ) from None
    if not all(math.isfinite(v) for v in values):
        raise InvalidValuesError(path, f"line {line_number}: NaN or Inf in {line.strip()!r}")
    return values


def numeric_table(path: str | Path, n_columns: int, what: str) -> npt.NDArray[np.float64]:
    """``(n_rows, n_columns)`` float64 from a file with one row per non-blank line.

    Raises
    ------
    FileFormatError
        An empty file, or a line that :func:`numeric_row` rejects.
    InvalidValuesError
        NaN or Inf in the file.
    """
    file = Path(path)
    rows = [
        numeric_row(file, line_number, line, n_columns, what)
        for line_number, line in enumerate(read_lines(file), start=1)
        if line.strip()
    ]
    if not rows:
        raise FileFormatError(file, f"empty file: no {what} found")
    return np.asarray(rows, dtype=np.float64).reshape(len(rows), n_columns)
