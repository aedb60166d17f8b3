"""BoxNet training: the loss falls on a tiny set, a seed fixes the run, the accuracy means
what docs/picking_training.md says, and the class weights and schedule follow their rules."""

from __future__ import annotations

import itertools
import math
from pathlib import Path
from typing import cast

import pytest
import torch
from torch import nn

from cryowarp.preprocess.picking.labels import LabelledMicrograph
from cryowarp.preprocess.picking.network import BoxNet, BoxNetArchitecture
from cryowarp.preprocess.picking.training import (
    TrainingEvent,
    TrainingSettings,
    class_frequencies,
    class_weights_from_frequencies,
    evaluate_boxnet,
    learning_rate_factor,
    split_validation,
    train_boxnet,
)

from ._toy_picking import blob_micrographs, tiny_network

FAST = TrainingSettings(
    steps=40,
    batch_size=4,
    crop_px=48,
    learning_rate=3e-3,
    warmup_steps=5,
    eval_every_steps=20,
    class_weights=(1.0, 4.0, 2.0),
    seed=1,
)


@pytest.fixture(scope="module")
def toy_data() -> tuple[list[LabelledMicrograph], list[LabelledMicrograph]]:
    return blob_micrographs(6, seed=1), blob_micrographs(2, seed=2)


def test_training_lowers_the_training_and_validation_loss(
    toy_data: tuple[list[LabelledMicrograph], list[LabelledMicrograph]],
) -> None:
    train, validation = toy_data
    network = tiny_network()
    before = evaluate_boxnet(network, validation, class_weights=FAST.class_weights or (1, 1, 1))
    events: list[TrainingEvent] = []
    report = train_boxnet(network, train, validation, settings=FAST, progress=events.append)
    assert len(report.losses) == 40
    first, last = sum(report.losses[:5]) / 5, sum(report.losses[-10:]) / 10
    assert last < 0.5 * first, (first, last)  # measured: ~1.2 → ~0.3
    assert [step for step, _ in report.evaluations] == [20, 40]
    final = report.final
    assert final is not None
    assert final.loss < 0.6 * before.loss, (before.loss, final.loss)
    assert final.accuracy > before.accuracy + 0.3, (before.accuracy, final.accuracy)
    assert final.accuracy == pytest.approx(final.f1[1])  # no artefacts: particle F1
    # one step event per step, one evaluation event per evaluation, in order
    assert [e.step for e in events if e.kind == "step"] == list(range(1, 41))
    assert [e.step for e in events if e.kind == "evaluation"] == [20, 40]
    assert not network.training


def test_same_seed_same_run_other_seed_other_run(
    toy_data: tuple[list[LabelledMicrograph], list[LabelledMicrograph]],
) -> None:
    train, _ = toy_data
    settings = FAST.model_copy(update={"steps": 6})
    runs = []
    for seed in (1, 1, 2):
        network = tiny_network(seed=0)
        report = train_boxnet(
            network, train, [], settings=settings.model_copy(update={"seed": seed})
        )
        runs.append((report.losses, network.state_dict()))
    assert runs[0][0] == runs[1][0]
    for key, value in runs[0][1].items():
        assert torch.equal(value, runs[1][1][key]), key
    assert runs[0][0] != runs[2][0]


class _Oracle(nn.Module):
    """Predicts fixed labels (one-hot logits) whatever the image."""

    def __init__(self, predicted: torch.Tensor) -> None:
        super().__init__()
        self.architecture = BoxNetArchitecture()
        self.dummy = nn.Parameter(torch.zeros(()))
        self.predicted = predicted

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        h, w = self.predicted.shape
        logits = 10.0 * nn.functional.one_hot(self.predicted, 3).permute(2, 0, 1).float()
        out = torch.zeros(images.shape[0], 3, images.shape[-2], images.shape[-1])
        out[:, :, :h, :w] = logits
        return out


def _labelled(labels: torch.Tensor) -> LabelledMicrograph:
    return LabelledMicrograph(
        image=torch.zeros(labels.shape),
        labels=labels,
        positions_px=torch.zeros(0, 2),
        diameters_a=torch.zeros(0),
        artefact_mask=labels == 2,
    )


def test_accuracy_is_the_mean_foreground_f1_over_labelled_pixels() -> None:
    truth = torch.zeros(8, 8, dtype=torch.int64)
    truth[0, :4] = 1  # 4 particle pixels
    truth[7, :] = 2  # 8 artefact pixels
    truth[3, 3] = -1  # ignored
    predicted = truth.clamp(min=0).clone()
    predicted[0, :2] = 0  # 2 particle pixels missed: particle recall 0.5, precision 1
    predicted[5, :2] = 1  # 2 background pixels called particle: precision 2/4
    predicted[3, 3] = 2  # wrong on an ignored pixel: does not count
    oracle = cast(BoxNet, _Oracle(predicted))
    result = evaluate_boxnet(oracle, [_labelled(truth)])
    particle_f1 = 2 * 0.5 * 0.5 / (0.5 + 0.5)
    assert result.f1[1] == pytest.approx(particle_f1)
    assert result.f1[2] == pytest.approx(1.0)
    assert result.accuracy == pytest.approx((particle_f1 + 1.0) / 2)
    assert result.n_pixels == 63
    assert result.recall == pytest.approx((49 / 51, 0.5, 1.0))
    assert result.balanced_accuracy == pytest.approx((49 / 51 + 0.5 + 1.0) / 3)
    # calling everything background: high pixel accuracy, accuracy 0
    nothing = evaluate_boxnet(cast(BoxNet, _Oracle(torch.zeros(8, 8, dtype=torch.int64))),
                              [_labelled(truth)])  # fmt: skip
    assert nothing.accuracy == 0.0
    assert nothing.confusion[0][0] == 51


def test_class_weights_follow_the_label_frequencies() -> None:
    labels = torch.zeros(10, 10, dtype=torch.int64)
    labels[0, :4] = 1  # 4 %
    labels[1:3] = 2  # 20 %
    labels[9, :10] = -1  # ignored pixels are not counted
    frequencies = class_frequencies([_labelled(labels)])
    assert frequencies == pytest.approx((66 / 90, 4 / 90, 20 / 90))
    weights = class_weights_from_frequencies(frequencies)
    assert weights == pytest.approx((1.0, math.sqrt(66 / 4), math.sqrt(66 / 20)))
    assert class_weights_from_frequencies((0.9, 0.1, 0.0)) == pytest.approx((1.0, 3.0, 1.0))
    assert class_weights_from_frequencies((0.999_9, 1e-6, 0.0))[1] == 20.0  # clipped


def test_split_validation_is_a_seeded_partition() -> None:
    data = blob_micrographs(10, shape=(16, 16), particles=1)
    train, validation = split_validation(data, 0.2, seed=3)
    assert len(train) == 8
    assert len(validation) == 2
    assert {id(d) for d in train}.isdisjoint({id(d) for d in validation})
    assert [d.source for d in split_validation(data, 0.2, seed=3)[1]] == [
        d.source for d in validation
    ]
    assert len(split_validation(data[:2], 0.01, seed=0)[1]) == 1  # at least one
    assert split_validation(data[:1], 0.5, seed=0)[1] == []  # never all


def test_learning_rate_warms_up_then_decays_by_a_cosine() -> None:
    factors = [learning_rate_factor(s, total_steps=100, warmup_steps=10, final=0.05)
               for s in range(100)]  # fmt: skip
    assert factors[0] == pytest.approx(1 / 11)
    assert factors[9] == pytest.approx(10 / 11)
    assert factors[10] == pytest.approx(1.0)
    assert factors[55] == pytest.approx(0.05 + 0.95 * 0.5)  # half way down
    assert all(a >= b for a, b in itertools.pairwise(factors[10:]))
    assert learning_rate_factor(100, total_steps=100, warmup_steps=10, final=0.05) == (
        pytest.approx(0.05)
    )


def test_settings_reject_unknown_keys_and_bad_crops() -> None:
    with pytest.raises(ValueError, match="extra"):
        TrainingSettings(stepz=3)  # type: ignore[call-arg]
    with pytest.raises(ValueError, match="multiple"):
        TrainingSettings(crop_px=100)


@pytest.mark.slow
def test_training_on_simulated_micrographs_lowers_the_loss(tmp_path: Path) -> None:
    """The real generic data path: 4 simulated 128² micrographs (build_generic_dataset)."""
    from cryowarp.pipeline.picking_training_data import build_generic_dataset
    from cryowarp.preprocess.picking.labels import load_labelled
    from cryowarp.preprocess.picking.training_data import GenericTrainingSettings

    settings = GenericTrainingSettings(
        n_micrographs=5, micrograph_size_px=(128, 128), n_procedural_species=3
    )
    files = build_generic_dataset(settings, seed=0, out_dir=tmp_path)
    data = [load_labelled(f) for f in files]
    train, validation = data[:4], data[4:]
    network = tiny_network()
    training = FAST.model_copy(update={"class_weights": None, "eval_every_steps": 40})
    before = evaluate_boxnet(network, validation)
    report = train_boxnet(network, train, validation, settings=training)
    first, last = sum(report.losses[:5]) / 5, sum(report.losses[-10:]) / 10
    assert last < 0.7 * first, (first, last)
    assert report.class_weights[1] > 2  # particles are rare
    final = report.final
    assert final is not None
    after = evaluate_boxnet(network, validation)  # unweighted, as before
    assert after.loss < before.loss
