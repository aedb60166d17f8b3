"""Fourier filters: band-pass with raised-cosine edges, and spectral whitening.

Frequencies are in cycles/pixel (docs/conventions.md §3) unless the name says ``_a``
(a resolution in Å, i.e. the frequency ``1/d`` Å⁻¹) or ``_per_a`` (Å⁻¹).
"""

from __future__ import annotations

import torch

from cryowarp.core.fourier import spatial_dims
from cryowarp.core.fourier_grids import frequency_magnitude, shell_index
from cryowarp.core.radial import expand_radial_profile, rotational_average

__all__ = [
    "bandpass",
    "bandpass_a",
    "bandpass_mask",
    "highpass",
    "lowpass",
    "raised_cosine_band",
    "whiten",
]


def raised_cosine_band(
    frequency_cycles_px: torch.Tensor,
    *,
    highpass_cycles_px: float | None = None,
    lowpass_cycles_px: float | None = None,
    edge_width_cycles_px: float = 0.0,
) -> torch.Tensor:
    """Weight 0…1 of a band-pass at the frequencies ``|k|`` given (any shape, cycles/pixel).

    Each edge is a raised cosine of total width ``edge_width_cycles_px`` centred on its cutoff
    (weight 0.5 at the cutoff).  The low-pass weight is 1 for ``|k| ≤ lowpass − width/2`` and 0
    for ``|k| ≥ lowpass + width/2``; the high-pass edge is the mirror image.  With zero width
    the edges are hard: ``|k| ≤ lowpass`` and ``|k| ≥ highpass`` pass.  ``None`` disables an
    edge.
    """
    if edge_width_cycles_px < 0:
        raise ValueError(f"edge_width_cycles_px must be ≥ 0, got {edge_width_cycles_px}")
    k = frequency_cycles_px
    weight = torch.ones_like(k)
    if lowpass_cycles_px is not None:
        weight = weight * _cosine_step(lowpass_cycles_px - k, edge_width_cycles_px)
    if highpass_cycles_px is not None:
        weight = weight * _cosine_step(k - highpass_cycles_px, edge_width_cycles_px)
    return weight


def _cosine_step(distance: torch.Tensor, width: float) -> torch.Tensor:
    """0 for ``distance ≤ −width/2``, 1 for ``distance ≥ width/2``, raised cosine between."""
    if width == 0:
        return (distance >= 0).to(distance.dtype)
    t = (distance / width + 0.5).clamp(0.0, 1.0)
    return 0.5 - 0.5 * torch.cos(torch.pi * t)


def bandpass_mask(
    shape: tuple[int, ...],
    *,
    highpass_cycles_px: float | None = None,
    lowpass_cycles_px: float | None = None,
    edge_width_cycles_px: float = 0.0,
    rfft: bool = True,
    fftshifted: bool = False,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """:func:`raised_cosine_band` on the Fourier grid of a real array of ``shape``.

    Returns ``fourier_shape`` weights in the layout given by ``rfft``/``fftshifted``.
    """
    k = frequency_magnitude(shape, rfft=rfft, fftshifted=fftshifted, device=device, dtype=dtype)
    return raised_cosine_band(
        k,
        highpass_cycles_px=highpass_cycles_px,
        lowpass_cycles_px=lowpass_cycles_px,
        edge_width_cycles_px=edge_width_cycles_px,
    )


def bandpass(
    x: torch.Tensor,
    *,
    ndim: int,
    highpass_cycles_px: float | None = None,
    lowpass_cycles_px: float | None = None,
    edge_width_cycles_px: float = 0.0,
) -> torch.Tensor:
    """Band-pass images ``(..., h, w)`` (``ndim=2``) or volumes ``(..., d, h, w)`` (``ndim=3``).

    See :func:`raised_cosine_band` for the edges.  Returns a real array of the input's shape.
    """
    dims = spatial_dims(ndim)
    shape = tuple(x.shape[-ndim:])
    mask = bandpass_mask(
        shape,
        highpass_cycles_px=highpass_cycles_px,
        lowpass_cycles_px=lowpass_cycles_px,
        edge_width_cycles_px=edge_width_cycles_px,
        device=x.device,
        dtype=x.dtype,
    )
    out: torch.Tensor = torch.fft.irfftn(torch.fft.rfftn(x, dim=dims) * mask, s=shape, dim=dims)
    return out


def bandpass_a(
    x: torch.Tensor,
    *,
    ndim: int,
    pixel_size_a: float,
    highpass_a: float | None = None,
    lowpass_a: float | None = None,
    edge_width_per_a: float = 0.0,
) -> torch.Tensor:
    """:func:`bandpass` with cutoffs as resolutions in Å (``lowpass_a=8`` keeps details coarser
    than 8 Å) and the edge width in Å⁻¹, for a pixel size of ``pixel_size_a`` Å."""
    if pixel_size_a <= 0:
        raise ValueError(f"pixel_size_a must be positive, got {pixel_size_a}")
    return bandpass(
        x,
        ndim=ndim,
        highpass_cycles_px=None if highpass_a is None else pixel_size_a / highpass_a,
        lowpass_cycles_px=None if lowpass_a is None else pixel_size_a / lowpass_a,
        edge_width_cycles_px=edge_width_per_a * pixel_size_a,
    )


def lowpass(
    x: torch.Tensor, *, ndim: int, cutoff_cycles_px: float, edge_width_cycles_px: float = 0.0
) -> torch.Tensor:
    """Keep frequencies below ``cutoff_cycles_px``; see :func:`bandpass`."""
    return bandpass(
        x, ndim=ndim, lowpass_cycles_px=cutoff_cycles_px, edge_width_cycles_px=edge_width_cycles_px
    )


def highpass(
    x: torch.Tensor, *, ndim: int, cutoff_cycles_px: float, edge_width_cycles_px: float = 0.0
) -> torch.Tensor:
    """Keep frequencies above ``cutoff_cycles_px``; see :func:`bandpass`."""
    return bandpass(
        x, ndim=ndim, highpass_cycles_px=cutoff_cycles_px, edge_width_cycles_px=edge_width_cycles_px
    )


def whiten(x: torch.Tensor, *, ndim: int, eps: float = 1e-12) -> torch.Tensor:
    """Divide the spectrum by its rotationally averaged amplitude (spectral whitening).

    Every Fourier shell (conventions §11, including the corners beyond Nyquist) of the
    result has a mean amplitude of 1 in the rfft layout; shells with a mean amplitude below
    ``eps`` are left at 0.

    Parameters
    ----------
    x:
        ``(..., h, w)`` (``ndim=2``) or ``(..., d, h, w)`` (``ndim=3``) real array.

    Returns
    -------
    torch.Tensor
        Real array of the input's shape.
    """
    dims = spatial_dims(ndim)
    shape = tuple(x.shape[-ndim:])
    spectrum = torch.fft.rfftn(x, dim=dims)
    n_shells = int(shell_index(shape, device=x.device).max()) + 1
    amplitude = rotational_average(spectrum.abs(), shape=shape, n_shells=n_shells)
    scale = torch.where(amplitude > eps, 1.0 / amplitude.clamp_min(eps), 0.0)
    weights = expand_radial_profile(scale, shape=shape, interpolation="nearest")
    out: torch.Tensor = torch.fft.irfftn(spectrum * weights, s=shape, dim=dims)
    return out
