"""Gridding for Fourier-slice projection: oversampling, sinc² correction, the slice stencil.

A volume is projected by trilinear interpolation of its (zero-padded, i.e. oversampled)
spectrum; back-projection inserts slices with the same trilinear weights. Convolving the
spectrum with the trilinear kernel (a triangle of half-width one Fourier voxel per axis)
multiplies the real-space box of size ``P`` by ``sinc²(x / P)`` along each axis, ``x`` in
pixels from the box centre. Dividing the volume by that product before projection
(pre-correction) or after back-projection (post-correction) undoes it.

Centres, axis order and rfft layout: docs/conventions.md §1-§3; rotations §8.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import torch

from cryowarp.core._centred_coordinates import centred_axes
from cryowarp.core.fourier_grids import frequency_grid

__all__ = [
    "CentralSliceStencil",
    "central_slice_stencil",
    "central_slice_stencils",
    "gridding_correct",
    "padded_shape",
    "trilinear_gridding_kernel",
]

# Number of stencil samples processed at once (keeps 8-neighbour index tensors ~100 MB).
_CHUNK_SAMPLES = 1 << 21


def padded_shape(shape: tuple[int, ...], oversampling: float) -> tuple[int, ...]:
    """Shape of a box zero-padded by ``oversampling`` (≥ 1): ``round(n · oversampling)``."""
    if not math.isfinite(oversampling) or oversampling < 1.0:
        raise ValueError(f"oversampling must be a finite number ≥ 1, got {oversampling}")
    return tuple(max(n, round(n * oversampling)) for n in shape)


def trilinear_gridding_kernel(
    box_shape: tuple[int, ...],
    padded: tuple[int, ...],
    *,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Real-space attenuation caused by trilinear interpolation on an oversampled spectrum.

    Parameters
    ----------
    box_shape:
        Shape of the (unpadded) box on which the kernel is evaluated, array order.
    padded:
        Shape of the padded box whose spectrum is interpolated (same number of axes).

    Returns
    -------
    torch.Tensor
        ``box_shape``: ``∏_axes sinc²((i − n//2) / P)``, ``sinc(t) = sin(πt)/(πt)``; 1 at the
        centre, ``sinc²(1/4) ≈ 0.81`` at the box edge for an oversampling of 2.
    """
    out = torch.ones((), device=device, dtype=dtype)
    axes = centred_axes(box_shape, device=device, dtype=dtype)
    for c, p in zip(axes, padded, strict=True):
        out = out * torch.sinc(c / p).square()
    return out


def gridding_correct(volume: torch.Tensor, *, padded: tuple[int, int, int]) -> torch.Tensor:
    """Divide ``volume`` ``(..., d, h, w)`` by :func:`trilinear_gridding_kernel`.

    Used both as the pre-correction of a volume before Fourier projection from a spectrum
    padded to ``padded`` and as the post-correction of a back-projected volume.
    """
    kernel = trilinear_gridding_kernel(
        tuple(volume.shape[-3:]), padded, device=volume.device, dtype=volume.dtype
    )
    return volume / kernel


@dataclass(frozen=True)
class CentralSliceStencil:
    """Where the samples of central slices fall in a 3-D rfft grid, and with what weight.

    Attributes
    ----------
    index:
        ``(n_samples, 8)`` int64: flat index into the ``(D, H, W//2+1)`` half-spectrum of the
        8 trilinear neighbours of every slice sample.
    weight:
        ``(n_samples, 8)`` real: trilinear weights; 0 for samples outside ``max_radius`` and
        for neighbours past the last rfft column.
    conjugate:
        ``(n_samples,)`` bool: the sample lies at ``k_x < 0`` and is read from / written to its
        Hermitian mirror ``−k`` with a complex conjugate.
    """

    index: torch.Tensor
    weight: torch.Tensor
    conjugate: torch.Tensor


def central_slice_stencil(
    rotations: torch.Tensor,  # (n, 3, 3)
    *,
    volume_shape: tuple[int, int, int],
    image_shape: tuple[int, int],
    max_radius: float = 0.5,
) -> CentralSliceStencil:
    """Trilinear stencil of the central slices ``V̂(Aᵀ (kx, ky, 0))`` (conventions §8).

    Parameters
    ----------
    rotations:
        ``(n, 3, 3)`` matrices ``A`` (reference → image).
    volume_shape:
        Real-space shape ``(D, H, W)`` of the (padded) volume whose rfft is sampled.
    image_shape:
        Real-space shape ``(h, w)`` of the images; slice samples are the rfft grid of this
        shape, ``(h, w//2 + 1)``, at frequencies in cycles/pixel.
    max_radius:
        Samples with ``|k|`` above this (cycles/pixel) get zero weight; 0.5 is Nyquist.

    Returns
    -------
    CentralSliceStencil
        Samples ordered ``(n, h, w//2 + 1)`` flattened.
    """
    device, dtype = rotations.device, rotations.dtype
    d, h, w = volume_shape
    w_half = w // 2 + 1
    k = frequency_grid(image_shape, rfft=True, device=device, dtype=dtype)  # (ih, iw, 2) x, y
    inside = k.square().sum(-1) <= max_radius**2
    # q = Aᵀ (kx, ky, 0): row vectors q = kx · A[0, :] + ky · A[1, :]   (n, ih, iw, 3) x, y, z
    q = torch.einsum("hwi,nij->nhwj", k, rotations[:, :2, :]).reshape(-1, 3)
    inside = inside.reshape(-1).repeat(rotations.shape[0])
    pos = q * torch.tensor([w, h, d], device=device, dtype=dtype)  # Fourier voxels x, y, z
    conjugate = pos[:, 0] < 0
    pos = torch.where(conjugate[:, None], -pos, pos)
    base = torch.floor(pos)
    frac = pos - base
    base_i = base.to(torch.int64)
    # Per axis: the two neighbours (n, 2) and their linear weights (n, 2).
    x = base_i[:, 0, None] + torch.arange(2, device=device)
    y = (base_i[:, 1, None] + torch.arange(2, device=device)).remainder(h)
    z = (base_i[:, 2, None] + torch.arange(2, device=device)).remainder(d)
    wx = torch.stack([1 - frac[:, 0], frac[:, 0]], dim=-1)
    wy = torch.stack([1 - frac[:, 1], frac[:, 1]], dim=-1)
    wz = torch.stack([1 - frac[:, 2], frac[:, 2]], dim=-1)
    wx = wx * ((x < w_half) & inside[:, None])  # past the last rfft column, or too far out
    x = x.clamp(max=w_half - 1)
    index = (z[:, :, None, None] * h + y[:, None, :, None]) * w_half + x[:, None, None, :]
    weight = wz[:, :, None, None] * wy[:, None, :, None] * wx[:, None, None, :]
    return CentralSliceStencil(
        index=index.reshape(-1, 8),
        weight=weight.reshape(-1, 8),
        conjugate=conjugate,
    )


def central_slice_stencils(
    rotations: torch.Tensor,  # (..., 3, 3)
    *,
    dtype: torch.dtype,
    volume_shape: tuple[int, int, int],
    image_shape: tuple[int, int],
    max_radius: float = 0.5,
) -> Iterator[tuple[slice, CentralSliceStencil]]:
    """:func:`central_slice_stencil` of many views, a chunk of views at a time.

    The rotations are flattened to ``(n, 3, 3)`` and cast to the real ``dtype`` of the data;
    each chunk holds at most about 2²¹ slice samples (index tensors of ~100 MB).

    Yields
    ------
    tuple[slice, CentralSliceStencil]
        The views of the chunk (a slice of the flattened view index) and their stencil.
    """
    flat = rotations.reshape(-1, 3, 3).to(dtype)
    per_view = image_shape[0] * (image_shape[1] // 2 + 1)
    chunk = max(1, _CHUNK_SAMPLES // per_view)
    for start in range(0, flat.shape[0], chunk):
        views = slice(start, start + chunk)
        stencil = central_slice_stencil(
            flat[views], volume_shape=volume_shape, image_shape=image_shape, max_radius=max_radius
        )
        yield views, stencil
