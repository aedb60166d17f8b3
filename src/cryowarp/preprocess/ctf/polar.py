"""Polar binning of patch power spectra: what the 2-D fit compares the CTF model with.

The fit-range annulus of every rfft power spectrum (docs/conventions.md §3) is averaged in
bins of one Fourier pixel in radius (the shells of the 1-D profile) and ``n_angles`` sectors of
the half-plane (the power spectrum of a real image is even, ``P(−k) = P(k)``, so directions
are taken modulo 180°). A 512-px window thus gives about 12,000 bins in place of 57,000
samples; with 2.5° sectors the defocus of an astigmatic CTF changes by at most ``δ·0.09``
across a bin.
Each bin keeps its sample count as a weight, so correlations over bins equal those over the
samples wherever the model is constant within a bin. The model is evaluated at the bin's
RMS radius and mean direction.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from cryowarp.core.fourier_grids import frequency_grid

__all__ = ["POLAR_ANGLES", "PatchTargets", "interpolate_profile", "polar_targets"]

#: Sectors of the half-plane (2.5° each; 5° sectors bias a tiny movie's defocus by 3 nm).
POLAR_ANGLES = 72


@dataclass(frozen=True, eq=False)
class PatchTargets:
    """Polar bins of the fit range for every patch.

    Attributes
    ----------
    k_xy_per_a:
        ``(m, 2)`` frequency (Å⁻¹) at which each bin is modelled.
    counts:
        ``(m,)`` number of spectrum samples in each bin (the weight of the bin).
    normalised:
        ``(p, m)`` background-normalised spectrum ``(P − B)/B``.
    weight:
        ``(p, m)`` envelope over background ``E/B`` (the expected ring amplitude).
    coords:
        ``(p, 2)`` patch centres in normalised image coordinates (x, y) (docs/conventions.md
        §12).
    """

    k_xy_per_a: torch.Tensor  # (m, 2)
    counts: torch.Tensor  # (m,)
    normalised: torch.Tensor  # (p, m)
    weight: torch.Tensor  # (p, m)
    coords: torch.Tensor  # (p, 2)

    def subset(self, keep: torch.Tensor) -> PatchTargets:
        """The bins ``keep`` ``(m,)`` (boolean) only."""
        return PatchTargets(
            k_xy_per_a=self.k_xy_per_a[keep],
            counts=self.counts[keep],
            normalised=self.normalised[:, keep],
            weight=self.weight[:, keep],
            coords=self.coords,
        )

    def patches(self, index: torch.Tensor) -> PatchTargets:
        """The patches ``index`` ``(p',)`` only."""
        return PatchTargets(
            k_xy_per_a=self.k_xy_per_a,
            counts=self.counts,
            normalised=self.normalised[index],
            weight=self.weight[index],
            coords=self.coords[index],
        )


def interpolate_profile(
    profile: torch.Tensor,  # (..., n)
    shell: torch.Tensor,  # (m,)
) -> torch.Tensor:  # (..., m)
    """Linear interpolation of 1-D profiles (sample ``i`` at shell ``i``) at fractional
    shells; clamped at the ends."""
    n = profile.shape[-1]
    position = shell.clamp(0, n - 1)
    low = position.floor().to(torch.int64).clamp(max=n - 2)
    t = (position - low).to(profile.dtype)
    return profile[..., low] * (1 - t) + profile[..., low + 1] * t


def polar_targets(
    spectra: torch.Tensor,  # (p, s, s//2+1)
    background: torch.Tensor,  # (p, n)
    envelope: torch.Tensor,  # (p, n)
    coords: torch.Tensor,  # (p, 2)
    *,
    pixel_size_a: float,
    fit_range_per_a: tuple[float, float],
    n_angles: int = POLAR_ANGLES,
) -> PatchTargets:
    """Average each patch spectrum over polar bins of the fit range (module docstring).

    Parameters
    ----------
    spectra:
        Power spectra in rfft layout of ``s × s`` patches.
    background, envelope:
        ``(p, n)`` 1-D background and envelope of each patch (shell ``i`` at
        ``i / (s · pixel_size_a)`` Å⁻¹).
    coords:
        ``(p, 2)`` normalised patch centres (x, y).
    pixel_size_a, fit_range_per_a:
        Pixel size (Å) and the ``(low, high)`` frequencies (Å⁻¹) of the fit range.
    n_angles:
        Sectors of 180°.

    Returns
    -------
    PatchTargets
        Float32 bins (float64 for float64 spectra) on the spectra's device.
    """
    s = spectra.shape[-2]
    device = spectra.device
    dtype = torch.float64 if spectra.dtype == torch.float64 else torch.float32
    grid = frequency_grid((s, s), nyquist_positive=True, device=device, dtype=torch.float64)
    k = grid / pixel_size_a  # (s, s//2+1, 2) Å⁻¹
    radius = k.norm(dim=-1)
    keep = (radius >= fit_range_per_a[0]) & (radius <= fit_range_per_a[1])
    keep[:, 0] &= torch.arange(s, device=device) <= s // 2  # each k once on the kx = 0 column
    k = k[keep]  # (N, 2)
    flip = (k[:, 1] < 0) | ((k[:, 1] == 0) & (k[:, 0] < 0))
    k = torch.where(flip[:, None], -k, k)  # directions in [0°, 180°)
    angle = torch.atan2(k[:, 1], k[:, 0])
    sector = (angle / math.pi * n_angles).floor().to(torch.int64).clamp(0, n_angles - 1)
    shell = torch.round(radius[keep] * s * pixel_size_a).to(torch.int64)
    bins, index = torch.unique(shell * n_angles + sector, return_inverse=True)
    m = bins.shape[0]
    counts = torch.zeros(m, dtype=torch.float64, device=device).index_add_(
        0, index, torch.ones_like(angle)
    )
    mean_k2 = _bin_mean(k.square().sum(-1)[None], index, counts)[0]
    mean_angle = _bin_mean(angle[None], index, counts)[0]
    k_bins = mean_k2.sqrt()[:, None] * torch.stack([mean_angle.cos(), mean_angle.sin()], -1)
    power = _bin_mean(spectra[:, keep].to(dtype), index, counts.to(dtype))  # (p, m)
    bin_shell = (mean_k2.sqrt() * s * pixel_size_a).to(dtype)
    b = interpolate_profile(background.to(dtype), bin_shell)
    e = interpolate_profile(envelope.to(dtype), bin_shell)
    return PatchTargets(
        k_xy_per_a=k_bins.to(dtype),
        counts=counts.to(dtype),
        normalised=(power - b) / b,
        weight=e / b,
        coords=coords.to(dtype),
    )


def _bin_mean(
    values: torch.Tensor,  # (p, N)
    index: torch.Tensor,  # (N,)
    counts: torch.Tensor,  # (m,)
) -> torch.Tensor:  # (p, m)
    sums = torch.zeros(values.shape[0], counts.shape[0], dtype=values.dtype, device=values.device)
    return sums.index_add_(1, index, values) / counts
