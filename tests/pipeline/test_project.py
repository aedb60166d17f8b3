"""Projects: create/open, typed errors for bad settings files, which raw files belong to the
project, and the ``init``/``run``/``status``/``settings`` commands end to end."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from cryowarp.cli.project import init, run, settings_app, status
from cryowarp.errors import (
    CryowarpInputError,
    FileFormatError,
    InvalidValuesError,
    MissingFileError,
)
from cryowarp.pipeline.items import read_item_record
from cryowarp.pipeline.project import SETTINGS_FILE, init_project, open_project
from cryowarp.pipeline.settings import DataSettings, ProjectSettings
from cryowarp.preprocess.ctf.result import CtfResult
from cryowarp.preprocess.motion.settings import MovieInputSettings

app = typer.Typer()
app.command("init")(init)
app.command("run")(run)
app.command("status")(status)
app.add_typer(settings_app, name="settings")
cli = CliRunner()


def _settings(pattern: str = "raw/*.mrc", gain: str | None = None) -> ProjectSettings:
    return ProjectSettings(
        data=DataSettings(pattern=pattern, movie=MovieInputSettings(gain_path=gain))
    )


def test_init_then_open_gives_the_same_settings(tmp_path: Path) -> None:
    project = init_project(tmp_path / "proj", _settings())
    opened = open_project(tmp_path / "proj")
    assert opened.settings == project.settings
    assert opened.folder == (tmp_path / "proj").absolute()
    with pytest.raises(CryowarpInputError, match="a project exists here already"):
        init_project(tmp_path / "proj", _settings("other/*.tif"))
    replaced = init_project(tmp_path / "proj", _settings("other/*.tif"), overwrite=True)
    assert open_project(replaced.folder).settings.data.pattern == "other/*.tif"


def test_bad_settings_files_raise_typed_errors(tmp_path: Path) -> None:
    with pytest.raises(MissingFileError, match=SETTINGS_FILE):
        open_project(tmp_path)
    path = tmp_path / SETTINGS_FILE
    path.write_text("{oops")
    with pytest.raises(FileFormatError, match="not a JSON settings file"):
        open_project(tmp_path)
    document = _settings().model_dump(mode="json")
    document["motion"]["max_iteration"] = 3  # a typo
    path.write_text(json.dumps(document))
    with pytest.raises(InvalidValuesError, match=r"motion\.max_iteration: Extra inputs"):
        open_project(tmp_path)
    path.write_text(json.dumps({**_settings().model_dump(mode="json"), "schema_version": 99}))
    with pytest.raises(FileFormatError, match="newer cryowarp"):
        open_project(tmp_path)
    path.write_text(json.dumps({"data": {"glob": "raw/*.tif", "gain": "g.mrc"}}))  # version 0
    assert open_project(tmp_path).settings.data.movie.gain_path == "g.mrc"


def test_raw_files_skip_the_gain_and_the_projects_own_outputs(tmp_path: Path) -> None:
    project = init_project(tmp_path / "proj", _settings("../raw/**/*.mrc", gain="../raw/gain.mrc"))
    for name in ("b.mrc", "a.mrc", "gain.mrc", "sub/c.mrc", "notes.txt"):
        (tmp_path / "raw" / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "raw" / name).write_bytes(b"x")
    (tmp_path / "raw" / "folder.mrc").mkdir()
    found = [p.relative_to(tmp_path).as_posix() for p in project.raw_files()]
    assert found == ["raw/a.mrc", "raw/b.mrc", "raw/sub/c.mrc"]
    assert project.movie_input_settings().gain_path == str(tmp_path / "raw" / "gain.mrc")
    # a pattern that also matches the project's outputs does not pick them up
    inside = init_project(tmp_path / "raw", _settings("**/*.mrc", gain="gain.mrc"))
    (tmp_path / "raw" / "average").mkdir()
    (tmp_path / "raw" / "average" / "a.mrc").write_bytes(b"x")
    found = [p.relative_to(tmp_path).as_posix() for p in inside.raw_files()]
    assert found == ["raw/a.mrc", "raw/b.mrc", "raw/sub/c.mrc"]


def _init(data: Path) -> list[str]:
    return [
        "init", "proj", "--data", f"{data}/movie_*.mrc", "--gain", str(data / "gain.mrc"),
        "--pixel-size", "1.5", "--dose-per-frame", "1.0", "--voltage", "300",
        "--set", "motion.patch_size_px=64", "--set", "motion.max_iterations=5",
        "--set", "motion.local_grid=[1,1,1]", "--set", "ctf.spectrum_source=average",
    ]  # fmt: skip


def test_commands_init_and_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Paths given relative to the working folder are stored relative to the project; defaults
    come from the settings models; ``settings set`` validates and names the steps to redo."""
    data = tmp_path / "raw"
    data.mkdir()
    (data / "movie_000.mrc").write_bytes(b"x")
    (data / "gain.mrc").write_bytes(b"x")
    monkeypatch.chdir(tmp_path)
    result = cli.invoke(app, _init(Path("raw")))
    assert result.exit_code == 0, result.output
    assert "1 movies match" in result.output
    stored = json.loads((tmp_path / "proj" / SETTINGS_FILE).read_text())
    assert stored["data"]["pattern"] == "../raw/movie_*.mrc"
    assert stored["data"]["movie"]["gain_path"] == "../raw/gain.mrc"
    assert stored["motion"]["local_grid"] == [1, 1, 1]
    assert stored["optics"]["cs_mm"] == 2.7  # the model's default, not repeated in the CLI
    result = cli.invoke(app, _init(Path("raw")))
    assert result.exit_code != 0
    assert "a project exists here already" in result.output

    result = cli.invoke(app, ["settings", "set", "proj", "ctf.defocus_max_um", "4"])
    assert result.exit_code == 0, result.output
    assert "steps to redo on the next run: ctf" in result.output
    result = cli.invoke(app, ["settings", "set", "proj", "motion.max_iterations", "7"])
    assert "steps to redo on the next run: motion, ctf" in result.output
    result = cli.invoke(app, ["settings", "set", "proj", "workers.n_workers", "2"])
    assert "steps to redo on the next run: none" in result.output
    result = cli.invoke(app, ["settings", "set", "proj", "ctf.defocus_max_um", "0"])
    assert result.exit_code != 0
    assert "greater than 0" in result.output
    result = cli.invoke(app, ["settings", "show", "proj", "ctf.defocus_max_um"])
    assert result.output.strip() == "4.0"
    assert open_project(tmp_path / "proj").settings.motion.max_iterations == 7
    result = cli.invoke(app, ["status", str(tmp_path / "nothing")])
    assert result.exit_code != 0
    assert "file not found" in result.output


@pytest.mark.slow
def test_commands_run_and_status(
    tiny_frame_series_128: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One 128² movie through ``run --workers 0`` and ``status``."""
    monkeypatch.chdir(tmp_path)
    result = cli.invoke(app, _init(tiny_frame_series_128.folder))
    assert result.exit_code == 0, result.output
    result = cli.invoke(app, ["run", "proj", "--workers", "0"])
    assert result.exit_code == 0, result.output
    assert "1 items processed" in result.output
    record = read_item_record(tmp_path / "proj" / "items" / "movie_000.json")
    assert {s.status for s in record.steps.values()} == {"done"}
    ctf = CtfResult.from_dict(json.loads((tmp_path / "proj/ctf/movie_000_ctf.json").read_text()))
    assert abs(ctf.defocus_um - tiny_frame_series_128.truth.ctf.defocus_um) < 0.1

    result = cli.invoke(app, ["status", "proj", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["items"]["done"] == 1
    assert report["steps"]["ctf"]["done"] == 1
    assert report["quality"]["defocus_um"]["p50"] == pytest.approx(ctf.defocus_um)
    assert report["throughput_movies_per_hour"] > 0
    result = cli.invoke(app, ["status", "proj"])
    assert "1 items: 1 done" in result.output
    result = cli.invoke(app, ["run", "proj", "--workers", "0"])
    assert "0 items processed" in result.output  # nothing to redo
