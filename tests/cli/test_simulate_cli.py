"""``cryowarp simulate frame-series``: options, overrides, errors."""

from __future__ import annotations

from pathlib import Path

import typer
from typer.testing import CliRunner

from cryowarp.cli.simulate import simulate_app
from cryowarp.simulate.ground_truth import load_ground_truth

runner = CliRunner()
app = typer.Typer()
app.add_typer(simulate_app, name="simulate")


def test_help_lists_units_and_an_example() -> None:
    result = runner.invoke(app, ["simulate", "frame-series", "--help"])
    assert result.exit_code == 0, result.output
    assert "Pixel size in Å" in result.output
    assert "e⁻/Å²" in result.output
    assert "Example: cryowarp simulate frame-series" in result.output


def test_frame_series_writes_movies_with_overrides(tmp_path: Path) -> None:
    out = tmp_path / "sim"
    args = ["simulate", "frame-series", str(out), "--preset", "tiny", "--movies", "2"]
    args += ["--seed", "3", "--frames", "3", "--size", "96", "128", "--particles", "2"]
    args += ["--pixel-size", "2.0", "--defocus-range", "1.0", "1.5", "--format", "tiff"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.glob("movie_*")) == ["movie_000.tif", "movie_001.tif"]
    truth = load_ground_truth(out, movie=1)
    assert truth.settings.n_frames == 3
    assert truth.settings.shape_px == (96, 128)
    assert truth.settings.pixel_size_a == 2.0
    assert truth.seed == 3
    assert 1.0 <= truth.ctf.defocus_um <= 1.5
    # Options left out keep the preset's value.
    assert truth.settings.dose_per_frame_e_per_a2 == 1.0


def test_bad_values_are_rejected_before_writing(tmp_path: Path) -> None:
    out = tmp_path / "sim"
    result = runner.invoke(app, ["simulate", "frame-series", str(out), "--defocus-range", "2", "1"])
    assert result.exit_code != 0
    assert "defocus_range_um" in result.output
    assert not out.exists()
