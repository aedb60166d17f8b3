"""1-D rotational averages of power spectra, and their background and envelope.

The spectrum model is ``P(k) = B(k) + E(k)·CTF²(k)``: a smooth background ``B`` (noise, ice
and detector) plus the CTF-modulated signal of envelope ``E``. ``B`` and ``E`` are natural cubic
splines with 3 nodes (Warp's 3-point background) spread evenly over the fit range of
frequencies (constant outside it). Given a CTF the model is linear in the 6 node values, so
they are fitted by weighted linear least squares (weights ``1/B²``: the scatter of an averaged
power spectrum is proportional to its value). Frequencies: docs/conventions.md §3.
"""

from __future__ import annotations

import torch

from cryowarp.core.radial import rotational_average
from cryowarp.core.spline_grid import evaluate_cubic_grid

__all__ = [
    "BACKGROUND_NODES",
    "fit_background",
    "fit_background_and_envelope",
    "profile_frequencies_per_a",
    "rotational_profile",
    "spline_basis",
]

#: Nodes of the background and envelope splines (Warp's 3-point background).
BACKGROUND_NODES = 3


def rotational_profile(spectra: torch.Tensor) -> torch.Tensor:  # (..., s, s//2+1) -> (..., n)
    """Rotational average of rfft power spectra ``(..., s, s//2+1)`` of square ``s × s``
    patches; ``n = s//2 + 1`` shells, shell ``i`` at ``i / s`` cycles/px (conventions §11)."""
    s = spectra.shape[-2]
    return rotational_average(spectra, shape=(s, s))


def profile_frequencies_per_a(
    window_size_px: int, pixel_size_a: float, *, device: torch.device | None = None
) -> torch.Tensor:  # (n,)
    """Frequencies (Å⁻¹) of the shells of :func:`rotational_profile`, float64."""
    n = window_size_px // 2 + 1
    i = torch.arange(n, device=device, dtype=torch.float64)
    return i / (window_size_px * pixel_size_a)


def spline_basis(
    frequencies_per_a: torch.Tensor,  # (n,)
    fit_range_per_a: tuple[float, float],
    *,
    n_nodes: int = BACKGROUND_NODES,
) -> torch.Tensor:  # (n, n_nodes)
    """Values at ``frequencies_per_a`` of the natural-spline basis functions with ``n_nodes``
    nodes spread evenly over ``fit_range_per_a`` (Å⁻¹); constant beyond the range."""
    low, high = fit_range_per_a
    coords = ((frequencies_per_a - low) / (high - low)).to(torch.float64)
    eye = torch.eye(n_nodes, dtype=torch.float64, device=frequencies_per_a.device)
    return evaluate_cubic_grid(eye, coords[None, :, None]).T


def fit_background(
    profile: torch.Tensor,  # (..., n)
    frequencies_per_a: torch.Tensor,  # (n,)
    fit_range_per_a: tuple[float, float],
) -> torch.Tensor:  # (..., n)
    """A 3-node spline fitted *through* the profile in the fit range (before any CTF is known).

    Fitted by least squares with weights ``1/B²`` (two rounds: the first unweighted), so the
    spline follows the relative level of a spectrum that falls steeply with frequency.
    """
    basis = spline_basis(frequencies_per_a, fit_range_per_a)
    mask = _range_mask(frequencies_per_a, fit_range_per_a)
    values = profile.to(torch.float64)
    weights = torch.ones_like(values)
    background = values
    for _ in range(3):
        coefficients = _weighted_lstsq(basis[mask], values[..., mask], weights[..., mask])
        background = coefficients @ basis.T
        weights = 1.0 / _positive(background, values).square()
    return background


def fit_background_and_envelope(
    profile: torch.Tensor,  # (..., n)
    ctf_squared: torch.Tensor,  # (..., n)
    frequencies_per_a: torch.Tensor,  # (n,)
    fit_range_per_a: tuple[float, float],
) -> tuple[torch.Tensor, torch.Tensor]:  # (..., n), (..., n)
    """Fit ``profile ≈ B + E·ctf_squared`` with 3-node splines ``B`` and ``E``.

    Parameters
    ----------
    profile:
        Rotationally averaged power spectrum.
    ctf_squared:
        The model's ``CTF²`` on the same samples (rotationally averaged when astigmatic).
    frequencies_per_a, fit_range_per_a:
        Sample frequencies and fit range in Å⁻¹.

    Returns
    -------
    (torch.Tensor, torch.Tensor)
        Background ``B`` (positive) and envelope ``E`` (non-negative), ``(..., n)``.
    """
    basis = spline_basis(frequencies_per_a, fit_range_per_a)  # (n, 3)
    mask = _range_mask(frequencies_per_a, fit_range_per_a)
    values = profile.to(torch.float64)
    ctf2 = ctf_squared.to(torch.float64)
    design = torch.cat([basis.expand(*ctf2.shape, 3), basis * ctf2[..., None]], dim=-1)
    weights = 1.0 / _positive(fit_background(values, frequencies_per_a, fit_range_per_a), values)
    weights = weights.square()
    background, envelope = values, torch.zeros_like(values)
    for _ in range(2):
        coefficients = _weighted_lstsq(design[..., mask, :], values[..., mask], weights[..., mask])
        background = coefficients[..., :3] @ basis.T
        envelope = coefficients[..., 3:] @ basis.T
        weights = 1.0 / _positive(background, values).square()
    return _positive(background, values), envelope.clamp(min=0.0)


def _range_mask(
    frequencies_per_a: torch.Tensor, fit_range_per_a: tuple[float, float]
) -> torch.Tensor:
    low, high = fit_range_per_a
    return (frequencies_per_a >= low) & (frequencies_per_a <= high)


def _positive(background: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """Clamp a background to a small positive floor (a thousandth of the mean level)."""
    floor = 1e-3 * values.abs().mean(dim=-1, keepdim=True).clamp(min=1e-30)
    return torch.maximum(background, floor)


def _weighted_lstsq(
    design: torch.Tensor,  # (..., m, q) or (m, q)
    values: torch.Tensor,  # (..., m)
    weights: torch.Tensor,  # (..., m)
) -> torch.Tensor:  # (..., q)
    weighted = design * weights[..., None]
    normal = weighted.transpose(-1, -2) @ design  # (..., q, q)
    rhs = (weighted.transpose(-1, -2) @ values[..., None])[..., 0]
    ridge = 1e-12 * normal.diagonal(dim1=-2, dim2=-1).sum(-1)[..., None, None]
    eye = torch.eye(normal.shape[-1], dtype=normal.dtype, device=normal.device)
    solution: torch.Tensor = torch.linalg.solve(normal + ridge * eye, rhs)
    return solution
