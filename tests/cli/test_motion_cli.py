"""``cryowarp motion correct|batch`` on a tiny simulated movie: outputs, failures, exit codes."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import typer
from typer.testing import CliRunner

from cryowarp.cli.motion import motion_app
from cryowarp.io.mrc import read_mrc, write_mrc
from cryowarp.preprocess.motion import correct as correct_module
from cryowarp.preprocess.motion.fit import MotionFit
from cryowarp.preprocess.motion.model import FrameMotion
from cryowarp.preprocess.motion.settings import MotionSettings
from cryowarp.preprocess.motion.summary import motion_summary
from cryowarp.simulate.ground_truth import load_ground_truth

runner = CliRunner()
app = typer.Typer()
app.add_typer(motion_app, name="motion")

SHAPE = (128, 128)
PIXEL_A = 1.5
FAST = ["--patch-size", "64", "--max-iterations", "15", "--local-grid", "2x2x2"]


@pytest.fixture(scope="session")
def movie(tiny_frame_series_128: Any) -> Path:
    """One tiny movie (128², 8 frames, 1 e⁻/Å² per frame, 1.5 Å/px) with its gain and truth
    (tests/conftest.py, simulated once a session)."""
    path: Path = tiny_frame_series_128.movie
    return path


@pytest.fixture
def exact_fit(movie: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Replace the fit by the simulator's exact motion (checks the plumbing, not the fit)."""
    truth = load_ground_truth(movie.parent)
    motion = FrameMotion(
        truth.motion.global_shifts_a.T.contiguous(),
        truth.motion.local_grid_a,
        truth.motion.field_size_a,
        truth.motion.n_frames,
    )

    def stand_in(
        frames: torch.Tensor,
        *,
        pixel_size_a: float,
        field_size_a: tuple[float, float],
        settings: MotionSettings,
        patch_size_px: int,
        progress: Callable[[str, float], None] | None = None,
    ) -> MotionFit:
        return MotionFit(
            motion=motion, patch_centres_a=torch.zeros(1, 2), patch_size_a=96.0,
            initial_track_a=truth.motion.global_shifts_a, alignment_pixel_size_a=pixel_size_a,
        )  # fmt: skip

    monkeypatch.setattr(correct_module, "estimate_motion", stand_in)


def _files(folder: Path) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())


def test_help_gives_units_defaults_from_the_settings_and_an_example() -> None:
    for command in ("correct", "batch"):
        result = runner.invoke(app, ["motion", command, "--help"], env={"COLUMNS": "200"})
        assert result.exit_code == 0, result.output
        assert "e⁻/Å²" in result.output
        assert "Pixel size of the raw frames in Å" in result.output
        assert f"Example: cryowarp motion {command}" in result.output
        assert "5x5x3" in result.output  # the default local grid, from MotionSettings


def test_batch_corrects_the_good_movie_and_reports_the_corrupt_one(
    movie: Path, exact_fit: None, tmp_path: Path
) -> None:
    broken = tmp_path / "raw" / "broken.mrc"
    broken.parent.mkdir()
    data = movie.read_bytes()
    broken.write_bytes(data[: len(data) // 2])
    out = tmp_path / "out"
    args = ["motion", "batch", str(movie), str(tmp_path / "raw" / "*.mrc"), "--out", str(out)]
    args += ["--gain", str(movie.parent / "gain.mrc"), "--bin", "2", "--voltage", "300", *FAST]
    result = runner.invoke(app, args, env={"COLUMNS": "200"})
    assert result.exit_code == 1, result.output
    failures = [line for line in result.output.splitlines() if line.startswith("FAILED")]
    assert len(failures) == 1
    assert "broken.mrc" in failures[0]
    assert "1 of 2 movies corrected" in result.output
    stem = movie.stem
    assert _files(out) == sorted(
        [
            f"average/{stem}.mrc", f"average/odd/{stem}.mrc", f"average/even/{stem}.mrc",
            f"motion/{stem}.json", f"motion/{stem}.png", f"motion/{stem}.star",
        ]
    )  # fmt: skip
    average, header = read_mrc(out / "average" / f"{stem}.mrc")
    assert average.shape == (SHAPE[0] // 2, SHAPE[1] // 2)
    assert header.voxel_size_a[0] == pytest.approx(2 * PIXEL_A)
    document = json.loads((out / "motion" / f"{stem}.json").read_text())
    assert document["input_settings"]["bin_factor"] == 2.0
    assert document["settings"]["local_grid"] == [2, 2, 2]
    assert document["output_pixel_size_a"] == pytest.approx(2 * PIXEL_A)


def test_a_gain_of_the_wrong_size_fails_clearly_without_output(movie: Path, tmp_path: Path) -> None:
    gain = tmp_path / "wrong_gain.mrc"
    write_mrc(gain, np.ones((64, 128), np.float32), voxel_size_a=PIXEL_A)
    out = tmp_path / "out"
    args = ["motion", "correct", str(movie), "--out", str(out), "--gain", str(gain), *FAST]
    result = runner.invoke(app, args, env={"COLUMNS": "200"})
    assert result.exit_code == 1, result.output
    assert "FAILED" in result.output
    assert "wrong_gain.mrc" in result.output
    assert not out.exists()


def test_bad_options_are_usage_errors(movie: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = runner.invoke(
        app, ["motion", "correct", str(movie), "--out", str(out), "--local-grid", "5x5"]
    )
    assert result.exit_code == 2
    assert "5x5x3" in result.output
    result = runner.invoke(
        app, ["motion", "correct", str(movie), "--out", str(out), "--resolution-range", "5", "10"]
    )
    assert result.exit_code == 2
    assert "max_resolution_a" in result.output
    result = runner.invoke(app, ["motion", "batch", str(tmp_path / "*.none"), "--out", str(out)])
    assert result.exit_code == 2
    assert not out.exists()


@pytest.mark.slow
def test_correct_recovers_the_simulated_motion(movie: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    # Global motion only (quicker); the local field is checked in test_correct.py.
    args = ["motion", "correct", str(movie), "--out", str(out), "--no-png", *FAST]
    args += ["--gain", str(movie.parent / "gain.mrc"), "--local-grid", "1x1x1"]
    result = runner.invoke(app, args, env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    document = json.loads((out / "motion" / f"{movie.stem}.json").read_text())
    truth = load_ground_truth(movie.parent)
    fitted = FrameMotion.from_dict(document["motion"])
    track = torch.tensor(document["global_track_a"])
    assert torch.allclose(track, fitted.global_shifts_at(), atol=1e-5)
    assert float((track - truth.motion.global_shifts_a).norm(dim=-1).max()) < 2.0  # Å
    assert document["summary"]["max_local_motion_a"] == 0.0
    summary = motion_summary(fitted, field_size_a=truth.settings.field_size_a)
    for name, value in summary.to_dict().items():
        assert document["summary"][name] == pytest.approx(value, rel=1e-4, abs=1e-5), name
    average, header = read_mrc(out / "average" / f"{movie.stem}.mrc")
    assert average.shape == SHAPE
    assert header.voxel_size_a[0] == pytest.approx(PIXEL_A)
