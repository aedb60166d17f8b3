"""MRC / MRCS files: volumes, image stacks and movies.

The 1024-byte header is parsed with ``mrcfile``'s header layout and checked here, so that every
problem surfaces as a typed error naming the file (:class:`~cryowarp.errors.FileFormatError`,
:class:`~cryowarp.errors.TruncatedFileError`). Data are memory-mapped and read a few sections
at a time (:class:`MrcReader`), so a 5 GB movie is never loaded whole.

Supported modes: 0 (int8; uint8 when IMOD's stamp says bytes are unsigned), 1 (int16),
2 (float32), 6 (uint16), 12 (float16) and 101 (unsigned 4-bit, two pixels per byte, the pixel
with the lower x in the low nibble, each row padded to whole bytes when ``nx`` is odd; IMOD's
``mrc_format.txt`` and SerialEM's documentation). Writing (:func:`write_mrc`) supports modes
0, 1, 2, 6 and 12 and is atomic. Arrays are ``(sections, rows, columns)`` = ``(z, y, x)``;
voxel sizes are ``(x, y, z)`` in Å (docs/conventions.md §1).
"""

from __future__ import annotations

import contextlib
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import mrcfile
import numpy as np
import numpy.typing as npt

from cryowarp.errors import FileFormatError, TruncatedFileError
from cryowarp.io._reader import ClosingReader, check_range
from cryowarp.io.files import atomic_output, require_file

__all__ = [
    "MrcHeader",
    "MrcReader",
    "read_mrc",
    "read_mrc_header",
    "write_mrc",
]

_HEADER_BYTES = 1024
_IMOD_STAMP = 1146047817
_MODE_DTYPES: dict[int, str] = {0: "i1", 1: "i2", 2: "f4", 6: "u2", 12: "f2", 101: "u1"}
_LABEL = b"cryowarp".ljust(80)
_WRITABLE_MODES: dict[int, str] = {0: "i1", 1: "i2", 2: "f4", 6: "u2", 12: "f2"}


@dataclass(frozen=True)
class MrcHeader:
    """What cryowarp uses from an MRC header.

    Attributes
    ----------
    path:
        The file.
    shape:
        ``(nz, ny, nx)`` as stored (sections, rows, columns).
    mode:
        MRC data mode.
    voxel_size_a:
        ``(x, y, z)`` voxel size in Å (``cella / (mx, my, mz)``; 0 where unknown).
    axis_order:
        ``(mapc, mapr, maps)``: which of x=1, y=2, z=3 runs along columns, rows, sections.
    ispg:
        Space group (0 for image stacks and movies, 1 for volumes).
    ext_header_bytes:
        Size of the extended header (``NSYMBT``).
    byte_order:
        ``"<"`` or ``">"``.
    dtype:
        NumPy dtype of the decoded samples (``uint8`` for mode 101).
    """

    path: Path
    shape: tuple[int, int, int]
    mode: int
    voxel_size_a: tuple[float, float, float]
    axis_order: tuple[int, int, int]
    ispg: int
    ext_header_bytes: int
    byte_order: Literal["<", ">"]
    dtype: np.dtype[Any]

    @property
    def data_offset(self) -> int:
        """Byte offset of the first sample."""
        return _HEADER_BYTES + self.ext_header_bytes

    @property
    def section_bytes(self) -> int:
        """Bytes of one section (``nx*ny`` samples; mode 101 rows padded to whole bytes)."""
        _, ny, nx = self.shape
        if self.mode == 101:
            return ny * ((nx + 1) // 2)
        return ny * nx * self.dtype.itemsize

    @property
    def pixel_size_a(self) -> float | None:
        """Pixel size along x in Å, or ``None`` when the header does not record one."""
        value = self.voxel_size_a[0]
        return value if value > 0 else None


def _parse_header(raw: bytes, path: Path) -> MrcHeader:
    le = np.frombuffer(raw, dtype=mrcfile.dtypes.HEADER_DTYPE.newbyteorder("<"), count=1)[0]
    map_field = raw[208:212]
    if map_field not in (b"MAP ", b"MAP\x00", b"\x00\x00\x00\x00"):
        raise FileFormatError(path, f"not an MRC file: MAP field is {map_field!r}, not b'MAP '")
    stamp = raw[212:216]
    byte_order: Literal["<", ">"]
    if stamp[:2] in (b"\x11\x11", b"\x11\x00"):
        byte_order = ">"
    elif stamp[:2] in (b"DD", b"DA", b"\x44\x00"):
        byte_order = "<"
    else:  # absent stamp (pre-2014 writers): the order in which the mode makes sense
        be_mode = int(np.frombuffer(raw[12:16], dtype=">i4")[0])
        byte_order = ">" if int(le["mode"]) not in _MODE_DTYPES and be_mode in _MODE_DTYPES else "<"
    h = np.frombuffer(raw, dtype=mrcfile.dtypes.HEADER_DTYPE.newbyteorder(byte_order), count=1)[0]
    nx, ny, nz, mode = int(h["nx"]), int(h["ny"]), int(h["nz"]), int(h["mode"])
    if min(nx, ny, nz) <= 0:
        raise FileFormatError(
            path, f"header dimensions must be positive, got (nx, ny, nz) = ({nx}, {ny}, {nz})"
        )
    if mode not in _MODE_DTYPES:
        raise FileFormatError(
            path, f"unknown MRC mode {mode}", f"supported modes: {sorted(_MODE_DTYPES)}"
        )
    nsymbt = int(h["nsymbt"])
    if nsymbt < 0:
        raise FileFormatError(path, f"negative extended header size (NSYMBT = {nsymbt})")
    axis_order = (int(h["mapc"]), int(h["mapr"]), int(h["maps"]))
    if sorted(axis_order) != [1, 2, 3]:
        axis_order = (1, 2, 3)  # unset or invalid MAPC/MAPR/MAPS: the standard order
    dtype = np.dtype(_MODE_DTYPES[mode]).newbyteorder(byte_order)
    if mode == 0 and _imod_unsigned_bytes(raw, byte_order):
        dtype = np.dtype("u1")
    sampling = (int(h["mx"]), int(h["my"]), int(h["mz"]))
    cell = h["cella"]
    voxel = tuple(
        float(cell[i]) / sampling[i] if sampling[i] > 0 and np.isfinite(cell[i]) else 0.0
        for i in range(3)
    )
    return MrcHeader(
        path=path,
        shape=(nz, ny, nx),
        mode=mode,
        voxel_size_a=(voxel[0], voxel[1], voxel[2]),
        axis_order=axis_order,
        ispg=int(h["ispg"]),
        ext_header_bytes=nsymbt,
        byte_order=byte_order,
        dtype=dtype,
    )


def _imod_unsigned_bytes(raw: bytes, byte_order: Literal["<", ">"]) -> bool:
    """IMOD marks mode-0 files as signed with bit 0 of ``imodFlags``; unmarked are unsigned."""
    stamp = int(np.frombuffer(raw[152:156], dtype=f"{byte_order}i4")[0])
    flags = int(np.frombuffer(raw[156:160], dtype=f"{byte_order}i4")[0])
    return stamp == _IMOD_STAMP and not flags & 1


def read_mrc_header(path: str | Path) -> MrcHeader:
    """Read and validate the header of an MRC file.

    Raises
    ------
    MissingFileError
        ``path`` is missing or not a regular file.
    FileFormatError
        Not an MRC file, unknown mode, non-positive dimensions, a bad extended-header size, or
        more data than the header describes.
    TruncatedFileError
        The file is shorter than its header says.
    """
    path = require_file(path)
    try:
        file_bytes = path.stat().st_size
        with path.open("rb") as f:
            raw = f.read(_HEADER_BYTES)
    except OSError as exc:
        raise FileFormatError(path, f"cannot be read ({exc.strerror})") from exc
    if len(raw) < _HEADER_BYTES:
        raise FileFormatError(path, f"only {len(raw)} bytes, shorter than the 1024-byte MRC header")
    header = _parse_header(raw, path)
    expected = header.data_offset + header.shape[0] * header.section_bytes
    if header.data_offset > file_bytes:
        raise FileFormatError(
            path,
            f"extended header of {header.ext_header_bytes} bytes "
            f"(NSYMBT) runs past the end of the {file_bytes}-byte file",
        )
    if file_bytes < expected:
        raise TruncatedFileError(
            path,
            f"file holds {file_bytes} bytes but its header "
            f"(shape {header.shape}, mode {header.mode}, extended header "
            f"{header.ext_header_bytes} bytes) needs {expected}",
            "the copy or write was probably interrupted",
        )
    if file_bytes > expected:
        raise FileFormatError(
            path,
            f"file holds {file_bytes} bytes but its header "
            f"(shape {header.shape}, mode {header.mode}, extended header "
            f"{header.ext_header_bytes} bytes) describes {expected}",
            "the dimensions or NSYMBT in the header are wrong",
        )
    return header


def _unpack_4bit(packed: npt.NDArray[np.uint8], nx: int) -> npt.NDArray[np.uint8]:
    """Unpack mode-101 rows: the low nibble holds the pixel with the lower x."""
    out = np.empty((*packed.shape[:-1], packed.shape[-1] * 2), dtype=np.uint8)
    out[..., 0::2] = packed & 0x0F
    out[..., 1::2] = packed >> 4
    return out[..., :nx]


class MrcReader(ClosingReader):
    """Stream sections (images, movie frames, volume slices) out of an MRC file.

    Use as a context manager; nothing but the header is read until :meth:`read_sections`.

    Examples
    --------
    >>> with MrcReader("movie.mrc") as movie:  # doctest: +SKIP
    ...     first_four = movie.read_sections(0, 4)  # (4, ny, nx)
    """

    def __init__(self, path: str | Path) -> None:
        self.header = read_mrc_header(path)
        self.path = self.header.path
        self._map: np.memmap[Any, np.dtype[Any]] | None = None

    def close(self) -> None:
        """Release the memory map."""
        if self._map is not None:
            mm = getattr(self._map, "_mmap", None)
            self._map = None
            if mm is not None:
                with contextlib.suppress(BufferError):
                    mm.close()

    @property
    def n_sections(self) -> int:
        """Number of sections (movie frames, stack images, volume slices)."""
        return self.header.shape[0]

    def _memmap(self) -> np.memmap[Any, np.dtype[Any]]:
        if self._map is None:
            nz, ny, nx = self.header.shape
            if self.header.mode == 101:
                dtype, shape = np.dtype(np.uint8), (nz, ny, (nx + 1) // 2)
            else:
                dtype, shape = self.header.dtype, (nz, ny, nx)
            self._map = np.memmap(
                self.path, dtype=dtype, mode="r", offset=self.header.data_offset, shape=shape
            )
        return self._map

    def read_sections(self, start: int, stop: int) -> npt.NDArray[Any]:
        """Sections ``start … stop-1`` as a ``(stop-start, ny, nx)`` array in native byte
        order (dtype :attr:`MrcHeader.dtype`; mode 101 is unpacked to ``uint8``)."""
        check_range(self.path, "sections", start, stop, self.n_sections)
        block = np.asarray(self._memmap()[start:stop])
        if self.header.mode == 101:
            return _unpack_4bit(block, self.header.shape[2])
        return block.astype(block.dtype.newbyteorder("="), copy=True)


def read_mrc(path: str | Path, *, reorder_axes: bool = True) -> tuple[npt.NDArray[Any], MrcHeader]:
    """Read a whole MRC file.

    Parameters
    ----------
    path:
        The file.
    reorder_axes:
        If the header's MAPC/MAPR/MAPS are not (1, 2, 3), transpose the data so that axes are
        ``(z, y, x)`` (docs/conventions.md §1). ``False`` returns the data as stored.

    Returns
    -------
    data, header:
        ``(nz, ny, nx)`` array (2-D ``(ny, nx)`` when ``nz == 1``), native dtype; the header
        (voxel size in Å via ``header.voxel_size_a``).
    """
    with MrcReader(path) as reader:
        data = reader.read_sections(0, reader.n_sections)
        header = reader.header
    if reorder_axes and header.axis_order != (1, 2, 3):
        # stored axes (sections, rows, columns) hold the map axes (maps, mapr, mapc)
        stored = (header.axis_order[2], header.axis_order[1], header.axis_order[0])
        data = np.ascontiguousarray(data.transpose([stored.index(a) for a in (3, 2, 1)]))
    if data.shape[0] == 1:
        data = data[0]
    return data, header


def _voxel_triplet(voxel_size_a: float | tuple[float, float, float]) -> tuple[float, float, float]:
    if isinstance(voxel_size_a, tuple):
        return (float(voxel_size_a[0]), float(voxel_size_a[1]), float(voxel_size_a[2]))
    return (float(voxel_size_a),) * 3


def write_mrc(
    path: str | Path,
    data: npt.ArrayLike,
    *,
    voxel_size_a: float | tuple[float, float, float],
    mode: int | None = None,
    is_stack: bool | None = None,
) -> None:
    """Write an MRC file atomically (temporary file in the same folder, then ``os.replace``).

    Parameters
    ----------
    path:
        Destination.
    data:
        ``(ny, nx)`` image, or ``(n, ny, nx)`` stack / volume (a torch tensor is accepted).
    voxel_size_a:
        Pixel size in Å, or ``(x, y, z)`` voxel sizes.
    mode:
        0, 1, 2, 6 or 12; by default the mode of the data's dtype (float64 → 2).
    is_stack:
        Mark a 3-D array as an image stack (ISPG 0) rather than a volume (ISPG 1); by
        default a stack when the file name ends in ``.mrcs``.
    """
    path = Path(path)
    array = np.asarray(data.detach().cpu() if hasattr(data, "detach") else data)
    if array.ndim not in (2, 3) or 0 in array.shape:
        raise ValueError(
            f"{path}: MRC data must be a non-empty 2-D or 3-D array, got shape {array.shape}"
        )
    if mode is None:
        mode = 2 if array.dtype in (np.float64, np.float32) else None
        if mode is None:
            try:
                mode = int(mrcfile.utils.mode_from_dtype(array.dtype))
            except ValueError as exc:
                raise ValueError(f"{path}: no MRC mode for dtype {array.dtype}") from exc
    if mode not in _WRITABLE_MODES:
        raise ValueError(
            f"{path}: cannot write MRC mode {mode}; use one of {sorted(_WRITABLE_MODES)}"
        )
    array = np.ascontiguousarray(array, dtype=np.dtype(_WRITABLE_MODES[mode]))
    stack = path.suffix.lower() == ".mrcs" if is_stack is None else is_stack
    with atomic_output(path) as tmp, mrcfile.new(tmp, overwrite=True) as mrc:
        with warnings.catch_warnings():
            # NaN/Inf are written as given; mrcfile's header statistics would warn about them
            warnings.filterwarnings("ignore", "Data array contains", RuntimeWarning)
            mrc.set_data(array)
        if array.ndim == 3:
            if stack:
                mrc.set_image_stack()
            else:
                mrc.set_volume()
        mrc.voxel_size = _voxel_triplet(voxel_size_a)
        # A fixed label instead of mrcfile's creation time: the same data give the same bytes.
        mrc.header.label[0] = _LABEL
        mrc.header.nlabl = 1
