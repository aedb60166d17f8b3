"""Rotational averages into shells, and radial profiles expanded back onto grids.

Fourier shells follow docs/conventions.md §11 (:func:`~cryowarp.core.fourier_grids.shell_index`:
shell ``i`` holds ``i − 0.5 ≤ |k|·N < i + 0.5``, ``N`` the largest box dimension).  Real-space
shells are rings/spheres of radius ``i`` pixels about the box centre ``N // 2`` (§2).
"""

from __future__ import annotations

from typing import Literal

import torch

from cryowarp.core.fourier import spatial_dims
from cryowarp.core.fourier_grids import frequency_grid, frequency_magnitude, shell_index
from cryowarp.errors import DimensionMismatchError

__all__ = [
    "expand_radial_profile",
    "expand_radial_profile_real",
    "rotational_average",
    "rotational_average_real",
]


def _fourier_shape(shape: tuple[int, ...], rfft: bool) -> tuple[int, ...]:
    return (*shape[:-1], shape[-1] // 2 + 1) if rfft else shape


def _check_grid(values: torch.Tensor, grid_shape: tuple[int, ...], what: str) -> None:
    spatial_dims(len(grid_shape))
    if tuple(values.shape[-len(grid_shape) :]) != grid_shape:
        raise DimensionMismatchError(
            None, f"{what}: expected (..., {grid_shape}), got shape {tuple(values.shape)}"
        )


def _shell_means(values: torch.Tensor, shells: torch.Tensor, n_shells: int) -> torch.Tensor:
    """Mean of ``values`` (..., *grid) over each shell id of ``shells`` (*grid) < n_shells."""
    ndim = shells.dim()
    batch = values.shape[:-ndim]
    flat_shells = shells.flatten()
    inside = flat_shells < n_shells
    flat_shells = flat_shells[inside]
    flat = values.reshape(*batch, -1)[..., inside]
    index = flat_shells.expand_as(flat)
    sums = torch.zeros((*batch, n_shells), dtype=flat.dtype, device=flat.device)
    sums = sums.scatter_add(-1, index, flat)
    counts = torch.zeros(n_shells, dtype=flat.real.dtype, device=flat.device)
    counts = counts.scatter_add(0, flat_shells, torch.ones_like(flat_shells, dtype=counts.dtype))
    return sums / counts.clamp_min(1.0)


def rotational_average(
    values: torch.Tensor,
    *,
    shape: tuple[int, ...],
    rfft: bool = True,
    fftshifted: bool = False,
    n_shells: int | None = None,
) -> torch.Tensor:
    """Average Fourier-space values over shells of constant ``|k|``.

    Parameters
    ----------
    values:
        ``(..., *fourier_shape)`` values (power, amplitude, complex, …) on the Fourier grid of
        a real array of ``shape`` in the layout given by ``rfft``/``fftshifted``.
    shape:
        Real-space shape ``(h, w)`` or ``(d, h, w)``.
    n_shells:
        Number of shells returned; default ``max(shape) // 2 + 1`` (DC … Nyquist).  Samples in
        higher shells (the corners) are ignored; empty shells give 0.

    Returns
    -------
    torch.Tensor
        ``(..., n_shells)``; shell ``i`` is at ``i / max(shape)`` cycles/pixel.
    """
    _check_grid(values, _fourier_shape(shape, rfft), "rotational_average")
    n = max(shape) // 2 + 1 if n_shells is None else n_shells
    shells = shell_index(shape, rfft=rfft, fftshifted=fftshifted, device=values.device)
    return _shell_means(values, shells, n)


def _radius_px(shape: tuple[int, ...], device: torch.device) -> torch.Tensor:
    """Distance in pixels of every sample from the box centre ``N // 2``; shape ``shape``."""
    offsets = frequency_grid(
        shape, rfft=False, fftshifted=True, device=device, dtype=torch.float64
    )  # cycles/px
    sizes = torch.tensor(shape[::-1], dtype=offsets.dtype, device=device)  # (x, y[, z])
    return (offsets * sizes).square().sum(dim=-1).sqrt()


def rotational_average_real(
    image: torch.Tensor, *, ndim: int, n_shells: int | None = None
) -> torch.Tensor:
    """Average an image ``(..., h, w)``/volume ``(..., d, h, w)`` over rings/spheres about
    the box centre ``N // 2``; shell ``i`` holds radii ``i − 0.5 ≤ r < i + 0.5`` pixels.

    Returns ``(..., n_shells)``; default ``n_shells = max(shape) // 2 + 1``.
    """
    shape = tuple(image.shape[-ndim:])
    _check_grid(image, shape, "rotational_average_real")
    n = max(shape) // 2 + 1 if n_shells is None else n_shells
    shells = torch.round(_radius_px(shape, image.device)).to(torch.int64)
    return _shell_means(image, shells, n)


def _interpolate_profile(
    profile: torch.Tensor, position: torch.Tensor, interpolation: Literal["linear", "nearest"]
) -> torch.Tensor:
    """Sample ``profile`` (..., n) at fractional indices ``position`` (*grid); clamped."""
    n = profile.shape[-1]
    batch = profile.shape[:-1]
    grid_shape = position.shape
    pos = position.flatten().clamp(0, n - 1)
    if interpolation == "nearest":
        i0 = torch.round(pos).to(torch.int64)
        out = profile[..., i0]
    elif interpolation == "linear":
        i0 = torch.floor(pos).to(torch.int64).clamp(max=n - 1)
        i1 = (i0 + 1).clamp(max=n - 1)
        t = (pos - i0).to(profile.real.dtype)
        out = profile[..., i0] * (1 - t) + profile[..., i1] * t
    else:
        raise ValueError(f"interpolation must be 'linear' or 'nearest', got {interpolation!r}")
    return out.reshape(*batch, *grid_shape)


def expand_radial_profile(
    profile: torch.Tensor,
    *,
    shape: tuple[int, ...],
    rfft: bool = True,
    fftshifted: bool = False,
    interpolation: Literal["linear", "nearest"] = "linear",
) -> torch.Tensor:
    """Inverse of :func:`rotational_average`: put a 1-D radial profile onto a Fourier grid.

    Parameters
    ----------
    profile:
        ``(..., n)``; sample ``i`` is the value at ``|k| = i / max(shape)`` cycles/pixel.
        Frequencies beyond the last sample take its value.
    shape:
        Real-space shape ``(h, w)`` or ``(d, h, w)``.
    interpolation:
        ``"linear"`` between samples, or ``"nearest"`` (each sample gets its shell's value).

    Returns
    -------
    torch.Tensor
        ``(..., *fourier_shape)`` in the layout given by ``rfft``/``fftshifted``.
    """
    spatial_dims(len(shape))
    if interpolation == "nearest":  # exactly the shells of rotational_average
        shells = shell_index(shape, rfft=rfft, fftshifted=fftshifted, device=profile.device)
        return _interpolate_profile(profile, shells.to(torch.float64), interpolation)
    k = frequency_magnitude(
        shape, rfft=rfft, fftshifted=fftshifted, device=profile.device, dtype=torch.float64
    )
    return _interpolate_profile(profile, k * max(shape), interpolation)


def expand_radial_profile_real(
    profile: torch.Tensor,
    *,
    shape: tuple[int, ...],
    interpolation: Literal["linear", "nearest"] = "linear",
) -> torch.Tensor:
    """Put a profile ``(..., n)`` (sample ``i`` at radius ``i`` pixels from ``N // 2``) onto a
    real-space grid ``(..., *shape)``; radii beyond the last sample take its value."""
    spatial_dims(len(shape))
    radius = _radius_px(shape, profile.device)
    return _interpolate_profile(profile, radius, interpolation)
