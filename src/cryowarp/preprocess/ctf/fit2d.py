"""2-D fit of all patch spectra: spatial defocus model, global astigmatism, phase shift.

Cost (Warp's): for each patch, the normalised correlation over the fit-range annulus (polar
bins weighted by their sample counts, polar.py) of the simulated ``(E/B)·CTF²`` (envelope over
background, from the 1-D fit) with the background-normalised spectrum ``(P − B)/B``; the mean
over patches is maximised. Defocus at a
patch is a natural cubic spline grid (Warp dims X×Y×1, core/spline_grid.py) evaluated at the
patch centre, or a plane; astigmatism is the 2-vector ``(δ cos 2θ, δ sin 2θ)``
(docs/conventions.md §6). Gradients by autograd; ``torch.optim.LBFGS`` with a strong-Wolfe line
search, stopped when the cost changes by less than ``1e-7`` (a correlation) between
iterations.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

from cryowarp.core.spline_grid import evaluate_cubic_grid, fit_cubic_grid, grid_node_coords
from cryowarp.preprocess.ctf.model import CtfSquaredModel
from cryowarp.preprocess.ctf.polar import PatchTargets
from cryowarp.preprocess.ctf.search1d import Optics

__all__ = ["Fit2dResult", "astigmatism_start", "correlation_score", "fit_patches_2d"]

#: Patches the coarse astigmatism search looks at (spread over the field).
_ASTIGMATISM_PATCHES = 9
#: Candidate-patch-bin products evaluated at once by the astigmatism search.
_CHUNK_ELEMENTS = 1 << 22


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
        Polar bins of every patch (:func:`~cryowarp.preprocess.ctf.polar.polar_targets`).
    defocus_um, phase_shift_rad:
        Start values (from the 1-D search).
    grid_dims:
        Spline nodes (X, Y) of the defocus grid; ``None`` or ``plane=True`` for a plane.
    max_iterations:
        L-BFGS iterations of each of the two stages (half, then all of the fit range).
    astig_init_um:
        Start astigmatism ``(δ cos 2θ, δ sin 2θ)`` in µm.
    patch_defocus_start_um:
        Optional start defocus of every patch (e.g. from a 1-D search per patch); the start
        surface is their least-squares fit (a local optimum is avoided on steep gradients).
    """
    device = targets.normalised.device
    dtype = targets.normalised.dtype
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

    stage, model = targets, CtfSquaredModel(targets.k_xy_per_a, optics)

    def cost() -> torch.Tensor:
        score = correlation_score(stage, model, patch_defocus(), astig[0], astig[1], phase)
        return -score.mean()

    # Coarse to fine: half the frequency range first, where the cost has wider basins.
    radius = targets.k_xy_per_a.norm(dim=-1)
    low, high = float(radius.min()), float(radius.max())
    for limit in (low + 0.5 * (high - low), high):
        stage = targets.subset(radius <= limit)
        model = CtfSquaredModel(stage.k_xy_per_a, optics)
        _run_lbfgs(cost, variables, max_iterations)
    stage, model = targets, CtfSquaredModel(targets.k_xy_per_a, optics)
    with torch.no_grad():
        final = float(cost())
        per_patch = patch_defocus()
        if plane:
            nodes = grid_node_coords((2, 2), device=device, dtype=dtype)  # (2, 2, 2)
            grid = defocus[0] + (nodes - 0.5) @ defocus[1:]
        else:
            grid = defocus.detach().clone()
    return Fit2dResult(
        grid_um=grid.detach().to(torch.float64),
        astig_x_um=float(astig[0].detach()),
        astig_y_um=float(astig[1].detach()),
        phase_shift_rad=float(phase.detach()),
        score=-final,
        patch_defocus_um=per_patch.detach().to(torch.float64),
    )


def correlation_score(
    targets: PatchTargets,
    model: CtfSquaredModel,
    defocus_um: torch.Tensor,  # (..., p)
    astig_x_um: torch.Tensor,  # (...) or (..., 1)
    astig_y_um: torch.Tensor,  # (...) or (..., 1)
    phase_shift_rad: torch.Tensor,  # (...) or (..., 1)
) -> torch.Tensor:  # (..., p)
    """Per-patch normalised correlation of ``(E/B)·CTF²`` with ``(P − B)/B`` over the polar
    bins, each bin weighted by its sample count; a batch of candidate models ``(...)``.
    ``model`` is the :class:`CtfSquaredModel` of ``targets.k_xy_per_a``."""
    weights = targets.counts / targets.counts.sum()
    ctf2 = model(defocus_um.to(weights.dtype), astig_x_um, astig_y_um, phase_shift_rad)
    simulated = targets.weight * ctf2
    a = simulated - (simulated * weights).sum(-1, keepdim=True)
    b = targets.normalised - (targets.normalised * weights).sum(-1, keepdim=True)
    wb = weights * b
    norm = ((a.square() * weights).sum(-1) * (wb * b).sum(-1)).sqrt().clamp(min=1e-30)
    return (a * wb).sum(-1) / norm


def astigmatism_start(
    targets: PatchTargets,
    optics: Optics,
    *,
    defocus_um: torch.Tensor | float,  # (p,) or scalar
    phase_shift_rad: float,
    magnitudes_um: tuple[float, ...] = (0.02, 0.05, 0.1, 0.2, 0.4),
    n_angles: int = 12,
) -> tuple[float, float, float]:
    """Best shift of the mean defocus (µm) and ``(δ cos 2θ, δ sin 2θ)`` (µm) of a coarse grid.

    The rotational average of astigmatic rings can lock the 1-D search onto ``U`` or ``V``
    rather than the mean, so each candidate ``δ`` is tried with the mean shifted by ``−δ``,
    0 and ``+δ``. All candidates are scored at once on up to ``_ASTIGMATISM_PATCHES`` patches
    spread over the field, each at its own start defocus.
    """
    dtype = targets.normalised.dtype
    device = targets.normalised.device
    candidates = [(0.0, 0.0, 0.0)]
    for delta in magnitudes_um:
        for i in range(n_angles):
            two_theta = 2 * math.pi * i / n_angles
            for shift in (-delta, 0.0, delta):
                candidates.append((shift, delta * math.cos(two_theta), delta * math.sin(two_theta)))
    p = targets.normalised.shape[0]
    # Distinct patches: the linspace step is at least 1.
    chosen = torch.linspace(0, p - 1, min(p, _ASTIGMATISM_PATCHES), device=device).round().long()
    subset = targets.patches(chosen)
    base = torch.as_tensor(defocus_um, dtype=dtype, device=device).expand(p)[chosen]
    table = torch.tensor(candidates, dtype=dtype, device=device)  # (c, 3)
    phase = torch.tensor(phase_shift_rad, dtype=dtype, device=device)
    per_chunk = max(1, _CHUNK_ELEMENTS // subset.normalised.numel())
    model = CtfSquaredModel(subset.k_xy_per_a, optics)
    scores = []
    for start in range(0, table.shape[0], per_chunk):
        chunk = table[start : start + per_chunk]
        score = correlation_score(
            subset, model, base + chunk[:, :1], chunk[:, 1:2], chunk[:, 2:3], phase
        )
        scores.append(score.mean(-1))
    best = int(torch.argmax(torch.cat(scores)))
    return candidates[best]


def _run_lbfgs(
    cost: Callable[[], torch.Tensor], variables: list[torch.Tensor], max_iterations: int
) -> None:
    """Minimise ``cost`` over ``variables`` with L-BFGS and a strong-Wolfe line search."""
    optimiser = torch.optim.LBFGS(
        variables,
        lr=1.0,
        max_iter=max_iterations,
        line_search_fn="strong_wolfe",
        tolerance_grad=1e-7,
        tolerance_change=1e-7,
        history_size=10,
    )

    def closure() -> torch.Tensor:
        optimiser.zero_grad()
        value = cost()
        value.backward()  # type: ignore[no-untyped-call]
        return value

    optimiser.step(closure)  # type: ignore[no-untyped-call]
