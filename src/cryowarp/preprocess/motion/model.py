"""Warp's motion model of a frame series: a global 1×1×T grid plus a local X×Y×T grid.

The shift of the specimen content at image position ``(x, y)`` (Å from the centre of pixel
(0, 0)) in frame ``f`` is ``global(f) + local(x, y, f)`` (Å): where that content has moved to
(docs/conventions.md §4; aligning applies the negative). Both parts are natural cubic spline
grids (§12) evaluated at normalised coordinates ``x / width_a``, ``y / height_a`` and
``f / (n_frames − 1)``. Fitted models are gauged so that frame 0 is the reference (every shift
is zero at frame 0, as in RELION's motion tables) and, where the grids allow it, the local
field has zero mean over the field at every temporal node;
:class:`~cryowarp.simulate.motion.MotionTruth` uses the same definition, so a fitted model and
the ground truth are interchangeable wherever a ``shifts_at`` is needed (e.g.
:func:`cryowarp.preprocess.motion.average.average_frames`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import torch

from cryowarp.core.spline_grid import evaluate_cubic_grid

__all__ = ["MOTION_MODEL_VERSION", "FrameMotion", "MotionField", "surface_mean_weights"]

MOTION_MODEL_VERSION = 1


class MotionField(Protocol):
    """Anything that gives the shift (Å) of the content at positions and frames."""

    @property
    def n_frames(self) -> int: ...

    def shifts_at(
        self,
        positions_xy_a: torch.Tensor,  # (..., 2)
        frames: torch.Tensor | None = None,  # (m,)
    ) -> torch.Tensor: ...  # (..., m, 2)


@dataclass(frozen=True)
class FrameMotion:
    """Global and local motion of one frame series (module docstring for the definition).

    Attributes
    ----------
    global_nodes_a:
        ``(2, T)`` x and y control values (Å) of the global grid (Warp dims 1×1×T).
    local_nodes_a:
        ``(2, t, gy, gx)`` x and y control values (Å) of the local grid (Warp dims X×Y×T).
    field_size_a:
        ``(width, height)`` of the field in Å.
    n_frames:
        Number of frames of the series.
    """

    global_nodes_a: torch.Tensor  # (2, T)
    local_nodes_a: torch.Tensor  # (2, t, gy, gx)
    field_size_a: tuple[float, float]
    n_frames: int

    def __post_init__(self) -> None:
        g, loc = self.global_nodes_a, self.local_nodes_a
        if g.ndim != 2 or g.shape[0] != 2:
            raise ValueError(f"global_nodes_a must be (2, T), got {tuple(g.shape)}")
        if loc.ndim != 4 or loc.shape[0] != 2:
            raise ValueError(f"local_nodes_a must be (2, t, gy, gx), got {tuple(loc.shape)}")
        if self.n_frames < 1:
            raise ValueError(f"n_frames must be ≥ 1, got {self.n_frames}")

    @classmethod
    def zeros(
        cls,
        n_frames: int,
        *,
        field_size_a: tuple[float, float],
        global_nodes: int,
        local_grid: tuple[int, int, int] = (1, 1, 1),
        dtype: torch.dtype = torch.float32,
        device: torch.device | str | None = None,
    ) -> FrameMotion:
        """No motion, with ``global_nodes`` temporal nodes and a local grid of Warp dims
        ``local_grid = (X, Y, T)``."""
        gx, gy, gt = local_grid
        return cls(
            torch.zeros(2, global_nodes, dtype=dtype, device=device),
            torch.zeros(2, gt, gy, gx, dtype=dtype, device=device),
            (float(field_size_a[0]), float(field_size_a[1])),
            int(n_frames),
        )

    @property
    def global_grid_dims(self) -> tuple[int, int, int]:
        """Warp dims ``(1, 1, T)`` of the global grid."""
        return 1, 1, int(self.global_nodes_a.shape[1])

    @property
    def local_grid_dims(self) -> tuple[int, int, int]:
        """Warp dims ``(X, Y, T)`` of the local grid."""
        _, t, gy, gx = self.local_nodes_a.shape
        return int(gx), int(gy), int(t)

    def frame_coordinates(self, frames: torch.Tensor) -> torch.Tensor:  # (m,) in [0, 1]
        """Normalised temporal coordinate ``f / (n_frames − 1)`` of frame indices."""
        return frames.to(self.global_nodes_a.dtype) / max(1, self.n_frames - 1)

    def global_shifts_at(
        self,
        frames: torch.Tensor | None = None,  # (m,) frame indices, may be fractional
    ) -> torch.Tensor:  # (m, 2)
        """Global shift (Å) of every frame (all frames by default)."""
        frames = self._frames(frames)
        t = self.frame_coordinates(frames)[None, :, None]  # (1, m, 1)
        return evaluate_cubic_grid(self.global_nodes_a, t).T

    def local_shifts_at(
        self,
        positions_xy_a: torch.Tensor,  # (..., 2)
        frames: torch.Tensor | None = None,  # (m,)
    ) -> torch.Tensor:  # (..., m, 2)
        """Local displacement (Å) alone at each position and frame (all frames by default)."""
        frames = self._frames(frames)
        grid = self.local_nodes_a
        dtype = grid.dtype
        size = torch.tensor(self.field_size_a, dtype=dtype, device=grid.device)
        xy = positions_xy_a.to(device=grid.device, dtype=dtype) / size
        t = self.frame_coordinates(frames)
        batch = xy.shape[:-1]
        m = t.shape[0]
        coords = torch.cat(
            [xy[..., None, :].expand(*batch, m, 2), t.expand(*batch, m)[..., None]], dim=-1
        )  # (..., m, 3)
        return evaluate_cubic_grid(grid, coords[None]).movedim(0, -1)

    def shifts_at(
        self,
        positions_xy_a: torch.Tensor,  # (..., 2)
        frames: torch.Tensor | None = None,  # (m,)
    ) -> torch.Tensor:  # (..., m, 2)
        """Total shift (global + local) in Å at each position and frame (module docstring)."""
        frames = self._frames(frames)
        local = self.local_shifts_at(positions_xy_a, frames)
        return local + self.global_shifts_at(frames)

    def gauged(self) -> FrameMotion:
        """The same motion with frame 0 as the reference and a zero-mean local field.

        The fit cannot see a shift that is constant over time (it compares frames with each
        other), so subtracting the value at frame 0 from every temporal node of each grid
        changes nothing observable; the spatial mean of the local field, also per temporal
        node, is moved into the global grid when both grids have the same temporal nodes
        (otherwise it stays in the local grid). The total motion is unchanged.
        """
        # The splines pass through their nodes and frame 0 is the first temporal node.
        g = self.global_nodes_a - self.global_nodes_a[:, :1]  # (2, T)
        local = self.local_nodes_a
        if max(self.local_grid_dims) > 1:
            local = local - local[:, :1]
            weights = surface_mean_weights(*local.shape[-2:], device=local.device)
            mean = (local * weights.to(local.dtype)).sum(dim=(-2, -1))  # (2, t)
            if mean.shape[1] == g.shape[1]:
                local = local - mean[:, :, None, None]
                g = g + mean
        else:
            local = torch.zeros_like(local)
        return FrameMotion(g, local, self.field_size_a, self.n_frames)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dictionary; :meth:`from_dict` restores the model exactly."""
        return {
            "version": MOTION_MODEL_VERSION,
            "convention": (
                "shift (Angstrom) = where the content has moved to (docs/conventions.md §4), "
                "relative to frame 0; total = global(frame) + local(x, y, frame); natural cubic "
                "spline grids evaluated at (x / width_a, y / height_a, frame / (n_frames - 1))"
            ),
            "n_frames": self.n_frames,
            "field_size_a": [float(v) for v in self.field_size_a],
            "global_grid_dims_xyt": list(self.global_grid_dims),
            "global_nodes_a": self.global_nodes_a.detach().cpu().double().tolist(),
            "local_grid_dims_xyt": list(self.local_grid_dims),
            "local_nodes_a": self.local_nodes_a.detach().cpu().double().tolist(),
        }

    @classmethod
    def from_dict(
        cls, data: dict[str, Any], *, device: torch.device | str | None = None
    ) -> FrameMotion:
        """Inverse of :meth:`to_dict`."""
        if data.get("version") != MOTION_MODEL_VERSION:
            raise ValueError(f"unsupported motion model version {data.get('version')!r}")
        width_a, height_a = (float(v) for v in data["field_size_a"])
        return cls(
            torch.tensor(data["global_nodes_a"], dtype=torch.float64, device=device).float(),
            torch.tensor(data["local_nodes_a"], dtype=torch.float64, device=device).float(),
            (width_a, height_a),
            int(data["n_frames"]),
        )

    def _frames(self, frames: torch.Tensor | None) -> torch.Tensor:
        device = self.global_nodes_a.device
        if frames is None:
            return torch.arange(self.n_frames, device=device)
        if frames.ndim != 1:
            raise ValueError(f"frames must be 1-D, got shape {tuple(frames.shape)}")
        return frames.to(device)


def surface_mean_weights(
    gy: int, gx: int, *, device: torch.device | str | None = None, samples: int = 64
) -> torch.Tensor:  # (gy, gx)
    """Weights ``w`` with ``Σ w · nodes`` = the mean over the field of the natural cubic
    spline surface through ``nodes`` (the surface is linear in its nodes; midpoint rule)."""
    basis = torch.eye(gy * gx, dtype=torch.float64, device=device).reshape(-1, gy, gx)
    centres = (torch.arange(samples, dtype=torch.float64, device=device) + 0.5) / samples
    ys = centres if gy > 1 else centres[:1] * 0 + 0.5
    xs = centres if gx > 1 else centres[:1] * 0 + 0.5
    yy, xx = torch.meshgrid(ys, xs, indexing="ij")
    coords = torch.stack([xx, yy], dim=-1)  # (sy, sx, 2) normalised (x, y)
    surfaces = evaluate_cubic_grid(basis, coords[None].expand(gy * gx, *coords.shape))
    return surfaces.mean(dim=(-2, -1)).reshape(gy, gx).float()
