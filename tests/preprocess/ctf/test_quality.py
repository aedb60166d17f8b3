"""Resolution of the fitted Thon rings and the rescaled 1-D spectrum."""

from __future__ import annotations

import pytest
import torch

from cryowarp.preprocess.ctf.estimate import estimate_ctf_from_spectrum
from cryowarp.preprocess.ctf.quality import ring_resolution_a, sliding_correlation
from cryowarp.preprocess.ctf.settings import CtfSettings

from ._synthetic import optics_params, synthetic_spectra


def test_sliding_correlation_of_identical_curves_is_one_and_window_must_fit() -> None:
    x = torch.sin(torch.linspace(0, 20, 100, dtype=torch.float64))
    corr = sliding_correlation(x, 2 * x + 1, window=16)
    assert torch.isnan(corr[:8]).all()
    assert torch.isnan(corr[-7:]).all()
    assert torch.allclose(corr[8:-7], torch.ones(85, dtype=torch.float64))


def test_ring_resolution_interpolates_the_threshold_crossing() -> None:
    k = torch.linspace(0.0, 0.3, 31, dtype=torch.float64)  # 0.01 Å⁻¹ steps
    corr = torch.where(k < 0.2, 0.9, 0.0).to(torch.float64)
    corr[20] = 0.1  # 0.9 at 0.19, 0.1 at 0.20: 0.3 is crossed at 0.1975
    resolution = ring_resolution_a(corr, k, start_per_a=0.05, threshold=0.3)
    assert abs(resolution - 1 / 0.1975) < 1e-6


@pytest.mark.slow
def test_resolution_of_a_spectrum_with_known_ring_extent() -> None:
    # Rings up to 1/6 Å⁻¹ and pure background above: the fit reports ≈ 6 Å.
    params = optics_params(pixel_size_a=1.0, defocus_um=1.5, astig_um=0.03, angle_deg=20.0)
    spectrum = synthetic_spectra(params, 512, n_averaged=30, ring_limit_per_a=1 / 6, seed=2)
    result = estimate_ctf_from_spectrum(
        spectrum, pixel_size_a=1.0, settings=CtfSettings(max_resolution_a=2.5, max_iterations=20)
    )
    assert not result.failed
    assert 5.5 < result.resolution_a < 6.6, result.resolution_a
    assert abs(result.defocus_um - 1.5) < 0.005
