"""Checks shared by the node grids of :mod:`cryowarp.core.linear_grid` and
:mod:`cryowarp.core.spline_grid`: normalised coordinates (x, y, z, t), values in array order
``(…, t, z, y, x)`` (docs/conventions.md §1)."""

from __future__ import annotations

import torch

from cryowarp.errors import DimensionMismatchError

__all__ = ["grid_ndim", "initial_values", "node_counts"]


def grid_ndim(values: torch.Tensor, coords: torch.Tensor) -> int:
    """Number of grid dimensions, ``coords.shape[-1]`` (1-4), checked against ``values``."""
    ndim = coords.shape[-1] if coords.ndim >= 1 else 0
    if not 1 <= ndim <= 4 or values.ndim < ndim:
        raise DimensionMismatchError(
            None,
            f"grid coordinates of shape {tuple(coords.shape)} need 1-4 components and values "
            f"with at least that many axes, got values of shape {tuple(values.shape)}",
        )
    return ndim


def node_counts(values: torch.Tensor, ndim: int, like: torch.Tensor) -> torch.Tensor:
    """``(ndim,)`` node counts of the last ``ndim`` axes of ``values`` ordered (x, y, z, t), on
    the device and in the dtype of ``like``."""
    grid = values.shape[values.ndim - ndim :]
    return torch.tensor(
        [grid[ndim - 1 - j] for j in range(ndim)], device=like.device, dtype=like.dtype
    )


def initial_values(
    dims: tuple[int, ...],
    values: torch.Tensor | None,  # reversed(dims)
    *,
    device: torch.device | str | None,
    dtype: torch.dtype,
) -> torch.Tensor:  # reversed(dims)
    """A detached copy of ``values`` checked to have shape ``reversed(dims)``, or zeros."""
    shape = tuple(reversed(dims))
    if values is None:
        return torch.zeros(shape, device=device, dtype=dtype)
    if tuple(values.shape) != shape:
        raise DimensionMismatchError(
            None, f"values of shape {tuple(values.shape)} do not match dims {dims}"
        )
    return values.detach().clone()
