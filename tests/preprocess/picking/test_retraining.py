"""Retraining: a model trained on dark blobs learns bright rings from two micrographs without
forgetting, reports the four accuracies, and the saved model carries its parent and name."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import torch

from cryowarp.preprocess.picking.labels import LabelledMicrograph, labels_from_positions
from cryowarp.preprocess.picking.model_file import (
    BoxNetModel,
    load_boxnet_model,
    save_boxnet_model,
)
from cryowarp.preprocess.picking.retraining import (
    CONTEXT_PX,
    RetrainingSettings,
    _split,
    _user_tiles,
    hold_out_region,
    retrain_boxnet,
)
from cryowarp.preprocess.picking.training import TrainingEvent, TrainingSettings, train_boxnet

from ._toy_picking import blob_micrographs, tiny_network

RETRAIN = RetrainingSettings(max_epochs=3, batch_size=4, crop_px=48, learning_rate=3e-3, seed=2)


@pytest.fixture(scope="module")
def base_model() -> BoxNetModel:
    """A tiny model trained on dark blobs only."""
    network = tiny_network()
    settings = TrainingSettings(
        steps=40, batch_size=4, crop_px=48, learning_rate=3e-3, warmup_steps=5, seed=1
    )
    train_boxnet(network, blob_micrographs(6, seed=1), [], settings=settings)
    return BoxNetModel(network=network, name="toy_base_v1", metadata={"kind": "generic"})


def _micrograph_with(
    positions: list[tuple[float, float]], shape: tuple[int, int]
) -> LabelledMicrograph:
    xy = torch.tensor(positions, dtype=torch.float32).reshape(-1, 2)
    diameters = torch.full((xy.shape[0],), 120.0)
    return LabelledMicrograph(
        image=torch.randn(shape),
        labels=labels_from_positions(shape, xy, diameters, pixel_size_a=8.0),
        positions_px=xy,
        diameters_a=diameters,
        artefact_mask=torch.zeros(shape, dtype=torch.bool),
    )


def test_hold_out_region_keeps_the_edge_strip_with_the_most_particles() -> None:
    item = _micrograph_with([(90.0, 30.0), (20.0, 10.0)], (64, 100))
    item = replace(item, labels=torch.where(torch.arange(100) < 25, -1, item.labels))
    # the left strip is painted "ignore": the right strip (x ≥ 75), with a particle, is held out
    training, held = hold_out_region(item, 0.25)
    assert training.image.shape == (64, 75)
    assert held.image.shape == (64, 25 + CONTEXT_PX)
    assert torch.equal(training.image, item.image[:, :75])
    assert torch.equal(held.image, item.image[:, 75 - CONTEXT_PX :])
    assert bool((held.labels[:, :CONTEXT_PX] == -1).all())  # context: seen, not scored
    assert torch.equal(held.labels[:, CONTEXT_PX:], item.labels[:, 75:])
    assert held.positions_px.tolist() == [[90.0 - 75 + CONTEXT_PX, 30.0]]
    assert training.positions_px.tolist() == [[20.0, 10.0]]
    # particles only near x = 10: the left strip is held out, the training part shifted
    item = _micrograph_with([(10.0, 30.0)], (64, 100))
    training, held = hold_out_region(item, 0.25)
    assert torch.equal(training.image, item.image[:, 25:])
    assert torch.equal(held.image, item.image[:, : 25 + CONTEXT_PX])
    assert bool((held.labels[:, 25:] == -1).all())
    assert torch.equal(held.labels[:, :25], item.labels[:, :25])
    assert training.positions_px.shape == (0, 2)
    # no particles anywhere: the end of the longer side (here y)
    training, held = hold_out_region(_micrograph_with([], (100, 64)), 0.25)
    assert training.image.shape == (75, 64)
    assert held.image.shape == (25 + CONTEXT_PX, 64)


@pytest.mark.slow
def test_retraining_learns_the_new_species_and_reports_four_accuracies(
    base_model: BoxNetModel, tmp_path: Path
) -> None:
    user = blob_micrographs(2, shape=(128, 128), kind="bright", seed=5, particles=30)
    generic = blob_micrographs(6, seed=6)
    before = {k: v.clone() for k, v in base_model.network.state_dict().items()}
    events: list[TrainingEvent] = []
    model, report = retrain_boxnet(
        base_model, user, generic, name="toy_new_v1", settings=RETRAIN, progress=events.append
    )
    accuracies = report.accuracies()
    assert set(accuracies) == {"old_on_old", "old_on_new", "new_on_old", "new_on_new"}
    assert all(0.0 <= a <= 1.0 for a in accuracies.values()), accuracies
    # measured: old model on bright rings 0.0, new 0.92; on dark blobs 0.74 → 0.86
    assert accuracies["new_on_new"] > accuracies["old_on_new"] + 0.3, accuracies
    assert accuracies["new_on_old"] > accuracies["old_on_old"] - 0.15, accuracies
    assert len(report.epochs) == 3
    epoch_events = [e for e in events if e.kind == "epoch"]
    assert [e.epoch for e in epoch_events] == [1, 2, 3]
    assert epoch_events[-1].accuracies == accuracies
    assert len([e for e in events if e.kind == "step"]) == 3 * report.steps_per_epoch
    # the base model is untouched; the new one records where it came from
    for key, value in base_model.network.state_dict().items():
        assert torch.equal(value, before[key]), key
    assert model.metadata["parent"] == "toy_base_v1"
    assert model.metadata["lineage"] == ["toy_base_v1"]
    assert model.metadata["user_data"] == [u.source for u in user]
    assert model.metadata["n_user_particles"] == sum(u.positions_px.shape[0] for u in user)
    assert model.metadata["settings"]["max_epochs"] == 3
    path = save_boxnet_model(model, tmp_path / "toy_new_v1")
    loaded = load_boxnet_model(path)
    assert loaded.name == "toy_new_v1"
    assert loaded.metadata["parent"] == "toy_base_v1"
    assert loaded.metadata["accuracies"] == pytest.approx(accuracies)


def test_retraining_without_generic_data_reports_nan_for_old_data() -> None:
    base_model = BoxNetModel(network=tiny_network(), name="untrained")
    user: list[LabelledMicrograph] = blob_micrographs(1, kind="bright", seed=7)
    settings = RETRAIN.model_copy(update={"max_epochs": 1})
    _, report = retrain_boxnet(base_model, user, [], name="toy_x", settings=settings)
    accuracies = report.accuracies()
    assert accuracies["old_on_old"] != accuracies["old_on_old"]  # NaN
    assert 0.0 <= accuracies["new_on_new"] <= 1.0


def test_retraining_needs_user_data() -> None:
    base_model = BoxNetModel(network=tiny_network(), name="untrained")
    with pytest.raises(ValueError, match="user micrograph"):
        retrain_boxnet(base_model, [], blob_micrographs(1), name="x", settings=RETRAIN)


def test_user_crops_take_image_context_from_the_micrograph_not_zero_padding() -> None:
    """Training windows lie inside the micrograph (no zero-padded borders, which the generic
    model never saw and which taught it to call artefact along edges) and carry labels of the
    training region only: the held-out strip's labels are never trained on."""
    item = _micrograph_with([(20.0, 30.0), (200.0, 100.0)], (256, 256))
    split = _split(item, 0.25)
    labels = split.training_labels(item)
    images, tile_labels = _user_tiles([item], [labels], crop_px=128, source_px=220)
    # tiles at 0, 64, 128; windows 46 px wider on each side, moved inside: 0, 18, 36
    assert images.shape == (9, 220, 220)
    windows = {(y, x) for y in (0, 18, 36) for x in (0, 18, 36)}
    found = set()
    for image, tile in zip(images, tile_labels, strict=True):
        match = [
            (y, x) for y, x in windows if torch.equal(image, item.image[y : y + 220, x : x + 220])
        ]
        assert len(match) == 1
        y, x = match[0]
        found.add((y, x))
        assert torch.equal(tile, labels[y : y + 220, x : x + 220])
    assert found == windows
    held = labels == -1
    assert int(held.sum()) == 64 * 256  # the strip of 25 % (the context stays trainable)
    assert bool((item.labels[held] >= 0).all())
