"""A counting direct detector: MTF, gain, hot pixels, dead columns and Poisson shot noise.

Model (the raw frames as a camera writes them, before any correction):

1. The expected image (counts per pixel per frame) is blurred by the detector MTF
   (:func:`apply_mtf`), a radial function of frequency tabulated from measurements.
2. Each pixel detects with sensitivity ``1 / gain``: its raw count is Poisson-distributed with
   mean ``expected / gain``. The gain reference is multiplicative
   (``corrected = raw × gain``, docs/conventions.md §14), so the corrected frames have mean
   ``expected`` (:func:`record_frames`).
3. Dead columns read 0 in every frame; hot pixels read a large constant count.

MTF tables use RELION's detector-MTF STAR layout (``rlnResolutionInversePixel`` in cycles/pixel,
0.5 = Nyquist, and ``rlnMtfValue``); :func:`load_mtf` converts the frequency to a **fraction of
Nyquist** (0 … 1). One table ships with the package (Gatan K3, standard mode, 300 kV).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import torch
import torch.nn.functional as F

from cryowarp.core.fourier_grids import frequency_magnitude
from cryowarp.errors import DimensionMismatchError, InvalidValuesError, MissingColumnError
from cryowarp.io.star import read_star

__all__ = [
    "PACKAGED_MTFS",
    "DetectorDefects",
    "apply_mtf",
    "as_integer_counts",
    "load_mtf",
    "mtf_filter",
    "random_detector_defects",
    "record_frames",
]

PACKAGED_MTFS = {"k3_300kV": "mtf_k3_standard_300kV.star"}
"""Detector names accepted by :func:`load_mtf` → table file in ``cryowarp/simulate/data``."""

_FREQUENCY_COLUMN = "rlnResolutionInversePixel"
_MTF_COLUMN = "rlnMtfValue"
_GAIN_FLOOR = 0.05  # the gain stays positive however large gain_sigma is
_SMOOTH_GAIN_NODES = 8  # coarse grid of the smooth gain component (per axis)


def load_mtf(detector: str | os.PathLike[str] = "k3_300kV") -> torch.Tensor:  # (n, 2)
    """Read a detector MTF table.

    Parameters
    ----------
    detector:
        A name from :data:`PACKAGED_MTFS` or the path of a RELION-style MTF STAR file.

    Returns
    -------
    torch.Tensor
        ``(n, 2)`` float64 rows ``(frequency as a fraction of Nyquist, MTF)``, sorted by
        frequency.

    Raises
    ------
    MissingFileError, FileFormatError
        The file does not exist or is not a STAR file.
    MissingColumnError
        The first block lacks ``rlnResolutionInversePixel`` or ``rlnMtfValue``.
    InvalidValuesError
        Non-finite or negative values, repeated frequencies, or fewer than two rows.
    """
    if isinstance(detector, str) and detector in PACKAGED_MTFS:
        source = resources.files("cryowarp.simulate") / "data" / PACKAGED_MTFS[detector]
        with resources.as_file(source) as file:
            return _read_mtf(file)
    return _read_mtf(Path(detector))


def _read_mtf(file: Path) -> torch.Tensor:
    block = next(iter(read_star(file).values()))
    if isinstance(block, dict):
        raise MissingColumnError(file, "the first data block is not a loop of MTF values")
    for column in (_FREQUENCY_COLUMN, _MTF_COLUMN):
        if column not in block.columns:
            raise MissingColumnError(file, f"MTF table lacks the column {column}")
    try:
        table = torch.tensor(
            block[[_FREQUENCY_COLUMN, _MTF_COLUMN]].to_numpy(dtype=float), dtype=torch.float64
        )
    except ValueError as error:
        raise InvalidValuesError(file, f"MTF table holds non-numeric values: {error}") from error
    table = table[torch.argsort(table[:, 0])]
    if table.shape[0] < 2 or not bool(torch.isfinite(table).all()) or bool((table < 0).any()):
        raise InvalidValuesError(file, "MTF table needs >= 2 rows of finite, non-negative values")
    if bool((torch.diff(table[:, 0]) <= 0).any()):
        raise InvalidValuesError(file, "MTF table repeats a frequency")
    table[:, 0] *= 2  # cycles/pixel → fraction of Nyquist (0.5 cycles/pixel)
    return table


def mtf_filter(
    shape: tuple[int, int],
    mtf_table: torch.Tensor,  # (n, 2) fraction of Nyquist, MTF
    *,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:  # (h, w // 2 + 1)
    """The MTF on the rfft grid of an ``(h, w)`` image (docs/conventions.md §3).

    The table is interpolated linearly in frequency, held constant beyond its last row (the
    corners of the grid reach √2 × Nyquist) and divided by its value at zero frequency so that
    the filter keeps the mean: ``MTF(0) = 1``.
    """
    if mtf_table.ndim != 2 or mtf_table.shape[-1] != 2 or mtf_table.shape[0] < 2:
        raise DimensionMismatchError(
            None, f"mtf_table must be (n >= 2, 2), got {tuple(mtf_table.shape)}"
        )
    table = mtf_table.to(device=device, dtype=torch.float64)
    nyquist_fraction = frequency_magnitude(shape, device=device, dtype=torch.float64) / 0.5
    values = _interpolate_linear(table[:, 0], table[:, 1], nyquist_fraction)
    at_zero = _interpolate_linear(table[:, 0], table[:, 1], table.new_zeros(1))
    if float(at_zero) <= 0:
        raise InvalidValuesError(None, "the MTF table is zero at zero frequency")
    return (values / at_zero).to(dtype)


def apply_mtf(
    image: torch.Tensor,  # (..., h, w)
    mtf_table: torch.Tensor,  # (n, 2)
) -> torch.Tensor:  # (..., h, w)
    """Blur images by the detector MTF (the mean is kept)."""
    shape = (int(image.shape[-2]), int(image.shape[-1]))
    mtf = mtf_filter(shape, mtf_table, device=image.device, dtype=image.dtype)
    spectrum = torch.fft.rfft2(image) * mtf
    blurred: torch.Tensor = torch.fft.irfft2(spectrum, s=shape)
    return blurred


def _interpolate_linear(
    x: torch.Tensor,  # (n,) increasing
    y: torch.Tensor,  # (n,)
    at: torch.Tensor,  # (...)
) -> torch.Tensor:  # (...)
    """Piecewise-linear ``y(x)`` at ``at``, held constant outside ``[x[0], x[-1]]``."""
    clamped = at.clamp(float(x[0]), float(x[-1]))
    upper = torch.searchsorted(x.contiguous(), clamped.reshape(-1).contiguous()).clamp(
        1, x.shape[0] - 1
    )
    lower = upper - 1
    flat = clamped.reshape(-1)
    w = (flat - x[lower]) / (x[upper] - x[lower])
    return (y[lower] * (1 - w) + y[upper] * w).reshape(at.shape)


@dataclass(frozen=True)
class DetectorDefects:
    """The known imperfections of a simulated camera.

    Attributes
    ----------
    gain:
        ``(h, w)`` multiplicative gain reference: ``corrected = raw × gain``
        (docs/conventions.md §14); a pixel's sensitivity is ``1 / gain``.
    hot_pixels:
        ``(h, w)`` bool, pixels that read a large constant count in every frame.
    dead_columns:
        ``(n,)`` int64 column (x) indices that read 0 in every frame, sorted.
    """

    gain: torch.Tensor  # (h, w)
    hot_pixels: torch.Tensor  # (h, w) bool
    dead_columns: torch.Tensor  # (n,) int64

    @property
    def shape(self) -> tuple[int, int]:
        """``(h, w)`` of the detector."""
        return int(self.gain.shape[-2]), int(self.gain.shape[-1])

    def good_pixels(self) -> torch.Tensor:  # (h, w) bool
        """Pixels that are neither hot nor in a dead column."""
        good = ~self.hot_pixels.clone()
        good[:, self.dead_columns] = False
        return good


def random_detector_defects(
    shape: tuple[int, int],
    *,
    generator: torch.Generator,
    gain_sigma: float = 0.05,
    smooth_fraction: float = 0.5,
    n_hot: int = 16,
    n_dead_columns: int = 1,
    dtype: torch.dtype = torch.float32,
) -> DetectorDefects:
    """A random gain reference, hot pixels and dead columns, deterministic given ``generator``.

    Parameters
    ----------
    shape:
        ``(h, w)`` of the detector in pixels.
    generator:
        Source of randomness; tensors are created on its device.
    gain_sigma:
        Standard deviation of the gain about its mean of 1.
    smooth_fraction:
        Share of the gain variance in a smooth component (bicubic over an 8 × 8 grid); the rest
        varies independently from pixel to pixel. The gain is floored at 0.05.
    n_hot:
        Number of hot pixels (distinct positions).
    n_dead_columns:
        Number of dead columns (distinct).
    """
    h, w = (int(n) for n in shape)
    if h < 1 or w < 1 or not 0 <= smooth_fraction <= 1 or gain_sigma < 0:
        raise ValueError(
            f"need a positive shape, 0 <= smooth_fraction <= 1 and gain_sigma >= 0; got shape "
            f"{shape}, smooth_fraction {smooth_fraction}, gain_sigma {gain_sigma}"
        )
    if not 0 <= n_hot <= h * w or not 0 <= n_dead_columns <= w:
        raise ValueError(f"{n_hot} hot pixels / {n_dead_columns} dead columns do not fit {shape}")
    device = generator.device
    coarse = torch.randn(
        (1, 1, _SMOOTH_GAIN_NODES, _SMOOTH_GAIN_NODES), generator=generator, device=device
    )
    smooth = F.interpolate(coarse, size=(h, w), mode="bicubic", align_corners=True)[0, 0]
    per_pixel = torch.randn((h, w), generator=generator, device=device)
    variation = (smooth_fraction**0.5) * _standardise(smooth) + (
        (1 - smooth_fraction) ** 0.5
    ) * _standardise(per_pixel)
    gain = (1 + gain_sigma * variation).clamp(min=_GAIN_FLOOR).to(dtype)

    hot = torch.zeros(h * w, dtype=torch.bool, device=device)
    hot[torch.randperm(h * w, generator=generator, device=device)[:n_hot]] = True
    dead = torch.randperm(w, generator=generator, device=device)[:n_dead_columns].sort().values
    return DetectorDefects(gain=gain, hot_pixels=hot.reshape(h, w), dead_columns=dead)


def _standardise(x: torch.Tensor) -> torch.Tensor:
    """Zero mean and unit standard deviation (zeros for a constant or single-pixel input)."""
    centred = x - x.mean()
    std = float(centred.square().mean().sqrt())
    return centred / std if std > 0 else torch.zeros_like(x)


def record_frames(
    expected_counts: torch.Tensor,  # (n, h, w)
    defects: DetectorDefects,
    *,
    generator: torch.Generator,
    hot_pixel_counts: float = 100.0,
) -> torch.Tensor:  # (n, h, w) float32
    """Raw frames as the camera writes them: Poisson counts at the pixels' sensitivity.

    Parameters
    ----------
    expected_counts:
        ``(n, h, w)`` expected counts per pixel per frame of an ideal, gain-1 detector
        (dose per frame × pixel area × intensity, MTF already applied), non-negative.
    defects:
        Gain, hot pixels and dead columns of the camera.
    generator:
        Source of the shot noise, on the device of ``expected_counts``.
    hot_pixel_counts:
        Count that every hot pixel reads in every frame.

    Returns
    -------
    torch.Tensor
        ``(n, h, w)`` float32 whole-number counts: ``Poisson(expected / gain)``, so that
        ``raw × gain`` has mean ``expected`` (docs/conventions.md §14); dead columns 0, hot
        pixels ``hot_pixel_counts``. Convert with :func:`as_integer_counts` to write them.
    """
    if expected_counts.ndim != 3 or tuple(expected_counts.shape[-2:]) != defects.shape:
        raise DimensionMismatchError(
            None,
            f"expected counts {tuple(expected_counts.shape)} must be (n, h, w) with (h, w) = "
            f"{defects.shape} of the detector",
        )
    if generator.device.type != expected_counts.device.type:
        raise ValueError(
            f"generator on {generator.device} but expected counts on {expected_counts.device}"
        )
    if not bool(torch.isfinite(expected_counts).all()) or bool((expected_counts < 0).any()):
        raise InvalidValuesError(None, "expected counts must be finite and non-negative")
    device = expected_counts.device
    sensitivity = 1 / defects.gain.to(device=device, dtype=torch.float32)
    hot = defects.hot_pixels.to(device)
    dead = defects.dead_columns.to(device)
    raw = torch.empty(expected_counts.shape, dtype=torch.float32, device=device)
    for i in range(expected_counts.shape[0]):  # one frame at a time keeps the peak memory low
        frame = torch.poisson(
            expected_counts[i].to(torch.float32) * sensitivity, generator=generator
        )
        frame[hot] = hot_pixel_counts
        frame[:, dead] = 0
        raw[i] = frame
    return raw


def as_integer_counts(counts: torch.Tensor) -> torch.Tensor:  # same shape, uint8 or uint16
    """Whole-number counts in the smallest unsigned type that holds them (uint8 or uint16).

    Raises
    ------
    InvalidValuesError
        Counts that are negative, not whole numbers, or above 65535.
    """
    if counts.numel() == 0:
        return counts.to(torch.uint8)
    low, high = float(counts.min()), float(counts.max())
    if low < 0 or high > 65535 or not bool((counts == counts.round()).all()):
        raise InvalidValuesError(
            None, f"counts must be whole numbers in [0, 65535], got range [{low}, {high}]"
        )
    return counts.to(torch.uint8 if high <= 255 else torch.uint16)
