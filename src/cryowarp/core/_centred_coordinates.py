"""Voxel coordinates relative to the box centre ``N // 2`` (docs/conventions.md §1-§2).

Shared by masks, symmetrisation, the gridding kernel and the real-space reference projector.
"""

from __future__ import annotations

import torch

__all__ = ["centred_axes", "centred_grid"]


def centred_axes(
    shape: tuple[int, ...],
    *,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> list[torch.Tensor]:
    """Per-axis coordinates ``i − n // 2`` in pixels, in array order, each shaped to broadcast
    against ``shape`` (axis ``a`` has size ``shape[a]``, the others 1)."""
    axes = []
    for axis, n in enumerate(shape):
        c = torch.arange(n, device=device, dtype=dtype) - n // 2
        view = [1] * len(shape)
        view[axis] = n
        axes.append(c.reshape(view))
    return axes


def centred_grid(
    shape: tuple[int, ...],
    *,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """``(*shape, ndim)`` coordinates of every voxel relative to the centre, in pixels, with
    the vector components ordered (x, y[, z])."""
    axes = [c.expand(shape) for c in centred_axes(shape, device=device, dtype=dtype)]
    return torch.stack(axes[::-1], dim=-1)
