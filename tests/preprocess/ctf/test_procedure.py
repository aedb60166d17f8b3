"""The procedure's choice of the spatial model: grid size, and constant defocus on flat data."""

from __future__ import annotations

import pytest
import torch

from cryowarp.preprocess.ctf.procedure import fit_patch_spectra, max_grid_nodes
from cryowarp.preprocess.ctf.search1d import Optics
from cryowarp.preprocess.ctf.settings import CtfSettings
from cryowarp.preprocess.ctf.spectra import PatchPowerSpectra

from ._synthetic import optics_params, synthetic_spectra


@pytest.mark.parametrize(("patches", "nodes"), [(1, 1), (2, 2), (3, 2), (5, 2), (7, 3), (21, 10)])
def test_grid_nodes_are_about_half_the_patches_and_at_least_two(patches: int, nodes: int) -> None:
    assert max_grid_nodes(patches) == nodes


def _patch_spectra(gradient_um: float, seed: int) -> tuple[PatchPowerSpectra, torch.Tensor]:
    """3 × 3 patches of 128 px (1.5 Å/px) over a 384 × 384 px field whose defocus rises by
    ``gradient_um`` from left to right about 1.6 µm; returns the spectra and the true
    defocus at the patch centres."""
    n, s, pixel = 3, 128, 1.5
    size_a = 384 * pixel
    c = (torch.arange(n, dtype=torch.float64) + 0.5) / n
    y, x = torch.meshgrid(c, c, indexing="ij")
    coords = torch.stack([x, y], -1).reshape(-1, 2)
    truth = 1.6 + gradient_um * (coords[:, 0] - 0.5)
    params = optics_params(pixel_size_a=pixel, defocus_um=truth, astig_um=0.04, angle_deg=10.0)
    spectra = PatchPowerSpectra(
        spectra=synthetic_spectra(params, s, n_averaged=10, seed=seed),
        centres_xy_a=coords * size_a,
        window_size_px=s,
        pixel_size_a=pixel,
        image_size_xy_a=(size_a, size_a),
        patches_xy=(n, n),
    )
    return spectra, truth


@pytest.mark.parametrize("gradient_um", [0.0, pytest.param(0.3, marks=pytest.mark.slow)])
def test_spatial_model_is_kept_only_for_a_real_gradient(gradient_um: float) -> None:
    spectra, truth = _patch_spectra(gradient_um, seed=3)
    result = fit_patch_spectra(
        spectra,
        Optics(1.5, 300.0, 2.7, 0.07),
        CtfSettings(window_size_px=128, max_iterations=30),
        spatial=True,
    )
    assert not result.failed, result.failure_reason
    centres = spectra.centres_xy_a
    error_um = (result.defocus_at(centres) - truth).abs().max()
    if gradient_um == 0.0:
        assert result.grid_dims[:2] == (1, 1)  # no invented tilt
        assert error_um < 0.005
    else:
        assert result.grid_dims[:2] == (2, 2)  # capped from 5 × 5 at 3 patches per axis
        assert error_um < 0.01, error_um
    assert abs(result.astigmatism_um - 0.04) < 0.005
