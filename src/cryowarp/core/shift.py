"""Sub-pixel Fourier shifts of images and volumes (docs/conventions.md §1, §3, §4).

A shift ``(sx, sy[, sz])`` in pixels moves the **content** by ``+s``: a delta at ``x0`` ends at
``x0 + s``.  Shifts are periodic (content leaving one side re-enters on the other) and
differentiable with respect to the shift vector.

The Nyquist sample of an even-sized non-last axis (index ``n // 2``) is given the frequency
``+0.5`` cycles/pixel, as Warp does (``torch.fft.fftfreq`` gives ``−0.5``); together with
:func:`~cryowarp.core.fourier.hermitian_symmetrize_rfft` this reproduces Warp's
``ShiftSlices`` to float32 precision (``tests/core/test_shift.py::test_matches_warp_golden``).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from cryowarp.core.fourier import hermitian_symmetrize_rfft, spatial_dims
from cryowarp.core.fourier_grids import frequency_grid, rfft_shape
from cryowarp.errors import DimensionMismatchError

__all__ = ["shift_image", "shift_phase_ramp", "shift_rfft", "shift_volume"]


def _as_shift_tensor(
    shift_px: torch.Tensor | Sequence[float], ndim: int, like: torch.Tensor | None
) -> torch.Tensor:
    if not isinstance(shift_px, torch.Tensor):
        device = like.device if like is not None else None
        dtype = like.dtype if like is not None and like.is_floating_point() else torch.float32
        shift_px = torch.as_tensor(shift_px, dtype=dtype, device=device)
    if shift_px.dim() == 0 or shift_px.shape[-1] != ndim:
        raise DimensionMismatchError(
            None,
            f"a {ndim}-D shift needs a last dimension of {ndim} (x, y[, z]), "
            f"got shape {tuple(shift_px.shape)}",
        )
    return shift_px


def shift_phase_ramp(
    shape: tuple[int, ...],
    shift_px: torch.Tensor | Sequence[float],
    *,
    rfft: bool = True,
) -> torch.Tensor:
    """Phase ramp ``exp(−2πi k·s)`` that shifts a spectrum's content by ``+shift_px``.

    Multiply a (non-centred) spectrum of a real array of ``shape`` by the ramp to shift it
    without further FFTs; whether the spectrum was computed with :func:`rfft_centered` or
    plain ``rfftn`` does not matter.

    Parameters
    ----------
    shape:
        Real-space shape ``(h, w)`` or ``(d, h, w)``.
    shift_px:
        ``(..., ndim)`` shifts in pixels, ordered (x, y[, z]).
    rfft:
        ``True`` for the rfft layout, ``False`` for the full ``fftn`` layout.

    Returns
    -------
    torch.Tensor
        ``(..., *fourier_shape)`` complex ramp on the device of ``shift_px``.
    """
    spatial_dims(len(shape))
    shift = _as_shift_tensor(shift_px, len(shape), None)
    dtype = shift.dtype if shift.is_floating_point() else torch.float32
    ndim = len(shape)
    # The ramp is separable: one 1-D ramp per axis, multiplied by broadcasting, so only
    # O(h + w) complex exponentials are evaluated per shift instead of O(h·w).
    k = frequency_grid(shape, rfft=rfft, nyquist_positive=True, device=shift.device, dtype=dtype)
    ramp: torch.Tensor | None = None
    for axis in range(ndim):  # vector component axis = x, y, z -> array axis -1, -2, -3
        array_axis = ndim - 1 - axis
        k_axis = k[..., axis]
        for other in reversed(range(ndim)):  # keep only the samples along array_axis
            if other != array_axis:
                k_axis = k_axis.select(other, 0)
        view = [1] * ndim
        view[array_axis] = k_axis.shape[0]
        phase = -2.0 * torch.pi * shift[..., axis, None].to(dtype) * k_axis
        factor = torch.polar(torch.ones_like(phase), phase)
        factor = factor.reshape(*shift.shape[:-1], *view)
        ramp = factor if ramp is None else ramp * factor
    assert ramp is not None
    return ramp


def shift_rfft(
    spectrum: torch.Tensor,
    shift_px: torch.Tensor | Sequence[float],
    *,
    shape: tuple[int, ...],
) -> torch.Tensor:
    """Shift the content of an rfft spectrum ``(..., *rfft_shape(shape))`` by ``shift_px``.

    ``shift_px`` is ``(..., ndim)`` in pixels, (x, y[, z]); batch dimensions broadcast.  The
    ramp is computed in the spectrum's precision.
    The self-conjugate columns are made Hermitian so that ``irfftn`` of the result is the
    same on every backend.
    """
    if tuple(spectrum.shape[-len(shape) :]) != rfft_shape(shape):
        raise DimensionMismatchError(
            None, f"spectrum of shape {tuple(spectrum.shape)} is not the rfft of shape {shape}"
        )
    real_dtype = spectrum.real.dtype
    shift = _as_shift_tensor(shift_px, len(shape), spectrum.real)
    ramp = shift_phase_ramp(shape, shift.to(device=spectrum.device, dtype=real_dtype))
    return hermitian_symmetrize_rfft(spectrum * ramp, shape=shape)


def _shift_real(
    x: torch.Tensor, shift_px: torch.Tensor | Sequence[float], ndim: int
) -> torch.Tensor:
    dims = spatial_dims(ndim)
    if x.dim() < ndim:
        raise DimensionMismatchError(
            None, f"a {ndim}-D shift needs at least {ndim} dimensions, got {tuple(x.shape)}"
        )
    if x.is_complex():
        raise TypeError("shift_image/shift_volume take real arrays; use shift_rfft for spectra")
    shape = tuple(x.shape[-ndim:])
    shift = _as_shift_tensor(shift_px, ndim, x)
    spectrum = shift_rfft(torch.fft.rfftn(x, dim=dims), shift, shape=shape)
    out: torch.Tensor = torch.fft.irfftn(spectrum, s=shape, dim=dims)
    return out


def shift_image(image: torch.Tensor, shift_px: torch.Tensor | Sequence[float]) -> torch.Tensor:
    """Shift images ``(..., h, w)`` by ``shift_px`` ``(..., 2)`` = (x, y) pixels (periodic).

    The content moves by ``+shift_px`` (conventions §4); batch dimensions broadcast.
    Differentiable with respect to ``image`` and ``shift_px``.
    """
    return _shift_real(image, shift_px, 2)


def shift_volume(volume: torch.Tensor, shift_px: torch.Tensor | Sequence[float]) -> torch.Tensor:
    """Shift volumes ``(..., d, h, w)`` by ``shift_px`` ``(..., 3)`` = (x, y, z) pixels.

    The content moves by ``+shift_px`` (conventions §4); batch dimensions broadcast.
    Differentiable with respect to ``volume`` and ``shift_px``.
    """
    return _shift_real(volume, shift_px, 3)
