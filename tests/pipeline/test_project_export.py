"""Export from a project: only items whose every step is done, the project's `export` and
`filters` settings as the defaults of `cryowarp export`, and older settings files without
those sections."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError
from typer.testing import CliRunner

from cryowarp.cli.main import app
from cryowarp.io.eman_box import BoxCoordinates, write_box
from cryowarp.io.mrc import read_mrc_header
from cryowarp.io.relion import read_micrographs, read_particles
from cryowarp.io.relion_validate import check_relion_star
from cryowarp.pipeline.events import EventLog
from cryowarp.pipeline.executors import SerialExecutor
from cryowarp.pipeline.export import export_defaults, project_sources, with_overrides
from cryowarp.pipeline.project import (
    Project,
    init_project,
    load_settings,
    open_project,
    save_settings,
)
from cryowarp.pipeline.runner import run_project
from cryowarp.pipeline.settings import DataSettings, ProjectSettings, set_setting
from cryowarp.pipeline.steps import settings_hashes
from cryowarp.preprocess.export.filters import ExportFilters
from cryowarp.preprocess.export.settings import ExtractionSettings
from cryowarp.preprocess.export.sources import scan_processing_folder
from cryowarp.simulate.ground_truth import load_ground_truth
from cryowarp.simulate.presets import frame_series_preset
from cryowarp.simulate.write import write_frame_series_dataset

N_MOVIES = 2
PIXEL_A = 1.5
FAST = {
    "motion": {"patch_size_px": 64, "max_iterations": 5, "local_grid": [1, 1, 1]},
    "ctf": {"spectrum_source": "average"},
}


@pytest.fixture(scope="module")
def processed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A project of two 128² movies after one run, and a folder of .box files of the true
    particle centres (treat both as read-only; copy the project before changing it)."""
    raw = tmp_path_factory.mktemp("raw")
    preset = frame_series_preset("tiny", shape_px=(128, 128), dose_per_frame_e_per_a2=4.0)
    write_frame_series_dataset(raw, preset, n_movies=N_MOVIES, seed=5)
    boxes = tmp_path_factory.mktemp("boxes")
    for movie in range(N_MOVIES):
        truth = load_ground_truth(raw, movie)
        positions = np.round(truth.particles.positions_px(PIXEL_A).numpy())
        write_box(
            boxes / f"{truth.movie_path.stem}.box",
            BoxCoordinates(positions, np.full(positions.shape, 32.0)),
        )
    settings = ProjectSettings.model_validate(
        {
            "data": {
                "pattern": str(raw / "movie_*.mrc"),
                "movie": {"gain_path": str(raw / "gain.mrc"), "pixel_size_a": PIXEL_A},
            },
            **FAST,
            "export": {"box_size_px": 32, "particle_diameter_a": 40.0},
        }
    )
    project = init_project(tmp_path_factory.mktemp("processed") / "proj", settings)
    summary = run_project(project, executor=SerialExecutor())
    assert summary.count("done") == N_MOVIES, summary.outcomes
    return project.folder, boxes


def _copy(processed: tuple[Path, Path], tmp_path: Path) -> Project:
    folder = tmp_path / "proj"
    shutil.copytree(processed[0], folder, symlinks=True)
    return open_project(folder)


def _change(project: Project, key: str, value: str) -> Project:
    changed = project.with_settings(set_setting(project.settings, key, value))
    save_settings(changed.settings_path, changed.settings)
    return changed


def test_only_items_whose_steps_are_all_done_are_exported(
    processed: tuple[Path, Path], tmp_path: Path
) -> None:
    project = _copy(processed, tmp_path)
    found = project_sources(project)
    assert [s.name for s in found.sources] == ["movie_000", "movie_001"]
    assert not found.problems
    assert not found.not_done
    # A project folder is a processing folder: the same micrographs, motion and CTF.
    scanned, problems = scan_processing_folder(project.folder)
    assert not problems
    for ours, plain in zip(found.sources, scanned, strict=True):
        assert ours.name == plain.name
        assert ours.average_path == plain.average_path
        assert ours.ctf is not None
        assert plain.ctf is not None
        assert ours.ctf.defocus_um == plain.ctf.defocus_um
        assert ours.motion_summary == plain.motion_summary

    # A missing CTF output makes the item pending: its files are no longer trusted.
    (project.folder / "ctf" / "movie_001_ctf.json").unlink()
    (project.folder / "items" / "broken.json").write_text("{not json")
    found = project_sources(project)
    assert [s.name for s in found.sources] == ["movie_000"]
    assert found.not_done == {"movie_001": "pending"}
    assert [p.path.name for p in found.problems] == ["broken.json"]

    # Changed CTF settings: the estimates on disk are of the old settings, nothing is done.
    changed = _change(project, "ctf.defocus_max_um", "4.5")
    found = project_sources(changed)
    assert found.sources == []
    assert found.not_done == {"movie_000": "pending", "movie_001": "pending"}


def _cli(*args: object) -> tuple[int, str]:
    result = CliRunner().invoke(app, [str(a) for a in args])
    return result.exit_code, result.output


def test_export_on_a_project_takes_its_settings_as_defaults(
    processed: tuple[Path, Path], tmp_path: Path
) -> None:
    project = _copy(processed, tmp_path)
    boxes = processed[1]
    coords = ["--coords", f"{boxes}/*.box", "--coords-pixel-size", PIXEL_A]

    code, output = _cli("export", "particles", project.folder, "--out", tmp_path / "a", *coords)
    assert code == 0, output
    optics, table = read_particles(tmp_path / "a" / "particles.star")
    assert optics[0].image_size_px == 32  # the project's export.box_size_px, not 128
    assert sorted(set(table.frame["rlnMicrographName"].map(lambda n: Path(n).stem))) == [
        "movie_000",
        "movie_001",
    ]
    check_relion_star(tmp_path / "a" / "particles.star", kind="particles", root=tmp_path / "a")
    stack = tmp_path / "a" / "particles" / "movie_000.mrcs"
    assert read_mrc_header(stack).shape[-2:] == (32, 32)

    # An option given wins over the project's value; the project's filters apply.
    _change(project, "filters.exclude", '["movie_000"]')
    code, output = _cli(
        "export", "particles", project.folder, "--out", tmp_path / "b", *coords, "--box", 48
    )
    assert code == 0, output
    optics, table = read_particles(tmp_path / "b" / "particles.star")
    assert optics[0].image_size_px == 48
    assert set(table.frame["rlnMicrographName"].map(lambda n: Path(n).stem)) == {"movie_001"}
    code, output = _cli("export", "micrographs", project.folder, "--out", tmp_path / "c")
    assert code == 0, output
    assert "excluded movie_000: in the exclude list" in output
    _, micrographs = read_micrographs(tmp_path / "c" / "micrographs_ctf.star")
    assert [Path(n).stem for n in micrographs.frame["rlnMicrographName"]] == ["movie_001"]
    exports = [
        e for e in EventLog.read(project.events_path) if e["kind"] == "export_finished"
    ]  # what the dashboard counts as exported
    assert [(e["what"], e["n_micrographs"], e.get("n_particles")) for e in exports] == [
        ("particles", 2, len(read_particles(tmp_path / "a" / "particles.star")[1].frame)),
        ("particles", 1, len(table.frame)),
        ("micrographs", 1, None),
    ]
    assert exports[-1]["out"] == str((tmp_path / "c").resolve())

    # Items not done are left out and said so; --ctf-dir does not apply to a project.
    _change(project, "filters.exclude", "[]")
    (project.folder / "ctf" / "movie_001_ctf.json").unlink()
    code, output = _cli("export", "micrographs", project.folder, "--out", tmp_path / "d")
    assert code == 0, output
    assert "1 item(s) not done are left out (movie_001;" in output
    _, micrographs = read_micrographs(tmp_path / "d" / "micrographs_ctf.star")
    assert [Path(n).stem for n in micrographs.frame["rlnMicrographName"]] == ["movie_000"]
    (project.folder / "ctf" / "movie_000_ctf.json").unlink()
    code, output = _cli("export", "micrographs", project.folder, "--out", tmp_path / "d")
    assert code == 1
    assert "no micrograph found in the done items" in output
    code, output = _cli(
        "export", "micrographs", project.folder, "--out", tmp_path / "e", "--ctf-dir", tmp_path
    )
    assert code == 2
    assert "leave --ctf-dir out" in output


def test_older_settings_files_without_the_export_sections_load_with_defaults(
    tmp_path: Path,
) -> None:
    settings = ProjectSettings(data=DataSettings(pattern="raw/*.tif"))
    document = settings.model_dump(mode="json")
    del document["export"], document["filters"]
    path = tmp_path / "cryowarp.json"
    path.write_text(json.dumps(document))
    loaded = load_settings(path)
    assert loaded == settings
    assert loaded.export == ExtractionSettings()
    assert loaded.filters == ExportFilters()
    # Export settings redo no processing step.
    project = init_project(tmp_path / "proj", loaded)
    changed = set_setting(loaded, "export.box_size_px", "64")
    changed = set_setting(changed, "filters.ctf_resolution_max_a", "6")
    assert changed.export.box_size_px == 64
    assert settings_hashes(project.with_settings(changed)) == settings_hashes(project)


def test_defaults_come_from_a_project_or_from_the_models(tmp_path: Path) -> None:
    assert export_defaults(tmp_path) == (ExtractionSettings(), ExportFilters())
    settings = ProjectSettings.model_validate(
        {
            "data": {"pattern": "raw/*.tif"},
            "export": {"box_size_px": 200},
            "filters": {"defocus_max_um": 3.0},
        }
    )
    init_project(tmp_path / "proj", settings)
    extraction, filters = export_defaults(tmp_path / "proj")
    assert extraction.box_size_px == 200
    assert filters.defocus_max_um == 3.0

    base = ExtractionSettings(box_size_px=64, particle_diameter_a=50.0)
    assert with_overrides(base, {"box_size_px": None, "particle_diameter_a": None}) == base
    changed = with_overrides(base, {"box_size_px": 96, "invert_contrast": False})
    assert (changed.box_size_px, changed.invert_contrast) == (96, False)
    assert changed.particle_diameter_a == 50.0
    with pytest.raises(ValidationError, match="multiple of 2"):
        with_overrides(base, {"box_size_px": 33})
