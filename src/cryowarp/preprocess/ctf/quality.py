"""Quality of a CTF fit: the spectrum of all patches at a common defocus, the sliding-window
correlation of fit and spectrum, the resolution the Thon rings are fitted to, a fit score.

Every patch's background-normalised spectrum ``(P − B)/B`` is resampled onto the frequencies
``k_ref`` at which an isotropic CTF of the reference (mean) defocus has the same aberration
phase as the patch's own astigmatic CTF at ``k`` (same ``π λ Δz k² − π/2 Cs λ³ k⁴``): rings of
every patch and direction then line up (docs/conventions.md §6 for the phase).
"""

from __future__ import annotations

import math

import torch

from cryowarp.core.electron import electron_wavelength_a
from cryowarp.preprocess.ctf.search1d import Optics

__all__ = ["rescaled_profile", "ring_resolution_a", "sliding_correlation"]


def rescaled_profile(
    normalised: torch.Tensor,  # (p, m)
    k_xy_per_a: torch.Tensor,  # (m, 2)
    counts: torch.Tensor,  # (m,)
    patch_defocus_um: torch.Tensor,  # (p,)
    optics: Optics,
    *,
    astig_x_um: float,
    astig_y_um: float,
    reference_defocus_um: float,
    window_size_px: int,
) -> torch.Tensor:  # (s//2+1,)
    """Rotational average of all patches after mapping each sample to the reference defocus.

    Parameters
    ----------
    normalised:
        ``(P − B)/B`` of every patch at ``m`` frequencies (polar bins or grid samples).
    k_xy_per_a, counts:
        The frequencies (Å⁻¹) of the samples and their weights (samples per bin).
    patch_defocus_um:
        Fitted mean defocus of every patch (µm).
    astig_x_um, astig_y_um, reference_defocus_um:
        Fitted astigmatism ``(δ cos 2θ, δ sin 2θ)`` and the common defocus (µm).
    window_size_px:
        Patch side ``s``: shell ``i`` of the result is at ``i / (s · pixel_size_a)`` Å⁻¹;
        empty shells are 0.
    """
    s = window_size_px
    dtype = torch.float64
    k = k_xy_per_a.to(dtype)
    k2 = k.square().sum(-1)
    safe = k2.clamp(min=1e-30)
    cos2 = torch.where(k2 > 0, (k[:, 0].square() - k[:, 1].square()) / safe, 0)
    sin2 = torch.where(k2 > 0, 2 * k[:, 0] * k[:, 1] / safe, 0)
    local = patch_defocus_um.to(dtype)[:, None] + astig_x_um * cos2 + astig_y_um * sin2
    lam = float(electron_wavelength_a(torch.tensor(optics.voltage_kv, dtype=dtype)))
    a_ref = math.pi * lam * reference_defocus_um * 1e4
    b = 0.5 * math.pi * optics.cs_mm * 1e7 * lam**3
    phase = math.pi * lam * local * 1e4 * k2 - b * k2.square()  # (p, m)
    if b > 0:
        disc = a_ref * a_ref - 4 * b * phase
        u = (a_ref - disc.clamp(min=0).sqrt()) / (2 * b)
        valid = disc >= 0
    else:
        u = phase / a_ref
        valid = torch.ones_like(u, dtype=torch.bool)
    shells = torch.round(u.clamp(min=0).sqrt() * s * optics.pixel_size_a).to(torch.int64)
    valid &= shells <= s // 2
    weights = counts.to(dtype).expand_as(u)
    sums = torch.zeros(s // 2 + 1, dtype=dtype, device=normalised.device)
    totals = torch.zeros_like(sums)
    sums.scatter_add_(0, shells[valid], (normalised.to(dtype) * weights)[valid])
    totals.scatter_add_(0, shells[valid], weights[valid])
    return sums / totals.clamp(min=1e-30)


def sliding_correlation(
    a: torch.Tensor,  # (n,)
    b: torch.Tensor,  # (n,)
    *,
    window: int,
) -> torch.Tensor:  # (n,)
    """Normalised correlation of ``a`` and ``b`` in a window of ``window`` samples centred on
    each sample (NaN where the window does not fit)."""
    n = a.shape[-1]
    out = torch.full((n,), float("nan"), dtype=torch.float64, device=a.device)
    if n < window:
        return out
    wa = a.to(torch.float64).unfold(0, window, 1)
    wb = b.to(torch.float64).unfold(0, window, 1)
    wa = wa - wa.mean(-1, keepdim=True)
    wb = wb - wb.mean(-1, keepdim=True)
    norm = (wa.square().sum(-1) * wb.square().sum(-1)).sqrt().clamp(min=1e-30)
    start = window // 2
    out[start : start + wa.shape[0]] = (wa * wb).sum(-1) / norm
    return out


def ring_resolution_a(
    correlation: torch.Tensor,  # (n,)
    frequencies_per_a: torch.Tensor,  # (n,)
    *,
    start_per_a: float,
    threshold: float,
) -> float:
    """Resolution (Å) where ``correlation`` first falls below ``threshold`` above
    ``start_per_a`` Å⁻¹ (linear interpolation between samples); the highest frequency with a
    defined correlation when it never does; ``inf`` when it is below from the start."""
    k = frequencies_per_a.to(torch.float64)
    defined = (~torch.isnan(correlation)) & (k >= start_per_a)
    indices = torch.nonzero(defined).flatten().tolist()
    if not indices:
        return math.inf
    previous = None
    for i in indices:
        value = float(correlation[i])
        if value < threshold:
            if previous is None:
                return math.inf
            c0, k0 = float(correlation[previous]), float(k[previous])
            t = (c0 - threshold) / (c0 - value)
            return 1.0 / (k0 + t * (float(k[i]) - k0))
        previous = i
    return 1.0 / float(k[indices[-1]])
