"""A movie read for motion correction: raw frames, gain, defects, dose, alignment frames.

:func:`load_movie` reads a movie (MRC, TIFF or EER, :func:`cryowarp.io.movie.open_movie`) once,
checks every frame, orients and checks the gain reference, gathers the defects and keeps the
raw frames in their stored type (or re-reads them from the file when they would not fit in
memory). :meth:`LoadedMovie.corrected_frames` then gives gain-corrected frames with defects
filled, a few at a time; :func:`alignment_frames` gives them resampled to a coarser pixel for
the motion fit. Conventions: docs/conventions.md §1 (axes), §7 (dose), §14 (gain, TIFF, EER);
the details are in docs/motion_input.md.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch

from cryowarp.core.resize import bin_average, rescale
from cryowarp.errors import InvalidValuesError
from cryowarp.io.files import require_file
from cryowarp.io.gain import correct_defects, detect_hot_pixels
from cryowarp.io.movie import open_movie
from cryowarp.preprocess.motion._gain_check import check_gain_orientation
from cryowarp.preprocess.motion._movie_inputs import (
    dead_lines,
    dose_per_frame_e_per_a2,
    read_defects,
    read_oriented_gain,
)
from cryowarp.preprocess.motion.settings import MovieInputSettings

__all__ = ["LoadedMovie", "alignment_frames", "binned_shape", "load_movie"]

_COMPACT_DTYPES = {np.dtype(t) for t in (np.uint8, np.int8, np.uint16, np.int16, np.float16)}
_CHUNK_BYTES = 1 << 28  # read and process about 256 MiB of float32 frames at a time


class LoadedMovie:
    """A movie ready for motion correction (made by :func:`load_movie`).

    Attributes
    ----------
    path:
        The movie file.
    n_frames, frame_shape:
        Number of frames (EER: fractions) and ``(h, w)`` in pixels.
    pixel_size_a:
        Pixel size of the frames as read, in Å (EER: of the rendered grid).
    dose_per_frame_e_per_a2, pre_exposure_e_per_a2:
        Exposure of one frame and before the first frame, in e⁻/Å².
    gain:
        ``(h, w)`` float32 oriented multiplicative gain, unusable pixels set to 1, or ``None``.
    defects:
        ``(h, w)`` bool mask of pixels filled from their neighbours, or ``None``.
    in_memory:
        Whether the raw frames are held in memory (else re-read from the file on demand).
    """

    def __init__(
        self,
        *,
        path: Path,
        frame_shape: tuple[int, int],
        n_frames: int,
        pixel_size_a: float,
        dose_per_frame_e_per_a2: float,
        pre_exposure_e_per_a2: float,
        gain: torch.Tensor | None,
        defects: torch.Tensor | None,
        raw: npt.NDArray[Any] | None,
        open_options: dict[str, Any],
    ) -> None:
        self.path = path
        self.frame_shape = frame_shape
        self.n_frames = n_frames
        self.pixel_size_a = pixel_size_a
        self.dose_per_frame_e_per_a2 = dose_per_frame_e_per_a2
        self.pre_exposure_e_per_a2 = pre_exposure_e_per_a2
        self.gain = gain
        self.defects = defects
        self._raw = raw
        self._open_options = open_options
        self._frame_sum: torch.Tensor | None = None

    @property
    def in_memory(self) -> bool:
        """Whether the raw frames are held in memory."""
        return self._raw is not None

    @property
    def field_size_a(self) -> tuple[float, float]:
        """Size of the field of view ``(x, y)`` in Å: ``(w · pixel, h · pixel)``."""
        h, w = self.frame_shape
        return w * self.pixel_size_a, h * self.pixel_size_a

    def frames_per_chunk(self) -> int:
        """How many frames make about 256 MiB of float32 (at least 1)."""
        h, w = self.frame_shape
        return max(1, _CHUNK_BYTES // (4 * h * w))

    def raw_frames(self, start: int, stop: int) -> npt.NDArray[np.float32]:
        """Raw frames ``start … stop-1`` as stored (no gain, no defect filling), float32
        ``(stop-start, h, w)``."""
        if not 0 <= start <= stop <= self.n_frames:
            raise IndexError(f"{self.path}: frames [{start}, {stop}) outside [0, {self.n_frames})")
        if self._raw is not None:
            return self._raw[start:stop].astype(np.float32)
        with open_movie(self.path, **self._open_options) as movie:
            return movie.read_frames(start, stop)

    def corrected_frames(
        self, start: int, stop: int, *, device: torch.device | str = "cpu"
    ) -> torch.Tensor:
        """Frames ``start … stop-1`` as float32 ``(stop-start, h, w)`` on ``device``:
        ``raw × gain``, then every defect pixel replaced by the mean of the good pixels in the
        smallest square window around it that holds any (linear, so that sums of corrected
        frames are corrected sums; the mean, unlike the median, is unbiased for sparse counts)."""
        frames = torch.from_numpy(self.raw_frames(start, stop)).to(device)
        if self.gain is not None:
            frames = frames * self.gain.to(frames.device)
        if self.defects is not None:
            frames = correct_defects(frames, self.defects.to(frames.device), method="mean")
        return frames

    def frame_sum(self) -> torch.Tensor:  # (h, w) float32, CPU
        """Sum of all corrected frames (computed once, then cached)."""
        if self._frame_sum is None:
            total = torch.zeros(self.frame_shape, dtype=torch.float64)
            step = self.frames_per_chunk()
            for start in range(0, self.n_frames, step):
                chunk = self.corrected_frames(start, min(start + step, self.n_frames))
                total += chunk.sum(dim=0, dtype=torch.float64)
            self._frame_sum = total.to(torch.float32)
        return self._frame_sum

    def accumulated_dose_e_per_a2(self) -> torch.Tensor:  # (n,) float64
        """Exposure at the middle of each frame, ``pre + (i + 0.5) · dose`` in e⁻/Å²
        (docs/conventions.md §7)."""
        index = torch.arange(self.n_frames, dtype=torch.float64)
        return self.pre_exposure_e_per_a2 + (index + 0.5) * self.dose_per_frame_e_per_a2


def load_movie(
    path: str | Path, settings: MovieInputSettings, *, max_memory_gb: float = 12.0
) -> LoadedMovie:
    """Read and check a movie, its gain and its defects for motion correction.

    Parameters
    ----------
    path:
        MRC, TIFF or EER movie (EER frames are grouped into fractions as ``settings`` say).
    settings:
        Pixel size, dose, gain orientation, defects and EER options.
    max_memory_gb:
        The raw frames are kept in memory (in their stored type: 1 or 2 bytes per pixel for
        counting data) when they take at most this many GiB, else re-read on demand; both
        give identical frames.

    Notes
    -----
    Defects are the union of the gain's unusable pixels (≤ 0, NaN, Inf), the
    ``settings.defects_path`` file (SerialEM list by default; an MRC/TIFF mask by suffix),
    and, with ``settings.detect_hot_pixels``, hot pixels of the corrected sum
    (:func:`~cryowarp.io.gain.detect_hot_pixels`, 8 robust σ above the median) and dead lines
    (columns or rows more than half zero in the raw sum while under 5 % of the detector is).
    A gain in TIFF is flipped along y with TIFF movies (``settings.flip_tiff_y``), never with
    EER movies, whose frames are not flipped (docs/conventions.md §14). With a known
    ``eer_total_dose_e_per_a2`` the dose per EER fraction is that of the fractions actually
    made (see :func:`~cryowarp.preprocess.motion._movie_inputs.dose_per_frame_e_per_a2`).

    Raises
    ------
    InvalidValuesError
        Fewer than ``settings.min_frames`` frames, no pixel size known, a frame with NaN/Inf
        or entirely zero (naming the frame).
    DimensionMismatchError
        The gain or the defect mask does not match the frames, or the gain seems wrongly
        oriented (``settings.check_gain_orientation``; the message names the fitting settings).
    FileFormatError, CorruptFileError, TruncatedFileError, MissingFileError
        From the file readers (:mod:`cryowarp.io`).
    """
    if max_memory_gb < 0:
        raise ValueError(f"max_memory_gb must be ≥ 0, got {max_memory_gb}")
    path = require_file(path)
    is_eer = path.suffix.lower() == ".eer"
    options: dict[str, Any] = {
        "flip_tiff_y": settings.flip_tiff_y,
        "eer_upsampling": settings.eer_upsampling,
        "eer_n_fractions": settings.eer_n_fractions,
        "eer_dose_per_fraction_e_per_a2": settings.eer_dose_per_fraction_e_per_a2,
        "eer_total_dose_e_per_a2": settings.eer_total_dose_e_per_a2,
    }
    with open_movie(path, validate=True, **options) as movie:
        n_frames, frame_shape = movie.n_frames, movie.frame_shape
        if n_frames < settings.min_frames:
            raise InvalidValuesError(
                path,
                f"has {n_frames} frames, fewer than the minimum of {settings.min_frames}",
                "lower min_frames to process it anyway",
            )
        pixel_size_a = settings.pixel_size_a or movie.pixel_size_a
        if pixel_size_a is None:
            raise InvalidValuesError(
                path, "the file records no pixel size and none was given", "pass --pixel-size (Å)"
            )
        raw_gain, gain, gain_defects = read_oriented_gain(
            settings, frame_shape, movie_path=path, flip_tiff_y=settings.flip_tiff_y and not is_eer
        )
        file_defects = read_defects(settings, frame_shape, movie_path=path)
        dtype = movie.dtype if movie.dtype in _COMPACT_DTYPES else np.dtype(np.float32)
        n_bytes = n_frames * frame_shape[0] * frame_shape[1] * dtype.itemsize
        raw = (
            np.empty((n_frames, *frame_shape), dtype) if n_bytes <= max_memory_gb * 2**30 else None
        )
        raw_sum = np.zeros(frame_shape, np.float64)
        h, w = frame_shape
        for start, chunk in movie.iter_chunks(max(1, _CHUNK_BYTES // (4 * h * w))):
            raw_sum += chunk.sum(axis=0, dtype=np.float64)
            if raw is not None:
                raw[start : start + len(chunk)] = chunk.astype(dtype)

    known = gain_defects | file_defects
    if raw_gain is not None and settings.check_gain_orientation:
        check_gain_orientation(
            raw_sum,
            raw_gain,
            configured=(
                settings.gain_transpose,
                settings.gain_rotation_quarter_turns,
                settings.gain_flip,
            ),
            excluded=known | detect_hot_pixels(raw_sum),
            gain_path=settings.gain_path,
            movie_path=path,
        )
    defects = known
    if settings.detect_hot_pixels:
        corrected_sum = raw_sum * gain if gain is not None else raw_sum
        defects = defects | detect_hot_pixels(
            np.where(known, np.median(corrected_sum), corrected_sum)
        )
        defects = defects | dead_lines(raw_sum)
    return LoadedMovie(
        path=path,
        frame_shape=frame_shape,
        n_frames=n_frames,
        pixel_size_a=float(pixel_size_a),
        dose_per_frame_e_per_a2=dose_per_frame_e_per_a2(path, settings, is_eer=is_eer),
        pre_exposure_e_per_a2=settings.pre_exposure_e_per_a2,
        gain=torch.from_numpy(gain) if gain is not None else None,
        defects=torch.from_numpy(defects) if defects.any() else None,
        raw=raw,
        open_options=options,
    )


def binned_shape(
    frame_shape: tuple[int, int], bin_factor: float, *, pixel_size_a: float
) -> tuple[tuple[int, int], float]:
    """Frame shape and pixel size after binning by ``bin_factor`` (Fourier cropping).

    Each size becomes the even number nearest to ``n / bin_factor`` (at least 2); a factor of
    1 keeps the shape. The field of view is kept, so the pixel sizes become
    ``pixel_size_a · w / w'`` along x and ``pixel_size_a · h / h'`` along y; they may differ by
    up to about ``1 / min(h', w')`` (relative), and the x value is returned.

    Returns
    -------
    shape, pixel_size_a:
        ``(h', w')`` and the x pixel size in Å.
    """
    if bin_factor < 1:
        raise ValueError(f"bin_factor must be ≥ 1, got {bin_factor}")
    if bin_factor == 1:
        return frame_shape, pixel_size_a
    h, w = frame_shape
    new_h, new_w = (max(2, 2 * round(n / (2 * bin_factor))) for n in (h, w))
    return (new_h, new_w), pixel_size_a * w / new_w


def alignment_frames(
    movie: LoadedMovie, *, pixel_size_a: float, device: torch.device | str = "cpu"
) -> tuple[torch.Tensor, float]:
    """The corrected frames resampled to about ``pixel_size_a`` Å for the motion fit.

    Frames are processed a few at a time: an integer real-space binning (block means) by the
    largest divisor ``b`` of both sizes with ``b ≤ target / (4 · raw pixel)``, then Fourier
    cropping to :func:`binned_shape` of the target. Block means are a poor anti-aliasing
    filter (binning by 2 passes ``cos(π f)`` of the frequency ``f`` in cycles/raw pixel and
    folds ``1/2 − f`` onto ``f``), so they are used only where the final band lies in the
    inner quarter of the binned one: there the aliased power (white shot noise) stays below
    4 % at the band edge and 1 % in its inner half. Targets less than 8 raw pixels are reached
    by Fourier cropping alone (as Warp does). The field of view is kept
    (docs/motion_input.md).

    Returns
    -------
    frames, pixel_size_a:
        float32 ``(n, h', w')`` on ``device`` and the x pixel size in Å (see
        :func:`binned_shape`). A target not larger than the raw pixel gives the corrected
        frames unchanged and the raw pixel size.
    """
    raw_pixel = movie.pixel_size_a
    n = movie.n_frames
    if pixel_size_a <= raw_pixel * (1 + 1e-6):
        return movie.corrected_frames(0, n, device=device), raw_pixel
    factor = pixel_size_a / raw_pixel
    shape, actual = binned_shape(movie.frame_shape, factor, pixel_size_a=raw_pixel)
    h, w = movie.frame_shape
    block = max(d for d in range(1, max(1, int(factor / 4)) + 1) if h % d == 0 and w % d == 0)
    out = torch.empty((n, *shape), dtype=torch.float32, device=device)
    step = movie.frames_per_chunk()
    for start in range(0, n, step):
        stop = min(start + step, n)
        frames = movie.corrected_frames(start, stop, device=device)
        if block > 1:
            frames = bin_average(frames, block, ndim=2)
        out[start:stop] = rescale(frames, shape)
    return out, actual
