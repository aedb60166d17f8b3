"""Multi-page TIFF movies and images (uint8, uint16, float32; any compression tifffile decodes).

Pages are read lazily, a few at a time. TIFF stores the top row first while MRC stores the
bottom row first; like RELION, IMOD and MotionCor2, cryowarp flips TIFF data along y when
reading (``flip_y=True``, the default) so that a TIFF movie and an MRC gain reference of the
same detector line up. The pixel size comes from the resolution tags (TIFF inch/cm units, or
ImageJ's ``unit=`` in the image description) when they hold a plausible value, else ``None``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import tifffile

from cryowarp.errors import (
    CorruptFileError,
    CryowarpInputError,
    FileFormatError,
    TruncatedFileError,
)
from cryowarp.io._reader import ClosingReader, check_range
from cryowarp.io._tiff_checks import (
    ifd_chain_is_cut,
    require_complete_ifd_chain,
    require_page_in_file,
)
from cryowarp.io.files import require_file

__all__ = ["TiffReader", "ifd_chain_is_cut", "read_tiff"]

_UNIT_TO_A: dict[str, float] = {
    "a": 1.0,
    "å": 1.0,
    "angstrom": 1.0,
    "\\u00c5": 1.0,
    "nm": 10.0,
    "nanometer": 10.0,
    "um": 1e4,
    "µm": 1e4,
    "micron": 1e4,
    "microns": 1e4,
    "\\u00b5m": 1e4,
    "mm": 1e7,
    "cm": 1e8,
    "m": 1e10,
}
_MAX_PLAUSIBLE_PIXEL_A = 1e4  # larger values are a default (e.g. 72 dpi), not a calibration


class TiffReader(ClosingReader):
    """Stream frames out of a (multi-page) TIFF file.

    Parameters
    ----------
    path:
        The file.
    flip_y:
        Flip every frame along y (rows), as RELION/IMOD/MotionCor2 do (see module docstring).
    """

    def __init__(self, path: str | Path, *, flip_y: bool = True) -> None:
        self.path = require_file(path)
        self.flip_y = flip_y
        try:
            self._tif = tifffile.TiffFile(self.path)
        except (tifffile.TiffFileError, ValueError, OSError, EOFError) as exc:
            raise FileFormatError(self.path, f"not a readable TIFF file ({exc})") from exc
        try:
            self._inspect()
        except CryowarpInputError:
            self._tif.close()
            raise
        except Exception as exc:  # tifffile raises many kinds on damaged IFDs
            self._tif.close()
            raise CorruptFileError(self.path, f"TIFF structure cannot be parsed ({exc})") from exc

    def _inspect(self) -> None:
        series = self._tif.series[0]
        shape = tuple(int(s) for s in series.shape)
        if series.keyframe.samplesperpixel != 1:
            raise FileFormatError(self.path, "colour (multi-sample) TIFF is not a movie")
        if len(shape) < 2 or 0 in shape:
            raise FileFormatError(self.path, f"TIFF image has unusable shape {shape}")
        self._pages = series.pages
        self.dtype: np.dtype[Any] = np.dtype(series.dtype)
        require_complete_ifd_chain(self._tif, self.path)
        declared = _declared_frames(self._tif)
        if declared is not None and declared > len(self._pages):
            raise TruncatedFileError(
                self.path,
                f"metadata declare {declared} frames but only {len(self._pages)} are in the file",
                "the copy or write was probably interrupted",
            )
        self.frame_shape: tuple[int, int] = (shape[-2], shape[-1])
        self.n_frames = int(np.prod(shape[:-2], dtype=np.int64)) if len(shape) > 2 else 1
        if self.n_frames != len(self._pages):
            raise FileFormatError(
                self.path,
                f"{len(self._pages)} pages do not form {self.n_frames} frames of "
                f"{self.frame_shape}",
            )
        self.pixel_size_a = _pixel_size_a(self._tif)

    def close(self) -> None:
        """Close the file."""
        self._tif.close()

    def read_frames(self, start: int, stop: int) -> npt.NDArray[Any]:
        """Frames ``start … stop-1`` as a ``(stop-start, h, w)`` array of :attr:`dtype`.

        Raises
        ------
        TruncatedFileError
            A page's data lie past the end of the file.
        CorruptFileError
            A page cannot be decoded.
        """
        check_range(self.path, "frames", start, stop, self.n_frames)
        out = np.empty((stop - start, *self.frame_shape), dtype=self.dtype)
        file_bytes = self._tif.filehandle.size
        for i in range(start, stop):
            try:
                page = self._pages[i]
                if page is None:
                    raise CorruptFileError(self.path, f"page {i} is missing")
                require_page_in_file(page, file_bytes, self.path, f"frame {i}")
            except (CorruptFileError, TruncatedFileError):
                raise
            except Exception as exc:  # damaged IFD chain
                raise CorruptFileError(self.path, f"page {i} cannot be parsed ({exc})") from exc
            try:
                frame = page.asarray()
            except Exception as exc:
                raise CorruptFileError(self.path, f"frame {i} cannot be decoded ({exc})") from exc
            frame = np.asarray(frame).reshape(self.frame_shape)
            out[i - start] = frame[::-1] if self.flip_y else frame
        return out


def _declared_frames(tif: tifffile.TiffFile) -> int | None:
    """Number of frames promised by tifffile's or ImageJ's metadata, if any."""
    try:
        shaped = tif.shaped_metadata
        if shaped and "shape" in shaped[0] and len(shaped[0]["shape"]) >= 3:
            return int(np.prod(shaped[0]["shape"][:-2]))
        imagej = tif.imagej_metadata
        if imagej and "images" in imagej:
            return int(imagej["images"])
    except (TypeError, ValueError, KeyError):
        return None
    return None


def _pixel_size_a(tif: tifffile.TiffFile) -> float | None:
    """Pixel size in Å from the first page's XResolution tag, or ``None``."""
    page = tif.pages.first
    tag = page.tags.get("XResolution")
    if tag is None:
        return None
    num, den = tag.value
    if num <= 0 or den <= 0:
        return None
    pixels_per_unit = num / den
    unit_code = int(page.tags.valueof("ResolutionUnit", 2))
    if unit_code == 2:
        a_per_unit = 2.54e8
    elif unit_code == 3:
        a_per_unit = 1e8
    else:
        meta = tif.imagej_metadata or {}
        unit = str(meta.get("unit", "")).strip().lower()
        if unit not in _UNIT_TO_A:
            return None
        a_per_unit = _UNIT_TO_A[unit]
    pixel_a = a_per_unit / pixels_per_unit
    if not 0 < pixel_a < _MAX_PLAUSIBLE_PIXEL_A:
        return None
    return float(pixel_a)


def read_tiff(path: str | Path, *, flip_y: bool = True) -> tuple[npt.NDArray[Any], float | None]:
    """Read a whole TIFF file.

    Returns
    -------
    data, pixel_size_a:
        ``(n, h, w)`` array (``(h, w)`` for a single page) and the pixel size in Å or ``None``.
    """
    with TiffReader(path, flip_y=flip_y) as reader:
        data = reader.read_frames(0, reader.n_frames)
        pixel_size_a = reader.pixel_size_a
    return (data[0] if data.shape[0] == 1 else data), pixel_size_a
