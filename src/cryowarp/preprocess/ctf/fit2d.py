"""2-D fit of all patch spectra: spatial defocus model, global astigmatism, phase shift.

Cost (Warp's): for each patch, the normalised correlation over the fit-range annulus of the
simulated ``(E/B)·CTF²`` (envelope over background, from the 1-D fit) with the
background-normalised spectrum ``(P − B)/B``; the mean over patches is maximised. Defocus at a
patch is a natural cubic spline grid (Warp dims X×Y×1, core/spline_grid.py) evaluated at the
patch centre, or a plane; astigmatism is the 2-vector ``(δ cos 2θ, δ sin 2θ)``
(docs/conventions.md §6). Gradients by autograd; ``torch.optim.LBFGS`` with a strong-Wolfe line
search.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

from cryowarp.core.ctf import ctf_at_frequencies
from cryowarp.core.fourier_grids import frequency_grid
from cryowarp.core.radial import expand_radial_profile
from cryowarp.core.spline_grid import evaluate_cubic_grid, fit_cubic_grid, grid_node_coords
from cryowarp.preprocess.ctf.search1d import Optics

__all__ = [
    "Fit2dResult",
    "PatchTargets",
    "astigmatism_start",
    "correlation_score",
    "fit_patches_2d",
    "patch_targets",
]


@dataclass(frozen=True, eq=False)
class PatchTargets:
    """Fit-range samples of every patch: frequencies, normalised spectrum and model weight.

    ``k_xy_per_a`` ``(m, 2)`` frequencies (Å⁻¹); ``normalised`` ``(p, m)`` ``(P − B)/B``;
    ``weight`` ``(p, m)`` ``E/B``; ``coords`` ``(p, 2)`` patch centres in normalised (x, y).
    """

    k_xy_per_a: torch.Tensor  # (m, 2)
    normalised: torch.Tensor  # (p, m)
    weight: torch.Tensor  # (p, m)
    coords: torch.Tensor  # (p, 2)


@dataclass(frozen=True, eq=False)
class Fit2dResult:
    """Fitted model: ``grid_um`` ``(Y, X)`` absolute mean defocus at the grid nodes, astigmatism
    ``(δ cos 2θ, δ sin 2θ)`` in µm, phase shift (rad), the cost (mean correlation) and the mean
    defocus (µm) of every patch ``(p,)``."""

    grid_um: torch.Tensor  # (Y, X)
    astig_x_um: float
    astig_y_um: float
    phase_shift_rad: float
    score: float
    patch_defocus_um: torch.Tensor  # (p,)


def patch_targets(
    spectra: torch.Tensor,  # (p, s, s//2+1)
    background: torch.Tensor,  # (p, n)
    envelope: torch.Tensor,  # (p, n)
    coords: torch.Tensor,  # (p, 2)
    *,
    pixel_size_a: float,
    fit_range_per_a: tuple[float, float],
) -> PatchTargets:
    """Collect the annulus of the fit range from every patch spectrum (rfft layout, §3)."""
    s = spectra.shape[-2]
    shape = (s, s)
    grid = (
        frequency_grid(shape, nyquist_positive=True, device=spectra.device, dtype=torch.float64)
        / pixel_size_a
    )
    radius = grid.norm(dim=-1)
    mask = (radius >= fit_range_per_a[0]) & (radius <= fit_range_per_a[1])
    mask[:, 0] &= torch.arange(s, device=mask.device) <= s // 2  # each k once on the kx = 0 column
    b2d = expand_radial_profile(background, shape=shape)[:, mask]
    e2d = expand_radial_profile(envelope, shape=shape)[:, mask]
    values = spectra.to(torch.float64)[:, mask]
    return PatchTargets(
        k_xy_per_a=grid[mask], normalised=(values - b2d) / b2d, weight=e2d / b2d, coords=coords
    )


def fit_patches_2d(
    targets: PatchTargets,
    optics: Optics,
    *,
    defocus_um: float,
    phase_shift_rad: float,
    grid_dims: tuple[int, int] | None,
    plane: bool = False,
    fit_astigmatism: bool = True,
    fit_phase_shift: bool = False,
    max_iterations: int = 60,
    astig_init_um: tuple[float, float] = (0.0, 0.0),
    patch_defocus_start_um: torch.Tensor | None = None,  # (p,)
) -> Fit2dResult:
    """Maximise the mean per-patch correlation over the defocus model and astigmatism.

    Parameters
    ----------
    targets:
        From :func:`patch_targets`.
    defocus_um, phase_shift_rad:
        Start values (from the 1-D search).
    grid_dims:
        Spline nodes (X, Y) of the defocus grid; ``None`` or ``plane=True`` for a plane.
    astig_init_um:
        Start astigmatism ``(δ cos 2θ, δ sin 2θ)`` in µm.
    patch_defocus_start_um:
        Optional start defocus of every patch (e.g. from a 1-D search per patch); the start
        surface is their least-squares fit (a local optimum is avoided on steep gradients).
    """
    device = targets.normalised.device
    dtype = torch.float64
    plane = plane or grid_dims is None
    coords = targets.coords.to(dtype)
    start = (
        torch.full((coords.shape[0],), defocus_um, dtype=dtype, device=device)
        if patch_defocus_start_um is None
        else patch_defocus_start_um.to(dtype)
    )
    if plane:
        design = torch.cat([torch.ones_like(coords[:, :1]), coords - 0.5], dim=-1)  # (p, 3)
        defocus = torch.linalg.pinv(design) @ start
    else:
        assert grid_dims is not None
        defocus = fit_cubic_grid(coords, start, grid_dims)
    defocus = defocus.detach().clone().requires_grad_(True)
    astig = torch.tensor(astig_init_um, dtype=dtype, device=device, requires_grad=fit_astigmatism)
    phase = torch.tensor(phase_shift_rad, dtype=dtype, device=device, requires_grad=fit_phase_shift)
    variables = [v for v in (defocus, astig, phase) if v.requires_grad]

    def patch_defocus() -> torch.Tensor:
        if plane:
            centred: torch.Tensor = defocus[0] + (coords - 0.5) @ defocus[1:]
            return centred
        return evaluate_cubic_grid(defocus, coords)

    stage = targets

    def cost() -> torch.Tensor:
        return -correlation_score(stage, optics, patch_defocus(), astig[0], astig[1], phase).mean()

    # Coarse to fine: half the frequency range first, where the cost has wider basins.
    radius = targets.k_xy_per_a.norm(dim=-1)
    low, high = float(radius.min()), float(radius.max())
    for limit in (low + 0.5 * (high - low), high):
        stage = _subset(targets, radius <= limit)
        _run_lbfgs(cost, variables, max_iterations)
    stage = targets
    with torch.no_grad():
        final = float(cost())
        per_patch = patch_defocus()
        if plane:
            nodes = grid_node_coords((2, 2), device=device, dtype=dtype)  # (2, 2, 2)
            grid = defocus[0] + (nodes - 0.5) @ defocus[1:]
        else:
            grid = defocus.detach().clone()
    return Fit2dResult(
        grid_um=grid.detach(),
        astig_x_um=float(astig[0].detach()),
        astig_y_um=float(astig[1].detach()),
        phase_shift_rad=float(phase.detach()),
        score=-final,
        patch_defocus_um=per_patch.detach(),
    )


def correlation_score(
    targets: PatchTargets,
    optics: Optics,
    defocus_um: torch.Tensor,  # (p,)
    astig_x_um: torch.Tensor,
    astig_y_um: torch.Tensor,
    phase_shift_rad: torch.Tensor,
) -> torch.Tensor:  # (p,)
    """Per-patch normalised correlation of ``(E/B)·CTF²`` with ``(P − B)/B``."""
    params = optics.params(
        defocus_um, phase_shift_rad=phase_shift_rad, astig_x_um=astig_x_um, astig_y_um=astig_y_um
    )
    model = targets.weight * ctf_at_frequencies(params, targets.k_xy_per_a).square()
    a = model - model.mean(-1, keepdim=True)
    b = targets.normalised - targets.normalised.mean(-1, keepdim=True)
    norm = (a.square().sum(-1) * b.square().sum(-1)).sqrt().clamp(min=1e-30)
    return (a * b).sum(-1) / norm


def astigmatism_start(
    targets: PatchTargets,
    optics: Optics,
    *,
    defocus_um: float,
    phase_shift_rad: float,
    magnitudes_um: tuple[float, ...] = (0.02, 0.05, 0.1, 0.2, 0.4),
    n_angles: int = 12,
) -> tuple[float, float, float]:
    """Best mean defocus (µm) and ``(δ cos 2θ, δ sin 2θ)`` (µm) of a coarse grid.

    The rotational average of astigmatic rings can lock the 1-D search onto ``U`` or ``V``
    rather than the mean, so each candidate ``δ`` is tried with the mean at
    ``defocus_um − δ``, ``defocus_um`` and ``defocus_um + δ``.
    """
    dtype = torch.float64
    device = targets.normalised.device
    candidates = [(defocus_um, 0.0, 0.0)]
    for delta in magnitudes_um:
        for i in range(n_angles):
            two_theta = 2 * math.pi * i / n_angles
            for shift in (-delta, 0.0, delta):
                candidates.append(
                    (defocus_um + shift, delta * math.cos(two_theta), delta * math.sin(two_theta))
                )
    ones = torch.ones(targets.normalised.shape[0], dtype=dtype, device=device)
    phase = torch.tensor(phase_shift_rad, dtype=dtype, device=device)
    scores = [
        float(
            correlation_score(targets, optics, mean * ones, ones[0] * x, ones[0] * y, phase).mean()
        )
        for mean, x, y in candidates
    ]
    best = max(range(len(candidates)), key=scores.__getitem__)
    return candidates[best]


def _subset(targets: PatchTargets, keep: torch.Tensor) -> PatchTargets:
    """Targets restricted to the samples ``keep`` ``(m,)``."""
    return PatchTargets(
        k_xy_per_a=targets.k_xy_per_a[keep],
        normalised=targets.normalised[:, keep],
        weight=targets.weight[:, keep],
        coords=targets.coords,
    )


def _run_lbfgs(
    cost: Callable[[], torch.Tensor], variables: list[torch.Tensor], max_iterations: int
) -> None:
    """Minimise ``cost`` over ``variables`` with L-BFGS and a strong-Wolfe line search."""
    optimiser = torch.optim.LBFGS(
        variables,
        lr=1.0,
        max_iter=max_iterations,
        line_search_fn="strong_wolfe",
        tolerance_grad=1e-9,
        tolerance_change=1e-12,
        history_size=20,
    )

    def closure() -> torch.Tensor:
        optimiser.zero_grad()
        value = cost()
        value.backward()  # type: ignore[no-untyped-call]
        return value

    optimiser.step(closure)  # type: ignore[no-untyped-call]
