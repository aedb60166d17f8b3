"""Real ↔ Fourier helpers for the rfft layout of docs/conventions.md §3.

Transforms are unnormalised forward (``norm="backward"``).  The *centred* transforms put the
real-space box centre (index ``N // 2``, conventions §2) at the phase origin by
``ifftshift``-ing before the forward and ``fftshift``-ing after the inverse transform; the
spectra themselves stay in the non-centred rfft layout.
"""

from __future__ import annotations

import torch

from cryowarp.errors import DimensionMismatchError

__all__ = [
    "fftshift_rfft",
    "full_to_rfft",
    "hermitian_symmetrize_rfft",
    "ifftshift_rfft",
    "irfft_centered",
    "negate_frequencies",
    "rfft_centered",
    "rfft_to_full",
    "spatial_dims",
]


def spatial_dims(ndim: int) -> tuple[int, ...]:
    """The last ``ndim`` (2 or 3) tensor dimensions, as negative indices ``(-ndim, …, -1)``."""
    if ndim not in (2, 3):
        raise ValueError(f"ndim must be 2 (images) or 3 (volumes), got {ndim}")
    return tuple(range(-ndim, 0))


def _check_rank(x: torch.Tensor, ndim: int, what: str) -> None:
    if x.dim() < ndim:
        raise DimensionMismatchError(
            None, f"{what} needs at least {ndim} dimensions, got shape {tuple(x.shape)}"
        )


def rfft_centered(x: torch.Tensor, *, ndim: int) -> torch.Tensor:
    """rfft of images ``(..., h, w)`` (``ndim=2``) or volumes ``(..., d, h, w)`` (``ndim=3``)
    with the box centre ``N // 2`` as the phase origin.

    Returns
    -------
    torch.Tensor
        ``(..., *rfft_shape)`` complex spectrum in the non-centred rfft layout (conventions §3).
    """
    dims = spatial_dims(ndim)
    _check_rank(x, ndim, "rfft_centered")
    out: torch.Tensor = torch.fft.rfftn(torch.fft.ifftshift(x, dim=dims), dim=dims)
    return out


def irfft_centered(spectrum: torch.Tensor, *, shape: tuple[int, ...]) -> torch.Tensor:
    """Inverse of :func:`rfft_centered`.

    Parameters
    ----------
    spectrum:
        ``(..., *rfft_shape(shape))`` complex rfft spectrum.
    shape:
        Real-space shape ``(h, w)`` or ``(d, h, w)`` (needed: ``w`` is ambiguous in rfft).

    Returns
    -------
    torch.Tensor
        ``(..., *shape)`` real array whose phase origin is the box centre ``N // 2``.
    """
    dims = spatial_dims(len(shape))
    _check_rank(spectrum, len(shape), "irfft_centered")
    x = torch.fft.irfftn(spectrum, s=shape, dim=dims)
    out: torch.Tensor = torch.fft.fftshift(x, dim=dims)
    return out


def fftshift_rfft(spectrum: torch.Tensor, *, ndim: int) -> torch.Tensor:
    """Move DC of the non-last spatial axes of an rfft spectrum to index ``n // 2``."""
    out: torch.Tensor = torch.fft.fftshift(spectrum, dim=spatial_dims(ndim)[:-1])
    return out


def ifftshift_rfft(spectrum: torch.Tensor, *, ndim: int) -> torch.Tensor:
    """Inverse of :func:`fftshift_rfft`: DC back to index 0 on the non-last spatial axes."""
    out: torch.Tensor = torch.fft.ifftshift(spectrum, dim=spatial_dims(ndim)[:-1])
    return out


def negate_frequencies(x: torch.Tensor, *, dims: tuple[int, ...]) -> torch.Tensor:
    """Reindex FFT-ordered axes ``dims`` so that index ``i`` holds what was at ``(-i) mod n``.

    Gives the Hermitian partner ``F(−k)`` of every sample along those axes.
    """
    return torch.roll(torch.flip(x, dims=dims), shifts=(1,) * len(dims), dims=dims)


def rfft_to_full(
    spectrum: torch.Tensor, *, shape: tuple[int, ...], fftshifted: bool = False
) -> torch.Tensor:
    """Complete an rfft half-spectrum to the full spectrum by Hermitian symmetry.

    Parameters
    ----------
    spectrum:
        ``(..., *rfft_shape(shape))`` rfft spectrum of a real array (complex, or real-valued
        quantities such as amplitudes, which are completed without conjugation).
    shape:
        Real-space shape ``(h, w)`` or ``(d, h, w)``.
    fftshifted:
        ``True`` to return DC at index ``n // 2`` of every axis (for display).

    Returns
    -------
    torch.Tensor
        ``(..., *shape)`` full spectrum, the layout of ``torch.fft.fftn``.
    """
    dims = spatial_dims(len(shape))
    w = shape[-1]
    if tuple(spectrum.shape[-len(shape) :]) != (*shape[:-1], w // 2 + 1):
        raise DimensionMismatchError(
            None, f"spectrum of shape {tuple(spectrum.shape)} is not the rfft of shape {shape}"
        )
    missing = spectrum[..., 1 : w - w // 2]  # columns 1 … ceil(w/2) - 1
    missing = negate_frequencies(missing, dims=dims[:-1]).flip(-1)
    if missing.is_complex():
        missing = missing.conj()
    full = torch.cat([spectrum, missing], dim=-1)
    return torch.fft.fftshift(full, dim=dims) if fftshifted else full


def full_to_rfft(spectrum: torch.Tensor, *, ndim: int, fftshifted: bool = False) -> torch.Tensor:
    """Keep the non-negative half of the last axis of a full spectrum ``(..., *shape)``.

    ``fftshifted=True`` when the input has DC at index ``n // 2`` of every axis.
    """
    dims = spatial_dims(ndim)
    if fftshifted:
        spectrum = torch.fft.ifftshift(spectrum, dim=dims)
    return spectrum[..., : spectrum.shape[-1] // 2 + 1]


def hermitian_symmetrize_rfft(spectrum: torch.Tensor, *, shape: tuple[int, ...]) -> torch.Tensor:
    """Make the self-conjugate columns of an rfft spectrum Hermitian.

    In the rfft layout the column ``kx = 0`` (and ``kx = w / 2`` for even ``w``) holds both
    members of each Hermitian pair ``k, −k``.  A spectrum that was modified there (e.g. by a
    phase ramp) is replaced by ``(F(k) + conj F(−k)) / 2`` on those columns, which is the
    spectrum of the real part of the inverse transform.  ``irfftn`` then gives the same result
    on every backend.
    """
    dims = spatial_dims(len(shape))
    w = shape[-1]
    columns = [0] + ([w // 2] if w % 2 == 0 else [])
    out = spectrum.clone()
    for c in columns:
        col = spectrum[..., c : c + 1]
        partner = negate_frequencies(col, dims=dims[:-1]).conj()
        out[..., c : c + 1] = 0.5 * (col + partner)
    return out
