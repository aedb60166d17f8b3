"""Known specimen motion for simulated movies: global stage drift plus local beam-induced motion.

The motion of frame ``t`` at position ``(x, y)`` (Å from the image's top-left corner, the centre of
pixel (0, 0) at 0) is ``global(t) + local(x, y, t)``: where the specimen content that sat at
``(x, y)`` in the reference has moved to (docs/conventions.md §4; aligning applies the negative).

**Reference: frame 0.** Both parts are zero at frame 0, so every shift is relative to the
specimen as it was in the first frame, like the motion tables of MotionCor2 and RELION
(``rlnMicrographShiftX/Y`` start at 0). Summing frames shifted back by ``−shifts_at`` therefore
reproduces the geometry of frame 0.

* **Global drift** (``global_shifts_a``, ``(n_frames, 2)``): a smooth path whose speed decays
  exponentially over the exposure (most stage and beam-induced drift happens in the first
  frames) and whose direction turns slowly, plus independent per-frame jitter.
* **Local motion** (``local_grid_a``, ``(2, t, gy, gx)``): the x and y displacement (Å) on a
  natural cubic spline grid of Warp dims ``(X, Y, T)`` (docs/conventions.md §12, evaluated by
  :func:`cryowarp.core.spline_grid.evaluate_cubic_grid`). Normalised coordinates are
  ``x / width_a``, ``y / height_a`` and ``frame / (n_frames − 1)``; the field size is the
  image size in Å (``w × pixel size``, ``h × pixel size``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch

from cryowarp.core.spline_grid import evaluate_cubic_grid

__all__ = ["MOTION_TRUTH_VERSION", "MotionTruth", "random_motion"]

MOTION_TRUTH_VERSION = 1
"""Version of the dictionary written by :meth:`MotionTruth.to_dict`."""

_DENSE_SAMPLES = 33  # per axis, to measure the RMS of a local displacement field


@dataclass(frozen=True)
class MotionTruth:
    """The exact motion of a simulated movie.

    Attributes
    ----------
    global_shifts_a:
        ``(n_frames, 2)`` global shift (x, y) in Å of every frame; row 0 is ``(0, 0)``.
    local_grid_a:
        ``(2, t, gy, gx)`` control values (Å) of the local x and y displacement grids.
    field_size_a:
        ``(width, height)`` of the field in Å; the spline grid spans ``[0, width] × [0, height]``.
    """

    global_shifts_a: torch.Tensor  # (n_frames, 2)
    local_grid_a: torch.Tensor  # (2, t, gy, gx)
    field_size_a: tuple[float, float]

    def __post_init__(self) -> None:
        g, loc = self.global_shifts_a, self.local_grid_a
        if g.ndim != 2 or g.shape[-1] != 2 or g.shape[0] < 1:
            raise ValueError(f"global_shifts_a must be (n_frames, 2), got {tuple(g.shape)}")
        if loc.ndim != 4 or loc.shape[0] != 2:
            raise ValueError(f"local_grid_a must be (2, t, gy, gx), got {tuple(loc.shape)}")
        if len(self.field_size_a) != 2 or min(self.field_size_a) <= 0:
            raise ValueError(f"field_size_a must be two positive lengths, got {self.field_size_a}")

    @property
    def n_frames(self) -> int:
        """Number of frames."""
        return int(self.global_shifts_a.shape[0])

    @property
    def local_grid_dims(self) -> tuple[int, int, int]:
        """Node counts of the local grid in Warp order ``(X, Y, T)``."""
        _, t, gy, gx = self.local_grid_a.shape
        return int(gx), int(gy), int(t)

    def global_shifts_at(
        self,
        frames: torch.Tensor,  # (m,) frame indices, may be fractional
    ) -> torch.Tensor:  # (m, 2)
        """Global shift (Å) at ``frames``, linearly interpolated between whole frames."""
        shifts = self.global_shifts_a.to(device=frames.device)
        f = frames.to(shifts.dtype).clamp(0, self.n_frames - 1)
        lower = f.floor().long().clamp(max=self.n_frames - 1)
        upper = (lower + 1).clamp(max=self.n_frames - 1)
        w = (f - lower.to(f.dtype))[:, None]
        return shifts[lower] * (1 - w) + shifts[upper] * w

    def local_shifts_at(
        self,
        positions_xy_a: torch.Tensor,  # (..., 2)
        frames: torch.Tensor | None = None,  # (m,)
    ) -> torch.Tensor:  # (..., m, 2)
        """Local displacement (Å) alone at each position and frame (all frames by default)."""
        frames = self._frames(positions_xy_a, frames)
        grid = self.local_grid_a.to(device=positions_xy_a.device)
        dtype = grid.dtype
        width_a, height_a = self.field_size_a
        xy = positions_xy_a.to(dtype) / torch.tensor(
            [width_a, height_a], dtype=dtype, device=grid.device
        )
        t = frames.to(dtype) / max(1, self.n_frames - 1)
        batch = xy.shape[:-1]
        coords = torch.cat(
            [
                xy[..., None, :].expand(*batch, t.shape[0], 2),
                t.expand(*batch, t.shape[0])[..., None],
            ],
            dim=-1,
        )  # (..., m, 3) normalised (x, y, t)
        values = evaluate_cubic_grid(grid, coords[None])  # (2, ..., m)
        return values.movedim(0, -1)

    def shifts_at(
        self,
        positions_xy_a: torch.Tensor,  # (..., 2)
        frames: torch.Tensor | None = None,  # (m,)
    ) -> torch.Tensor:  # (..., m, 2)
        """Total shift (global + local) in Å at each position and frame.

        Parameters
        ----------
        positions_xy_a:
            ``(..., 2)`` positions (x, y) in Å from the image's top-left corner (pixel (0, 0)
            centre at 0).
        frames:
            ``(m,)`` frame indices (fractional values interpolate); all frames when ``None``.

        Returns
        -------
        torch.Tensor
            ``(..., m, 2)`` shifts (x, y) in Å: where the content at each position has moved to
            (docs/conventions.md §4), relative to frame 0.
        """
        frames = self._frames(positions_xy_a, frames)
        local = self.local_shifts_at(positions_xy_a, frames)
        return local + self.global_shifts_at(frames).to(local.dtype)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dictionary; :meth:`from_dict` restores the object exactly."""
        return {
            "version": MOTION_TRUTH_VERSION,
            "convention": (
                "shifts in Angstrom are where content has moved to (docs/conventions.md §4), "
                "relative to frame 0; total = global(frame) + local cubic spline grid "
                "(Warp dims X, Y, T; values stored (component, t, y, x)) evaluated at "
                "(x / width_a, y / height_a, frame / (n_frames - 1))"
            ),
            "dtype": str(self.global_shifts_a.dtype).removeprefix("torch."),
            "field_size_a": [float(v) for v in self.field_size_a],
            "global_shifts_a": self.global_shifts_a.detach().cpu().tolist(),
            "local_grid_dims_xyt": list(self.local_grid_dims),
            "local_grid_a": self.local_grid_a.detach().cpu().tolist(),
        }

    @classmethod
    def from_dict(
        cls, data: dict[str, Any], *, device: torch.device | str | None = None
    ) -> MotionTruth:
        """Inverse of :meth:`to_dict`."""
        version = data.get("version")
        if version != MOTION_TRUTH_VERSION:
            raise ValueError(f"unsupported motion ground-truth version {version!r}")
        dtype = getattr(torch, str(data.get("dtype", "float32")))
        width_a, height_a = (float(v) for v in data["field_size_a"])
        return cls(
            global_shifts_a=torch.tensor(data["global_shifts_a"], dtype=dtype, device=device),
            local_grid_a=torch.tensor(data["local_grid_a"], dtype=dtype, device=device),
            field_size_a=(width_a, height_a),
        )

    def _frames(self, like: torch.Tensor, frames: torch.Tensor | None) -> torch.Tensor:
        if frames is None:
            return torch.arange(self.n_frames, device=like.device)
        if frames.ndim != 1:
            raise ValueError(f"frames must be 1-D, got shape {tuple(frames.shape)}")
        return frames.to(like.device)


def random_motion(
    n_frames: int,
    *,
    field_size_a: tuple[float, float],
    generator: torch.Generator,
    drift_a: float = 20.0,
    jitter_a: float = 0.5,
    local_amplitude_a: float = 2.0,
    local_grid_shape: tuple[int, int, int] = (5, 5, 3),
    decay_fraction: float = 0.25,
    max_turn_deg: float = 60.0,
    dtype: torch.dtype = torch.float32,
) -> MotionTruth:
    """Random global drift and local beam-induced motion, deterministic given ``generator``.

    Parameters
    ----------
    n_frames:
        Number of frames of the exposure.
    field_size_a:
        ``(width, height)`` of the field in Å.
    generator:
        Source of randomness; tensors are created on its device.
    drift_a:
        Path length (Å) of the smooth drift over the whole exposure.
    jitter_a:
        RMS length (Å) of the independent per-frame jitter added to the drift (not at frame 0).
    local_amplitude_a:
        RMS length (Å) over the field of the local displacement at the last frame; the local
        field has zero mean over the field at every frame.
    local_grid_shape:
        Node counts of the local grid in Warp order ``(X, Y, T)``; ``T >= 2``.
    decay_fraction:
        Decay time of the drift speed, as a fraction of the exposure: the speed is proportional
        to ``exp(−u / decay_fraction)`` at exposure fraction ``u = frame / (n_frames − 1)``.
    max_turn_deg:
        The drift direction turns by a random angle in ``±max_turn_deg`` over the exposure.
    dtype:
        Floating dtype of the returned tensors.

    Returns
    -------
    MotionTruth
        Shifts relative to frame 0 (see the module docstring).
    """
    gx, gy, gt = (int(n) for n in local_grid_shape)
    if n_frames < 1:
        raise ValueError(f"n_frames must be at least 1, got {n_frames}")
    if min(gx, gy) < 1 or gt < 2:
        raise ValueError(
            f"local_grid_shape (X, Y, T) needs X, Y >= 1 and T >= 2, got {local_grid_shape}"
        )
    if decay_fraction <= 0:
        raise ValueError(f"decay_fraction must be positive, got {decay_fraction}")
    device = generator.device
    kw: dict[str, Any] = {"device": device, "dtype": dtype, "generator": generator}

    # Global drift: increments of a decaying speed along a slowly turning direction.
    u = torch.linspace(0.0, 1.0, n_frames, device=device, dtype=torch.float64)
    progress = (1 - torch.exp(-u / decay_fraction)) / (1 - math.exp(-1 / decay_fraction))
    start_rad = float(torch.rand((), **kw)) * 2 * math.pi
    turn_rad = math.radians(max_turn_deg) * (2 * float(torch.rand((), **kw)) - 1)
    steps = torch.diff(progress) * drift_a  # (n_frames - 1,)
    direction = start_rad + turn_rad * (u[1:] + u[:-1]) / 2
    increments = torch.stack([torch.cos(direction), torch.sin(direction)], -1) * steps[:, None]
    drift = torch.cat([torch.zeros(1, 2, device=device, dtype=torch.float64), increments])
    drift = drift.cumsum(0).to(dtype)
    jitter = torch.randn((n_frames, 2), **kw) * (jitter_a / math.sqrt(2))
    jitter[0] = 0
    global_shifts = drift + jitter

    # Local motion: a random spatial field of nodes, growing in time like the drift.
    field = _zero_mean_unit_rms_field(torch.randn((2, gy, gx), **kw)) * local_amplitude_a
    t_nodes = torch.linspace(0.0, 1.0, gt, device=device, dtype=torch.float64)
    growth = (1 - torch.exp(-t_nodes / decay_fraction)) / (1 - math.exp(-1 / decay_fraction))
    local = field[:, None] * growth.to(dtype)[None, :, None, None]  # (2, t, gy, gx)

    width_a, height_a = (float(v) for v in field_size_a)
    return MotionTruth(global_shifts, local, (width_a, height_a))


def _zero_mean_unit_rms_field(
    nodes: torch.Tensor,  # (2, gy, gx)
) -> torch.Tensor:  # (2, gy, gx)
    """Rescale node values so that the spline surface has zero mean and RMS vector length 1.

    Measured on a dense grid over the field; a constant added to the nodes adds the same
    constant to the natural spline surface, so removing the surface mean is exact.
    """
    samples = torch.linspace(0.0, 1.0, _DENSE_SAMPLES, device=nodes.device, dtype=nodes.dtype)
    yy, xx = torch.meshgrid(samples, samples, indexing="ij")
    coords = torch.stack([xx, yy], -1)[None]  # (1, s, s, 2)
    surface = evaluate_cubic_grid(nodes, coords)  # (2, s, s)
    nodes = nodes - surface.mean(dim=(-2, -1))[:, None, None]
    surface = surface - surface.mean(dim=(-2, -1), keepdim=True)
    rms = float(surface.square().sum(0).mean().sqrt())
    return nodes / rms if rms > 0 else torch.zeros_like(nodes)
