"""The motion of a frame series sampled on a coarse grid of the output image and split into
a global and a local part, as :func:`~cryowarp.preprocess.motion.average.average_frames`
applies it (the local part by :func:`cryowarp.core.deform.deform_image`).

Positions follow docs/conventions.md §1 and §4: ``(x, y)`` in Å from the centre of pixel
(0, 0); a shift is where the content has moved to, and aligning samples the frame at
``x + s(x)``. Output pixel ``(jx, jy)`` of a Fourier-cropped image lies at
``(jx · pixel_x_a, jy · pixel_y_a)`` (non-centred transforms keep the origin on pixel 0).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from cryowarp.core.deform import cubic_interpolation_matrix
from cryowarp.preprocess.motion.model import MotionField

__all__ = ["CoarseMotion", "coarse_motion"]

#: Nodes per axis of the first grid on which the motion is evaluated; the grid is refined
#: (2n − 1 nodes) until Catmull-Rom interpolation of it predicts the motion at the centres of
#: its cells to within :data:`COARSE_ERROR_PX`, or its nodes are :data:`FINEST_SPACING_PX`
#: apart (motion models are far smoother than that: Warp's local grids have ≲ 10 nodes).
FIRST_NODES = 9
COARSE_ERROR_PX = 0.01
FINEST_SPACING_PX = 16


@dataclass(frozen=True)
class CoarseMotion:
    """The motion of every frame on a coarse grid of output pixels.

    Attributes
    ----------
    global_px:
        ``(n, 2)`` spatially constant part (x, y) in output pixels: the mean over the grid.
    local_px:
        ``(n, gy, gx, 2)`` residual (total − global) in output pixels at the grid nodes, which
        span the output image evenly from pixel 0 to the last pixel along each axis.
    """

    global_px: torch.Tensor  # (n, 2)
    local_px: torch.Tensor  # (n, gy, gx, 2)


def _node_axis(n_px: int, n_nodes: int) -> torch.Tensor:  # (n_nodes,) pixel positions
    return torch.linspace(0.0, n_px - 1.0, n_nodes, dtype=torch.float64)


def _shifts_px_at(
    motion: MotionField,
    ys_px: torch.Tensor,  # (gy,)
    xs_px: torch.Tensor,  # (gx,)
    pixel_size_xy_a: tuple[float, float],
) -> torch.Tensor:  # (n, gy, gx, 2) float64 on the CPU
    scale = torch.tensor(pixel_size_xy_a, dtype=torch.float64)
    yy, xx = torch.meshgrid(ys_px, xs_px, indexing="ij")
    positions_a = (torch.stack([xx, yy], dim=-1) * scale).float()  # (gy, gx, 2)
    shifts_a = motion.shifts_at(positions_a, torch.arange(motion.n_frames))  # (gy, gx, n, 2)
    return (shifts_a.detach().to("cpu", torch.float64) / scale).movedim(2, 0)


def _at_cell_centres(values: torch.Tensor) -> torch.Tensor:  # (n, gy, gx, 2) -> (n, gy-1, gx-1, 2)
    """Catmull-Rom interpolation of a node grid at the centres of its cells."""
    gy, gx = values.shape[1], values.shape[2]
    wy = cubic_interpolation_matrix(2 * gy - 1, gy, dtype=torch.float64)[1::2]
    wx = cubic_interpolation_matrix(2 * gx - 1, gx, dtype=torch.float64)[1::2]
    return torch.einsum("ay,nyxc,bx->nabc", wy, values, wx)


def coarse_motion(
    motion: MotionField,
    *,
    output_shape: tuple[int, int],
    output_pixel_size_xy_a: tuple[float, float],
    device: torch.device,
) -> CoarseMotion:
    """Evaluate ``motion.shifts_at`` on a coarse grid of the output image and split it.

    The grid starts with :data:`FIRST_NODES` nodes per axis and is refined until Catmull-Rom
    interpolation of it (as :func:`cryowarp.core.deform.upsample_field` does) predicts the
    motion at the centres of its cells to within :data:`COARSE_ERROR_PX` output pixels.

    Parameters
    ----------
    motion:
        Any :class:`~cryowarp.preprocess.motion.model.MotionField` (shifts in Å).
    output_shape:
        ``(h', w')`` of the output image.
    output_pixel_size_xy_a:
        Pixel size (Å) of the output along x and along y.
    device:
        Where the returned tensors live.

    Returns
    -------
    CoarseMotion
        Global and local parts in output pixels (float32).
    """
    h, w = output_shape
    finest = (_max_nodes(h), _max_nodes(w))
    nodes = (min(FIRST_NODES, finest[0]), min(FIRST_NODES, finest[1]))
    while True:
        ys, xs = _node_axis(h, nodes[0]), _node_axis(w, nodes[1])
        shifts_px = _shifts_px_at(motion, ys, xs, output_pixel_size_xy_a)
        if nodes == finest:
            break
        centres = _shifts_px_at(
            motion, (ys[1:] + ys[:-1]) / 2, (xs[1:] + xs[:-1]) / 2, output_pixel_size_xy_a
        )
        if float((_at_cell_centres(shifts_px) - centres).abs().amax()) < COARSE_ERROR_PX:
            break
        nodes = (min(2 * nodes[0] - 1, finest[0]), min(2 * nodes[1] - 1, finest[1]))
    global_px = shifts_px.mean(dim=(1, 2))  # (n, 2)
    local_px = shifts_px - global_px[:, None, None, :]
    return CoarseMotion(
        global_px.to(device=device, dtype=torch.float32),
        local_px.to(device=device, dtype=torch.float32),
    )


def _max_nodes(n_px: int) -> int:
    return max(2, math.ceil((n_px - 1) / FINEST_SPACING_PX) + 1)
