"""Frequency grids for the rfft/fft layouts of docs/conventions.md §3.

All frequencies are in **cycles/pixel**; divide by the pixel size (Å) for Å⁻¹.
Vectors are returned in (x, y[, z]) order in the last dimension (conventions §1).
"""

from __future__ import annotations

import torch

__all__ = [
    "frequency_grid",
    "frequency_magnitude",
    "rfft_shape",
    "shell_index",
]


def rfft_shape(shape: tuple[int, ...]) -> tuple[int, ...]:
    """Shape of ``torch.fft.rfftn`` of a real array of ``shape`` over all its dimensions."""
    return (*shape[:-1], shape[-1] // 2 + 1)


def frequency_grid(
    shape: tuple[int, ...],
    *,
    rfft: bool = True,
    fftshifted: bool = False,
    nyquist_positive: bool = False,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Frequency vectors of every Fourier sample of a real array of ``shape``.

    Parameters
    ----------
    shape:
        Real-space shape ``(h, w)`` or ``(d, h, w)`` (array order z, y, x).
    rfft:
        ``True`` for the half-spectrum layout of ``rfftn`` (last axis ``0 … w//2``).
    fftshifted:
        ``True`` to place DC at index ``n//2`` of every non-rfft axis.
    nyquist_positive:
        ``True`` to give the Nyquist sample of an even-sized non-rfft axis the frequency
        ``+0.5`` instead of ``torch.fft.fftfreq``'s ``−0.5`` — Warp's and RELION's choice, used
        by the CTF and by Fourier shifts.
    device, dtype:
        Where and how to create the grid.

    Returns
    -------
    torch.Tensor
        ``(*fourier_shape, ndim)`` with components ordered (x, y[, z]), in cycles/pixel.
    """
    if len(shape) not in (1, 2, 3):
        raise ValueError(f"frequency_grid supports 1-3 dimensions, got shape {shape}")
    axes = []
    for i, n in enumerate(shape):
        if rfft and i == len(shape) - 1:
            f = torch.fft.rfftfreq(n, device=device, dtype=dtype)
        else:
            f = torch.fft.fftfreq(n, device=device, dtype=dtype)
            if nyquist_positive and n % 2 == 0:
                f[n // 2] = 0.5
            if fftshifted:
                f = torch.fft.fftshift(f)
        axes.append(f)
    mesh = torch.meshgrid(*axes, indexing="ij")  # array order (z, y, x)
    return torch.stack(mesh[::-1], dim=-1)  # vector order (x, y, z)


def frequency_magnitude(
    shape: tuple[int, ...],
    *,
    rfft: bool = True,
    fftshifted: bool = False,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """``|k|`` in cycles/pixel for every Fourier sample; shape ``fourier_shape``."""
    grid = frequency_grid(shape, rfft=rfft, fftshifted=fftshifted, device=device, dtype=dtype)
    return grid.square().sum(dim=-1).sqrt()


def shell_index(
    shape: tuple[int, ...],
    *,
    rfft: bool = True,
    fftshifted: bool = False,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Index of the Fourier shell of every sample (conventions §11).

    Shell ``i`` holds samples with ``i − 0.5 ≤ |k| · N < i + 0.5`` where ``N`` is the
    largest dimension of ``shape`` and ``|k|`` is in cycles/pixel of each axis (so that for a
    non-cubic box the shells are ellipsoidal in index space but spherical in frequency).

    Returns
    -------
    torch.Tensor
        ``fourier_shape``, dtype ``int64``.
    """
    n = max(shape)
    k = frequency_magnitude(shape, rfft=rfft, fftshifted=fftshifted, device=device)
    return torch.round(k * n).to(torch.int64)
