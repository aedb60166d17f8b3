"""Fourier shifts: Warp's golden value, direction (conventions §4), round trips, gradients."""

from __future__ import annotations

from pathlib import Path

import mrcfile
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from cryowarp.core.filters import lowpass
from cryowarp.core.shift import shift_image, shift_phase_ramp, shift_rfft, shift_volume
from cryowarp.errors import DimensionMismatchError

sizes = st.integers(min_value=3, max_value=12)
small_shift = st.floats(min_value=-6.0, max_value=6.0, allow_nan=False)


def _read(path: Path) -> torch.Tensor:
    return torch.from_numpy(mrcfile.read(path).copy())


def test_matches_warp_golden(warp_reference: Path, device: torch.device) -> None:
    """Warp: a delta at [0][0] of an 8x8 image shifted by (x, y) = (2.5, 3.3) with ShiftSlices."""
    original = _read(warp_reference / "shift_reference.mrc").to(device)
    expected = _read(warp_reference / "shift_shifted_2.5_3.3.mrc").to(device)
    assert original.shape == (8, 8)
    assert original[0, 0] == 1
    shifted = shift_image(original, (2.5, 3.3))
    assert shifted.dtype == torch.float32
    assert (shifted - expected).abs().max() < 1e-6
    # x is the last array axis: swapping the components does not reproduce Warp.
    assert (shift_image(original, (3.3, 2.5)) - expected).abs().max() > 0.1
    # The content moved by +shift: the peak is at row y≈3.3, columns x≈2..3.
    row, col = divmod(int(expected.argmax()), 8)
    assert (row, col) == (3, 3)


def test_delta_moves_by_plus_shift(device: torch.device) -> None:
    image = torch.zeros(2, 9, 10, device=device)
    image[:, 2, 1] = 1.0  # (x, y) = (1, 2)
    shifted = shift_image(image, torch.tensor([[3.0, 4.0], [-1.0, 5.0]], device=device))
    assert shifted[0, 6, 4] == pytest.approx(1.0, abs=1e-5)
    assert shifted[1, 7, 0] == pytest.approx(1.0, abs=1e-5)
    volume = torch.zeros(7, 8, 9, device=device)
    volume[1, 2, 3] = 1.0  # (x, y, z) = (3, 2, 1)
    moved = shift_volume(volume, (1.0, 2.0, 3.0))
    assert moved[4, 4, 4] == pytest.approx(1.0, abs=1e-5)


def _gaussian(shape: tuple[int, ...], sigma_px: float, device: torch.device) -> torch.Tensor:
    axes = [torch.arange(n, dtype=torch.float64, device=device) - n // 2 for n in shape]
    r2 = sum(g.square() for g in torch.meshgrid(*axes, indexing="ij"))
    assert isinstance(r2, torch.Tensor)
    return torch.exp(-r2 / (2 * sigma_px**2))


def _centroid_xyz(x: torch.Tensor) -> torch.Tensor:
    axes = [torch.arange(n, dtype=x.dtype, device=x.device) for n in x.shape]
    grids = torch.meshgrid(*axes, indexing="ij")
    return torch.stack([(g * x).sum() / x.sum() for g in grids[::-1]])  # (x, y[, z])


@pytest.mark.parametrize("shape", [(32, 30), (20, 22, 21)])
def test_gaussian_centroid_moves_by_shift(shape: tuple[int, ...], device: torch.device) -> None:
    blob = _gaussian(shape, 1.8, device)
    shift = torch.tensor([1.3, -2.7, 0.45][: len(shape)], dtype=torch.float64, device=device)
    moved = shift_image(blob, shift) if len(shape) == 2 else shift_volume(blob, shift)
    centre = torch.tensor([n // 2 for n in shape[::-1]], dtype=torch.float64, device=device)
    assert torch.allclose(_centroid_xyz(blob), centre, atol=1e-9)
    assert torch.allclose(_centroid_xyz(moved), centre + shift, atol=1e-6)


@given(h=sizes, w=sizes, sx=st.integers(-15, 15), sy=st.integers(-15, 15))
def test_integer_shift_is_roll(h: int, w: int, sx: int, sy: int) -> None:
    image = torch.randn(2, h, w, dtype=torch.float64)
    expected = torch.roll(image, shifts=(sy, sx), dims=(-2, -1))
    assert torch.allclose(shift_image(image, (float(sx), float(sy))), expected, atol=1e-10)


@given(d=sizes, sx=st.integers(-9, 9), sy=st.integers(-9, 9), sz=st.integers(-9, 9))
def test_integer_volume_shift_is_roll(d: int, sx: int, sy: int, sz: int) -> None:
    volume = torch.randn(d, d + 1, d + 2, dtype=torch.float64)
    expected = torch.roll(volume, shifts=(sz, sy, sx), dims=(-3, -2, -1))
    moved = shift_volume(volume, (float(sx), float(sy), float(sz)))
    assert torch.allclose(moved, expected, atol=1e-10)


def _band_limited(shape: tuple[int, ...]) -> torch.Tensor:
    """Random array without Nyquist samples (|k| > 0.45 cycles/px removed)."""
    x = torch.randn(shape, dtype=torch.float64)
    return lowpass(x, ndim=len(shape), cutoff_cycles_px=0.45)


@given(
    h=sizes, w=sizes, s1=st.tuples(small_shift, small_shift), s2=st.tuples(small_shift, small_shift)
)
def test_shift_round_trip_and_composition(
    h: int, w: int, s1: tuple[float, float], s2: tuple[float, float]
) -> None:
    image = _band_limited((h, w))
    there = shift_image(image, s1)
    back = shift_image(there, (-s1[0], -s1[1]))
    assert torch.allclose(back, image, atol=1e-10)
    both = shift_image(there, s2)
    direct = shift_image(image, (s1[0] + s2[0], s1[1] + s2[1]))
    assert torch.allclose(both, direct, atol=1e-10)


@given(d=sizes, s=st.tuples(small_shift, small_shift, small_shift))
def test_volume_round_trip(d: int, s: tuple[float, float, float]) -> None:
    volume = _band_limited((d, d + 1, d + 2))
    back = shift_volume(shift_volume(volume, s), tuple(-v for v in s))
    assert torch.allclose(back, volume, atol=1e-10)


@given(h=sizes, w=sizes, sx=small_shift, sy=small_shift)
def test_odd_sizes_round_trip_any_input(h: int, w: int, sx: float, sy: float) -> None:
    """Without Nyquist samples no information is lost: exact round trip for any input."""
    image = torch.randn(2 * h + 1, 2 * w + 1, dtype=torch.float64)
    back = shift_image(shift_image(image, (sx, sy)), (-sx, -sy))
    assert torch.allclose(back, image, atol=1e-10)


def _finite_difference_gradient(
    loss: object, shift: torch.Tensor, step: float = 1e-5
) -> torch.Tensor:
    assert callable(loss)
    grad = torch.zeros_like(shift)
    for i in range(shift.numel()):
        delta = torch.zeros_like(shift).flatten()
        delta[i] = step
        delta = delta.reshape(shift.shape)
        grad.view(-1)[i] = (loss(shift + delta) - loss(shift - delta)) / (2 * step)
    return grad


@pytest.mark.parametrize("ndim", [2, 3])
def test_gradient_wrt_shift_matches_finite_differences(ndim: int, device: torch.device) -> None:
    shape = (2, 12, 11) if ndim == 2 else (8, 9, 10)
    x = torch.randn(shape, dtype=torch.float64, device=device)
    weights = torch.randn(shape, dtype=torch.float64, device=device)
    shift_fn = shift_image if ndim == 2 else shift_volume
    shift = torch.randn(*shape[:-ndim], ndim, dtype=torch.float64, device=device) * 2

    def loss(s: torch.Tensor) -> torch.Tensor:
        return (shift_fn(x, s) * weights).sum()

    leaf = shift.clone().requires_grad_()
    loss(leaf).backward()
    assert leaf.grad is not None
    expected = _finite_difference_gradient(loss, shift)
    assert expected.abs().max() > 0.1
    assert torch.allclose(leaf.grad, expected, rtol=1e-6, atol=1e-7)


def test_spectrum_shift_matches_image_shift(device: torch.device) -> None:
    images = torch.randn(3, 1, 10, 9, dtype=torch.float64, device=device)
    shifts = torch.randn(4, 2, dtype=torch.float64, device=device) * 3
    batched = shift_image(images, shifts)
    assert batched.shape == (3, 4, 10, 9)
    for i in range(3):
        for j in range(4):
            assert torch.allclose(batched[i, j], shift_image(images[i, 0], shifts[j]))
    spectrum = torch.fft.rfftn(images, dim=(-2, -1))
    via_spectrum = torch.fft.irfftn(shift_rfft(spectrum, shifts, shape=(10, 9)), s=(10, 9))
    assert torch.allclose(via_spectrum, batched, atol=1e-12)


def test_full_layout_ramp_on_odd_box(device: torch.device) -> None:
    image = torch.randn(9, 11, dtype=torch.float64, device=device)
    ramp = shift_phase_ramp(
        (9, 11), torch.tensor([1.7, -0.4], dtype=torch.float64, device=device), rfft=False
    )
    assert ramp.shape == (9, 11)
    assert ramp.device.type == device.type
    moved = torch.fft.ifftn(torch.fft.fftn(image) * ramp)
    assert moved.imag.abs().max() < 1e-12
    assert torch.allclose(moved.real, shift_image(image, (1.7, -0.4)), atol=1e-12)


def test_wrong_shift_length_is_a_typed_error() -> None:
    with pytest.raises(DimensionMismatchError, match="last dimension of 2"):
        shift_image(torch.zeros(8, 8), (1.0, 2.0, 3.0))
    with pytest.raises(DimensionMismatchError, match="last dimension of 3"):
        shift_volume(torch.zeros(4, 8, 8), (1.0, 2.0))
