"""Dose weighting follows Warp's −4 Å² per e⁻/Å² (conventions §7)."""

from __future__ import annotations

import math

import torch

from cryowarp.core.dose import dose_bfactors_a2, dose_weights


def test_bfactor_is_minus_four_per_electron() -> None:
    assert torch.equal(
        dose_bfactors_a2(torch.tensor([0.0, 1.0, 10.0])), torch.tensor([0.0, -4.0, -40.0])
    )


def test_weights_follow_exp_of_dose_times_k_squared(device: torch.device) -> None:
    dose = torch.tensor([0.5, 1.5, 2.5, 30.0], device=device)
    w = dose_weights(dose, (64, 64), pixel_size_a=1.0, normalize=False)
    assert w.shape == (4, 64, 33)
    # (x=8, y=0) is k = 8/64 = 0.125 Å⁻¹: weight exp(-4 D k²/4) = exp(-D k²)
    k2 = 0.125**2
    expected = torch.exp(-dose * k2)
    assert torch.allclose(w[:, 0, 8], expected, rtol=1e-6)
    # DC is never attenuated
    assert torch.allclose(w[:, 0, 0], torch.ones(4, device=device))


def test_normalized_weights_sum_to_one_and_favour_early_frames(device: torch.device) -> None:
    dose = torch.arange(40, dtype=torch.float32, device=device) + 0.5
    w = dose_weights(dose, (32, 48), pixel_size_a=1.2)
    assert torch.allclose(w.sum(dim=0), torch.ones(32, 25, device=device), atol=1e-6)
    assert torch.allclose(w[:, 0, 0], torch.full((40,), 1 / 40, device=device))
    nyquist = w[:, 0, 24]
    assert torch.all(nyquist[:-1] > nyquist[1:])
    ratio = float(nyquist[0] / nyquist[1])
    assert math.isclose(ratio, math.exp((0.5 / 1.2) ** 2), rel_tol=1e-4)
