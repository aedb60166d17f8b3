"""``cryowarp boxnet``: retraining from two micrographs and STAR picks writes a named model
whose metadata hold its parent and four accuracies that improved on the new data; bad inputs
fail with an error naming the file; ``list`` shows the model; ``train-generic`` records how
it was made."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from cryowarp.cli.main import app
from cryowarp.io.mrc import write_mrc
from cryowarp.preprocess.picking.labels import save_labelled
from cryowarp.preprocess.picking.model_file import (
    BoxNetModel,
    load_boxnet_model,
    save_boxnet_model,
)
from cryowarp.preprocess.picking.training import TrainingSettings, train_boxnet

from ..preprocess.picking._toy_picking import (
    DIAMETER_A,
    blob_image,
    blob_micrographs,
    spaced_positions,
    tiny_network,
)

FAST_RETRAIN = ["--crop", "48", "--batch-size", "4", "--learning-rate", "3e-3"]


def _micrographs_and_picks(folder: Path, n: int = 2) -> tuple[str, str]:
    """``n`` micrographs (MRC, 8 Å/px, bright rings) and one RELION coordinate STAR each."""
    folder.mkdir(parents=True, exist_ok=True)
    generator = torch.Generator().manual_seed(11)
    for i in range(n):
        positions = spaced_positions((128, 192), 30, generator=generator)
        image = blob_image((128, 192), positions, kind="bright", generator=generator)
        write_mrc(folder / f"mic_{i}.mrc", image.numpy().astype(np.float32), voxel_size_a=8.0)
        rows = "\n".join(f"{x:.2f} {y:.2f}" for x, y in positions.tolist())
        (folder / f"mic_{i}_autopick.star").write_text(
            f"\ndata_\n\nloop_\n_rlnCoordinateX #1\n_rlnCoordinateY #2\n{rows}\n"
        )
    return str(folder / "mic_*.mrc"), str(folder / "mic_*_autopick.star")


@pytest.fixture(scope="module")
def base_model_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny model trained on dark blobs only, saved as toy_base_v1."""
    network = tiny_network()
    settings = TrainingSettings(
        steps=40, batch_size=4, crop_px=48, learning_rate=3e-3, warmup_steps=5, seed=1
    )
    train_boxnet(network, blob_micrographs(6, seed=1), [], settings=settings)
    model = BoxNetModel(network=network, name="toy_base_v1", metadata={"created": "today"})
    return save_boxnet_model(model, tmp_path_factory.mktemp("base") / "toy_base_v1")


@pytest.fixture(scope="module")
def generic_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("generic")
    for i, item in enumerate(blob_micrographs(6, seed=6)):
        save_labelled(item, folder / f"generic_{i:03d}.npz")
    return folder


@pytest.mark.slow
def test_retrain_writes_a_named_model_that_learned_the_new_data(
    base_model_file: Path, generic_folder: Path, tmp_path: Path
) -> None:
    micrographs, coordinates = _micrographs_and_picks(tmp_path / "user")
    out = tmp_path / "models"
    result = CliRunner().invoke(
        app,
        ["boxnet", "retrain", "--base", str(base_model_file), "--micrographs", micrographs,
         "--coordinates", coordinates, "--diameter", str(DIAMETER_A["bright"]),
         "--name", "rings_v1", "--out", str(out), "--epochs", "3",
         "--generic-data", str(generic_folder), *FAST_RETRAIN],
        env={"COLUMNS": "200"},
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    model = load_boxnet_model(out / "rings_v1.boxnet.pt")
    assert model.name == "rings_v1"
    metadata = model.metadata
    assert metadata["parent"] == "toy_base_v1"
    assert metadata["user_data"] == [str(tmp_path / "user" / f"mic_{i}.mrc") for i in range(2)]
    assert metadata["n_user_particles"] == 60
    assert metadata["diameter_a"] == DIAMETER_A["bright"]
    assert "boxnet retrain" in metadata["command"]
    assert "--epochs 3" in metadata["command"]
    accuracies = metadata["accuracies"]
    assert set(accuracies) == {"old_on_old", "old_on_new", "new_on_old", "new_on_new"}
    assert all(0.0 <= a <= 1.0 for a in accuracies.values()), accuracies
    assert accuracies["new_on_new"] > accuracies["old_on_new"] + 0.3, accuracies
    report = json.loads((out / "rings_v1.retraining.json").read_text())
    assert len(report["epochs"]) == 3
    assert report["epochs"][-1]["accuracies"] == pytest.approx(accuracies)
    assert "new model, new data" in result.output
    # the same name again is refused; list shows the model and its parent
    again = CliRunner().invoke(
        app,
        ["boxnet", "retrain", "--base", str(base_model_file), "--micrographs", micrographs,
         "--coordinates", coordinates, "--diameter", "160", "--name", "rings_v1",
         "--out", str(out)],
    )  # fmt: skip
    assert again.exit_code == 2
    assert "exists" in again.output
    listing = CliRunner().invoke(
        app, ["boxnet", "list", "--search", str(out)], env={"COLUMNS": "200"}
    )
    assert listing.exit_code == 0, listing.output
    assert "rings_v1" in listing.output
    assert "toy_base_v1" in listing.output


def test_coordinates_that_match_no_micrograph_fail_naming_the_file(tmp_path: Path) -> None:
    base = save_boxnet_model(BoxNetModel(tiny_network(), "untrained"), tmp_path / "untrained")
    micrographs, _ = _micrographs_and_picks(tmp_path / "user", n=1)
    stray = tmp_path / "user" / "elsewhere_autopick.star"
    stray.write_text("\ndata_\n\nloop_\n_rlnCoordinateX #1\n_rlnCoordinateY #2\n10 10\n")
    result = CliRunner().invoke(
        app,
        ["boxnet", "retrain", "--base", str(base), "--micrographs", micrographs,
         "--coordinates", str(stray), "--diameter", "160", "--name", "x_v1",
         "--out", str(tmp_path / "models")],
    )  # fmt: skip
    assert result.exit_code == 1, result.output
    assert str(stray) in result.output
    assert "none of which" in result.output
    assert not (tmp_path / "models" / "x_v1.boxnet.pt").exists()


def test_a_corrupted_base_model_fails_naming_the_file(tmp_path: Path) -> None:
    good = save_boxnet_model(BoxNetModel(tiny_network(), "untrained"), tmp_path / "untrained")
    broken = tmp_path / "broken.boxnet.pt"
    broken.write_bytes(good.read_bytes()[:500])
    micrographs, coordinates = _micrographs_and_picks(tmp_path / "user", n=1)
    result = CliRunner().invoke(
        app,
        ["boxnet", "retrain", "--base", str(broken), "--micrographs", micrographs,
         "--coordinates", coordinates, "--diameter", "160", "--name", "x_v1",
         "--out", str(tmp_path / "models")],
    )  # fmt: skip
    assert result.exit_code == 1, result.output
    assert str(broken) in result.output
    assert "cannot read" in result.output
    missing = CliRunner().invoke(
        app,
        ["boxnet", "retrain", "--base", "no_such_model", "--micrographs", micrographs,
         "--coordinates", coordinates, "--diameter", "160", "--name", "x_v1",
         "--out", str(tmp_path / "models")],
    )  # fmt: skip
    assert missing.exit_code == 1
    assert "no BoxNet model file or model of that name" in missing.output
    listing = CliRunner().invoke(
        app, ["boxnet", "list", "--search", str(tmp_path)], env={"COLUMNS": "200"}
    )
    assert listing.exit_code == 0, listing.output
    assert "unreadable" in listing.output
    assert "untrained" in listing.output


@pytest.mark.slow
def test_train_generic_records_how_the_model_was_made(tmp_path: Path) -> None:
    from cryowarp.preprocess.picking.training_data import GenericTrainingSettings, dataset_hash

    out = tmp_path / "models"
    args = ["boxnet", "train-generic", "--out", str(out), "--name", "tiny_generic",
            "--seed", "3", "--micrographs", "3", "--steps", "4", "--batch-size", "2",
            "--eval-every", "2"]  # fmt: skip
    result = CliRunner().invoke(app, args, env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "where the time went" in result.output
    assert "s/step" in result.output
    model = load_boxnet_model(out / "tiny_generic.boxnet.pt")
    metadata = model.metadata
    assert metadata["kind"] == "generic"
    assert metadata["seed"] == 3
    assert "--steps 4" in metadata["command"]
    assert "--micrographs 3" in metadata["command"]
    assert metadata["training_settings"]["steps"] == 4
    assert metadata["dataset_hash"] == dataset_hash(
        GenericTrainingSettings(n_micrographs=3), seed=3, extra_species=[]
    )
    assert metadata["n_micrographs"] == 3
    final = metadata["final_validation"]
    assert 0.0 <= final["accuracy"] <= 1.0
    assert final["loss"] > 0
    report = json.loads((out / "tiny_generic.training.json").read_text())
    assert len(report["losses"]) == 4
    assert [e["step"] for e in report["evaluations"]] == [2, 4]
    assert len(list((out / "generic_data").glob("generic_*.npz"))) == 3
