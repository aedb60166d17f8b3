"""cryoSPARC ``.cs`` metadata files: read, write and build them, and place their particles.

A ``.cs`` file is a one-dimensional NumPy structured array saved with :func:`numpy.save`
(``.npy`` layout, no pickled objects). Each field is a column named ``<group>/<name>``; text
columns are fixed-length bytes (``|S…``), decoded here as UTF-8. Fields and units used by
cryowarp (cryoSPARC guide, "Manipulating .cs files"; the same meanings are used by pyem's
``csparc2star.py`` and cryoDRGN):

- ``uid`` (uint64), ``blob/path``, ``blob/idx`` (0-based), ``blob/shape`` (H, W),
  ``blob/psize_A`` (particle image pixel size, Å);
- ``ctf/accel_kv``, ``ctf/cs_mm``, ``ctf/amp_contrast``, ``ctf/df1_A`` and ``ctf/df2_A``
  (RELION's ``DefocusU``/``DefocusV``, Å), ``ctf/df_angle_rad`` and ``ctf/phase_shift_rad``
  (RELION's ``DefocusAngle``/``PhaseShift`` in radians);
- ``location/micrograph_path``, ``location/micrograph_shape`` (**H, W** — rows first),
  ``location/center_x_frac`` and ``location/center_y_frac`` (particle centre as a fraction of
  the width and height), optionally ``location/micrograph_psize_A``;
- ``alignments3D/pose`` (rotation vector, rad; see
  :mod:`cryowarp.preprocess.export.coordinates` for its conversion to RELION Euler angles) and
  ``alignments3D/shift`` (pixels of the particle image).

**Where y is measured from.** cryoSPARC measures ``center_y_frac`` from the *bottom* of the
micrograph as RELION (and cryowarp, docs/conventions.md §14) reads the same file, so
RELION's ``rlnCoordinateY = (1 − center_y_frac) · H`` and ``rlnCoordinateX = center_x_frac ·
W`` (D. Asarnow, pyem issues #81 and #101: "cryoSPARC has the origin in the lower left …
cryoSPARC inverts Relion coordinates on import"). cryoSPARC's own Patch Motion writes its
micrographs upside down relative to MotionCor2 and RELION (same source), so for particles
picked on those the two flips cancel: pass ``y_up=False`` to :func:`location_px`.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import BinaryIO

import numpy as np
import numpy.typing as npt

from cryowarp.errors import (
    CorruptFileError,
    DimensionMismatchError,
    FileFormatError,
    MissingColumnError,
    TruncatedFileError,
)
from cryowarp.io.files import atomic_output, require_file

__all__ = [
    "LOCATION_FIELDS",
    "CsTable",
    "cs_from_columns",
    "location_fractions",
    "location_px",
    "read_cs",
    "write_cs",
]

LOCATION_FIELDS = (
    "location/micrograph_path",
    "location/micrograph_shape",
    "location/center_x_frac",
    "location/center_y_frac",
)
"""Fields a ``.cs`` file needs for particle positions on micrographs."""

_NPY_MAGIC = b"\x93NUMPY"
_MAX_HEADER = 1 << 20  # bytes of .npy header accepted (cryoSPARC tables have many fields)


class CsTable:
    """The rows of one ``.cs`` file (a 1-D structured array) and the file it came from.

    The array is copied on construction and by :attr:`array`, so a table is never changed
    behind its back.
    """

    def __init__(self, array: np.ndarray, *, source: str | os.PathLike[str] | None = None) -> None:
        self._source = Path(source) if source is not None else None
        if array.dtype.names is None or array.ndim != 1:
            raise FileFormatError(
                self._source,
                f"not a cryoSPARC table: expected a 1-D structured array, got dtype "
                f"{array.dtype} with shape {array.shape}",
            )
        self._array = array.copy()

    def __len__(self) -> int:
        return int(self._array.shape[0])

    def __contains__(self, name: object) -> bool:
        return name in self.fields

    @property
    def source(self) -> Path | None:
        """The ``.cs`` file the table was read from, if any."""
        return self._source

    @property
    def fields(self) -> tuple[str, ...]:
        """Field names in file order."""
        return tuple(self._array.dtype.names or ())

    @property
    def array(self) -> np.ndarray:
        """A copy of the structured array."""
        return self._array.copy()

    def require(self, *names: str) -> None:
        """Raise :class:`~cryowarp.errors.MissingColumnError` naming every absent field."""
        missing = [name for name in names if name not in self.fields]
        if missing:
            raise MissingColumnError(self._source, f"missing cryoSPARC field(s) {missing}")

    def column(self, name: str) -> np.ndarray:
        """A copy of one field as stored: ``(n,)`` or ``(n, k)`` for vector fields."""
        self.require(name)
        return np.array(self._array[name])

    def numbers(self, name: str) -> npt.NDArray[np.float64]:
        """One numeric field as float64, ``(n,)`` or ``(n, k)``."""
        values = self.column(name)
        if values.dtype.kind not in "biuf":
            raise FileFormatError(self._source, f"field {name} is not numeric ({values.dtype})")
        return values.astype(np.float64)

    def texts(self, name: str) -> list[str]:
        """One text field, bytes decoded as UTF-8 (undecodable bytes replaced)."""
        values = self.column(name)
        if values.dtype.kind == "S":
            return [bytes(v).decode("utf-8", errors="replace") for v in values.tolist()]
        if values.dtype.kind == "U":
            return [str(v) for v in values.tolist()]
        raise FileFormatError(self._source, f"field {name} is not text ({values.dtype})")


def read_cs(path: str | os.PathLike[str]) -> CsTable:
    """Read a cryoSPARC ``.cs`` file.

    Raises
    ------
    MissingFileError
        ``path`` is not an existing regular file.
    FileFormatError
        The file is not a NumPy ``.npy`` file, holds Python objects, or is not a 1-D
        structured array.
    TruncatedFileError
        The file is shorter than its header says.
    CorruptFileError
        The header cannot be decoded.
    """
    file = require_file(path)
    with file.open("rb") as handle:
        magic = handle.read(len(_NPY_MAGIC))
        if magic != _NPY_MAGIC:
            raise FileFormatError(file, "not a cryoSPARC .cs file (no NumPy .npy header)")
        handle.seek(0)
        try:
            version = np.lib.format.read_magic(handle)
            shape, dtype = _read_header(handle, version)
        except ValueError as error:
            raise CorruptFileError(file, f"unreadable .npy header: {error}") from error
        data_start = handle.tell()
    if dtype.hasobject:
        raise FileFormatError(file, "the .cs file holds Python objects, which are not read")
    expected = data_start + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    size = file.stat().st_size
    if size < expected:
        raise TruncatedFileError(file, f"{size} bytes, the header needs {expected}")
    try:
        array = np.load(file, allow_pickle=False, max_header_size=_MAX_HEADER)
    except (ValueError, OSError) as error:  # pragma: no cover - header already checked
        raise CorruptFileError(file, f"cannot be decoded: {error}") from error
    return CsTable(array, source=file)


def write_cs(path: str | os.PathLike[str], table: CsTable | np.ndarray) -> None:
    """Write a ``.cs`` file atomically (``numpy.save`` layout, readable by cryoSPARC)."""
    array = table.array if isinstance(table, CsTable) else CsTable(table).array
    with atomic_output(path) as tmp, tmp.open("wb") as handle:
        np.save(handle, array, allow_pickle=False)


def cs_from_columns(columns: Mapping[str, Iterable[object] | np.ndarray]) -> CsTable:
    """Build a table from named columns of equal length.

    Text columns (``str`` or ``bytes``; an empty column must be typed, e.g.
    ``np.array([], dtype=str)``) become fixed-length bytes (UTF-8) as cryoSPARC stores them;
    numeric columns keep their NumPy dtype; ``(n, k)`` columns become vector fields.

    Raises
    ------
    DimensionMismatchError
        Columns of different lengths.
    """
    arrays: dict[str, np.ndarray] = {}
    for name, values in columns.items():
        array = np.asarray(values)
        if array.dtype.kind == "O":  # e.g. a list of str with None-free text
            array = array.astype(np.str_)
        if array.dtype.kind == "U":
            array = np.char.encode(array, "utf-8")
        if array.dtype.kind == "S" and array.dtype.itemsize == 0:
            array = array.astype("S1")
        arrays[name] = array
    lengths = {name: a.shape[0] if a.ndim else -1 for name, a in arrays.items()}
    if len(set(lengths.values())) > 1 or -1 in lengths.values():
        raise DimensionMismatchError(None, f"cryoSPARC columns differ in length: {lengths}")
    dtype = np.dtype([(name, a.dtype, a.shape[1:]) for name, a in arrays.items()])
    n = next(iter(lengths.values()), 0)
    out = np.zeros(n, dtype=dtype)
    for name, array in arrays.items():
        out[name] = array
    return CsTable(out)


def location_px(table: CsTable, *, y_up: bool = True) -> npt.NDArray[np.float64]:  # (n, 2)
    """Particle centres ``(x, y)`` in pixels of the micrograph cryoSPARC picked on.

    ``y`` follows the row order in which RELION and cryowarp read the micrograph file. With
    ``y_up=True`` (cryoSPARC's convention for the file it read, module docstring)
    ``y = (1 − center_y_frac) · H``; with ``y_up=False`` (particles picked on cryoSPARC
    Patch Motion micrographs, to be placed on MotionCor2/RELION/cryowarp averages of the same
    movie) ``y = center_y_frac · H``. Always ``x = center_x_frac · W``.
    """
    table.require(*LOCATION_FIELDS[1:])
    shape_hw = table.numbers("location/micrograph_shape")
    if shape_hw.ndim != 2 or shape_hw.shape[1] != 2:
        raise FileFormatError(table.source, "location/micrograph_shape must hold (H, W) per row")
    fx = table.numbers("location/center_x_frac")
    fy = table.numbers("location/center_y_frac")
    y = (1.0 - fy if y_up else fy) * shape_hw[:, 0]
    return np.stack([fx * shape_hw[:, 1], y], axis=-1)


def location_fractions(
    positions_px: npt.NDArray[np.float64],  # (n, 2)
    shape_hw: npt.NDArray[np.int64] | tuple[int, int],  # (n, 2) or (2,)
    *,
    y_up: bool = True,
) -> npt.NDArray[np.float64]:  # (n, 2)
    """``(center_x_frac, center_y_frac)`` of pixel positions; the inverse of
    :func:`location_px` with the same ``y_up``."""
    shape = np.broadcast_to(np.asarray(shape_hw, dtype=np.float64), positions_px.shape)
    fx = positions_px[:, 0] / shape[:, 1]
    fy = positions_px[:, 1] / shape[:, 0]
    return np.stack([fx, 1.0 - fy if y_up else fy], axis=-1)


def _read_header(handle: BinaryIO, version: tuple[int, int]) -> tuple[tuple[int, ...], np.dtype]:
    """Shape and dtype from the header after the magic (versions 2 and 3 share a layout)."""
    read = (
        np.lib.format.read_array_header_1_0
        if version == (1, 0)
        else (np.lib.format.read_array_header_2_0)
    )
    shape, _, dtype = read(handle, max_header_size=_MAX_HEADER)
    return tuple(int(n) for n in shape), np.dtype(dtype)
