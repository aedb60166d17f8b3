"""The ``cryowarp`` command: help, version, the demo verb and its error path."""

from __future__ import annotations

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
    assert "Number of simulated movies" in result.output
