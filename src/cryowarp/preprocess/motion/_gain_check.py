"""Is the gain reference oriented like the movie? A flatness test on the frame sum.

A multiplicative gain ``g`` (docs/conventions.md §14) makes the gain-corrected sum ``S × g``
of a movie flat on the pixel scale: the raw sum ``S`` has each pixel's sensitivity ``1/g``
imprinted on it, and the right ``g`` cancels it. Writing ``S × g_o = m (1 + s)(1 + e_o)`` for an
orientation ``o`` of the gain, the high-passed relative variance is about
``var(s) + var(e_o) + 2 cov(s, e_o)``; ``var(e_o)`` is the same for every orientation (the same
values, moved), so orientations differ only by the covariance, which is ``−var(e)`` for the
right one and zero for the others. The test therefore measures, for every orientation that
fits the frames, the mean of ``x_configured² − x_o²`` over the pixels (``x`` = relative
deviation from a local mean) and its standard error from block averages, which accounts for
short-range correlations of the specimen content and the shot noise.

An alternative orientation is reported only if it is flatter by more than
:data:`_MIN_Z` standard errors **and** by more than :data:`_MIN_RELATIVE_GAIN` of the
configured variance. Under the null hypothesis (the configured orientation is right, or no
orientation is) the difference is a zero-mean average over ≥ 10⁴ pixels, close to normal
(measured: |z| ≤ 3 over all pairs of wrong orientations of the simulator's gain): 8 standard
errors leave no false alarm in practice even with seven comparisons and a standard error
underestimated 1.5-fold; the relative floor keeps numerically tiny differences of very flat
gains from counting. The power is lowest at low dose: the right orientation of a gain with
5 % RMS (half of it per-pixel) at 15 counts per pixel in the sum (the simulator's ``tiny``
movie, 8 e⁻/Å²) is flatter by ≈ 3 % and 18–21 standard errors; it grows with the dose.
Hot pixels must be excluded first: one hot pixel can hide the gain (z ≈ 5 with them).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import numpy as np
import numpy.typing as npt
from scipy.ndimage import uniform_filter

from cryowarp.errors import DimensionMismatchError
from cryowarp.io.gain import orient_gain

__all__ = [
    "GainOrientation",
    "check_gain_orientation",
    "describe_orientation",
    "gain_orientations",
]

Flip = Literal["none", "x", "y"]
GainOrientation = tuple[bool, int, Flip]  # (transpose, rotation_quarter_turns, flip)

_MIN_Z = 8.0
_MIN_RELATIVE_GAIN = 0.005
_MAX_CHECK_SIZE_PX = 1024  # the check uses a central crop of at most this size per axis
_BACKGROUND_BOX_PX = 7  # local mean over 7 × 7 pixels (high-pass)
_BLOCK_PX = 8  # standard error from 8 × 8 blocks


def gain_orientations() -> list[GainOrientation]:
    """One ``(transpose, rotation_quarter_turns, flip)`` setting for each of the 8 distinct
    orientations of a rectangle, the simplest (fewest non-default options) first."""
    flips: tuple[Flip, ...] = ("none", "y", "x")
    candidates: list[GainOrientation] = [
        (t, r, f) for t in (False, True) for r in range(4) for f in flips
    ]
    candidates.sort(key=lambda c: (int(c[0]) + int(c[1] != 0) + int(c[2] != "none"), c[0], c[1]))
    seen: set[tuple[tuple[int, ...], bytes]] = set()
    out: list[GainOrientation] = []
    for orientation in candidates:
        key = _orientation_key(orientation)
        if key not in seen:
            seen.add(key)
            out.append(orientation)
    return out


def _orientation_key(orientation: GainOrientation) -> tuple[tuple[int, ...], bytes]:
    marker = np.arange(6, dtype=np.int64).reshape(2, 3)
    transpose, turns, flip = orientation
    oriented = orient_gain(marker, transpose=transpose, rotation_quarter_turns=turns, flip=flip)
    return oriented.shape, oriented.tobytes()


def describe_orientation(orientation: GainOrientation) -> str:
    """The settings that give ``orientation``, as a user types them."""
    transpose, turns, flip = orientation
    return f"gain_transpose={transpose}, gain_rotation_quarter_turns={turns}, gain_flip='{flip}'"


def check_gain_orientation(
    raw_sum: npt.NDArray[np.float64],  # (h, w) sum of the raw frames
    gain: npt.NDArray[np.float32],  # (h0, w0) as read, not oriented
    *,
    configured: GainOrientation,
    excluded: npt.NDArray[np.bool_],  # (h, w): known defects, hot pixels
    gain_path: str | Path | None,
    movie_path: str | Path | None,
) -> None:
    """Raise :class:`~cryowarp.errors.DimensionMismatchError` if another orientation of the
    gain flattens the gain-corrected frame sum clearly better than ``configured`` (module
    docstring: statistic and margin).

    Orientations whose shape differs from the frames are skipped; pixels that are ``excluded``,
    that recorded no count in the whole movie, or whose gain is not positive in either
    orientation compared take no part. Runs on the CPU in NumPy (a central crop of at most
    1024² pixels).
    """
    h, w = raw_sum.shape
    crop = _central_crop((h, w))
    total = np.asarray(raw_sum, dtype=np.float64)[crop]
    usable = ~np.asarray(excluded, dtype=bool)[crop] & (total > 0)
    configured_key = _orientation_key(configured)
    results: list[tuple[float, float, GainOrientation]] = []
    x_ref, valid_ref = _relative_deviation(total, _oriented(gain, configured, crop), usable)
    for orientation in gain_orientations():
        if _orientation_key(orientation) == configured_key:
            continue
        swapped = orientation[0] != (orientation[1] % 2 == 1)
        if (gain.shape[::-1] if swapped else gain.shape) != (h, w):
            continue
        x, valid = _relative_deviation(total, _oriented(gain, orientation, crop), usable)
        both = valid_ref & valid
        difference = np.where(both, x_ref**2 - x**2, 0.0)
        mean, standard_error = _block_mean_and_error(difference, both)
        configured_variance = float(np.mean(x_ref[both] ** 2))
        z = mean / max(standard_error, 1e-300)
        results.append((z, mean / max(configured_variance, 1e-300), orientation))
    flagged = [r for r in results if r[0] > _MIN_Z and r[1] > _MIN_RELATIVE_GAIN]
    if not flagged:
        return
    z, relative, best = max(flagged, key=lambda r: r[1])
    raise DimensionMismatchError(
        gain_path,
        f"the gain reference seems wrongly oriented for {movie_path}: oriented with "
        f"{describe_orientation(best)} it makes the gain-corrected frame sum "
        f"{100 * relative:.1f} % flatter ({z:.0f} standard errors) than the configured "
        f"{describe_orientation(configured)}",
        f"set {describe_orientation(best)}, or check_gain_orientation=False to skip this test",
    )


def _central_crop(shape: tuple[int, int]) -> tuple[slice, slice]:
    out = []
    for n in shape:
        m = min(n, _MAX_CHECK_SIZE_PX)
        start = n // 2 - m // 2
        out.append(slice(start, start + m))
    return out[0], out[1]


def _oriented(
    gain: npt.NDArray[np.float32], orientation: GainOrientation, crop: tuple[slice, slice]
) -> npt.NDArray[np.float64]:
    transpose, turns, flip = orientation
    oriented = orient_gain(gain, transpose=transpose, rotation_quarter_turns=turns, flip=flip)
    return np.asarray(oriented[crop], dtype=np.float64)


def _relative_deviation(
    total: npt.NDArray[np.float64],  # (h, w) raw sum
    gain: npt.NDArray[np.float64],  # (h, w) oriented gain
    usable: npt.NDArray[np.bool_],  # (h, w)
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.bool_]]:
    """``x = S g / local mean − 1`` on usable pixels (0 elsewhere), and where it is defined."""
    valid = usable & np.isfinite(gain) & (gain > 0)
    corrected = np.where(valid, total * np.where(valid, gain, 0.0), 0.0)
    local_sum = uniform_filter(corrected, _BACKGROUND_BOX_PX, mode="constant")
    local_weight = uniform_filter(valid.astype(np.float64), _BACKGROUND_BOX_PX, mode="constant")
    valid = valid & (local_weight > 0.5)
    background = np.where(valid, local_sum / np.maximum(local_weight, 1e-12), 1.0)
    x = np.where(valid, corrected / np.maximum(background, 1e-300) - 1, 0.0)
    return x, valid


def _block_mean_and_error(
    values: npt.NDArray[np.float64], valid: npt.NDArray[np.bool_]
) -> tuple[float, float]:
    """Mean of ``values`` over ``valid`` pixels and its standard error from block sums."""
    h, w = values.shape
    b = _BLOCK_PX
    hb, wb = h // b, w // b
    if hb * wb < 16:  # too small for blocks: treat pixels as independent
        v = values[valid]
        return float(v.mean()), float(v.std() / max(v.size, 1) ** 0.5)
    blocks = values[: hb * b, : wb * b].reshape(hb, b, wb, b).sum(axis=(1, 3))
    counts = valid[: hb * b, : wb * b].reshape(hb, b, wb, b).sum(axis=(1, 3)).astype(np.float64)
    n = counts.sum()
    mean = blocks.sum() / n
    # ratio estimator: the spread of the block sums about mean × (valid pixels in the block)
    residual = blocks - mean * counts
    n_blocks = hb * wb
    variance = np.square(residual).sum() / (n_blocks - 1) * n_blocks / n**2
    return float(mean), float(np.sqrt(variance))
