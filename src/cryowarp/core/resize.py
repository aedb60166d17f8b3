"""Crop, pad, Fourier-crop/pad, rescale and bin images and volumes.

Real-space crops and pads keep the box centre (index ``N // 2``, docs/conventions.md §2) on
the box centre.  Fourier crops and pads work on rfft spectra (conventions §3); an even-sized
axis' Nyquist sample is split evenly between ``±N/2`` when padding and the two are summed
when cropping, so that Fourier-cropping a Fourier-padded spectrum returns it unchanged.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from cryowarp.core.fourier import (
    irfft_centered,
    negate_frequencies,
    rfft_centered,
    spatial_dims,
)
from cryowarp.core.fourier_grids import rfft_shape
from cryowarp.errors import DimensionMismatchError

__all__ = [
    "bin_average",
    "crop_or_pad",
    "fourier_crop_or_pad",
    "rescale",
    "rescale_to_pixel_size",
    "rescaled_shape",
]


def _check_shape(x: torch.Tensor, shape: tuple[int, ...], what: str) -> None:
    spatial_dims(len(shape))
    if x.dim() < len(shape) or any(n < 1 for n in shape):
        raise DimensionMismatchError(
            None, f"{what}: cannot resize an array of shape {tuple(x.shape)} to {shape}"
        )


def crop_or_pad(x: torch.Tensor, new_shape: tuple[int, ...], *, value: float = 0.0) -> torch.Tensor:
    """Crop or pad the last ``len(new_shape)`` axes about the box centre ``N // 2``.

    Each axis is cropped when it shrinks and padded with ``value`` when it grows; index
    ``N // 2`` of the input lands on index ``M // 2`` of the output.

    Parameters
    ----------
    x:
        ``(..., h, w)`` or ``(..., d, h, w)``.
    new_shape:
        Target spatial shape ``(h', w')`` or ``(d', h', w')``.

    Returns
    -------
    torch.Tensor
        ``(..., *new_shape)``.
    """
    _check_shape(x, new_shape, "crop_or_pad")
    ndim = len(new_shape)
    pads: list[int] = []
    for axis, m in zip(range(-1, -ndim - 1, -1), new_shape[::-1], strict=True):
        n = x.shape[axis]
        if m < n:
            x = x.narrow(axis, n // 2 - m // 2, m)
            pads += [0, 0]
        else:
            before = m // 2 - n // 2
            pads += [before, m - n - before]
    if any(pads):
        x = F.pad(x, pads, value=value)
    return x


def _resize_fft_axis(s: torch.Tensor, axis: int, n: int, m: int) -> torch.Tensor:
    """Crop/pad one FFT-ordered (DC at 0) axis from ``n`` to ``m`` samples."""
    if m == n:
        return s
    small, large = min(n, m), max(n, m)
    n_pos = (small + 1) // 2  # frequencies 0 … ceil(small/2) − 1
    n_neg = small - n_pos  # frequencies −floor(small/2) … −1
    if m < n:
        pos = s.narrow(axis, 0, n_pos)
        neg = s.narrow(axis, n - n_neg, n_neg)
        if m % 2 == 0:  # fold +m/2 into the Nyquist sample −m/2
            neg = torch.cat(
                [
                    neg.narrow(axis, 0, 1) + s.narrow(axis, m // 2, 1),
                    neg.narrow(axis, 1, n_neg - 1),
                ],
                dim=axis,
            )
        return torch.cat([pos, neg], dim=axis)
    pos = s.narrow(axis, 0, n_pos)
    neg = s.narrow(axis, n - n_neg, n_neg)
    zeros_shape = list(s.shape)
    zeros_shape[axis] = large - small
    zeros = s.new_zeros(zeros_shape)
    if n % 2 == 0:  # split the Nyquist sample between +n/2 and −n/2
        half = 0.5 * neg.narrow(axis, 0, 1)
        neg = torch.cat([half, neg.narrow(axis, 1, n_neg - 1)], dim=axis)
        zeros = torch.cat([half, zeros.narrow(axis, 1, large - small - 1)], dim=axis)
    return torch.cat([pos, zeros, neg], dim=axis)


def _resize_rfft_axis(s: torch.Tensor, n: int, m: int, ndim: int) -> torch.Tensor:
    """Crop/pad the last (half-spectrum) axis from real size ``n`` to ``m``."""
    width = m // 2 + 1
    if m < n:
        out = s[..., :width]
        if m % 2 == 0:  # fold the implicit −m/2 partner, conj F(−k, +m/2), into the Nyquist
            nyquist = s[..., m // 2 : m // 2 + 1]
            partner = negate_frequencies(nyquist, dims=spatial_dims(ndim)[:-1]).conj()
            out = torch.cat([out[..., :-1], nyquist + partner], dim=-1)
        return out
    if m == n:
        return s
    out = torch.cat([s, s.new_zeros((*s.shape[:-1], width - s.shape[-1]))], dim=-1)
    if n % 2 == 0:  # the old Nyquist column now stands for +n/2 only
        scale = torch.ones(width, dtype=s.real.dtype, device=s.device)
        scale[n // 2] = 0.5
        out = out * scale
    return out


def fourier_crop_or_pad(
    spectrum: torch.Tensor, *, shape: tuple[int, ...], new_shape: tuple[int, ...]
) -> torch.Tensor:
    """Fourier-crop (drop high frequencies) or Fourier-pad (add zeros) an rfft spectrum.

    Samples are moved, not rescaled: with the unnormalised forward transform the inverse of
    the result has its mean scaled by ``prod(shape) / prod(new_shape)`` (see :func:`rescale`).

    Parameters
    ----------
    spectrum:
        ``(..., *rfft_shape(shape))`` rfft spectrum (non-centred, conventions §3).
    shape, new_shape:
        Real-space shapes ``(h, w)``/``(d, h, w)`` before and after; each axis may shrink or
        grow independently.

    Returns
    -------
    torch.Tensor
        ``(..., *rfft_shape(new_shape))``.
    """
    _check_shape(spectrum, new_shape, "fourier_crop_or_pad")
    if len(shape) != len(new_shape) or tuple(spectrum.shape[-len(shape) :]) != rfft_shape(shape):
        raise DimensionMismatchError(
            None,
            f"spectrum of shape {tuple(spectrum.shape)} is not the rfft of shape {shape}"
            f" (target {new_shape})",
        )
    ndim = len(shape)
    out = _resize_rfft_axis(spectrum, shape[-1], new_shape[-1], ndim)
    for axis, n, m in zip(range(-ndim, -1), shape[:-1], new_shape[:-1], strict=True):
        out = _resize_fft_axis(out, axis, n, m)
    return out


def rescale(x: torch.Tensor, new_shape: tuple[int, ...]) -> torch.Tensor:
    """Resample images/volumes to ``new_shape`` by Fourier cropping or padding.

    The field of view is kept, so the pixel size changes by ``shape / new_shape`` per axis,
    and the box centre ``N // 2`` maps onto ``M // 2`` (centred transforms, conventions §3).
    Pixel values keep their scale: the **mean is preserved** exactly (band-limited
    interpolation when growing, an ideal low-pass when shrinking).

    Parameters
    ----------
    x:
        ``(..., h, w)`` or ``(..., d, h, w)`` real array.
    new_shape:
        ``(h', w')`` or ``(d', h', w')``.

    Returns
    -------
    torch.Tensor
        ``(..., *new_shape)``.
    """
    _check_shape(x, new_shape, "rescale")
    shape = tuple(x.shape[-len(new_shape) :])
    spectrum = rfft_centered(x, ndim=len(new_shape))
    spectrum = fourier_crop_or_pad(spectrum, shape=shape, new_shape=new_shape)
    ratio = _prod(new_shape) / _prod(shape)
    return irfft_centered(spectrum, shape=new_shape) * ratio


def rescaled_shape(
    shape: tuple[int, ...], *, pixel_size_a: float, new_pixel_size_a: float
) -> tuple[int, ...]:
    """Shape ``round(n · pixel_size_a / new_pixel_size_a)`` per axis (at least 1)."""
    if pixel_size_a <= 0 or new_pixel_size_a <= 0:
        raise ValueError(f"pixel sizes must be positive, got {pixel_size_a}, {new_pixel_size_a}")
    return tuple(max(1, round(n * pixel_size_a / new_pixel_size_a)) for n in shape)


def rescale_to_pixel_size(
    x: torch.Tensor, *, ndim: int, pixel_size_a: float, new_pixel_size_a: float
) -> tuple[torch.Tensor, tuple[float, ...]]:
    """Resample to (about) ``new_pixel_size_a`` Å; see :func:`rescale`.

    Sizes are rounded to whole pixels, so the pixel size achieved per axis is returned too,
    in (x, y[, z]) order (conventions §1): ``pixel_size_a · n / n'``.
    """
    shape = tuple(x.shape[-ndim:]) if x.dim() >= ndim else tuple(x.shape)
    new_shape = rescaled_shape(shape, pixel_size_a=pixel_size_a, new_pixel_size_a=new_pixel_size_a)
    achieved = tuple(pixel_size_a * n / m for n, m in zip(shape, new_shape, strict=True))
    return rescale(x, new_shape), achieved[::-1]


def bin_average(x: torch.Tensor, factor: int, *, ndim: int) -> torch.Tensor:
    """Bin by averaging ``factor``-sized blocks of pixels/voxels (real space).

    Every spatial size must be divisible by ``factor``.  Block ``j`` averages input indices
    ``j·factor … (j+1)·factor − 1``, so coordinates map as ``x' = (x − (factor − 1)/2) / factor``.

    Parameters
    ----------
    x:
        ``(..., h, w)`` (``ndim=2``) or ``(..., d, h, w)`` (``ndim=3``).

    Returns
    -------
    torch.Tensor
        ``(..., h/factor, w/factor)`` or ``(..., d/factor, h/factor, w/factor)``.
    """
    spatial_dims(ndim)
    if factor < 1:
        raise ValueError(f"bin factor must be a positive integer, got {factor}")
    shape = tuple(x.shape[-ndim:])
    if x.dim() < ndim or any(n % factor for n in shape):
        raise DimensionMismatchError(
            None, f"cannot bin shape {tuple(x.shape)} by {factor}: sizes must be divisible"
        )
    split: list[int] = []
    for n in shape:
        split += [n // factor, factor]
    blocks = x.reshape(*x.shape[:-ndim], *split)
    return blocks.mean(dim=tuple(range(-1, -2 * ndim, -2)))


def _prod(shape: tuple[int, ...]) -> int:
    out = 1
    for n in shape:
        out *= n
    return out
