"""Real-space masks with raised-cosine soft edges: sphere, cylinder, box, and shaped masks.

Every mask is 1 inside, 0 outside and, across a soft edge of width ``w`` pixels that starts
at the inner boundary and runs outwards, ``0.5 · (1 + cos(π t / w))`` at distance ``t`` past
the boundary (so exactly 0.5 at ``t = w/2``), as RELION's masks.  Masks are centred on
index ``N // 2`` of every axis (``docs/conventions.md`` §2); arrays are indexed
``(z, y, x)``, sizes and half-widths given per axis in ``(x, y, z)`` order (§1).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from scipy import ndimage

from cryowarp.core._centred_coordinates import centred_axes
from cryowarp.errors import DimensionMismatchError, InvalidValuesError

__all__ = [
    "box_mask",
    "cylindrical_mask",
    "raised_cosine_edge",
    "shaped_mask",
    "spherical_mask",
]


def raised_cosine_edge(distance_px: torch.Tensor, soft_edge_px: float) -> torch.Tensor:
    """Mask value at a signed distance past a mask boundary.

    Parameters
    ----------
    distance_px:
        ``(...)`` distance in pixels beyond the boundary (≤ 0 inside).
    soft_edge_px:
        Width of the edge in pixels; 0 gives a hard edge (1 where ``distance_px ≤ 0``).

    Returns
    -------
    torch.Tensor
        ``(...)`` 1 inside, ``0.5 · (1 + cos(π d / w))`` for ``0 < d < w``, 0 beyond.
    """
    if soft_edge_px < 0 or not math.isfinite(soft_edge_px):
        raise InvalidValuesError(None, f"soft edge width must be ≥ 0 pixels, got {soft_edge_px}")
    inside = (distance_px <= 0).to(distance_px.dtype)
    if soft_edge_px == 0:
        return inside
    t = (distance_px / soft_edge_px).clamp(0, 1)
    return 0.5 * (1 + torch.cos(math.pi * t))


def _check_shape(shape: Sequence[int], dims: tuple[int, ...]) -> tuple[int, ...]:
    shape = tuple(int(n) for n in shape)
    if len(shape) not in dims or any(n < 1 for n in shape):
        raise DimensionMismatchError(
            None, f"mask shape must have {' or '.join(map(str, dims))} positive sizes, got {shape}"
        )
    return shape


def spherical_mask(
    shape: Sequence[int],
    radius_px: float,
    *,
    soft_edge_px: float = 0.0,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Circular (2-D) or spherical (3-D) mask about the box centre.

    Parameters
    ----------
    shape:
        ``(h, w)`` or ``(d, h, w)``.
    radius_px:
        Radius in pixels of the region where the mask is 1.
    soft_edge_px:
        Width in pixels of the raised-cosine edge outside ``radius_px``.
    device, dtype:
        Where and how to create the mask.

    Returns
    -------
    torch.Tensor
        ``shape``: 1 for ``r ≤ radius_px``, 0.5 at ``radius_px + soft_edge_px / 2``, 0 beyond
        ``radius_px + soft_edge_px``.
    """
    shape = _check_shape(shape, (2, 3))
    r2 = torch.zeros(shape, device=device, dtype=dtype)
    for c in centred_axes(shape, device=device, dtype=dtype):
        r2 = r2 + c * c
    return raised_cosine_edge(r2.sqrt() - radius_px, soft_edge_px)


def cylindrical_mask(
    shape: Sequence[int],
    radius_px: float,
    *,
    length_px: float | None = None,
    soft_edge_px: float = 0.0,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Cylinder along z about the box centre (a filament mask, RELION's helical axis).

    Parameters
    ----------
    shape:
        ``(d, h, w)``.
    radius_px:
        Radius in pixels, in the x-y plane, of the region where the mask is 1.
    length_px:
        Length along z of the region where the mask is 1 (``|z| ≤ length_px / 2``);
        ``None`` for a cylinder through the whole box.
    soft_edge_px:
        Width in pixels of the raised-cosine edge, radially and at the ends.
    device, dtype:
        Where and how to create the mask.

    Returns
    -------
    torch.Tensor
        ``shape``: the product of the radial and (if ``length_px``) axial profiles.
    """
    shape = _check_shape(shape, (3,))
    z, y, x = centred_axes(shape, device=device, dtype=dtype)
    mask = raised_cosine_edge((x * x + y * y).sqrt() - radius_px, soft_edge_px)
    if length_px is not None:
        mask = mask * raised_cosine_edge(z.abs() - length_px / 2, soft_edge_px)
    return mask.expand(shape).contiguous()


def box_mask(
    shape: Sequence[int],
    half_widths_px: float | Sequence[float],
    *,
    soft_edge_px: float = 0.0,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Rectangular (2-D) or box (3-D) mask about the box centre.

    Parameters
    ----------
    shape:
        ``(h, w)`` or ``(d, h, w)``.
    half_widths_px:
        Half-width in pixels of the region where the mask is 1, one for all axes or one per
        axis in ``(x, y[, z])`` order; the mask is 1 where ``|x − w//2| ≤ half_width_x`` etc.
    soft_edge_px:
        Width in pixels of the raised-cosine edge on every face.
    device, dtype:
        Where and how to create the mask.

    Returns
    -------
    torch.Tensor
        ``shape``: the product of the per-axis profiles.
    """
    shape = _check_shape(shape, (2, 3))
    if isinstance(half_widths_px, int | float):
        half_widths = [float(half_widths_px)] * len(shape)
    else:
        half_widths = [float(h) for h in half_widths_px]
    if len(half_widths) != len(shape):
        raise DimensionMismatchError(
            None, f"need {len(shape)} half-widths (x, y[, z]) for shape {shape}, got {half_widths}"
        )
    coordinates = centred_axes(shape, device=device, dtype=dtype)[::-1]  # (x, y[, z])
    mask = torch.ones(shape, device=device, dtype=dtype)
    for c, half_width in zip(coordinates, half_widths, strict=True):
        mask = mask * raised_cosine_edge(c.abs() - half_width, soft_edge_px)
    return mask


def shaped_mask(
    volume: torch.Tensor,
    threshold: float,
    *,
    extend_px: float = 0.0,
    soft_edge_px: float = 0.0,
) -> torch.Tensor:
    """Mask shaped like a map: threshold, extend (dilate), add a soft edge (RELION-style).

    Parameters
    ----------
    volume:
        ``(d, h, w)`` map (or ``(h, w)`` image).
    threshold:
        Voxels with values ``≥ threshold`` form the initial binary mask.
    extend_px:
        The binary mask grows by this Euclidean distance in pixels.
    soft_edge_px:
        Width in pixels of the raised-cosine edge outside the extended mask.

    Returns
    -------
    torch.Tensor
        ``volume.shape`` on ``volume.device``: 1 within ``extend_px`` of a voxel above the
        threshold, ``0.5 · (1 + cos(π t / soft_edge_px))`` at ``t = distance − extend_px``,
        0 beyond.  Distances are exact Euclidean distance transforms (computed on the CPU).
    """
    if volume.ndim not in (2, 3):
        raise DimensionMismatchError(
            None, f"volume must have shape (d, h, w) or (h, w), got {tuple(volume.shape)}"
        )
    if extend_px < 0 or not math.isfinite(extend_px):
        raise InvalidValuesError(None, f"extend_px must be ≥ 0, got {extend_px}")
    values = volume.detach().to("cpu", torch.float64).numpy()
    if not np.isfinite(values).all():
        raise InvalidValuesError(None, "volume contains NaN or Inf values")
    inside = values >= threshold
    if not inside.any():
        raise InvalidValuesError(
            None,
            f"no voxel of the volume reaches the threshold {threshold}",
            f"the map's maximum is {values.max():.4g}; lower the threshold",
        )
    # Distance of every voxel to the nearest voxel above the threshold (0 inside).
    distance = torch.from_numpy(np.asarray(ndimage.distance_transform_edt(~inside)))
    dtype = volume.dtype if volume.is_floating_point() else torch.get_default_dtype()
    mask = raised_cosine_edge(distance - extend_px, soft_edge_px)
    return mask.to(device=volume.device, dtype=dtype)
