"""Crop/pad about the centre, Fourier crop/pad, rescale and binning."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from cryowarp.core.resize import (
    bin_average,
    crop_or_pad,
    fourier_crop_or_pad,
    rescale,
    rescale_to_pixel_size,
)
from cryowarp.errors import DimensionMismatchError

shapes = st.lists(st.integers(min_value=1, max_value=10), min_size=2, max_size=3).map(tuple)
growth = st.lists(st.integers(min_value=0, max_value=6), min_size=3, max_size=3)


def _grow(shape: tuple[int, ...], extra: list[int]) -> tuple[int, ...]:
    return tuple(n + e for n, e in zip(shape, extra, strict=False))


@given(shape=shapes, extra=growth)
def test_crop_of_pad_is_identity_and_keeps_centre(shape: tuple[int, ...], extra: list[int]) -> None:
    big = _grow(shape, extra)
    x = torch.randn(2, *shape, dtype=torch.float64)
    padded = crop_or_pad(x, big, value=0.0)
    assert padded.shape == (2, *big)
    assert torch.equal(crop_or_pad(padded, shape), x)
    delta = torch.zeros(shape)
    delta[tuple(n // 2 for n in shape)] = 1.0
    moved = crop_or_pad(delta, big)
    assert moved[tuple(n // 2 for n in big)] == 1.0
    assert torch.equal(crop_or_pad(crop_or_pad(moved, big), shape), delta)


def test_crop_or_pad_mixed_axes_and_fill(device: torch.device) -> None:
    x = torch.arange(30.0, device=device).reshape(5, 6)
    out = crop_or_pad(x, (7, 4), value=-1.0)
    assert out.shape == (7, 4)
    assert torch.equal(out[0], torch.full((4,), -1.0, device=device))
    # centre (2, 3) of the input lands on (3, 2) of the output
    assert out[3, 2] == x[2, 3]


@given(shape=shapes, extra=growth)
def test_fourier_crop_of_fourier_pad_is_identity(shape: tuple[int, ...], extra: list[int]) -> None:
    big = _grow(shape, extra)
    dims = tuple(range(-len(shape), 0))
    spectrum = torch.fft.rfftn(torch.randn(2, *shape, dtype=torch.float64), dim=dims)
    padded = fourier_crop_or_pad(spectrum, shape=shape, new_shape=big)
    assert padded.shape[-len(shape) :] == (*big[:-1], big[-1] // 2 + 1)
    back = fourier_crop_or_pad(padded, shape=big, new_shape=shape)
    assert torch.allclose(back, spectrum, atol=1e-10)


@given(shape=shapes, new=shapes)
def test_rescale_preserves_mean(shape: tuple[int, ...], new: tuple[int, ...]) -> None:
    new = (*new, 4, 4)[: len(shape)]
    x = torch.randn(3, *shape, dtype=torch.float64) + 2.0
    dims = tuple(range(-len(shape), 0))
    out = rescale(x, new)
    assert out.shape == (3, *new)
    assert torch.allclose(out.mean(dim=dims), x.mean(dim=dims), atol=1e-12)


@given(shape=shapes, extra=growth)
def test_rescale_up_then_down_is_identity(shape: tuple[int, ...], extra: list[int]) -> None:
    big = _grow(shape, extra)
    x = torch.randn(*shape, dtype=torch.float64)
    assert torch.allclose(rescale(rescale(x, big), shape), x, atol=1e-10)


def _cosine(n: int, cycles: int, device: torch.device) -> torch.Tensor:
    """cos of ``cycles`` periods across the box, phase origin at the centre n//2."""
    i = torch.arange(n, dtype=torch.float64, device=device) - n // 2
    return torch.cos(2 * math.pi * cycles * i / n)


@pytest.mark.parametrize(("n", "m"), [(16, 24), (15, 32), (24, 15), (21, 14)])
def test_rescale_resamples_a_band_limited_image(n: int, m: int, device: torch.device) -> None:
    """A cosine below both Nyquists is resampled onto the new grid, centred on m//2."""
    image = _cosine(n, 3, device)[:, None] * _cosine(n, 2, device)[None, :]
    expected = _cosine(m, 3, device)[:, None] * _cosine(m, 2, device)[None, :]
    assert torch.allclose(rescale(image, (m, m)), expected, atol=1e-10)


def test_rescale_to_pixel_size_reports_achieved_pixel_size(device: torch.device) -> None:
    x = torch.randn(2, 100, 80, device=device)
    out, pixel_size_xy_a = rescale_to_pixel_size(x, ndim=2, pixel_size_a=1.0, new_pixel_size_a=1.5)
    assert out.shape == (2, 67, 53)
    assert pixel_size_xy_a == pytest.approx((80 / 53, 100 / 67))


def test_bin_average(device: torch.device) -> None:
    x = torch.arange(4 * 6, dtype=torch.float32, device=device).reshape(4, 6)
    binned = bin_average(x, 2, ndim=2)
    assert binned.shape == (2, 3)
    assert binned[1, 2] == pytest.approx(float(x[2:4, 4:6].mean()))
    v = torch.randn(2, 6, 9, 3, device=device)
    vb = bin_average(v, 3, ndim=3)
    assert vb.shape == (2, 2, 3, 1)
    assert torch.allclose(vb[1, 1, 2, 0], v[1, 3:6, 6:9, 0:3].mean())
    with pytest.raises(DimensionMismatchError, match="divisible"):
        bin_average(torch.zeros(5, 6), 2, ndim=2)


def test_fourier_crop_checks_shapes() -> None:
    with pytest.raises(DimensionMismatchError, match="not the rfft"):
        fourier_crop_or_pad(
            torch.zeros(8, 8, dtype=torch.complex64), shape=(8, 8), new_shape=(4, 4)
        )
