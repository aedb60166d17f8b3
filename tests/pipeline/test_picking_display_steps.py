"""The picking and display steps of a project: their files and results, what a change of
their settings or models redoes, and export of the project's own picks.

Stand-in networks (random weights, tiny) keep this fast; what BoxNet finds is tested with the
shipped model elsewhere (tests/preprocess/picking/test_generic_model.py)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from cryowarp.cli.main import app
from cryowarp.io.mrc import read_mrc
from cryowarp.io.star import read_star
from cryowarp.pipeline.display_step import denoiser_model_folder
from cryowarp.pipeline.executors import SerialExecutor
from cryowarp.pipeline.items import read_item_record
from cryowarp.pipeline.picking_step import picking_model_folder, picking_output_paths
from cryowarp.pipeline.project import Project, init_project, open_project, save_settings
from cryowarp.pipeline.runner import run_project
from cryowarp.pipeline.settings import ProjectSettings, set_setting
from cryowarp.pipeline.status import format_status, project_status
from cryowarp.pipeline.steps import settings_hashes
from cryowarp.preprocess.denoise.n2n_model_file import DenoiserModel, save_denoiser_model
from cryowarp.preprocess.denoise.n2n_network import DenoiserArchitecture, DenoiserUNet
from cryowarp.preprocess.export.coordinates import read_coordinates
from cryowarp.preprocess.picking.model_file import BoxNetModel, save_boxnet_model
from cryowarp.preprocess.picking.network import ARTEFACT, PARTICLE, BoxNet, BoxNetArchitecture
from cryowarp.simulate.presets import frame_series_preset
from cryowarp.simulate.write import write_frame_series_dataset

pytestmark = pytest.mark.slow

FAST = {
    "motion": {"patch_size_px": 64, "max_iterations": 5, "local_grid": [1, 1, 1]},
    "ctf": {"spectrum_source": "average"},
    # random stand-in BoxNet: particle probabilities scatter around 0.5
    "picking": {"model": "unit_boxnet", "diameter_a": 40.0, "threshold": 0.5},
    "display": {"denoiser_model": "unit_n2n"},
}


def _save_boxnet(folder: Path, seed: int) -> None:
    torch.manual_seed(seed)
    network = BoxNet(BoxNetArchitecture(widths=(4, 8), blocks_per_level=1))
    with torch.no_grad():  # "particle" competes evenly with background, no artefacts
        network.head.bias.zero_()
        network.head.bias[PARTICLE] = 0.5
        network.head.bias[ARTEFACT] = -30.0
    save_boxnet_model(BoxNetModel(network=network, name="unit_boxnet"), folder / "unit_boxnet")


def _save_denoiser(folder: Path) -> None:
    torch.manual_seed(0)
    network = DenoiserUNet(DenoiserArchitecture(widths=(4, 8), convs_per_level=1))
    save_denoiser_model(DenoiserModel(network=network, name="unit_n2n"), folder / "unit_n2n")


@pytest.fixture(scope="module")
def processed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two 128² movies processed by every step with the stand-in networks (copy to change)."""
    raw = tmp_path_factory.mktemp("raw")
    preset = frame_series_preset("tiny", shape_px=(128, 128), dose_per_frame_e_per_a2=4.0)
    write_frame_series_dataset(raw, preset, n_movies=2, seed=5)
    settings = ProjectSettings.model_validate(
        {
            "data": {
                "pattern": str(raw / "movie_*.mrc"),
                "movie": {"gain_path": str(raw / "gain.mrc"), "pixel_size_a": 1.5},
            },
            **FAST,
        }
    )
    project = init_project(tmp_path_factory.mktemp("proj") / "proj", settings)
    _save_boxnet(picking_model_folder(project), seed=0)
    _save_denoiser(denoiser_model_folder(project))
    summary = run_project(project, executor=SerialExecutor())
    assert summary.count("done") == 2, summary
    return project.folder


def _copy(folder: Path, tmp_path: Path) -> Project:
    target = tmp_path / "proj"
    shutil.copytree(folder, target, symlinks=True)
    return open_project(target)


def test_picking_files_and_results_agree(processed: Path) -> None:
    project = open_project(processed)
    for name in ("movie_000", "movie_001"):
        record = read_item_record(project.items_folder / f"{name}.json")
        step = record.steps["picking"]
        assert step.status == "done"
        assert step.results["picking_model"] == "unit_boxnet"
        paths = picking_output_paths(name)
        assert {o.path for o in step.outputs.values()} == set(paths.values())
        (sets,) = read_coordinates(processed / paths["star"], pixel_size_a=1.5)
        assert len(sets) == step.results["n_picks"]
        assert len(sets) > 0  # the stand-in finds some "particles"
        table = read_star(processed / paths["star"])[""]
        scores = table["rlnAutopickFigureOfMerit"].to_numpy()
        assert (scores >= 0.5).all()
        assert (scores <= 1).all()
        mask, header = read_mrc(processed / paths["mask"])
        assert float(header.voxel_size_a[0]) == pytest.approx(8.0, rel=0.05)
        assert step.results["masked_fraction"] == pytest.approx(float(np.mean(mask != 0)))


def test_display_views_are_written_at_the_display_pixel_size(processed: Path) -> None:
    project = open_project(processed)
    record = read_item_record(project.items_folder / "movie_000.json")
    step = record.steps["display"]
    assert step.status == "done"
    assert step.results["denoiser_model"] == "unit_n2n"
    assert step.results["display_pixel_size_a"] == pytest.approx(4.0, rel=0.03)
    denoised, header = read_mrc(processed / "display" / "movie_000_denoised.mrc")
    deconv, _ = read_mrc(processed / "display" / "movie_000_deconv.mrc")
    assert denoised.shape == deconv.shape == (48, 48)  # 128 px × 1.5 Å / 4 Å
    assert float(header.voxel_size_a[0]) == pytest.approx(4.0)
    assert (processed / "display" / "movie_000_denoised.png").stat().st_size > 0


def test_a_new_threshold_redoes_picking_and_display_only(processed: Path, tmp_path: Path) -> None:
    project = _copy(processed, tmp_path)
    before = settings_hashes(project)
    save_settings(project.settings_path, set_setting(project.settings, "picking.threshold", "0.7"))
    after = settings_hashes(open_project(project.folder))
    changed = [step for step in before if before[step] != after[step]]
    assert changed == ["picking", "display"]


def test_a_retrained_model_of_the_same_name_redoes_picking(processed: Path, tmp_path: Path) -> None:
    project = _copy(processed, tmp_path)
    before = settings_hashes(project)
    _save_boxnet(picking_model_folder(project), seed=1)  # same name, other weights
    after = settings_hashes(project)
    assert before["ctf"] == after["ctf"]
    assert before["picking"] != after["picking"]
    summary = run_project(project, executor=SerialExecutor())
    assert summary.count("done") == 2
    record = read_item_record(project.items_folder / "movie_000.json")
    assert record.steps["motion"].settings_hash == before["motion"]
    assert record.steps["picking"].settings_hash == after["picking"]


def test_export_particles_takes_the_project_picks_and_rethresholds(
    processed: Path, tmp_path: Path
) -> None:
    project = _copy(processed, tmp_path)
    scores = np.concatenate(
        [
            read_star(project.folder / picking_output_paths(n)["star"])[""][
                "rlnAutopickFigureOfMerit"
            ].to_numpy()
            for n in ("movie_000", "movie_001")
        ]
    )
    n_picks = len(scores)
    threshold = float(np.median(scores))  # re-thresholding keeps about half of them
    runner = CliRunner()
    out = tmp_path / "relion"
    common = ["export", "particles", str(project.folder), "--box", "32", "--keep-edge"]
    result = runner.invoke(app, [*common, "--out", str(out)])
    assert result.exit_code == 0, result.output
    particles = read_star(out / "particles.star")["particles"]
    assert len(particles) == n_picks
    strict = tmp_path / "strict"
    result = runner.invoke(app, [*common, "--out", str(strict), "--pick-threshold", str(threshold)])
    assert result.exit_code == 0, result.output
    fewer = read_star(strict / "particles.star")["particles"]
    assert len(fewer) == int(np.sum(scores >= threshold)) < n_picks
    assert (fewer["rlnAutopickFigureOfMerit"].to_numpy() >= threshold).all()


def test_status_reports_particles_and_masked_fraction(processed: Path) -> None:
    project = open_project(processed)
    status = project_status(project)
    n_picks = [
        read_item_record(project.items_folder / f"{n}.json").steps["picking"].results["n_picks"]
        for n in ("movie_000", "movie_001")
    ]
    assert status.quality["particles"]["count"] == 2
    assert status.quality["particles"]["p50"] == pytest.approx(float(np.median(n_picks)))
    assert "masked_fraction" in format_status(status)
