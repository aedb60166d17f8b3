"""EMAN1 / crYOLO ``.box`` particle coordinate files.

Format (EMAN2 wiki, "Other Miscellaneous Files"): one particle per line, whitespace-separated
``x_corner  y_corner  width  height  [fifth column]`` in pixels of the micrograph. crYOLO
writes its confidence as the optional fifth column (EMAN1 wrote a flag such as ``-3``
there); it is kept as ``scores``. Blank lines and ``#`` comments are skipped; an empty file
is a micrograph without particles.

**Centre and y origin.** EMAN describes ``(x_corner, y_corner)`` as the lower-left corner of
the box, but the programs that write and read ``.box`` files for single-particle work use the
numbers as pixel indices in the row order in which the micrograph is read: RELION's
``Preprocessing::readCoordinates`` (``src/preprocessing.cpp``) turns a line into
``rlnCoordinateX = x_corner + width/2`` and ``rlnCoordinateY = y_corner + height/2`` (integer
division) with no flip, and crYOLO's box files are imported into RELION that way. cryowarp
does the same, so a ``.box`` file and a RELION coordinate file of the same micrograph agree:
the centre is ``corner + ⌊size/2⌋`` — for an even size exactly ``size/2``, for an odd size the
box-centre index ``N//2`` of docs/conventions.md §2 (RELION's integer division).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from cryowarp.errors import FileFormatError, InvalidValuesError
from cryowarp.io._text import read_lines
from cryowarp.io.files import write_text_atomically

__all__ = ["BoxCoordinates", "read_box", "write_box"]


@dataclass(frozen=True, eq=False)
class BoxCoordinates:
    """The particles of one ``.box`` file (``n`` rows).

    Attributes
    ----------
    centres_px:
        ``(n, 2)`` float64 box centres ``(x, y)`` in micrograph pixels (module docstring).
    sizes_px:
        ``(n, 2)`` float64 box ``(width, height)`` in pixels.
    scores:
        ``(n,)`` float64 fifth column (crYOLO confidence), or ``None`` when absent.
    """

    centres_px: npt.NDArray[np.float64]  # (n, 2)
    sizes_px: npt.NDArray[np.float64]  # (n, 2)
    scores: npt.NDArray[np.float64] | None = None  # (n,)

    def __post_init__(self) -> None:
        n = self.centres_px.shape[0] if self.centres_px.ndim == 2 else -1
        bad_scores = self.scores is not None and self.scores.shape != (n,)
        if self.centres_px.shape != (n, 2) or self.sizes_px.shape != (n, 2) or bad_scores:
            raise ValueError(
                "BoxCoordinates needs centres_px (n, 2), sizes_px (n, 2) and scores (n,), got "
                f"{self.centres_px.shape}, {self.sizes_px.shape} and "
                f"{None if self.scores is None else self.scores.shape}"
            )

    def __len__(self) -> int:
        return int(self.centres_px.shape[0])

    @property
    def corners_px(self) -> npt.NDArray[np.float64]:  # (n, 2)
        """``(x_corner, y_corner)`` as written in the file: ``centre − ⌊size/2⌋``."""
        return self.centres_px - np.floor(self.sizes_px / 2)


def read_box(path: str | os.PathLike[str]) -> BoxCoordinates:
    """Read a ``.box`` file.

    Raises
    ------
    MissingFileError
        ``path`` is not an existing regular file.
    FileFormatError
        A line without 4 or 5 numbers, or lines that disagree on having a fifth column (the
        message names the line).
    InvalidValuesError
        NaN or Inf, or a box size that is not positive.
    """
    file = os.fspath(path)
    rows: list[list[float]] = []
    for number, line in enumerate(read_lines(file), start=1):
        text = line.split("#", 1)[0].strip()
        if not text:
            continue
        fields = text.split()
        if len(fields) not in (4, 5) or (rows and len(fields) != len(rows[0])):
            expected = "4 or 5" if not rows else str(len(rows[0]))
            raise FileFormatError(
                file, f"line {number}: expected {expected} columns, found {len(fields)}: {text!r}"
            )
        try:
            values = [float(field) for field in fields]
        except ValueError:
            raise FileFormatError(file, f"line {number}: non-numeric value in {text!r}") from None
        if not all(math.isfinite(v) for v in values):
            raise InvalidValuesError(file, f"line {number}: NaN or Inf in {text!r}")
        if values[2] <= 0 or values[3] <= 0:
            raise InvalidValuesError(file, f"line {number}: box size must be positive: {text!r}")
        rows.append(values)
    table = np.asarray(rows, dtype=np.float64).reshape(len(rows), len(rows[0]) if rows else 4)
    sizes = table[:, 2:4].copy()
    centres = table[:, 0:2] + np.floor(sizes / 2)
    scores = table[:, 4].copy() if table.shape[1] == 5 else None
    return BoxCoordinates(centres_px=centres, sizes_px=sizes, scores=scores)


def write_box(path: str | os.PathLike[str], boxes: BoxCoordinates) -> None:
    """Write a ``.box`` file atomically (corners and sizes, plus scores when present).

    Numbers are written with up to 17 significant digits, so integer pixels stay integers and
    :func:`read_box` returns exactly what was written.
    """
    corners = boxes.corners_px
    lines = []
    for i in range(len(boxes)):
        values = [*corners[i], *boxes.sizes_px[i]]
        if boxes.scores is not None:
            values.append(boxes.scores[i])
        lines.append("\t".join(_number(float(v)) for v in values))
    write_text_atomically(path, "".join(line + "\n" for line in lines))


def _number(value: float) -> str:
    return str(int(value)) if value.is_integer() and abs(value) < 1e15 else repr(value)
