"""AreTomo / AreTomo2 ``.aln`` alignment files (format versions 1.2 and 1.3 and later).

Format: ``#`` comment lines form the header — a title (``# AreTomo Alignment / Priims
bprmMn``), ``# Key = value`` lines in newer versions (``RawSize = width height n_images``,
``NumPatches``, one ``DarkFrame = i j tilt_deg`` per image AreTomo discarded, and in
AreTomo 2/3 ``AlphaOffset``, ``BetaOffset``, ``Thickness``), and the column names ``# SEC
ROT GMAG TX TY SMEAN SFIT SCALE BASE TILT``.  Then one row of ten numbers per section that
was kept:

- ``SEC``: index of the section in the aligned (dark-frame-free) stack,
- ``ROT``: tilt-axis angle in degrees,
- ``GMAG``: magnification relative to the reference,
- ``TX``, ``TY``: shifts in pixels of the input stack,
- ``SMEAN``, ``SFIT``, ``SCALE``, ``BASE``: AreTomo's internal fit statistics,
- ``TILT``: tilt angle in degrees (after any offset correction).

An optional ``# Local Alignment`` line is followed by ``NumPatches × n_sections`` rows of
seven numbers: section, patch, patch centre x, y (pixels from the image centre), patch
shift x, y (pixels), and a reliability flag (1 = good).

Shifts are reported exactly as AreTomo wrote them; converting them into cryowarp's shift
convention (docs/conventions.md §4) is the job of the tilt-series code.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from cryowarp.errors import FileFormatError
from cryowarp.io._text import numeric_row, read_lines

__all__ = ["AlnDarkFrame", "AlnLocalAlignment", "AretomoAlignment", "read_aln"]

_KEY_VALUE = re.compile(r"^#\s*([A-Za-z][A-Za-z0-9_]*)\s*=\s*(.*?)\s*$")
_N_GLOBAL_COLUMNS = 10
_N_LOCAL_COLUMNS = 7


@dataclass(frozen=True)
class AlnDarkFrame:
    """An image AreTomo excluded (``# DarkFrame = raw_index second_index tilt``).

    ``raw_index`` is the 0-based position of the image in the input stack; ``second_index``
    is AreTomo's second index, written as is (equal to ``raw_index`` in the files seen so
    far).
    """

    raw_index: int
    second_index: int
    tilt_angle_deg: float


@dataclass(frozen=True)
class AlnLocalAlignment:
    """Patch-tracking results of the ``# Local Alignment`` section (all ``(n_rows,)``)."""

    section_index: npt.NDArray[np.int64]
    patch_index: npt.NDArray[np.int64]
    center_x_px: npt.NDArray[np.float64]
    center_y_px: npt.NDArray[np.float64]
    shift_x_px: npt.NDArray[np.float64]
    shift_y_px: npt.NDArray[np.float64]
    reliable: npt.NDArray[np.bool_]


@dataclass(frozen=True)
class AretomoAlignment:
    """A parsed ``.aln`` file; per-section arrays are ``(n_sections,)`` in file order."""

    path: Path
    header: Mapping[str, str]  # every "# Key = value" line except DarkFrame
    comments: tuple[str, ...]  # other comment lines, without the leading '#'
    raw_size_px: tuple[int, int, int] | None  # (width, height, n_images) of the input stack
    n_patches: int
    dark_frames: tuple[AlnDarkFrame, ...]
    section_index: npt.NDArray[np.int64]
    rotation_deg: npt.NDArray[np.float64]
    magnification: npt.NDArray[np.float64]
    shift_x_px: npt.NDArray[np.float64]
    shift_y_px: npt.NDArray[np.float64]
    smean: npt.NDArray[np.float64]
    sfit: npt.NDArray[np.float64]
    scale: npt.NDArray[np.float64]
    base: npt.NDArray[np.float64]
    tilt_angle_deg: npt.NDArray[np.float64]
    local: AlnLocalAlignment | None

    @property
    def n_sections(self) -> int:
        """Number of sections kept in the alignment (rows of the global table)."""
        return int(self.section_index.shape[0])


def _dark_frame(path: Path, line_number: int, value: str) -> AlnDarkFrame:
    fields = value.split()
    try:
        if len(fields) != 3:
            raise ValueError
        return AlnDarkFrame(int(fields[0]), int(fields[1]), float(fields[2]))
    except ValueError:
        raise FileFormatError(
            path, f"line {line_number}: DarkFrame needs 'index index tilt', found {value!r}"
        ) from None


def _as_index(path: Path, column: npt.NDArray[np.float64], what: str) -> npt.NDArray[np.int64]:
    if not np.all(column == np.round(column)):
        raise FileFormatError(path, f"{what} column holds non-integer values")
    return column.astype(np.int64)


def read_aln(path: str | Path) -> AretomoAlignment:
    """Read an AreTomo ``.aln`` file.

    Returns
    -------
    AretomoAlignment
        Header, dark frames, the global per-section table and, if present, the local
        (patch) alignment.

    Raises
    ------
    FileFormatError
        Empty file, no global rows, a row with the wrong number of columns, a non-numeric
        value, a malformed ``DarkFrame``/``RawSize``/``NumPatches``, or a local-alignment
        table whose size is not ``NumPatches × n_sections`` (the message names the line).
    InvalidValuesError
        NaN or Inf in a table.
    """
    path = Path(path)
    lines = read_lines(path)
    header: dict[str, str] = {}
    header_lines: dict[str, int] = {}
    comments: list[str] = []
    dark_frames: list[AlnDarkFrame] = []
    global_rows: list[list[float]] = []
    local_rows: list[list[float]] = []
    in_local = False
    for line_number, line in enumerate(lines, start=1):
        stripped = line.strip()
        if not stripped:
            continue
        if stripped.startswith("#"):
            text = stripped[1:].strip()
            if text.lower().replace(" ", "") == "localalignment":
                in_local = True
                continue
            match = _KEY_VALUE.match(stripped)
            if match is None:
                comments.append(text)
            elif match.group(1) == "DarkFrame":
                dark_frames.append(_dark_frame(path, line_number, match.group(2)))
            else:
                header[match.group(1)] = match.group(2)
                header_lines[match.group(1)] = line_number
            continue
        if in_local:
            local_rows.append(
                numeric_row(path, line_number, line, _N_LOCAL_COLUMNS, "local alignment")
            )
        else:
            global_rows.append(
                numeric_row(path, line_number, line, _N_GLOBAL_COLUMNS, "global alignment")
            )
    if not global_rows:
        raise FileFormatError(path, "no alignment rows found (empty or truncated .aln file)")

    raw_size: tuple[int, int, int] | None = None
    if "RawSize" in header:
        fields = header["RawSize"].split()
        if len(fields) != 3 or not all(f.isdigit() for f in fields):
            raise FileFormatError(
                path, f"line {header_lines['RawSize']}: RawSize needs three integers"
            )
        raw_size = (int(fields[0]), int(fields[1]), int(fields[2]))
    n_patches = 0
    if "NumPatches" in header:
        if not header["NumPatches"].isdigit():
            raise FileFormatError(
                path, f"line {header_lines['NumPatches']}: NumPatches must be an integer"
            )
        n_patches = int(header["NumPatches"])

    table = np.asarray(global_rows, dtype=np.float64)
    local = None
    if local_rows:
        expected = n_patches * table.shape[0]
        if len(local_rows) != expected:
            raise FileFormatError(
                path,
                f"local alignment has {len(local_rows)} rows, expected NumPatches "
                f"({n_patches}) × sections ({table.shape[0]}) = {expected}",
            )
        loc = np.asarray(local_rows, dtype=np.float64)
        local = AlnLocalAlignment(
            section_index=_as_index(path, loc[:, 0], "local SEC"),
            patch_index=_as_index(path, loc[:, 1], "local patch"),
            center_x_px=loc[:, 2].copy(),
            center_y_px=loc[:, 3].copy(),
            shift_x_px=loc[:, 4].copy(),
            shift_y_px=loc[:, 5].copy(),
            reliable=loc[:, 6] > 0.5,
        )
    return AretomoAlignment(
        path=path,
        header=header,
        comments=tuple(comments),
        raw_size_px=raw_size,
        n_patches=n_patches,
        dark_frames=tuple(dark_frames),
        section_index=_as_index(path, table[:, 0], "SEC"),
        rotation_deg=table[:, 1].copy(),
        magnification=table[:, 2].copy(),
        shift_x_px=table[:, 3].copy(),
        shift_y_px=table[:, 4].copy(),
        smean=table[:, 5].copy(),
        sfit=table[:, 6].copy(),
        scale=table[:, 7].copy(),
        base=table[:, 8].copy(),
        tilt_angle_deg=table[:, 9].copy(),
        local=local,
    )
