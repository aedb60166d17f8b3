"""Updating a real RELION 3.1 particle table with local defocus from CTF results: values at the
particle centres, untouched rows, reported micrographs without estimates, no mutation."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cryowarp.errors import MissingColumnError
from cryowarp.io.relion import ParticleTable, read_particles, write_particles
from cryowarp.preprocess.ctf.result import CtfResult
from cryowarp.preprocess.export.defocus_update import update_particle_defocus

PIXEL_A = 1.403  # micrograph pixel size of relion31.star (its movies' pixel size)
MICROGRAPH = "18aug10a_MC2_FoilHole_10984848_Data_10985376_10985377_20180810_2123-144102"


def _result(**changes: object) -> CtfResult:
    """Mean defocus 1.9 µm at (0, 0) rising by 0.1 µm across x (6000 Å) and y (4000 Å)."""
    values: dict[str, object] = {
        "defocus_u_um": 2.1,
        "defocus_v_um": 1.9,
        "astigmatism_angle_deg": -12.0,
        "phase_shift_deg": 35.0,
        "defocus_grid_um": ((1.9, 2.0), (2.0, 2.1)),
        "image_size_xy_a": (6000.0, 4000.0),
        "resolution_a": 3.5,
        "fit_score": 0.8,
        "pixel_size_a": 1.0,
        "voltage_kv": 300.0,
        "cs_mm": 0.01,
        "amplitude_contrast": 0.1,
    }
    values.update(changes)
    return CtfResult(**values)  # type: ignore[arg-type]


@pytest.fixture
def table(shared_data: Path) -> ParticleTable:
    _, particles = read_particles(
        shared_data / "particles" / "cryodrgn_relion31_5ptcl" / "relion31.star"
    )
    return particles


def _expected_mean_um(table: ParticleTable) -> np.ndarray:
    centres = table.coordinates_px() * PIXEL_A - table.origins_a()
    return 1.9 + 0.1 * centres[:, 0] / 6000.0 + 0.1 * centres[:, 1] / 4000.0


def test_defocus_at_particle_centres(table: ParticleTable) -> None:
    before = table.frame
    updated, missing = update_particle_defocus(table, {MICROGRAPH: _result()}, pixel_size_a=PIXEL_A)
    assert missing == []
    mean = _expected_mean_um(table)
    # particle 1 at (3277, 983) px with origin (0.0193, −0.6469) Å: 2.00264 µm
    assert mean[0] == pytest.approx(
        1.9 + 0.1 * (3277 * PIXEL_A - 0.019342) / 6000 + 0.1 * (983 * PIXEL_A + 0.646858) / 4000,
        abs=1e-7,
    )
    np.testing.assert_allclose(updated.defocus_u_a(), (mean + 0.1) * 1e4, atol=1e-2)
    np.testing.assert_allclose(updated.defocus_v_a(), (mean - 0.1) * 1e4, atol=1e-2)
    np.testing.assert_array_equal(updated.defocus_angle_deg(), -12.0)
    np.testing.assert_array_equal(updated.phase_shift_deg(), 35.0)
    np.testing.assert_array_equal(updated.frame["rlnCtfMaxResolution"], 3.5)
    # the old values were different, and the input table is untouched
    assert not np.allclose(before["rlnDefocusU"], updated.defocus_u_a())
    pd.testing.assert_frame_equal(table.frame, before)
    untouched = [
        c for c in before.columns if not c.startswith(("rlnDefocus", "rlnPhase", "rlnCtfMax"))
    ]
    pd.testing.assert_frame_equal(updated.frame[untouched], before[untouched])
    assert updated.optics == table.optics


def test_micrographs_without_a_usable_estimate_keep_their_values(table: ParticleTable) -> None:
    frame = table.frame
    frame.loc[3:, "rlnMicrographName"] = "Micrographs/other_DW.mrc"
    frame.loc[4, "rlnMicrographName"] = "Micrographs/third.mrc"
    frame = frame.drop(columns=["rlnPhaseShift", "rlnCtfMaxResolution"])
    mixed = ParticleTable(frame, table.optics, source=table.source)
    failed = CtfResult.failure(
        "no rings", pixel_size_a=1.0, voltage_kv=300.0, cs_mm=0.01, amplitude_contrast=0.1
    )
    updated, missing = update_particle_defocus(
        mixed, {MICROGRAPH: _result(), "other": failed}, pixel_size_a=PIXEL_A
    )
    assert missing == ["other", "third"]
    np.testing.assert_array_equal(updated.defocus_u_a()[3:], mixed.defocus_u_a()[3:])
    np.testing.assert_array_equal(updated.defocus_angle_deg()[3:], -160.39)
    np.testing.assert_allclose(
        updated.defocus_u_a()[:3], (_expected_mean_um(mixed)[:3] + 0.1) * 1e4, atol=1e-2
    )
    # columns the table lacked: 0 phase shift and unknown (NaN) resolution where not estimated
    np.testing.assert_array_equal(updated.phase_shift_deg(), [35.0, 35.0, 35.0, 0.0, 0.0])
    resolution = updated.frame["rlnCtfMaxResolution"].to_numpy()
    np.testing.assert_array_equal(resolution[:3], 3.5)
    assert all(math.isnan(v) for v in resolution[3:])


def test_nothing_to_update_needs_no_pixel_size(table: ParticleTable) -> None:
    updated, missing = update_particle_defocus(table, {})
    assert missing == [MICROGRAPH]
    pd.testing.assert_frame_equal(updated.frame, table.frame)


def test_pixel_size_is_required_to_place_particles(table: ParticleTable) -> None:
    with pytest.raises(MissingColumnError, match=r"relion31\.star.*rlnMicrographPixelSize"):
        update_particle_defocus(table, {MICROGRAPH: _result()})


def test_updated_table_round_trips_through_star(table: ParticleTable, tmp_path: Path) -> None:
    updated, _ = update_particle_defocus(table, {MICROGRAPH: _result()}, pixel_size_a=PIXEL_A)
    write_particles(tmp_path / "updated.star", updated.optics, updated)
    _, again = read_particles(tmp_path / "updated.star")
    np.testing.assert_allclose(again.defocus_u_a(), updated.defocus_u_a(), atol=1e-6)
    np.testing.assert_allclose(again.defocus_v_a(), updated.defocus_v_a(), atol=1e-6)
