"""1-D search and background/envelope fit on synthetic spectra of known CTF."""

from __future__ import annotations

import math

import pytest
import torch

from cryowarp.preprocess.ctf.background import (
    fit_background_and_envelope,
    profile_frequencies_per_a,
    rotational_profile,
)
from cryowarp.preprocess.ctf.search1d import Optics, ctf_squared_1d, search_defocus_1d

from ._synthetic import background_envelope, optics_params, synthetic_spectra

OPTICS = Optics(pixel_size_a=1.5, voltage_kv=300.0, cs_mm=2.7, amplitude_contrast=0.07)
RANGE = (1 / 30, 1 / 4)


def test_background_and_envelope_are_recovered_from_a_noiseless_profile() -> None:
    k = profile_frequencies_per_a(256, 1.5)
    background, envelope = background_envelope(k)
    ctf2 = ctf_squared_1d(OPTICS, k, torch.tensor([1.5], dtype=torch.float64), torch.zeros(1))[0, 0]
    fitted_b, fitted_e = fit_background_and_envelope(background + envelope * ctf2, ctf2, k, RANGE)
    inside = (k >= RANGE[0]) & (k <= RANGE[1])
    # 3-node splines approximate the smooth curves to a few per cent of the background level.
    assert (fitted_b - background)[inside].abs().max() < 0.05 * background[inside].min()
    assert (fitted_e - envelope)[inside].abs().max() < 0.1 * envelope[inside].max()


@pytest.mark.parametrize("defocus_um", [0.7, 1.6, 3.3])
def test_recovers_defocus_of_a_noisy_synthetic_spectrum(
    device: torch.device, defocus_um: float
) -> None:
    params = optics_params(pixel_size_a=1.5, defocus_um=defocus_um, device=device)
    profile = rotational_profile(synthetic_spectra(params, 256, n_averaged=20, seed=3))
    k = profile_frequencies_per_a(256, 1.5, device=device)
    result = search_defocus_1d(
        profile, k, OPTICS, fit_range_per_a=RANGE, defocus_range_um=(0.3, 5.0), defocus_step_um=0.01
    )
    assert abs(result.defocus_um - defocus_um) < 0.005
    assert result.score > 0.8
    assert result.background.device.type == device.type


def test_recovers_phase_shift_with_the_defocus() -> None:
    params = optics_params(pixel_size_a=1.5, defocus_um=1.2, phase_shift_deg=90.0)
    profile = rotational_profile(synthetic_spectra(params, 256, n_averaged=20, seed=4))
    k = profile_frequencies_per_a(256, 1.5)
    phases = torch.deg2rad(torch.arange(0.0, 181.0, 5.0, dtype=torch.float64))
    result = search_defocus_1d(
        profile,
        k,
        OPTICS,
        fit_range_per_a=RANGE,
        defocus_range_um=(0.3, 5.0),
        defocus_step_um=0.01,
        phase_shifts_rad=phases,
    )
    assert abs(math.degrees(result.phase_shift_rad) - 90.0) <= 5.0
    assert abs(result.defocus_um - 1.2) < 0.02


def test_pure_noise_scores_low() -> None:
    k = profile_frequencies_per_a(256, 1.5)
    background, _ = background_envelope(k)
    generator = torch.Generator().manual_seed(5)
    noise = -torch.log(torch.rand((20, k.shape[0]), generator=generator, dtype=torch.float64))
    result = search_defocus_1d(
        background * noise.mean(0),
        k,
        OPTICS,
        fit_range_per_a=RANGE,
        defocus_range_um=(0.3, 5.0),
        defocus_step_um=0.01,
    )
    assert result.score < 0.5
