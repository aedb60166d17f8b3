"""Quality figures of a frame series' motion: early motion, drift, local motion.

:func:`motion_summary` reduces any :class:`~cryowarp.preprocess.motion.model.MotionField`
(a fitted :class:`~cryowarp.preprocess.motion.model.FrameMotion` or the simulator's
ground truth) to a few numbers in Å, the ones a user sorts movies by. Shifts follow
docs/conventions.md §4 (where the content has moved to, frame 0 the reference).

The field is sampled on a 9 × 9 grid of positions spanning the whole field,
``(i / 8) · width_a`` and ``(j / 8) · height_a`` for ``i, j = 0 … 8`` (it holds the nodes of
the usual 2-, 3- and 5-node local grids). The motion is split into a global track and a local
field with the model's own ``global_shifts_at``/``local_shifts_at`` when it has them;
otherwise the global track is the mean over the 81 positions and the local field the rest.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Protocol, runtime_checkable

import torch

from cryowarp.preprocess.motion.model import MotionField

__all__ = [
    "SUMMARY_GRID_POINTS",
    "MotionSummary",
    "early_exposure_steps",
    "motion_summary",
    "split_global_local",
    "summary_positions_a",
]

SUMMARY_GRID_POINTS = 9
"""Positions per axis at which the field is sampled."""

_EARLY_FRACTION = 0.2  # Warp: "movement in the first 1/5 of the exposure"


@runtime_checkable
class _SplitMotion(Protocol):
    """A motion field that knows its global and local parts (FrameMotion, MotionTruth)."""

    def global_shifts_at(self, frames: torch.Tensor) -> torch.Tensor: ...  # (m,) -> (m, 2)

    def local_shifts_at(
        self,
        positions_xy_a: torch.Tensor,  # (..., 2)
        frames: torch.Tensor | None = None,  # (m,)
    ) -> torch.Tensor: ...  # (..., m, 2)


@dataclass(frozen=True)
class MotionSummary:
    """Motion quality figures of one movie (all lengths in Å).

    Attributes
    ----------
    n_frames:
        Number of frames.
    early_steps:
        Number of frame-to-frame steps averaged in :attr:`early_motion_a_per_frame`
        (:func:`early_exposure_steps`).
    early_motion_a_per_frame:
        Mean length (Å per frame) of the frame-to-frame displacement of the total motion
        (global + local) over the 9 × 9 positions and over the steps made within the first
        fifth of the exposure — Warp's "movement in the first 1/5 of the exposure".
    total_drift_a:
        Path length of the global track over all frames.
    net_drift_a:
        Distance between the global positions of the first and the last frame.
    max_local_motion_a:
        Largest length of the local displacement over the positions and frames (0 without
        a local field).
    rms_local_motion_a:
        Root mean square of the local displacement length over the positions and frames.
    """

    n_frames: int
    early_steps: int
    early_motion_a_per_frame: float
    total_drift_a: float
    net_drift_a: float
    max_local_motion_a: float
    rms_local_motion_a: float

    def to_dict(self) -> dict[str, float | int]:
        """A JSON-serialisable dictionary of the figures (keys as the attribute names)."""
        return asdict(self)


def early_exposure_steps(
    dose_per_frame_e_per_a2: float | torch.Tensor,  # scalar or (n,)
    n_frames: int,
) -> int:
    """Number of frame steps ``i → i + 1`` that end within the first fifth of the exposure.

    Step ``i → i + 1`` counts when the exposure accumulated up to the end of frame ``i``
    is at most a fifth of the movie's total exposure (pre-exposure not included), so with a
    constant dose per frame it is ``⌊n / 5⌋`` steps; at least one step is always counted
    (for ``n ≥ 2``), none for a single frame.

    Parameters
    ----------
    dose_per_frame_e_per_a2:
        Exposure of every frame (e⁻/Å²), one value for all or one per frame.
    n_frames:
        Number of frames.
    """
    if n_frames < 2:
        return 0
    dose = torch.as_tensor(dose_per_frame_e_per_a2, dtype=torch.float64).flatten().cpu()
    if dose.numel() == 1:
        dose = dose.expand(n_frames)
    if dose.numel() != n_frames:
        raise ValueError(f"need 1 or {n_frames} doses per frame, got {dose.numel()}")
    if bool((dose <= 0).any()):
        raise ValueError("doses per frame must be positive")
    accumulated = torch.cumsum(dose, 0)  # (n,) exposure at the end of each frame
    limit = _EARLY_FRACTION * float(accumulated[-1]) * (1 + 1e-9)
    steps = int((accumulated[:-1] <= limit).sum())
    return max(1, steps)


def summary_positions_a(
    field_size_a: tuple[float, float],
    *,
    points: int = SUMMARY_GRID_POINTS,
    dtype: torch.dtype = torch.float64,
    device: torch.device | str | None = None,
) -> torch.Tensor:  # (points, points, 2)
    """Positions (Å, x then y) of a ``points × points`` grid spanning the field, edges included."""
    u = torch.linspace(0.0, 1.0, points, dtype=dtype, device=device)
    ys, xs = torch.meshgrid(u * field_size_a[1], u * field_size_a[0], indexing="ij")
    return torch.stack([xs, ys], dim=-1)


def motion_summary(
    motion: MotionField,
    *,
    field_size_a: tuple[float, float],
    dose_per_frame_e_per_a2: float | torch.Tensor = 1.0,  # scalar or (n,)
    n_frames: int | None = None,
) -> MotionSummary:
    """Reduce a motion field to its quality figures (:class:`MotionSummary`).

    Parameters
    ----------
    motion:
        Any motion field (``shifts_at`` in Å, docs/conventions.md §4).
    field_size_a:
        ``(width, height)`` of the field in Å.
    dose_per_frame_e_per_a2:
        Exposure per frame in e⁻/Å² (one value, or one per frame); only the shape of the
        exposure matters (which steps fall in its first fifth).
    n_frames:
        Number of frames (default: ``motion.n_frames``).
    """
    n = motion.n_frames if n_frames is None else int(n_frames)
    if n < 1:
        raise ValueError(f"n_frames must be ≥ 1, got {n}")
    if len(field_size_a) != 2 or min(field_size_a) <= 0:
        raise ValueError(f"field_size_a must be two positive lengths in Å, got {field_size_a}")
    positions = summary_positions_a(field_size_a).reshape(-1, 2)  # (p, 2)
    frames = torch.arange(n, dtype=torch.float64)
    total = motion.shifts_at(positions, frames).detach().to("cpu", torch.float64)  # (p, n, 2)
    global_track, local = _split(motion, positions, frames, total)

    steps = early_exposure_steps(dose_per_frame_e_per_a2, n)
    early = 0.0
    if steps > 0:
        step_lengths = (total[:, 1 : steps + 1] - total[:, :steps]).norm(dim=-1)  # (p, steps)
        early = float(step_lengths.mean())
    global_steps = (global_track[1:] - global_track[:-1]).norm(dim=-1)  # (n - 1,)
    local_length = local.norm(dim=-1)  # (p, n)
    return MotionSummary(
        n_frames=n,
        early_steps=steps,
        early_motion_a_per_frame=early,
        total_drift_a=float(global_steps.sum()),
        net_drift_a=float((global_track[-1] - global_track[0]).norm()),
        max_local_motion_a=float(local_length.max()),
        rms_local_motion_a=float(local_length.square().mean().sqrt()),
    )


def split_global_local(
    motion: MotionField,
    positions_xy_a: torch.Tensor,  # (p, 2)
    frames: torch.Tensor,  # (m,)
) -> tuple[torch.Tensor, torch.Tensor]:  # (m, 2), (p, m, 2)
    """The global track (Å) and the local field (Å) at ``positions`` (module docstring)."""
    total = motion.shifts_at(positions_xy_a, frames).detach().to("cpu", torch.float64)
    return _split(motion, positions_xy_a, frames, total)


def _split(
    motion: MotionField,
    positions_xy_a: torch.Tensor,  # (p, 2)
    frames: torch.Tensor,  # (m,)
    total: torch.Tensor,  # (p, m, 2)
) -> tuple[torch.Tensor, torch.Tensor]:  # (m, 2), (p, m, 2)
    if isinstance(motion, _SplitMotion):
        global_track = motion.global_shifts_at(frames).detach().to("cpu", torch.float64)
        local = motion.local_shifts_at(positions_xy_a, frames).detach().to("cpu", torch.float64)
        return global_track, local
    global_track = total.mean(dim=0)
    return global_track, total - global_track
