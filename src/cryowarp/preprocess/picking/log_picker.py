"""Laplacian-of-Gaussian (LoG) blob picking, a baseline in the manner of RELION's LoG autopick.

What it does (docs/picking_baselines.md):

1. **Downsample.** The micrograph is Fourier-cropped and normalised by
   :func:`~cryowarp.preprocess.picking.prepare.prepare_micrograph` to a working pixel size of
   ``diameter_min_a / 16`` (never finer than the input), so the smallest particle spans
   ~16 px; protein stays dark (raw micrograph contrast, docs/conventions.md §15).
2. **Filter.** The image is filtered with scale-normalised LoG kernels
   ``σ² ∇²G_σ`` (applied in Fourier space as ``−4π²σ²|k|² exp(−2π²σ²|k|²)``, after reflect
   padding so the borders do not wrap), one per diameter ``d`` with ``σ = 0.3 d`` (the
   scale at which the projection of a uniform sphere of diameter ``d`` responds most; a
   uniform disk peaks at ``0.35 d``, a Gaussian blob of standard deviation ``d/4`` at
   ``0.25 d``). The sign is such that dark blobs give positive responses. Diameters run
   geometrically (≤ 15 % apart) over ``[diameter_min_a / 1.25, 1.25 × diameter_max_a]`` (the
   range, with a tolerance), down to ``diameter_min_a / 2`` and up to
   ``2.5 × diameter_max_a``.
3. **Score.** Each scale's response is standardised over the micrograph with its median and
   robust standard deviation (1.4826 × MAD), so responses of different scales compare in
   units of their own noise. A pixel is a candidate only where its best standardised
   response lies at a diameter in the range (with the tolerance): much larger blobs
   (aggregates, drops) and edges respond more at larger scales, smaller specks at smaller
   ones. The score is the best in-range response **minus**
   :data:`LOG_BASE_THRESHOLD_SIGMA` (5 σ: on micrographs of pure shot noise, 512² at 4 Å,
   the highest local maximum reaches 4–5.5 σ, typically ~4.7), so that, as with RELION's
   ``--LoG_adjust_threshold``, the threshold is 0 by default, positive values pick fewer
   particles and negative values more.
4. **Peaks.** Local maxima, greedily in order of score, at least ``min_distance_a``
   (default ``diameter_min_a``) apart, with score above ``threshold_sigma`` and, after the
   distance rule, not above ``upper_threshold_sigma`` (RELION's ``--LoG_upper_threshold``,
   to drop high-contrast junk). Thresholding commutes with the greedy distance rule, so the
   picks at a higher threshold are a subset of those at a lower one
   (:meth:`BaselinePicks.above` re-thresholds without re-running).

Positions are returned in Å from the centre of pixel (0, 0) of the input micrograph
(docs/conventions.md §1), mapped back through
:meth:`~cryowarp.preprocess.picking.prepare.PreparedMicrograph.to_original_px`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from scipy.spatial import cKDTree

from cryowarp.errors import InvalidValuesError
from cryowarp.preprocess.picking.prepare import prepare_micrograph

__all__ = [
    "LOG_BASE_THRESHOLD_SIGMA",
    "LOG_PIXELS_PER_MIN_DIAMETER",
    "BaselinePicks",
    "find_peaks",
    "pick_log",
    "robust_standardise",
]

LOG_PIXELS_PER_MIN_DIAMETER = 16.0
"""The working pixel size is ``diameter_min_a /`` this (never finer than the input)."""

LOG_BASE_THRESHOLD_SIGMA = 5.0
"""Scores are standardised LoG responses minus this (module docstring, step 3)."""

_SIGMA_PER_DIAMETER = 0.3  # LoG scale σ of the best response to a projected sphere
_SCALE_RATIO = 1.15  # largest ratio between neighbouring diameters
_TOLERANCE = 1.25  # diameters within [min / this, max × this] count as in range
_BELOW = 2.0  # diameters below the range are tried down to diameter_min / this ...
_ABOVE = 2.5  # ... and above it up to diameter_max × this


@dataclass(frozen=True)
class BaselinePicks:
    """Picks of a baseline picker.

    Attributes
    ----------
    positions_a:
        ``(n, 2)`` float64 (x, y) in Å from the centre of pixel (0, 0) of the input
        micrograph, in descending order of score.
    scores:
        ``(n,)`` float64, the picker's figure of merit (higher is better).
    diameters_a:
        ``(n,)`` float64 diameter (Å) the pick was detected at.
    working_pixel_size_a:
        Pixel size (Å) the picker worked at.
    """

    positions_a: torch.Tensor  # (n, 2)
    scores: torch.Tensor  # (n,)
    diameters_a: torch.Tensor  # (n,)
    working_pixel_size_a: float

    def above(self, threshold: float) -> BaselinePicks:
        """The picks with score ``> threshold`` (as the pickers' ``threshold`` options)."""
        keep = self.scores > threshold
        return BaselinePicks(
            self.positions_a[keep],
            self.scores[keep],
            self.diameters_a[keep],
            self.working_pixel_size_a,
        )


def find_peaks(
    score: torch.Tensor,  # (h, w)
    *,
    min_distance_px: float,
    threshold: float = -math.inf,
    candidates: torch.Tensor | None = None,  # (h, w) bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """Local maxima of ``score`` at least ``min_distance_px`` apart, above ``threshold``.

    A pixel is a candidate when it is the maximum of its ``3 × 3`` neighbourhood, above
    ``threshold`` and (if given) ``candidates`` is True there. Candidates are accepted
    greedily in order of decreasing score; each suppresses the others within
    ``min_distance_px`` (Euclidean, pixel centres). Returns ``(positions_px (n, 2) (x, y)
    float64, scores (n,) float64)``, in descending order of score.
    """
    if score.dim() != 2:
        raise InvalidValuesError(None, f"a score map must be 2-D, got {tuple(score.shape)}")
    values = score.detach().to(torch.float64)
    pooled = F.max_pool2d(values[None, None], 3, stride=1, padding=1)[0, 0]
    mask = (values >= pooled) & (values > threshold) & torch.isfinite(values)
    if candidates is not None:
        mask &= candidates.to(values.device)
    rows, cols = torch.nonzero(mask, as_tuple=True)
    found = values[rows, cols].cpu().numpy()
    xy = torch.stack([cols, rows], dim=1).cpu().numpy().astype(np.float64)
    order = np.argsort(-found, kind="stable")
    xy, found = xy[order], found[order]
    keep = np.ones(len(found), dtype=bool)
    if len(found) and min_distance_px > 0:
        tree = cKDTree(xy)
        # Pairs closer than the distance; float64 pixel centres on a grid, so a margin of
        # 1e-9 px makes "exactly min_distance apart" allowed.
        neighbours = tree.query_ball_point(xy, r=max(min_distance_px - 1e-9, 0.0))
        for i in range(len(found)):
            if keep[i]:
                for j in neighbours[i]:
                    if j > i:
                        keep[j] = False
    return torch.from_numpy(xy[keep]), torch.from_numpy(found[keep])


def _log_filters(
    spectrum: torch.Tensor,  # (H, W//2 + 1) complex
    shape: tuple[int, int],
    sigmas_px: torch.Tensor,  # (s,)
) -> torch.Tensor:  # (s, H, W)
    h, w = shape
    ky = torch.fft.fftfreq(h, dtype=torch.float64, device=spectrum.device)
    kx = torch.fft.rfftfreq(w, dtype=torch.float64, device=spectrum.device)
    k2 = ky[:, None] ** 2 + kx[None, :] ** 2
    s2 = sigmas_px.to(spectrum.device, torch.float64)[:, None, None] ** 2
    # σ²∇²G_σ in Fourier space is −4π²σ²k² exp(−2π²σ²k²). A dark blob is a minimum of the
    # smoothed image (positive curvature), so it gives a positive response.
    kernel = -4 * math.pi**2 * s2 * k2 * torch.exp(-2 * math.pi**2 * s2 * k2)
    filtered: torch.Tensor = torch.fft.irfft2(
        spectrum[None] * kernel.to(spectrum.real.dtype), s=(h, w)
    )
    return filtered


def robust_standardise(values: torch.Tensor) -> torch.Tensor:
    """``(values − median) / (1.4826 × MAD)`` over all elements (the standard deviation when
    the MAD is 0); unlike ``prepare.normalise_robust`` nothing is clipped."""
    flat = values.flatten()
    median = flat.median()
    scale = 1.4826 * (flat - median).abs().median()
    if not float(scale) > 0:
        scale = flat.std()
    return (values - median) / scale.clamp_min(1e-12)


def _diameters(diameter_min_a: float, diameter_max_a: float) -> tuple[np.ndarray, int, int]:
    """Diameters tried (geometric, ascending) and the index range ``[first, last]`` of those
    in the range (with the tolerance)."""
    low, high = diameter_min_a / _TOLERANCE, diameter_max_a * _TOLERANCE
    n_in = max(2, math.ceil(math.log(high / low) / math.log(_SCALE_RATIO)) + 1)
    inside = np.geomspace(low, high, n_in)
    n_below = math.ceil(math.log(_BELOW / _TOLERANCE) / math.log(_SCALE_RATIO))
    n_above = math.ceil(math.log(_ABOVE / _TOLERANCE) / math.log(_SCALE_RATIO))
    below = low / _SCALE_RATIO ** np.arange(n_below, 0, -1)
    above = high * _SCALE_RATIO ** np.arange(1, n_above + 1)
    return np.concatenate([below, inside, above]), n_below, n_below + n_in - 1


def pick_log(
    image: torch.Tensor,  # (H, W)
    *,
    pixel_size_a: float,
    diameter_min_a: float,
    diameter_max_a: float,
    threshold_sigma: float = 0.0,
    upper_threshold_sigma: float = math.inf,
    min_distance_a: float | None = None,
    working_pixel_size_a: float | None = None,
) -> BaselinePicks:
    """Pick dark blobs with diameters in ``[diameter_min_a, diameter_max_a]`` (module
    docstring).

    Parameters
    ----------
    image:
        ``(H, W)`` raw-contrast micrograph (protein dark), any device.
    pixel_size_a:
        Its pixel size (Å).
    diameter_min_a, diameter_max_a:
        Range of particle diameters (Å) to detect.
    threshold_sigma:
        Keep picks with a score above this (robust standard deviations of the LoG response
        above :data:`LOG_BASE_THRESHOLD_SIGMA`); ``-inf`` keeps every local maximum (for
        precision-recall curves).
    upper_threshold_sigma:
        Drop picks scoring above this (same units; high-contrast junk); default: keep all.
    min_distance_a:
        Minimum distance between picks (Å); default ``diameter_min_a``.
    working_pixel_size_a:
        Override the working pixel size (Å); default
        ``max(pixel_size_a, diameter_min_a / 16)``.

    Raises
    ------
    InvalidValuesError
        Diameters that are not positive or out of order, or larger than the micrograph;
        blank or non-finite images and bad pixel sizes (from ``prepare_micrograph``).
    """
    if not (0 < diameter_min_a <= diameter_max_a and math.isfinite(diameter_max_a)):
        raise InvalidValuesError(
            None,
            f"particle diameters must satisfy 0 < min ≤ max, got min {diameter_min_a} Å, "
            f"max {diameter_max_a} Å",
        )
    field_a = min(int(n) for n in image.shape[-2:]) * pixel_size_a
    if diameter_max_a > field_a:
        raise InvalidValuesError(
            None,
            f"the largest particle diameter {diameter_max_a} Å exceeds the micrograph's "
            f"shorter side ({field_a:.0f} Å)",
        )
    working = working_pixel_size_a or max(
        pixel_size_a, diameter_min_a / LOG_PIXELS_PER_MIN_DIAMETER
    )
    prepared = prepare_micrograph(image, pixel_size_a=pixel_size_a, picking_pixel_size_a=working)
    pixel_a = float(np.mean(prepared.pixel_size_xy_a))
    diameters_a, first, last = _diameters(diameter_min_a, diameter_max_a)
    sigmas_px = torch.from_numpy(diameters_a * _SIGMA_PER_DIAMETER / pixel_a)
    small = prepared.image.to(torch.float32)
    h, w = small.shape
    pad = min(math.ceil(2 * float(sigmas_px.max())), h - 1, w - 1)
    padded = F.pad(small[None, None], (pad, pad, pad, pad), mode="reflect")[0, 0]
    spectrum = torch.fft.rfft2(padded)
    # Running maxima over the scales of the standardised responses, a few scales per inverse
    # transform (bounded memory).
    score = torch.full((h, w), -math.inf, dtype=torch.float32, device=small.device)
    best_index = torch.zeros((h, w), dtype=torch.long, device=small.device)
    best_outside = torch.full_like(score, -math.inf)
    for start in range(0, len(diameters_a), 4):
        part = _log_filters(spectrum, (h + 2 * pad, w + 2 * pad), sigmas_px[start : start + 4])
        for offset, response in enumerate(part[:, pad : pad + h, pad : pad + w]):
            index = start + offset
            z = robust_standardise(response)
            if first <= index <= last:
                better = z > score
                score = torch.where(better, z, score)
                best_index = torch.where(better, index, best_index)
            else:
                best_outside = torch.maximum(best_outside, z)
    in_range = score >= best_outside
    score = score - LOG_BASE_THRESHOLD_SIGMA
    min_distance = diameter_min_a if min_distance_a is None else min_distance_a
    positions_px, scores = find_peaks(
        score,
        min_distance_px=min_distance / pixel_a,
        threshold=threshold_sigma,
        candidates=in_range,
    )
    keep = scores <= upper_threshold_sigma
    positions_px, scores = positions_px[keep], scores[keep]
    at = best_index.cpu()[positions_px[:, 1].long(), positions_px[:, 0].long()]
    original_px = prepared.to_original_px(positions_px)
    return BaselinePicks(
        positions_a=original_px * pixel_size_a,
        scores=scores,
        diameters_a=torch.from_numpy(diameters_a[at.numpy()].copy()),
        working_pixel_size_a=pixel_a,
    )
