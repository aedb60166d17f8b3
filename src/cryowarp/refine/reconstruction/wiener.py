"""RELION-like Wiener regularisation of a Fourier reconstruction from its half-set FSC.

A reconstruction divides the accumulated data ``Σ CTF·F`` by the accumulated weight
``Σ CTF²``. Where the weight is small, that division amplifies noise; the Wiener (MAP) form of
Scheres (2012, J. Mol. Biol. 415:406, eq. 12; J. Struct. Biol. 180:519) adds the inverse of
the signal power ``τ²`` in each shell:

    V(k) = Σ CTF·F / (Σ CTF² + 1/τ²(|k|)),   1/τ²(shell) = w̄(shell) / SSNR(shell)

where ``w̄`` is the average accumulated weight over all voxels of the shell (empty voxels
included, as RELION counts them) and SSNR comes from the FSC of two independent half-maps:

- half-maps: ``SSNR = FSC / (1 − FSC)``;
- the full map (twice the data): ``FSC' = 2 FSC / (1 + FSC)`` (the FSC expected between two
  maps of the full size), ``SSNR = FSC' / (1 − FSC') = 2 FSC / (1 − FSC)``.

The FSC is clamped to ``[0.001, 0.999]`` before the conversion and the SSNR is multiplied by
``tau2_fudge`` (RELION's ``T``). RELION's own full-map conversion additionally takes the square
root of ``FSC'`` (its "60-degree phase error" term, ``backprojector.cpp``), which regularises
the full map less; cryowarp uses the SSNR of the doubled data as stated. Shells are those of
the box (docs/conventions.md §11): an accumulator voxel at ``|k|`` cycles/pixel belongs to shell
``round(|k| · N)``; voxels beyond shell ``N // 2`` (past Nyquist) are set to zero.

cryowarp regularises the full map only (:func:`~.half_maps.finish_half_maps`): where the SSNR
is tiny the filter scales shells down by up to 1000, and cropping the padded volume to the box
(a convolution in Fourier space) then lets the stronger low-resolution shells leak into them,
which biases the FSC between regularised half-maps upwards past the resolution limit
(measured: 0.1-0.19 between the half-maps of pure noise). The half-maps are therefore
``data / weight`` and their FSC is the one reported.
"""

from __future__ import annotations

import torch

from cryowarp.core.fourier import irfft_centered
from cryowarp.core.gridding import gridding_correct
from cryowarp.core.resize import crop_or_pad

__all__ = [
    "accumulator_shells",
    "reconstruct_wiener",
    "shell_average",
    "ssnr_from_fsc",
    "wiener_spectrum",
]


def accumulator_shells(
    padded: tuple[int, int, int], box_size: int, *, device: torch.device | str | None = None
) -> torch.Tensor:
    """``(D, H, W//2 + 1)`` int64: the box's FSC shell of every accumulator voxel.

    ``padded`` is the real-space shape of the padded volume; its rfft samples are at
    ``|k|`` cycles/pixel of the (unchanged) pixel size, so the shell is ``round(|k| · box_size)``
    (float32 ``|k|`` as in :func:`~cryowarp.core.fourier_grids.shell_index`).
    """
    d, h, w = padded
    kz = torch.fft.fftfreq(d, device=device).square().reshape(-1, 1, 1)
    ky = torch.fft.fftfreq(h, device=device).square().reshape(1, -1, 1)
    kx = torch.fft.rfftfreq(w, device=device).square().reshape(1, 1, -1)
    return torch.round((kz + ky + kx).sqrt() * box_size).to(torch.int64)


def shell_average(
    values: torch.Tensor,  # (D, H, W//2 + 1) real
    shells: torch.Tensor,  # (D, H, W//2 + 1) int64
    n_shells: int,
) -> torch.Tensor:
    """``(n_shells,)`` mean of ``values`` over the voxels of each shell (0 for empty shells)."""
    inside = shells < n_shells
    index = shells[inside]
    sums = torch.zeros(n_shells, dtype=torch.float64, device=values.device)
    counts = torch.zeros_like(sums)
    sums.index_add_(0, index, values[inside].to(torch.float64))
    counts.index_add_(0, index, torch.ones_like(index, dtype=torch.float64))
    return sums / counts.clamp(min=1.0)


def ssnr_from_fsc(
    fsc: torch.Tensor,  # (n_shells,)
    *,
    full_map: bool,
    tau2_fudge: float = 1.0,
) -> torch.Tensor:
    """``(n_shells,)`` SSNR of a half-map (``full_map=False``) or of the map of both halves
    (``True``) from the FSC between the half-maps; see the module docstring."""
    f = fsc.to(torch.float64).clamp(min=0.001)
    if full_map:
        f = 2 * f / (1 + f)
    f = f.clamp(max=0.999)
    return tau2_fudge * f / (1 - f)


def wiener_spectrum(
    data: torch.Tensor,  # (D, H, W//2 + 1) complex
    weight: torch.Tensor,  # (D, H, W//2 + 1) real
    ssnr: torch.Tensor,  # (N//2 + 1,)
    *,
    box_size: int,
    padded: tuple[int, int, int],
) -> torch.Tensor:
    """``data / (weight + w̄(shell) / SSNR(shell))``, zero past Nyquist and where nothing was
    accumulated; ``(D, H, W//2 + 1)`` complex."""
    n_shells = box_size // 2 + 1
    if ssnr.shape != (n_shells,):
        raise ValueError(f"ssnr must have {n_shells} shells, got shape {tuple(ssnr.shape)}")
    shells = accumulator_shells(padded, box_size, device=weight.device)
    average = shell_average(weight, shells, n_shells)
    inverse_tau2 = (average / ssnr.to(device=weight.device, dtype=torch.float64)).to(weight.dtype)
    inside = shells < n_shells
    denominator = weight + inverse_tau2[shells.clamp(max=n_shells - 1)]
    usable = inside & (denominator > 0)
    safe = torch.where(usable, denominator, torch.ones_like(denominator))
    return torch.where(usable, data / safe, torch.zeros_like(data))


def reconstruct_wiener(
    data: torch.Tensor,  # (D, H, W//2 + 1) complex
    weight: torch.Tensor,  # (D, H, W//2 + 1) real
    ssnr: torch.Tensor,  # (N//2 + 1,)
    *,
    box_shape: tuple[int, int, int],
    padded: tuple[int, int, int],
    gridding_correction: bool = True,
) -> torch.Tensor:
    """The regularised volume ``box_shape`` (centred, docs/conventions.md §2) from accumulators
    filled by :class:`cryowarp.core.backprojection.Reconstructor`."""
    spectrum = wiener_spectrum(data, weight, ssnr, box_size=max(box_shape), padded=padded)
    volume = crop_or_pad(irfft_centered(spectrum, shape=padded), box_shape)
    return gridding_correct(volume, padded=padded) if gridding_correction else volume
