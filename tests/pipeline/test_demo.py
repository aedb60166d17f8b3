"""The demo job end to end on two 256² movies: simulate → project (motion, CTF) → export →
reconstruct, checked against the simulation's ground truth; a second run reuses everything."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from cryowarp.cli.demo import format_summary
from cryowarp.cli.main import app
from cryowarp.io.relion import read_particles
from cryowarp.io.relion_validate import check_relion_star
from cryowarp.pipeline.demo import DemoSettings, run_demo
from cryowarp.simulate.ground_truth import load_ground_truth

SMALL = DemoSettings(n_movies=2, field_size_px=256, n_workers=0)


@pytest.mark.slow
def test_the_demo_runs_end_to_end_and_matches_the_truth(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    lines: list[str] = []
    result = run_demo(out, SMALL, log=lines.append)

    assert (result.n_items, result.n_done) == (2, 2)
    assert result.not_done == {}
    # Measured: 0.005 µm mean error on 1.5–2.5 µm of defocus.
    assert set(result.defocus_error_um) == {"movie_000", "movie_001"}
    assert result.mean_defocus_error_um < 0.05

    truths = [load_ground_truth(out / "data", m) for m in range(2)]
    assert result.n_particles == sum(len(t.particles) for t in truths)  # one species
    paths = result.paths
    for key, kind in (
        ("particles_star", "particles"),
        ("micrographs_star", "micrographs"),
        ("corrected_micrographs_star", "corrected_micrographs"),
    ):
        check_relion_star(paths[key], kind=kind, root=paths[key].parent)
    _, table = read_particles(paths["particles_star"])
    frame = table.frame
    first = frame[frame["rlnMicrographName"].str.contains("movie_000")]
    euler = first[["rlnAngleRot", "rlnAngleTilt", "rlnAnglePsi"]].to_numpy()
    np.testing.assert_allclose(euler, truths[0].particles.euler_deg.numpy(), atol=1e-4)
    defocus_a = (first["rlnDefocusU"] + first["rlnDefocusV"]).to_numpy() / 2
    true_a = ((truths[0].particles.defocus_u_a + truths[0].particles.defocus_v_a) / 2).numpy()
    assert np.abs(defocus_a - true_a).max() < 500.0  # the local CTF at each particle

    # Measured: the map reaches 11.1 Å at FSC 0.143 against the noise-free species map (box
    # 48 at 2 Å, 33 particles); its FSC in the shells of 96, 48, 32 and 24 Å is 0.99, 0.93,
    # 0.88 and 0.80 (a wrong sign or angle convention gives about 0 or less).
    summary = json.loads((paths["map"].parent / "reconstruction.json").read_text())
    frequency = np.array(summary["frequency_per_a"])
    fsc_truth = np.array(summary["fsc_reference"])
    low = (frequency > 0) & (frequency <= 1 / 20.0)
    assert fsc_truth[low].min() > 0.6, fsc_truth[low]
    assert result.resolution_truth_0143_a is not None
    assert result.resolution_truth_0143_a < 16.0
    assert result.resolution_half_maps_a < 25.0

    text = format_summary(result)
    assert "items done                         2 of 2" in text
    assert f"cryowarp status {paths['project']}" in text
    assert f"cryowarp dashboard {paths['project']}" in text
    assert any("true centres and orientations are the picks" in line for line in lines)

    # A second run with the same settings reuses the movies and every finished step.
    again: list[str] = []
    second = run_demo(out, SMALL, log=again.append)
    assert any("reusing the 2 movies" in line for line in again)
    assert any("nothing redone" in line for line in again)
    assert second.defocus_error_um == result.defocus_error_um
    assert second.n_particles == result.n_particles


def test_settings_reject_unknown_keys_and_bad_values() -> None:
    with pytest.raises(ValueError, match="extra"):
        DemoSettings.model_validate({"n_movies": 2, "movies": 3})
    with pytest.raises(ValueError, match="greater than or equal to 1"):
        DemoSettings(n_movies=0)
    with pytest.raises(ValueError, match="multiple of 2"):
        DemoSettings(box_size_px=47)


def test_the_command_reads_its_help_from_the_settings_and_spares_other_folders(
    tmp_path: Path,
) -> None:
    runner = CliRunner()
    help_text = runner.invoke(app, ["demo", "--help"], env={"COLUMNS": "200"}).output
    for name in ("n_movies", "seed", "n_workers"):
        description = DemoSettings.model_fields[name].description or ""
        assert description[:30] in help_text, name
    (tmp_path / "mine.txt").write_text("keep me")
    result = runner.invoke(app, ["demo", "--out", str(tmp_path), "--movies", "1"])
    assert result.exit_code == 1
    assert "is not empty and not a demo folder" in result.output
    assert (tmp_path / "mine.txt").read_text() == "keep me"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine.txt"]
    result = runner.invoke(app, ["demo", "--out", str(tmp_path / "new"), "--movies", "0"])
    assert result.exit_code == 2
