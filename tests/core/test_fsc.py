"""FSC/FRC: identities, noise, and a known analytic case."""

from __future__ import annotations

import pytest
import torch

from cryowarp.core.fourier_grids import frequency_grid, shell_index
from cryowarp.core.fsc import frc, fsc, fsc_resolution_a, shell_frequencies_a


def test_fsc_of_a_map_with_itself_is_one(device: torch.device) -> None:
    a = torch.randn(24, 24, 24, device=device)
    assert torch.allclose(fsc(a, a), torch.ones(13, device=device), atol=1e-5)
    assert torch.allclose(fsc(a, -a), -torch.ones(13, device=device), atol=1e-5)


def test_fsc_of_independent_noise_is_small(device: torch.device) -> None:
    a, b = torch.randn(2, 48, 48, 48, device=device).unbind(0)
    curve = fsc(a, b)
    # Shell i of a 48^3 box has ~4 pi i^2 / 2 independent complex samples: |FSC| ~ 1/sqrt(n).
    assert curve[5:].abs().max() < 0.15


def test_fsc_follows_known_snr() -> None:
    """Signal + independent noise of equal power per shell: FSC = SNR/(1+SNR) = 0.5."""
    g = torch.Generator().manual_seed(1)
    signal = torch.randn(64, 64, 64, generator=g)
    a = signal + torch.randn(64, 64, 64, generator=g)
    b = signal + torch.randn(64, 64, 64, generator=g)
    curve = fsc(a, b)
    assert torch.allclose(curve[10:], torch.full_like(curve[10:], 0.5), atol=0.05)


def test_frc_is_batched_over_images(device: torch.device) -> None:
    a = torch.randn(3, 32, 32, device=device)
    b = a.clone()
    b[1] = torch.randn(32, 32, device=device)
    curve = frc(a, b)
    assert curve.shape == (3, 17)
    assert torch.allclose(curve[0], torch.ones(17, device=device), atol=1e-5)
    assert curve[1, 3:].abs().max() < 0.6


def test_fsc_resolution_interpolates_the_crossing() -> None:
    curve = torch.tensor([1.0, 0.9, 0.5, 0.2, 0.0, 0.0])
    # Crossing 0.143 between shells 3 and 4 at t = (0.2-0.143)/0.2 = 0.285
    box, pix = 10, 2.0
    expected = 1.0 / ((3 + 0.285) / (box * pix))
    assert fsc_resolution_a(curve, box, pix) == pytest.approx(expected, rel=1e-6)
    assert fsc_resolution_a(torch.ones(6), box, pix) == pytest.approx(2 * pix)
    assert float(shell_frequencies_a(box, pix)[-1]) == pytest.approx(1 / (2 * pix))


def test_shell_index_matches_radius_in_pixels() -> None:
    """Conventions §11: shell i holds i-0.5 <= |k| N < i+0.5; the DC sample is shell 0."""
    shells = shell_index((16, 16))
    assert shells[0, 0] == 0
    assert shells[0, 3] == 3  # (x=3, y=0)
    assert shells[4, 3] == 5  # (x=3, y=4): radius 5
    grid = frequency_grid((16, 16))
    assert torch.equal(grid[4, 3], torch.tensor([3 / 16, 4 / 16]))


def test_a_curve_below_the_threshold_from_the_start_has_no_resolution() -> None:
    """An anti-correlated map (inverted contrast) has no resolution, not a tiny number."""
    curve = -torch.ones(17, dtype=torch.float64)
    assert fsc_resolution_a(curve, 32, 2.0) == float("inf")
    curve[0] = 1.0  # DC agrees, everything else anti-correlated: between shells 0 and 1
    assert 64.0 < fsc_resolution_a(curve, 32, 2.0) < float("inf")
