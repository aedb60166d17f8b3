"""``cryowarp reconstruct``: the command writes the maps of :func:`reconstruct_from_star`,
prints the resolution and the files, takes its defaults from the settings, and exits with
code 1 and the reason on a bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import typer
from typer.testing import CliRunner

from cryowarp.cli.reconstruct import reconstruct
from cryowarp.io.mrc import read_mrc
from cryowarp.refine.reconstruction import ReconstructionSettings, reconstruct_from_star
from cryowarp.simulate.phantom import blob_phantom

from ..refine._simulated_particles import simulate_particles, write_particles_star

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
app.command()(reconstruct)


@pytest.fixture(scope="module")
def star(tmp_path_factory: pytest.TempPathFactory) -> Path:
    truth = blob_phantom(24, blob_sigma_px=1.0, seed=5)
    sim = simulate_particles(truth, 80, pixel_size_a=4.0, snr=2.0, seed=7)
    return write_particles_star(tmp_path_factory.mktemp("particles"), sim)


def test_writes_the_maps_of_the_library_call_and_prints_the_resolution(
    star: Path, tmp_path: Path
) -> None:
    out = tmp_path / "recon"
    result = CliRunner().invoke(
        app, [str(star), "--out", str(out), "--sym", "c1", "--mask-diameter", "70"]
    )
    assert result.exit_code == 0, result.output
    expected = reconstruct_from_star(star, settings=ReconstructionSettings(mask_diameter_a=70.0))
    written, header = read_mrc(out / "map.mrc")
    np.testing.assert_array_equal(written, expected.full.numpy())
    assert header.pixel_size_a == pytest.approx(4.0)
    assert f"masked): {expected.resolution_masked_a:.2f} Å" in result.output
    assert f"unmasked): {expected.resolution_a:.2f} Å" in result.output
    assert "40 + 40 particles, symmetry C1" in result.output
    for name in ("half1.mrc", "half2.mrc", "map.mrc", "fsc.star", "reconstruction.json"):
        assert f"wrote {out / name}" in result.output
    summary = json.loads((out / "reconstruction.json").read_text())
    assert summary["symmetry"] == "C1"


def test_options_reach_the_settings(star: Path, tmp_path: Path) -> None:
    out = tmp_path / "c2"
    result = CliRunner().invoke(
        app,
        [str(star), "--out", str(out), "--sym", "C2", "--regularisation", "none",
         "--batch-size", "7", "--reference", str(tmp_path / "missing.mrc")],
    )  # fmt: skip
    assert result.exit_code == 1  # the reference does not exist: a typed input error
    assert "FAILED" in result.output
    assert "missing.mrc" in result.output
    result = CliRunner().invoke(
        app, [str(star), "--out", str(out), "--sym", "C2", "--regularisation", "none"]
    )
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "reconstruction.json").read_text())
    assert summary["symmetry"] == "C2"
    assert summary["regularisation"] == "none"
    assert summary["ssnr"] is None


def test_bad_inputs_exit_with_the_reason(star: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    missing = runner.invoke(app, [str(tmp_path / "nope.star"), "--out", str(tmp_path / "o")])
    assert missing.exit_code == 1
    assert "nope.star" in missing.output
    assert "file not found" in missing.output
    bad_group = runner.invoke(app, [str(star), "--out", str(tmp_path / "o"), "--sym", "Q7"])
    assert bad_group.exit_code == 2
    assert "unknown point group" in bad_group.output


def test_help_shows_the_settings_defaults_and_units() -> None:
    result = CliRunner().invoke(app, ["--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    defaults = ReconstructionSettings()
    assert f"default: {defaults.batch_size}" in result.output
    assert "Diameter in Å" in result.output
    assert "--skip-bad-stacks" in result.output
