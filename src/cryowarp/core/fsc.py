"""Fourier shell (3-D) and ring (2-D) correlation.  Shells: docs/conventions.md §11."""

from __future__ import annotations

import math

import torch

from cryowarp.core.fourier_grids import shell_index

__all__ = ["frc", "fsc", "fsc_resolution_a", "shell_frequencies_a"]


def fsc(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Fourier shell correlation of two real volumes.

    Parameters
    ----------
    a, b:
        ``(..., d, h, w)`` volumes of the same shape.

    Returns
    -------
    torch.Tensor
        ``(..., N // 2 + 1)``: the correlation in shells 0 … N//2 (shell 0 is DC, ``N`` the
        largest box dimension).  Samples beyond Nyquist (the corners) are ignored.
    """
    return _fsc(a, b, ndim=3)


def frc(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Fourier ring correlation of images ``(..., h, w)``; returns ``(..., N//2 + 1)``."""
    return _fsc(a, b, ndim=2)


def _fsc(a: torch.Tensor, b: torch.Tensor, *, ndim: int) -> torch.Tensor:
    if a.shape != b.shape:
        raise ValueError(f"fsc needs equal shapes, got {tuple(a.shape)} and {tuple(b.shape)}")
    spatial = tuple(a.shape[-ndim:])
    dims = tuple(range(-ndim, 0))
    fa = torch.fft.rfftn(a, dim=dims)
    fb = torch.fft.rfftn(b, dim=dims)
    n_shells = max(spatial) // 2 + 1
    shells = shell_index(spatial, device=a.device).flatten()
    inside = shells < n_shells
    shells = shells[inside]
    batch = a.shape[:-ndim]
    fa = fa.reshape(*batch, -1)[..., inside]
    fb = fb.reshape(*batch, -1)[..., inside]
    # rfft stores half the spectrum; the Hermitian partners contribute identically to each sum.
    cross = (fa * fb.conj()).real
    pa = fa.abs().square()
    pb = fb.abs().square()
    out_shape = (*batch, n_shells)
    num = torch.zeros(out_shape, dtype=cross.dtype, device=a.device)
    da = torch.zeros_like(num)
    db = torch.zeros_like(num)
    index = shells.expand_as(cross)
    num.scatter_add_(-1, index, cross)
    da.scatter_add_(-1, index, pa)
    db.scatter_add_(-1, index, pb)
    return num / torch.sqrt(da * db).clamp_min(torch.finfo(num.dtype).tiny)


def shell_frequencies_a(box_size: int, pixel_size_a: float) -> torch.Tensor:
    """Spatial frequency (Å⁻¹) of each FSC shell 0 … box_size//2."""
    return torch.arange(box_size // 2 + 1, dtype=torch.float64) / (box_size * pixel_size_a)


def fsc_resolution_a(
    curve: torch.Tensor, box_size: int, pixel_size_a: float, *, threshold: float = 0.143
) -> float:
    """Resolution (Å) where a 1-D FSC ``curve`` (n_shells,) first drops below ``threshold``.

    ``inf`` when the curve is below the threshold from shell 0 on (e.g. inverted contrast).

    Linear interpolation between the last shell above and the first shell below; returns the
    Nyquist resolution when the curve never drops below the threshold.
    """
    c = curve.detach().double().cpu()
    freqs = shell_frequencies_a(box_size, pixel_size_a)
    below = torch.nonzero(c[1:] < threshold).flatten()
    if below.numel() == 0:
        return float(1.0 / freqs[-1])
    i = int(below[0]) + 1
    c0, c1 = float(c[i - 1]), float(c[i])
    if c0 < threshold:  # below from the start (DC included): no resolution at all
        return math.inf
    t = (c0 - threshold) / (c0 - c1) if c0 != c1 else 0.0
    f = float(freqs[i - 1] + t * (freqs[i] - freqs[i - 1]))
    return 1.0 / f if f > 0 else math.inf
