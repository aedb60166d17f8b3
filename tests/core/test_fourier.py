"""Centred rfft transforms and half ↔ full spectrum conversions (conventions §2, §3)."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from cryowarp.core.fourier import (
    fftshift_rfft,
    full_to_rfft,
    hermitian_symmetrize_rfft,
    ifftshift_rfft,
    irfft_centered,
    rfft_centered,
    rfft_to_full,
)
from cryowarp.core.fourier_grids import rfft_shape
from cryowarp.errors import DimensionMismatchError

shapes = st.lists(st.integers(min_value=1, max_value=9), min_size=2, max_size=3).map(tuple)


@given(shape=shapes)
def test_centre_is_phase_origin(shape: tuple[int, ...]) -> None:
    """A delta at the box centre N//2 has a real, flat spectrum; the inverse puts it back."""
    delta = torch.zeros(shape, dtype=torch.float64)
    delta[tuple(n // 2 for n in shape)] = 1.0
    spectrum = rfft_centered(delta, ndim=len(shape))
    assert spectrum.shape == rfft_shape(shape)
    assert torch.allclose(spectrum, torch.ones_like(spectrum), atol=1e-12)
    assert torch.allclose(irfft_centered(spectrum, shape=shape), delta, atol=1e-12)


def test_centred_round_trip_batched(device: torch.device) -> None:
    x = torch.randn(3, 2, 7, 8, device=device)
    spectrum = rfft_centered(x, ndim=2)
    assert spectrum.shape == (3, 2, 7, 5)
    assert torch.allclose(irfft_centered(spectrum, shape=(7, 8)), x, atol=1e-5)
    v = torch.randn(2, 5, 6, 7, device=device)
    assert torch.allclose(irfft_centered(rfft_centered(v, ndim=3), shape=(5, 6, 7)), v, atol=1e-5)


@given(shape=shapes, fftshifted=st.booleans())
def test_rfft_to_full_matches_fftn(shape: tuple[int, ...], fftshifted: bool) -> None:
    x = torch.randn(2, *shape, dtype=torch.float64)
    dims = tuple(range(-len(shape), 0))
    full = torch.fft.fftn(x, dim=dims)
    if fftshifted:
        full = torch.fft.fftshift(full, dim=dims)
    half = torch.fft.rfftn(x, dim=dims)
    assert torch.allclose(rfft_to_full(half, shape=shape, fftshifted=fftshifted), full)
    assert torch.allclose(full_to_rfft(full, ndim=len(shape), fftshifted=fftshifted), half)
    # Real-valued quantities (amplitudes) are completed without conjugation.
    amplitude = rfft_to_full(half.abs(), shape=shape, fftshifted=fftshifted)
    assert torch.allclose(amplitude, full.abs())


def test_fftshift_rfft_puts_dc_at_centre(device: torch.device) -> None:
    spectrum = torch.fft.rfftn(torch.ones(6, 7, 8, device=device))  # only DC is non-zero
    shifted = fftshift_rfft(spectrum, ndim=3)
    assert shifted[3, 3, 0] == pytest.approx(6 * 7 * 8)
    assert shifted.abs().sum() == pytest.approx(6 * 7 * 8)
    assert torch.equal(ifftshift_rfft(shifted, ndim=3), spectrum)


@given(shape=shapes)
def test_hermitian_symmetrize(shape: tuple[int, ...]) -> None:
    x = torch.randn(shape, dtype=torch.float64)
    dims = tuple(range(-len(shape), 0))
    spectrum = torch.fft.rfftn(x, dim=dims)
    # The spectrum of a real array is already Hermitian: unchanged.
    assert torch.allclose(hermitian_symmetrize_rfft(spectrum, shape=shape), spectrum)
    # An arbitrary spectrum becomes one of a real array: it survives irfft → rfft exactly.
    noise = torch.randn(spectrum.shape, dtype=torch.complex128)
    symmetric = hermitian_symmetrize_rfft(noise, shape=shape)
    again = torch.fft.rfftn(torch.fft.irfftn(symmetric, s=shape, dim=dims), dim=dims)
    assert torch.allclose(again, symmetric, atol=1e-10)


def test_errors() -> None:
    with pytest.raises(ValueError, match="ndim must be 2"):
        rfft_centered(torch.zeros(4), ndim=1)
    with pytest.raises(DimensionMismatchError, match="not the rfft of shape"):
        rfft_to_full(torch.zeros(4, 4, dtype=torch.complex64), shape=(4, 4))
