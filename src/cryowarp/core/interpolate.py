"""Interpolation of images, volumes and small N-D grids at arbitrary coordinates.

Coordinates are in **pixels** and ordered (x, y[, z[, t]]) in the last dimension, ``x`` running
along the last array axis (docs/conventions.md §1); integer coordinates hit stored samples.

Methods
-------
``"linear"``
    Bi/tri/quadri-linear interpolation (2 taps per axis).
``"cubic"``
    Keys' cubic convolution with ``a = -1/2`` (Catmull-Rom; 4 taps per axis). It passes through
    the samples, reproduces quadratics exactly, needs no prefilter and so stays local, which
    keeps every boundary mode exact. Keys, IEEE Trans. ASSP 29 (1981) 1153.
``"cubic_bspline"``
    Evaluation of a uniform cubic B-spline whose **coefficients** are the given values
    (4 taps per axis, no prefilter: it does not pass through the values). Used by
    :mod:`cryowarp.core.spline_grid`, which computes the coefficients itself.

Out-of-bounds behaviour (``boundary``): ``"zero"`` (samples outside the array are 0),
``"clamp"`` (the edge sample repeats) or ``"periodic"`` (the array wraps around).

Batching: ``values`` is ``(*batch, *grid)``; ``coords_px`` is ``(*batch, *points, ndim)``
where each batch dimension of ``coords_px`` equals that of ``values`` or is 1 (shared points).
The result is ``(*batch, *points)``. Everything is differentiable with respect to the values
and the coordinates; real and complex values are supported.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Literal

import torch

from cryowarp.errors import DimensionMismatchError

__all__ = [
    "Boundary",
    "InterpolationMethod",
    "interpolate_image",
    "interpolate_nd",
    "interpolate_volume",
]

InterpolationMethod = Literal["linear", "cubic", "cubic_bspline"]
Boundary = Literal["zero", "clamp", "periodic"]


def interpolate_image(
    image: torch.Tensor,  # (..., h, w)
    coords_px: torch.Tensor,  # (..., *points, 2) as (x, y)
    *,
    method: InterpolationMethod = "linear",
    boundary: Boundary = "zero",
) -> torch.Tensor:  # (..., *points)
    """Sample images at sub-pixel positions.

    Parameters
    ----------
    image:
        ``(*batch, h, w)`` real or complex.
    coords_px:
        ``(*batch, *points, 2)`` positions (x, y) in pixels; batch dimensions may be 1.
    method, boundary:
        See the module docstring.

    Returns
    -------
    torch.Tensor
        ``(*batch, *points)`` interpolated values, dtype of ``image``.
    """
    return interpolate_nd(image, coords_px, method=method, boundary=boundary)


def interpolate_volume(
    volume: torch.Tensor,  # (..., d, h, w)
    coords_px: torch.Tensor,  # (..., *points, 3) as (x, y, z)
    *,
    method: InterpolationMethod = "linear",
    boundary: Boundary = "zero",
) -> torch.Tensor:  # (..., *points)
    """Sample volumes at sub-voxel positions; as :func:`interpolate_image` with (x, y, z)."""
    if coords_px.shape[-1] != 3:
        raise DimensionMismatchError(
            None, f"volume coordinates need 3 components (x, y, z), got {coords_px.shape[-1]}"
        )
    return interpolate_nd(volume, coords_px, method=method, boundary=boundary)


def interpolate_nd(
    values: torch.Tensor,  # (*batch, *grid)
    coords_px: torch.Tensor,  # (*batch, *points, ndim)
    *,
    method: InterpolationMethod = "linear",
    boundary: Boundary = "zero",
) -> torch.Tensor:  # (*batch, *points)
    """Sample an ``ndim``-dimensional array (``ndim = coords_px.shape[-1]``) at pixel positions.

    The grid is the last ``ndim`` axes of ``values``; component ``j`` of a coordinate indexes
    array axis ``-1 - j`` (x → last axis). See the module docstring for methods, boundaries and
    batching.
    """
    ndim = coords_px.shape[-1]
    kernel, n_taps = _kernel(method)
    if boundary not in ("zero", "clamp", "periodic"):
        raise ValueError(f"boundary must be 'zero', 'clamp' or 'periodic', got {boundary!r}")
    if values.ndim < ndim or ndim < 1:
        raise DimensionMismatchError(
            None, f"cannot sample {ndim}-D coordinates in an array of shape {tuple(values.shape)}"
        )
    if coords_px.is_complex() or not coords_px.is_floating_point():
        raise DimensionMismatchError(None, "coordinates must be a real floating-point tensor")
    grid = tuple(values.shape[values.ndim - ndim :])
    batch = tuple(values.shape[: values.ndim - ndim])
    coord_batch = tuple(coords_px.shape[: len(batch)])
    if coords_px.ndim - 1 < len(batch) or any(
        c not in (1, b) for c, b in zip(coord_batch, batch, strict=True)
    ):
        raise DimensionMismatchError(
            None,
            f"coordinates of shape {tuple(coords_px.shape)} do not match the batch "
            f"{batch} of values {tuple(values.shape)}; expected (*batch, *points, {ndim})",
        )
    points = tuple(coords_px.shape[len(batch) : -1])
    n_batch = math.prod(batch)
    shared = all(c == 1 for c in coord_batch)
    if shared:
        coords = coords_px.reshape(1, -1, ndim)
    else:
        coords = coords_px.expand(*batch, *points, ndim).reshape(n_batch, -1, ndim)
    flat_values = values.reshape(n_batch, -1)
    weight_dtype = values.real.dtype if values.is_floating_point() or values.is_complex() else None

    # Per coordinate component j (array axis -1-j): flat-index contributions (n_taps, Bc, P)
    # and weights (n_taps, Bc, P), tap-major so that each tap is a contiguous slice.
    axis_offsets: list[torch.Tensor] = []
    axis_weights: list[torch.Tensor] = []
    stride = 1
    for j in range(ndim):
        size = grid[ndim - 1 - j]
        c = coords[..., j]
        base = torch.floor(c)
        taps = torch.arange(n_taps, device=c.device) - (n_taps // 2 - 1)
        idx = base.long()[..., None] + taps
        w = kernel(c - base)
        if weight_dtype is not None:
            w = w.to(weight_dtype)
        if boundary == "periodic":
            idx = torch.remainder(idx, size)
        else:
            if boundary == "zero":
                w = w * ((idx >= 0) & (idx < size)).to(w.dtype)
            idx = idx.clamp(0, size - 1)
        axis_offsets.append((idx * stride).movedim(-1, 0).contiguous())
        axis_weights.append(w.movedim(-1, 0).contiguous())
        stride *= size

    def innermost(flat: torch.Tensor) -> torch.Tensor:  # (Bc, P) -> (B, P)
        # All taps along x at once: gather (B, n_taps, P) and contract with the x weights.
        idx = flat + axis_offsets[0]  # (n_taps, Bc, P)
        if shared:
            sampled = flat_values[:, idx[:, 0]]
        else:
            sampled = torch.gather(flat_values, 1, idx.transpose(0, 1).reshape(n_batch, -1))
            sampled = sampled.reshape(n_batch, n_taps, -1)
        return (sampled * axis_weights[0].transpose(0, 1)).sum(dim=1)

    def accumulate(j: int, flat: torch.Tensor, weight: torch.Tensor | None) -> torch.Tensor:
        # Sum over the taps of components j, j-1, …, 0 given the partial index and weight.
        if j == 0:
            inner = innermost(flat)
            return inner if weight is None else inner * weight
        total: torch.Tensor | None = None
        for t in range(n_taps):
            w = axis_weights[j][t] if weight is None else weight * axis_weights[j][t]
            part = accumulate(j - 1, flat + axis_offsets[j][t], w)
            total = part if total is None else total + part
        assert total is not None
        return total

    zero = torch.zeros((), dtype=torch.long, device=coords.device)
    result = accumulate(ndim - 1, zero, None)
    return result.reshape(*batch, *points)


def _kernel(method: str) -> tuple[Callable[[torch.Tensor], torch.Tensor], int]:
    """Weights ``(..., n_taps)`` of taps at ``floor(c) - n_taps//2 + 1 …`` for fraction ``u``."""
    if method == "linear":
        return _linear_weights, 2
    if method == "cubic":
        return _keys_weights, 4
    if method == "cubic_bspline":
        return _bspline_weights, 4
    raise ValueError(f"method must be 'linear', 'cubic' or 'cubic_bspline', got {method!r}")


def _linear_weights(u: torch.Tensor) -> torch.Tensor:
    return torch.stack([1 - u, u], dim=-1)


def _keys_weights(u: torch.Tensor) -> torch.Tensor:
    # Keys' kernel with a = -1/2 at distances 1+u, u, 1-u, 2-u from the taps.
    u2 = u * u
    u3 = u2 * u
    w0 = 0.5 * (-u3 + 2 * u2 - u)
    w1 = 0.5 * (3 * u3 - 5 * u2 + 2)
    w2 = 0.5 * (-3 * u3 + 4 * u2 + u)
    w3 = 0.5 * (u3 - u2)
    return torch.stack([w0, w1, w2, w3], dim=-1)


def _bspline_weights(u: torch.Tensor) -> torch.Tensor:
    v = 1 - u
    u2 = u * u
    u3 = u2 * u
    w0 = v * v * v / 6
    w1 = (3 * u3 - 6 * u2 + 4) / 6
    w2 = (-3 * u3 + 3 * u2 + 3 * u + 1) / 6
    w3 = u3 / 6
    return torch.stack([w0, w1, w2, w3], dim=-1)
