"""Thermo Fisher EER movies (Falcon 4/4i): electron events, grouped into fractions.

An EER file is a BigTIFF whose pages are raw detector frames (about 250 per second), each
compressed as a run-length-coded list of electron positions with sub-pixel bits (TIFF
compression 65000: 8-bit runs, 65001: 7-bit runs, both with 2+2 sub-pixel bits; 65002: run
and sub-pixel bit counts in tags 65007–65009). Pages are decoded by ``tifffile`` with
``imagecodecs.eer_decode``; ``upsampling`` 1, 2 or 4 renders events on the physical grid
(4096²) or on a 2× / 4× super-resolution grid.

Raw frames are summed in groups (fractions), chosen either as a number of fractions or as a
dose per fraction (:func:`eer_fraction_groups`). Frames left over after the last full group
are dropped by default, as RELION does; ``remainder="merge"`` adds them to the last group and
``remainder="keep"`` makes them a shorter group of their own.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import tifffile

from cryowarp.errors import CorruptFileError, FileFormatError, TruncatedFileError
from cryowarp.io._reader import ClosingReader, check_range
from cryowarp.io._tiff_checks import require_complete_ifd_chain, require_page_in_file
from cryowarp.io.files import require_file

__all__ = ["EerReader", "FractionGroups", "eer_fraction_groups"]

_EER_COMPRESSIONS = (65000, 65001, 65002)
_UPSAMPLING_BITS = {1: 0, 2: 1, 4: 2}


@dataclass(frozen=True)
class FractionGroups:
    """How raw EER frames are summed into fractions.

    Attributes
    ----------
    bounds:
        ``(start, stop)`` raw-frame ranges, one per fraction.
    n_dropped:
        Raw frames at the end that belong to no fraction.
    """

    bounds: tuple[tuple[int, int], ...]
    n_dropped: int

    @property
    def n_fractions(self) -> int:
        """Number of fractions."""
        return len(self.bounds)


def eer_fraction_groups(
    n_raw_frames: int,
    *,
    n_fractions: int | None = None,
    dose_per_fraction_e_per_a2: float | None = None,
    dose_per_raw_frame_e_per_a2: float | None = None,
    total_dose_e_per_a2: float | None = None,
    remainder: Literal["drop", "merge", "keep"] = "drop",
) -> FractionGroups:
    """Group ``n_raw_frames`` consecutive raw frames into fractions of equal size.

    Give either ``n_fractions`` (frames per fraction = ``n_raw_frames // n_fractions``) or
    ``dose_per_fraction_e_per_a2`` together with the dose of one raw frame or the total dose
    (e⁻/Å²); frames per fraction is then the dose ratio rounded to the nearest integer (≥ 1).

    ``remainder`` decides what happens to the ``n_raw_frames mod frames_per_fraction``
    leftover frames: ``"drop"`` (RELION's behaviour), ``"merge"`` into the last fraction, or
    ``"keep"`` as one extra, shorter fraction.
    """
    if n_raw_frames < 1:
        raise ValueError(f"need at least one raw frame, got {n_raw_frames}")
    if (n_fractions is None) == (dose_per_fraction_e_per_a2 is None):
        raise ValueError("give exactly one of n_fractions or dose_per_fraction_e_per_a2")
    if n_fractions is not None:
        if not 1 <= n_fractions <= n_raw_frames:
            raise ValueError(f"n_fractions must lie in [1, {n_raw_frames}], got {n_fractions}")
        per_fraction = n_raw_frames // n_fractions
    else:
        assert dose_per_fraction_e_per_a2 is not None
        if dose_per_raw_frame_e_per_a2 is None:
            if total_dose_e_per_a2 is None:
                raise ValueError(
                    "a dose per fraction needs dose_per_raw_frame_e_per_a2 or total_dose_e_per_a2"
                )
            dose_per_raw_frame_e_per_a2 = total_dose_e_per_a2 / n_raw_frames
        if dose_per_raw_frame_e_per_a2 <= 0 or dose_per_fraction_e_per_a2 <= 0:
            raise ValueError("doses must be positive")
        ratio = dose_per_fraction_e_per_a2 / dose_per_raw_frame_e_per_a2
        per_fraction = min(n_raw_frames, max(1, round(ratio)))
    n_full = n_fractions if n_fractions is not None else n_raw_frames // per_fraction
    bounds = [(i * per_fraction, (i + 1) * per_fraction) for i in range(n_full)]
    left = n_raw_frames - n_full * per_fraction
    dropped = 0
    if left:
        if remainder == "merge":
            bounds[-1] = (bounds[-1][0], n_raw_frames)
        elif remainder == "keep":
            bounds.append((n_full * per_fraction, n_raw_frames))
        elif remainder == "drop":
            dropped = left
        else:
            raise ValueError(f"remainder must be 'drop', 'merge' or 'keep', got {remainder!r}")
    return FractionGroups(bounds=tuple(bounds), n_dropped=dropped)


class EerReader(ClosingReader):
    """Read an EER movie as fractions (sums of raw frames).

    Parameters
    ----------
    path:
        The ``.eer`` file.
    upsampling:
        1 (physical pixels), 2 or 4 (super-resolution rendering of the sub-pixel bits).
    groups:
        The fractions; by default every raw frame is its own fraction.

    Attributes
    ----------
    n_raw_frames:
        Number of detector frames in the file.
    n_frames:
        Number of fractions.
    frame_shape:
        ``(h, w)`` of the rendered frames.
    pixel_size_a:
        Pixel size at the specimen of the rendered grid, in Å, when the file's metadata give
        it (``sensorPixelSize``), else ``None``.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        upsampling: int = 1,
        groups: FractionGroups | None = None,
    ) -> None:
        self.path = require_file(path)
        if upsampling not in _UPSAMPLING_BITS:
            raise ValueError(f"EER upsampling must be 1, 2 or 4, got {upsampling}")
        self.upsampling = upsampling
        try:
            self._tif = tifffile.TiffFile(self.path, superres=_UPSAMPLING_BITS[upsampling])
        except Exception as exc:
            raise FileFormatError(self.path, f"not a readable TIFF/EER file ({exc})") from exc
        try:
            self._frame_pages = self._find_frame_pages()
        except (FileFormatError, TruncatedFileError):
            self._tif.close()
            raise
        except Exception as exc:  # tifffile raises many kinds on damaged IFDs
            self._tif.close()
            raise CorruptFileError(self.path, f"TIFF structure cannot be parsed ({exc})") from exc
        first = self._frame_pages[0]
        self.frame_shape: tuple[int, int] = (int(first.shape[-2]), int(first.shape[-1]))
        self.n_raw_frames = len(self._frame_pages)
        self.groups = (
            groups
            if groups is not None
            else FractionGroups(
                bounds=tuple((i, i + 1) for i in range(self.n_raw_frames)), n_dropped=0
            )
        )
        if self.groups.bounds and self.groups.bounds[-1][1] > self.n_raw_frames:
            self._tif.close()
            raise ValueError(
                f"{self.path}: fraction groups need "
                f"{self.groups.bounds[-1][1]} raw frames, file has "
                f"{self.n_raw_frames}"
            )
        self.n_frames = self.groups.n_fractions
        self.dtype: np.dtype[Any] = np.dtype(np.uint16)
        self.pixel_size_a = self._pixel_size_a()

    def _find_frame_pages(self) -> list[Any]:
        pages = [p for p in self._tif.pages if getattr(p, "compression", None) in _EER_COMPRESSIONS]
        if not pages:
            raise FileFormatError(
                self.path, "no EER-compressed pages (TIFF compression 65000/65001/65002) found"
            )
        require_complete_ifd_chain(self._tif, self.path)
        shapes = {tuple(p.shape) for p in pages}
        if len(shapes) != 1:
            raise FileFormatError(self.path, f"EER frames differ in shape: {sorted(shapes)}")
        return pages

    def _pixel_size_a(self) -> float | None:
        meta = self._tif.eer_metadata or {}
        value = meta.get("sensorPixelSize.width")
        unit = meta.get("sensorPixelSize.width.unit", "m")
        if not isinstance(value, (int, float)) or value <= 0:
            return None
        scale = {"m": 1e10, "nm": 10.0, "A": 1.0}.get(str(unit))
        return None if scale is None else float(value) * scale / self.upsampling

    def close(self) -> None:
        """Close the file."""
        self._tif.close()

    def read_raw_frames(self, start: int, stop: int) -> npt.NDArray[np.uint8]:
        """Raw detector frames ``start … stop-1`` as ``(stop-start, h, w)`` event counts."""
        check_range(self.path, "raw frames", start, stop, self.n_raw_frames)
        out = np.zeros((stop - start, *self.frame_shape), dtype=np.uint8)
        file_bytes = self._tif.filehandle.size
        for i in range(start, stop):
            page = self._frame_pages[i]
            require_page_in_file(page, file_bytes, self.path, f"EER frame {i}")
            try:
                out[i - start] = page.asarray()
            except Exception as exc:
                raise CorruptFileError(
                    self.path, f"EER frame {i} cannot be decoded ({exc})"
                ) from exc
        return out

    def read_frames(self, start: int, stop: int) -> npt.NDArray[np.uint16]:
        """Fractions ``start … stop-1``: sums of their raw frames, ``(stop-start, h, w)``."""
        check_range(self.path, "fractions", start, stop, self.n_frames)
        out = np.zeros((stop - start, *self.frame_shape), dtype=np.uint16)
        for k in range(start, stop):
            first, last = self.groups.bounds[k]
            for chunk in range(first, last, 8):
                raw = self.read_raw_frames(chunk, min(chunk + 8, last))
                out[k - start] += raw.sum(axis=0, dtype=np.uint16)
        return out
