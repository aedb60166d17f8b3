"""``cryowarp ctf``: on a simulated movie the JSON holds the true defocus, the STAR agrees,
and bad items fail with their reason (exit code 1) without stopping the batch."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from cryowarp.cli.main import app
from cryowarp.io.gain import read_gain
from cryowarp.io.movie import open_movie
from cryowarp.io.mrc import write_mrc
from cryowarp.io.relion import read_micrographs
from cryowarp.preprocess.ctf.result import CtfResult
from cryowarp.simulate.ground_truth import FrameSeriesTruth, load_ground_truth
from cryowarp.simulate.presets import frame_series_preset
from cryowarp.simulate.write import write_frame_series_dataset

TOLERANCE_UM = 0.05


@pytest.fixture(scope="module")
def tiny_movie(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, FrameSeriesTruth]:
    folder = tmp_path_factory.mktemp("tiny")
    dataset = write_frame_series_dataset(folder, frame_series_preset("tiny"), n_movies=1, seed=3)
    return dataset.movies[0], dataset.gain, load_ground_truth(dataset.folder, 0)


@pytest.mark.slow
def test_estimate_recovers_the_defocus_and_reports_a_constant_image(
    tiny_movie: tuple[Path, Path, FrameSeriesTruth], tmp_path: Path
) -> None:
    movie, gain, truth = tiny_movie
    blank = tmp_path / "blank.mrc"
    write_mrc(blank, np.full((256, 256), 7.0, np.float32), voxel_size_a=1.5)
    out = tmp_path / "ctf"
    result = CliRunner().invoke(
        app, ["ctf", "estimate", str(movie), str(blank), "--gain", str(gain), "--out", str(out)]
    )
    assert result.exit_code == 1, result.output  # one item failed ...
    assert "FAILED" in result.output
    assert "constant" in result.output
    # ... the other was fitted: the JSON holds the true defocus
    fitted = CtfResult.from_dict(json.loads((out / f"{movie.stem}_ctf.json").read_text()))
    assert not fitted.failed, fitted.failure_reason
    true_defocus = truth.ctf.defocus_um
    assert abs(fitted.defocus_um - true_defocus) < TOLERANCE_UM
    assert fitted.pixel_size_a == pytest.approx(truth.settings.pixel_size_a)
    assert (out / f"{movie.stem}_ctf.png").stat().st_size > 10_000
    failed = CtfResult.from_dict(json.loads((out / "blank_ctf.json").read_text()))
    assert failed.failed
    assert "constant" in (failed.failure_reason or "")
    assert not (out / "blank_ctf.png").exists()
    # the STAR holds the fitted item only, in Å, with RELION's columns
    optics, table = read_micrographs(out / "micrographs_ctf.star")
    assert table.micrograph_names() == [str(movie)]
    for column in ("rlnDefocusU", "rlnDefocusV", "rlnDefocusAngle", "rlnPhaseShift",
                   "rlnCtfMaxResolution", "rlnCtfFigureOfMerit"):  # fmt: skip
        assert column in table.frame.columns
    assert table.defocus_u_a()[0] == pytest.approx(fitted.defocus_u_um * 1e4, abs=1e-3)
    assert table.defocus_v_a()[0] == pytest.approx(fitted.defocus_v_um * 1e4, abs=1e-3)
    assert abs(table.defocus_u_a()[0] / 2 + table.defocus_v_a()[0] / 2 - true_defocus * 1e4) < 500
    assert optics[0].voltage_kv == truth.settings.voltage_kv


@pytest.mark.slow
def test_spectrum_fits_a_centred_power_spectrum(
    tiny_movie: tuple[Path, Path, FrameSeriesTruth], tmp_path: Path
) -> None:
    """The power spectrum of the frames, written as MotionCor2/RELION do (DC at s//2)."""
    movie, gain, truth = tiny_movie
    with open_movie(movie) as reader:
        frames = torch.from_numpy(reader.read_frames(0, reader.n_frames)).double()
    frames = frames * torch.from_numpy(read_gain(gain)).double()
    frames = frames - frames.mean(dim=(-2, -1), keepdim=True)
    power = torch.fft.fft2(frames).abs().square().sum(0)
    ps = tmp_path / "movie_PS.mrc"
    write_mrc(ps, torch.fft.fftshift(power).float(), voxel_size_a=1.0)  # header pixel is wrong
    out = tmp_path / "ctf"
    pixel = str(truth.settings.pixel_size_a)
    result = CliRunner().invoke(
        app, ["ctf", "spectrum", str(ps), "--pixel-size", pixel, "--out", str(out), "--no-png"]
    )
    assert result.exit_code == 0, result.output
    fitted = CtfResult.from_dict(json.loads((out / "movie_PS_ctf.json").read_text()))
    assert abs(fitted.defocus_um - truth.ctf.defocus_um) < TOLERANCE_UM
    assert fitted.pixel_size_a == truth.settings.pixel_size_a
    _, table = read_micrographs(out / "micrographs_ctf.star")
    assert len(table) == 1


def test_bad_options_are_usage_errors(tmp_path: Path) -> None:
    runner = CliRunner()
    bad_grid = runner.invoke(
        app, ["ctf", "estimate", "x.mrc", "--out", str(tmp_path), "--grid", "5"]
    )
    assert bad_grid.exit_code == 2
    assert "--grid" in bad_grid.output
    bad_range = runner.invoke(
        app, ["ctf", "estimate", "x.mrc", "--out", str(tmp_path), "--defocus-range", "3", "1"]
    )
    assert bad_range.exit_code == 2
    assert "defocus_max_um" in bad_range.output


def test_missing_file_is_a_failed_item(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app, ["ctf", "spectrum", str(tmp_path / "absent.mrc"), "--out", str(tmp_path / "o")]
    )
    assert result.exit_code == 1
    assert "absent.mrc: file not found" in result.output
    assert json.loads((tmp_path / "o" / "absent_ctf.json").read_text())["failed"] is True
