"""2-D fit: astigmatism on one spectrum, and a defocus gradient over patches (tilted sample)."""

from __future__ import annotations

import math

import pytest
import torch

from cryowarp.core.ctf import ctf_2d
from cryowarp.core.spline_grid import evaluate_cubic_grid
from cryowarp.preprocess.ctf.background import (
    fit_background_and_envelope,
    profile_frequencies_per_a,
    rotational_profile,
)
from cryowarp.preprocess.ctf.estimate import estimate_ctf_from_spectrum
from cryowarp.preprocess.ctf.fit2d import fit_patches_2d
from cryowarp.preprocess.ctf.polar import polar_targets
from cryowarp.preprocess.ctf.procedure import max_grid_nodes
from cryowarp.preprocess.ctf.search1d import Optics, search_defocus_1d
from cryowarp.preprocess.ctf.settings import CtfSettings
from cryowarp.preprocess.ctf.spectra import centred_full_spectrum

from ._synthetic import optics_params, synthetic_spectra


@pytest.mark.parametrize(
    ("astig_um", "angle_deg"), [(0.05, 30.0), pytest.param(0.15, -60.0, marks=pytest.mark.slow)]
)
def test_astigmatism_magnitude_and_angle(astig_um: float, angle_deg: float) -> None:
    params = optics_params(pixel_size_a=1.5, defocus_um=1.8, astig_um=astig_um, angle_deg=angle_deg)
    spectrum = synthetic_spectra(params, 256, n_averaged=30, seed=1)
    result = estimate_ctf_from_spectrum(
        centred_full_spectrum(spectrum), pixel_size_a=1.5, settings=CtfSettings(max_iterations=30)
    )
    assert not result.failed
    assert abs(result.defocus_um - 1.8) < 0.005
    assert abs(result.astigmatism_um - astig_um) < 0.005
    assert abs(result.astigmatism_angle_deg - angle_deg) < 2.0
    # U is the defocus along the angle (docs/conventions.md §6).
    assert result.defocus_u_um > result.defocus_v_um


@pytest.mark.parametrize("plane", [True, pytest.param(False, marks=pytest.mark.slow)])
def test_patch_fit_recovers_a_defocus_gradient(plane: bool) -> None:
    # 4 × 4 patches of a sample whose defocus rises by 0.3 µm from left to right; the grid
    # has the nodes the procedure gives 4 patches per axis (2 × 2).
    optics = Optics(1.5, 300.0, 2.7, 0.07)
    n = 4
    c = (torch.arange(n, dtype=torch.float64) + 0.5) / n
    y, x = torch.meshgrid(c, c, indexing="ij")
    coords = torch.stack([x, y], -1).reshape(-1, 2)
    truth = 1.6 + 0.3 * (coords[:, 0] - 0.5) - 0.1 * (coords[:, 1] - 0.5)
    params = optics_params(pixel_size_a=1.5, defocus_um=truth, astig_um=0.04, angle_deg=10.0)
    spectra = synthetic_spectra(params, 128, n_averaged=10, seed=6)
    k = profile_frequencies_per_a(128, 1.5)
    profiles = rotational_profile(spectra)
    start = optics_params(pixel_size_a=1.5, defocus_um=torch.full((16,), 1.6, dtype=torch.float64))
    ctf2 = rotational_profile(ctf_2d(start, (128, 128)).square())
    background, envelope = fit_background_and_envelope(profiles, ctf2, k, (1 / 30, 1 / 4))
    targets = polar_targets(
        spectra, background, envelope, coords, pixel_size_a=1.5, fit_range_per_a=(1 / 30, 1 / 4)
    )
    starts = search_defocus_1d(
        profiles,
        k,
        optics,
        fit_range_per_a=(1 / 30, 1 / 4),
        defocus_range_um=(1.1, 2.1),
        defocus_step_um=0.01,
        rounds=2,
    ).defocus_um
    fit = fit_patches_2d(
        targets,
        optics,
        defocus_um=1.6,
        phase_shift_rad=0.0,
        grid_dims=None if plane else (max_grid_nodes(n), max_grid_nodes(n)),
        astig_init_um=(0.0, 0.0),
        max_iterations=40,
        patch_defocus_start_um=starts,
    )
    rms = float((fit.patch_defocus_um - truth).square().mean().sqrt())
    assert rms < (0.005 if plane else 0.01), rms
    delta = math.hypot(fit.astig_x_um, fit.astig_y_um)
    assert abs(delta - 0.04) < 0.005
    # The stored grid reproduces the patch defoci.
    assert torch.allclose(
        evaluate_cubic_grid(fit.grid_um, coords), fit.patch_defocus_um, rtol=0, atol=1e-6
    )
