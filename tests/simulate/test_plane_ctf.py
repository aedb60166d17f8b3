"""The sample CTF with a phase plate: the mean phase stays invisible, the rings become cos χ."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from cryowarp.core.ctf import ctf_2d
from cryowarp.core.radial import rotational_average
from cryowarp.simulate._plane_ctf import apply_sample_ctf
from cryowarp.simulate.build_species import build_species
from cryowarp.simulate.frame_series import simulate_frame_series
from cryowarp.simulate.presets import frame_series_preset
from cryowarp.simulate.sample_ctf import SampleCTF


def _ctf(phase_shift_deg: float, tilt_deg: float) -> SampleCTF:
    return SampleCTF(
        pixel_size_a=1.5,
        voltage_kv=300.0,
        cs_mm=2.7,
        amplitude_contrast=0.07,
        defocus_um=0.8,
        astigmatism_um=0.02,
        astigmatism_angle_deg=20.0,
        phase_shift_deg=phase_shift_deg,
        sample_tilt_deg=tilt_deg,
        sample_tilt_axis_deg=60.0,
        centre_xy_a=(96.0, 96.0),
    )


@pytest.mark.parametrize("tilt_deg", [0.0, 40.0])
@pytest.mark.parametrize("phase_shift_deg", [0.0, 90.0])
def test_the_mean_phase_is_darkened_by_the_amplitude_contrast_only(
    device: torch.device, tilt_deg: float, phase_shift_deg: float
) -> None:
    # A uniform phase is a phase of the whole wave: no phase plate makes it visible. Only the
    # amplitude contrast (the mean loss that stands in for inelastic scattering) remains.
    generator = torch.Generator().manual_seed(2)
    image = (0.8 + 0.1 * torch.randn(128, 128, generator=generator)).to(device)
    out = apply_sample_ctf(image, _ctf(phase_shift_deg, tilt_deg))
    assert float(out.mean()) == pytest.approx(0.07 * float(image.mean()), rel=1e-4)


def test_phase_plate_changes_every_frequency_but_the_mean(device: torch.device) -> None:
    generator = torch.Generator().manual_seed(3)
    image = (1.0 + torch.randn(128, 128, generator=generator)).to(device)
    ctf = _ctf(90.0, 0.0)
    kernel = ctf_2d(ctf.ctf_params(), (128, 128)).to(device)
    plain = torch.fft.irfft2(torch.fft.rfft2(image) * kernel, s=(128, 128))
    ctf_at_zero = float(kernel[0, 0])  # sin(90° + arcsin 0.07) ≈ 1
    # Everything but the mean is filtered by the CTF with the phase shift.
    offset = (0.07 - ctf_at_zero) * float(image.mean())
    assert torch.allclose(apply_sample_ctf(image, ctf), plain + offset, atol=1e-4)


def test_phase_plate_micrograph_keeps_positive_intensity_and_shows_cos_chi_rings() -> None:
    # 300 Å of ice has a mean phase of ≈ 0.9 rad: with CTF(0) ≈ 1 under a 90° phase plate the
    # image would be darkened by ≈ 1.8, below zero intensity, and the rings lost to clipping.
    settings = frame_series_preset(
        "tiny", phase_shift_deg=90.0, defocus_range_um=(0.8, 0.8), n_particles=2
    )
    movie = simulate_frame_series(
        build_species(settings, seed=1), settings, seed=1, render_frames=False
    )
    clean = movie.clean_micrograph.to(torch.float64)
    assert 0.8 < float(clean.mean()) < 0.95  # 1 − 2·A·φ_ice − artefacts, as without phase plate
    power = torch.fft.rfft2(clean - clean.mean()).abs().square()
    profile = rotational_average(power, shape=(256, 256))
    k = torch.arange(129, dtype=torch.float64) / (256 * 1.5)
    inside = (k > 1 / 30) & (k < 1 / 4)
    trend = torch.nn.functional.avg_pool1d(profile[None, None], 9, 1, 4)[0, 0]
    rings = (profile / trend)[inside]
    correlations = {}
    for phase in (0.0, 90.0):
        params = replace(movie.ctf, phase_shift_deg=phase).ctf_params()
        ctf2 = rotational_average(ctf_2d(params, (256, 256)).square(), shape=(256, 256))
        ctf2 = ctf2.to(torch.float64)[inside]
        correlations[phase] = float(torch.corrcoef(torch.stack([rings, ctf2]))[0, 1])
    assert correlations[90.0] > 0.5, correlations
    assert correlations[0.0] < -0.3, correlations  # sin² and cos² rings are out of phase
