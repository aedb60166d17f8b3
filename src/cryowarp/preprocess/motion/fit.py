"""Fit Warp's motion model to a frame series (global 1×1×T + local X×Y×T spline grids).

The frames, at a pixel size whose Nyquist reaches the fit's highest resolution, are cut
into overlapping patches (:mod:`.patches`), cut in every frame where a first
cross-correlation track says the content went. For a trial model the shift of every patch in
every frame is the model's mean over the patch (the field sampled at 5 × 5 points weighted
like the correlation: a patch sees the mean shift, not the one at its centre); each patch
spectrum is moved back by its shift (a phase ramp) and compared with the sum of the other
frames of the same patch (:mod:`._cost`):

    cost = − mean over patches p and frames t of  Re⟨A_pt, S_p − A_pt⟩ / (‖A_pt‖ ‖S_p − A_pt‖)

with ``A_pt`` the aligned, band-limited, B-factor weighted spectrum and ``S_p = Σ_t A_pt``.
Gradients are exact (autograd) and :class:`torch.optim.LBFGS` with a strong-Wolfe line
search minimises the cost. The temporal resolution of the global grid is refined in stages
(3 nodes, then 9, 27, … up to the target), each stage starting from the previous one
resampled; the first stage starts from a whole-frame cross-correlation track
(:mod:`._xcorr_init`). A last stage fits the local grid together with the global one
(global-only stages converge in few iterations; the local field is zero-mean, so they are
not biased by it).

Gauge: the cost cannot see shifts that are constant in time (per patch), so frame 0 is held
at zero in both grids; a small penalty keeps the local field's spatial mean at zero (it would
otherwise trade with the global track). The result is :meth:`FrameMotion.gauged`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from cryowarp.core.spline_grid import resize_cubic_grid
from cryowarp.preprocess.motion._cost import PatchCost
from cryowarp.preprocess.motion._xcorr_init import initial_global_track_a
from cryowarp.preprocess.motion.model import FrameMotion
from cryowarp.preprocess.motion.patches import (
    patch_spectra,
    sparse_patch_indices,
)
from cryowarp.preprocess.motion.settings import MotionSettings

__all__ = ["MotionFit", "StageReport", "estimate_motion", "global_stage_nodes"]

_TOLERANCE_A = 0.01  # stop when a round of L-BFGS iterations moves no node by more (Å)
_ROUND = 5  # L-BFGS iterations per round


@dataclass(frozen=True)
class StageReport:
    """One refinement stage: global nodes, whether the local grid was fitted, the cost
    before and after, cost evaluations and seconds."""

    global_nodes: int
    local: bool
    cost_start: float
    cost_end: float
    evaluations: int
    seconds: float


@dataclass(frozen=True)
class MotionFit:
    """Result of :func:`estimate_motion`.

    Attributes
    ----------
    motion:
        The fitted, gauged model (Å; frame 0 = reference).
    patch_centres_a:
        ``(p, 2)`` patch centres (x, y) in Å.
    patch_size_a:
        Patch edge in Å.
    initial_track_a:
        ``(n, 2)`` whole-frame cross-correlation track that started the fit (Å).
    stages:
        One report per refinement stage.
    alignment_pixel_size_a:
        Pixel size of the frames the fit used (Å).
    """

    motion: FrameMotion
    patch_centres_a: torch.Tensor
    patch_size_a: float
    initial_track_a: torch.Tensor
    stages: tuple[StageReport, ...] = field(default_factory=tuple)
    alignment_pixel_size_a: float = 0.0

    @property
    def final_cost(self) -> float:
        """Cost after the last stage (−1 is perfect agreement of every frame)."""
        return self.stages[-1].cost_end if self.stages else float("nan")


def global_stage_nodes(n_frames: int, target: int | None) -> list[int]:
    """Temporal nodes of the global grid per stage: 3, 9, 27, … below the target, then the
    target (``n_frames`` when unset, never more)."""
    goal = min(n_frames, target if target is not None else n_frames)
    stages = []
    nodes = 3
    while nodes < goal:
        stages.append(nodes)
        nodes *= 3
    stages.append(goal)
    return stages


def _lbfgs(
    cost: PatchCost, global_free: torch.Tensor, local_free: torch.Tensor, *, max_iterations: int
) -> tuple[float, float, int]:
    """Minimise ``cost`` over the tensors that require gradients; returns the cost before
    and after and the number of evaluations.

    L-BFGS runs in rounds of a few iterations (its history carries over) and stops when a
    round moves no grid node by more than ``_TOLERANCE_A`` or after ``max_iterations``.
    """
    trainable = [p for p in (global_free, local_free) if p.requires_grad]
    with torch.no_grad():
        start = float(cost(global_free, local_free))
    if not trainable:
        return start, start, 1
    optimizer = torch.optim.LBFGS(
        trainable,
        lr=1.0,
        max_iter=_ROUND,
        history_size=20,
        tolerance_grad=1e-12,
        tolerance_change=1e-14,
        line_search_fn="strong_wolfe",
    )
    evaluations = 0

    def closure() -> torch.Tensor:
        nonlocal evaluations
        optimizer.zero_grad()
        value = cost(global_free, local_free)
        value.backward()  # type: ignore[no-untyped-call]
        evaluations += 1
        return value

    for _ in range(max(1, max_iterations // _ROUND)):
        before = [p.detach().clone() for p in trainable]
        optimizer.step(closure)  # type: ignore[no-untyped-call]
        moved = max(
            float((p.detach() - q).abs().max()) for p, q in zip(trainable, before, strict=True)
        )
        if moved < _TOLERANCE_A:
            break
    with torch.no_grad():
        end = float(cost(global_free, local_free))
    return start, end, evaluations


def _patch_size_for_grid(
    frame_shape: tuple[int, int], patch_size_px: int, nodes_xy: tuple[int, int], overlap: float
) -> int:
    """The patch size, reduced where needed so that there are at least as many patches as
    local grid nodes along each axis (else the local grid is not determined by the data)."""
    h, w = frame_shape
    size = patch_size_px
    for length, nodes in ((w, nodes_xy[0]), (h, nodes_xy[1])):
        if nodes > 1:
            size = min(size, int(length / (1 + (nodes - 1) * (1 - overlap))))
    return max(size, 16)


def _nodes_from_track(track_a: torch.Tensor, nodes: int) -> torch.Tensor:  # (n, 2) -> (2, T)
    """Values of a per-frame track at ``nodes`` evenly spaced times (linear interpolation)."""
    n = track_a.shape[0]
    positions = torch.linspace(0, n - 1, nodes, device=track_a.device, dtype=track_a.dtype)
    lower = positions.floor().long().clamp(max=n - 1)
    upper = (lower + 1).clamp(max=n - 1)
    w = (positions - lower.to(positions.dtype))[:, None]
    return (track_a[lower] * (1 - w) + track_a[upper] * w).T.contiguous()


def estimate_motion(
    frames: torch.Tensor,  # (n, h, w) at the alignment pixel size
    *,
    pixel_size_a: float,
    field_size_a: tuple[float, float],
    settings: MotionSettings,
    patch_size_px: int,
    progress: Callable[[str, float], None] | None = None,
) -> MotionFit:
    """Fit global and local motion to a frame series (module docstring).

    Parameters
    ----------
    frames:
        ``(n, h, w)`` gain-corrected frames resampled to the alignment pixel size, whose
        Nyquist should reach ``settings.max_resolution_a``.
    pixel_size_a:
        Their pixel size in Å.
    field_size_a:
        ``(width, height)`` of the field in Å (of the original frames).
    settings:
        Band, B-factor, grids, iterations, patch overlap.
    patch_size_px:
        Patch edge in alignment pixels; reduced if there would be fewer patches than local
        grid nodes along an axis.
    progress:
        Called with a message and the fraction of the fit done.

    Returns
    -------
    MotionFit
        With the gauged :class:`FrameMotion` on the device of ``frames``.
    """
    n = frames.shape[0]
    if n < 2:
        raise ValueError(f"motion needs at least 2 frames, got {n}")
    band = {
        "min_resolution_a": settings.min_resolution_a,
        "max_resolution_a": settings.max_resolution_a,
        "bfactor_a2": settings.bfactor_a2,
    }
    frames = frames.float()
    local_dims = settings.local_grid if settings.local_motion else (1, 1, 1)
    patch_size_px = _patch_size_for_grid(
        tuple(frames.shape[-2:]),  # type: ignore[arg-type]
        patch_size_px,
        local_dims[:2],
        settings.patch_overlap,
    )
    track = initial_global_track_a(
        frames,
        pixel_size_a=pixel_size_a,
        min_resolution_a=settings.min_resolution_a,
        max_resolution_a=settings.max_resolution_a,
        bfactor_a2=settings.bfactor_a2,
    )
    data = patch_spectra(
        frames,
        pixel_size_a=pixel_size_a,
        patch_size_px=patch_size_px,
        overlap=settings.patch_overlap,
        **band,
        frame_offsets_px=track / pixel_size_a,
    )
    gx, gy, gt = local_dims
    fit_local = max(local_dims) > 1 and gt > 1
    # Global-only stages need no overlapping patches, and the coarse ones no fine detail:
    # they use a barely overlapping subset, the coarse stages also only half the frequencies.
    sparse = data.subset(
        sparse_patch_indices(
            tuple(frames.shape[-2:]),  # type: ignore[arg-type]
            patch_size_px=patch_size_px,
            overlap=settings.patch_overlap,
        )
    )
    coarse = sparse.low_pass(2) if sparse.size_px >= 64 else sparse
    costs: dict[str, PatchCost] = {}

    def cost_for(kind: str) -> PatchCost:
        if kind not in costs:
            chosen = {"coarse": coarse, "sparse": sparse, "all": data}[kind]
            costs[kind] = PatchCost(
                chosen, n_frames=n, field_size_a=field_size_a, local_dims=local_dims
            )
        return costs[kind]

    local_free = torch.zeros(2, max(gt - 1, 0), gy, gx, device=frames.device)
    global_nodes = torch.zeros(2, 1, device=frames.device)
    stages = []
    node_plan = global_stage_nodes(n, settings.global_temporal_nodes)
    plan: list[tuple[int, bool, str]] = [
        (nodes, False, "sparse" if nodes == node_plan[-1] else "coarse") for nodes in node_plan
    ]
    if fit_local:
        # Finally global and local together, on all patches unless the barely overlapping
        # subset alone has comfortably more patches than nodes along each axis (large
        # frames such as K3: 4× less work, the grid still well determined).
        sparse_x = len(torch.unique(sparse.centres_a[:, 0]))
        sparse_y = len(torch.unique(sparse.centres_a[:, 1]))
        enough = sparse_x >= gx + 2 and sparse_y >= gy + 2
        plan.append((node_plan[-1], True, "sparse" if enough else "all"))
    for index, (nodes, with_local, kind) in enumerate(plan):
        cost = cost_for(kind)
        started = time.perf_counter()
        if index == 0:
            global_nodes = _nodes_from_track(track, nodes)
        elif nodes != global_nodes.shape[1]:
            global_nodes = resize_cubic_grid(global_nodes, (nodes,))
        global_free = (global_nodes[:, 1:] - global_nodes[:, :1]).clone()
        global_free.requires_grad_(nodes > 1)
        local_param = local_free.clone().requires_grad_(with_local)
        start, end, evaluations = _lbfgs(
            cost, global_free, local_param, max_iterations=settings.max_iterations
        )
        with torch.no_grad():
            zeros = torch.zeros_like(global_free[:, :1])
            global_nodes = torch.cat([zeros, global_free.detach()], dim=1)
            local_free = local_param.detach()
        stages.append(
            StageReport(nodes, with_local, start, end, evaluations, time.perf_counter() - started)
        )
        if progress is not None:
            what = f"global 1×1×{nodes}" + (f" + local {gx}×{gy}×{gt}" if with_local else "")
            progress(f"{what}: cost {end:.5f}", (index + 1) / len(plan))
    assert global_nodes is not None
    first = torch.zeros(2, 1, gy, gx, device=frames.device, dtype=local_free.dtype)
    local_nodes = torch.cat([first, local_free], dim=1)  # frame 0 held at zero
    motion = FrameMotion(global_nodes, local_nodes, field_size_a, n).gauged()
    return MotionFit(
        motion=motion,
        patch_centres_a=data.centres_a,
        patch_size_a=data.size_px * pixel_size_a,
        initial_track_a=track,
        stages=tuple(stages),
        alignment_pixel_size_a=float(pixel_size_a),
    )
