"""The ``cryowarp`` command: help, version, the demo verb and its error path."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from cryowarp import __version__
from cryowarp.cli.main import app

runner = CliRunner()


def test_version_and_help() -> None:
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0
    assert __version__ in result.output
    result = runner.invoke(app, ["demo", "--help"])
    assert result.exit_code == 0
    assert "Pixel size in Å" in result.output


def test_demo_runs_and_reports_fsc(tmp_path: Path) -> None:
    result = runner.invoke(
        app, ["demo", "--out", str(tmp_path), "--particles", "60", "--box", "24", "--snr", "5"]
    )
    assert result.exit_code == 0, result.output
    assert "FSC(half 1, half 2) = 0.143 at" in result.output
    assert (tmp_path / "particles.star").is_file()


def test_demo_rejects_a_negative_pixel_size(tmp_path: Path) -> None:
    result = runner.invoke(app, ["demo", "--out", str(tmp_path), "--pixel-size", "-2"])
    assert result.exit_code != 0
    assert "pixel_size_a" in result.output
    assert not (tmp_path / "particles.star").exists()
