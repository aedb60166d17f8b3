"""Band-pass filters with raised-cosine edges, and spectral whitening."""

from __future__ import annotations

import math

import pytest
import torch

from cryowarp.core.filters import (
    bandpass,
    bandpass_a,
    highpass,
    lowpass,
    raised_cosine_band,
    whiten,
)
from cryowarp.core.fourier_grids import frequency_magnitude, shell_index
from cryowarp.core.radial import rotational_average


def test_raised_cosine_edges() -> None:
    k = torch.linspace(0, 0.5, 501, dtype=torch.float64)
    w = raised_cosine_band(
        k, highpass_cycles_px=0.1, lowpass_cycles_px=0.3, edge_width_cycles_px=0.04
    )
    at = {round(float(f), 3): float(v) for f, v in zip(k, w, strict=True)}
    assert at[0.1] == pytest.approx(0.5)
    assert at[0.3] == pytest.approx(0.5)
    assert at[0.08] == pytest.approx(0.0, abs=1e-12)
    assert at[0.32] == pytest.approx(0.0, abs=1e-12)
    assert all(at[f] == pytest.approx(1.0) for f in (0.12, 0.2, 0.28))
    rising, falling = w[(k >= 0.08) & (k <= 0.12)], w[(k >= 0.28) & (k <= 0.32)]
    assert bool((rising.diff() >= 0).all())
    assert bool((falling.diff() <= 0).all())


@pytest.mark.parametrize("shape", [(48, 50), (20, 21, 22)])
def test_bandpass_removes_frequencies_outside_the_band(
    shape: tuple[int, ...], device: torch.device
) -> None:
    ndim = len(shape)
    dims = tuple(range(-ndim, 0))
    x = torch.randn(2, *shape, dtype=torch.float64, device=device)
    out = bandpass(
        x, ndim=ndim, highpass_cycles_px=0.1, lowpass_cycles_px=0.3, edge_width_cycles_px=0.04
    )
    before = torch.fft.rfftn(x, dim=dims)
    after = torch.fft.rfftn(out, dim=dims)
    k = frequency_magnitude(shape, device=device, dtype=torch.float64)
    outside = (k < 0.08) | (k > 0.32)
    inside = (k > 0.12) & (k < 0.28)
    assert after[..., outside].abs().max() < 1e-9 * before.abs().max()
    assert torch.allclose(after[..., inside], before[..., inside], atol=1e-9)


def test_lowpass_plus_highpass_is_identity(device: torch.device) -> None:
    x = torch.randn(3, 32, 31, dtype=torch.float64, device=device)
    parts = lowpass(x, ndim=2, cutoff_cycles_px=0.2, edge_width_cycles_px=0.05) + highpass(
        x, ndim=2, cutoff_cycles_px=0.2, edge_width_cycles_px=0.05
    )
    assert torch.allclose(parts, x, atol=1e-12)


def test_bandpass_in_angstrom(device: torch.device) -> None:
    """A 10 Å wave (pixel 2 Å → 0.2 cycles/px) passes an 8 Å low-pass, not a 12 Å one."""
    n = 40
    i = torch.arange(n, dtype=torch.float64, device=device)
    wave = torch.cos(2 * math.pi * 0.2 * i)[None, :].expand(n, n)
    kept = bandpass_a(wave, ndim=2, pixel_size_a=2.0, lowpass_a=8.0, edge_width_per_a=0.01)
    removed = bandpass_a(wave, ndim=2, pixel_size_a=2.0, lowpass_a=12.0, edge_width_per_a=0.01)
    assert torch.allclose(kept, wave, atol=1e-12)
    assert removed.abs().max() < 1e-12
    high = bandpass_a(wave, ndim=2, pixel_size_a=2.0, highpass_a=20.0)
    assert torch.allclose(high, wave, atol=1e-12)


@pytest.mark.parametrize("shape", [(64, 60), (24, 24, 25)])
def test_whitening_gives_a_flat_rotational_average(
    shape: tuple[int, ...], device: torch.device
) -> None:
    ndim = len(shape)
    dims = tuple(range(-ndim, 0))
    k = frequency_magnitude(shape, device=device, dtype=torch.float64)
    noise = torch.randn(2, *shape, dtype=torch.float64, device=device)
    coloured = torch.fft.irfftn(
        torch.fft.rfftn(noise, dim=dims) * 10.0 / (1.0 + 200.0 * k.square()), s=shape, dim=dims
    )
    n_shells = int(shell_index(shape).max()) + 1
    amplitude_before = rotational_average(
        torch.fft.rfftn(coloured, dim=dims).abs(), shape=shape, n_shells=n_shells
    )
    assert amplitude_before[..., 1].min() > 5 * amplitude_before[..., -2].max()
    white = whiten(coloured, ndim=ndim)
    amplitude = rotational_average(
        torch.fft.rfftn(white, dim=dims).abs(), shape=shape, n_shells=n_shells
    )
    assert torch.allclose(amplitude, torch.ones_like(amplitude), atol=1e-9)
