"""The shipped generic BoxNet on data it never saw: the tiny simulated movie after motion
correction, and micrographs of held-out species (docs/picking.md).

The picking benchmark (`python -m benchmarks --suite picking`) measures the same on more data
and against the baselines; these tests pin that the shipped weights still work."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cryowarp.io.mrc import read_mrc
from cryowarp.pipeline.picking_species_pool import heldout_species_pool
from cryowarp.pipeline.picking_training_data import simulate_training_field
from cryowarp.preprocess.picking.inference import pick_micrograph
from cryowarp.preprocess.picking.metrics import match_picks
from cryowarp.preprocess.picking.model_file import (
    DEFAULT_BOXNET_MODEL,
    BoxNetModel,
    load_boxnet_model,
    resolve_boxnet_model,
)
from cryowarp.preprocess.picking.settings import PickingSettings
from cryowarp.preprocess.picking.training_data import GenericTrainingSettings


@pytest.fixture(scope="module")
def generic() -> BoxNetModel:
    return load_boxnet_model(resolve_boxnet_model(DEFAULT_BOXNET_MODEL))


def test_recovers_the_particles_of_the_tiny_movie(
    generic: BoxNetModel, tiny_frame_series, tiny_processed
) -> None:
    """256² at 1.5 Å, 8 e⁻/Å² in all, one 150 kDa species (~80 Å), motion-corrected average."""
    average, header = read_mrc(tiny_processed.motion.paths.average)
    result = pick_micrograph(
        torch.from_numpy(np.asarray(average, dtype=np.float32)),
        pixel_size_a=float(header.voxel_size_a[0]),
        model=generic,
        settings=PickingSettings(diameter_a=80.0),
    )
    true_a = tiny_frame_series.truth.particles.positions_a[:, :2].to(torch.float64)
    match = match_picks(result.positions_a, true_a, diameter_a=80.0)
    assert match.recall == 1.0  # 5 of 5 (measured: 5 of 5 with one extra pick)
    assert match.n_false_positives <= 1
    assert float(match.distances_a.max()) < 8.0  # within 10 % of the diameter


@pytest.mark.parametrize("which", [0, -1], ids=["smallest", "largest"])
def test_picks_held_out_species_with_high_f1(generic: BoxNetModel, which: int) -> None:
    """One 2048 Å field (4 Å/px, Poisson counts) of a species from the held-out namespace;
    measured F1 0.95–0.98 on 4 of the 8 held-out species (2 micrographs each)."""
    pool = sorted(heldout_species_pool(0, 8, pixel_size_a=4.0), key=lambda s: s.diameter_a)
    species = pool[which]
    settings = GenericTrainingSettings(
        micrograph_size_px=(256, 256),
        simulation_pixel_size_a=4.0,
        species_per_micrograph=(1, 1),
        artefact_fraction=0.0,
        coverage_range=(0.1, 0.2),
    )
    field = simulate_training_field(0, settings=settings, seed=4242, species_pool=[species])
    expected = field.simulation.clean_micrograph.clamp(min=0) * field.detected_dose_e_per_a2 * 16
    image = torch.poisson(expected.float(), generator=torch.Generator().manual_seed(0))
    result = pick_micrograph(
        image,
        pixel_size_a=4.0,
        model=generic,
        settings=PickingSettings(diameter_a=species.diameter_a),
    )
    true_a = field.simulation.particles.positions_a[:, :2].to(torch.float64)
    match = match_picks(result.positions_a, true_a, diameter_a=species.diameter_a)
    assert len(true_a) >= 20
    assert match.f1 >= 0.9, match.summary()
