"""Noise2Noise training on simulated odd/even pairs: it learns, it is reproducible, it stops
early and keeps its best weights, it refuses unusable pairs."""

from __future__ import annotations

import copy
from dataclasses import dataclass

import pytest
import torch

from cryowarp.errors import DimensionMismatchError, InvalidValuesError
from cryowarp.preprocess.denoise.n2n_inference import denoise_image, denoise_pair
from cryowarp.preprocess.denoise.n2n_model_file import DenoiserModel
from cryowarp.preprocess.denoise.n2n_network import DenoiserArchitecture, DenoiserUNet
from cryowarp.preprocess.denoise.n2n_training import (
    DenoiserTrainingEvent,
    DenoiserTrainingReport,
    DenoiserTrainingSettings,
    train_denoiser,
)

from ._n2n_simulated import correlation, noisy_pair, smooth_image

_SMALL = DenoiserArchitecture(widths=(8, 16, 32))
_COUNTS, _CONTRAST = 10.0, 0.3  # per-pixel SNR of one half ≈ (10 · 0.3)² / 10 ≈ 0.9


def _pairs(n: int = 4, size: int = 96) -> list[tuple[torch.Tensor, torch.Tensor]]:
    return [
        noisy_pair(
            smooth_image((size, size), sigma_px=2.0, seed=s),
            counts=_COUNTS,
            contrast=_CONTRAST,
            seed=100 + s,
        )
        for s in range(n)
    ]


def _network(seed: int = 0) -> DenoiserUNet:
    torch.manual_seed(seed)
    return DenoiserUNet(_SMALL)


@dataclass(frozen=True)
class _Trained:
    network: DenoiserUNet
    report: DenoiserTrainingReport
    events: list[DenoiserTrainingEvent]


@pytest.fixture(scope="module")
def trained() -> _Trained:
    events: list[DenoiserTrainingEvent] = []
    network = _network()
    settings = DenoiserTrainingSettings(
        steps=40,
        batch_size=4,
        crop_px=32,
        learning_rate=3e-3,
        eval_every_steps=10,
        validation_crops=8,
    )
    report = train_denoiser(network, _pairs(), settings=settings, progress=events.append)
    return _Trained(network, report, events)


def test_short_training_lowers_the_validation_loss_clearly(trained: _Trained) -> None:
    report = trained.report
    assert [step for step, _ in report.validations] == [0, 10, 20, 30, 40]
    # measured: 1.37 → 0.82; the floor (noise variance of one half) is ≈ 0.71
    assert report.final_validation_loss < 0.7 * report.initial_validation_loss
    assert report.best_validation_loss < 0.6 * report.input_validation_loss
    assert report.best_validation_loss > 0.6  # cannot beat the noise of the target
    assert report.best_step == min(report.validations, key=lambda v: v[1])[0]
    assert len(report.losses) == 40
    assert not report.stopped_early
    assert report.to_dict()["settings"]["steps"] == 40


def test_progress_reports_every_step_and_each_validation(trained: _Trained) -> None:
    events = trained.events
    assert [e.step for e in events] == list(range(41))
    assert all(e.total_steps == 40 for e in events)
    validated = [(e.step, e.validation_loss) for e in events if e.validation_loss is not None]
    assert validated == trained.report.validations
    assert events[0].loss is None
    assert [e.loss for e in events[1:]] == trained.report.losses


def test_trained_network_brings_noisy_images_closer_to_the_clean_image(
    trained: _Trained,
) -> None:
    model = DenoiserModel(trained.network, "n2n_unit_test", 4.0)
    clean = smooth_image((96, 112), sigma_px=2.0, seed=99)
    odd, even = noisy_pair(clean, counts=_COUNTS, contrast=_CONTRAST, seed=199)
    average = (odd + even) / 2
    options = {"tile_px": 64, "keep_px": 32}
    denoised_odd = denoise_image(model, odd, pixel_size_a=4.0, **options)
    denoised_average = denoise_image(model, average, pixel_size_a=4.0, **options)
    denoised_pair = denoise_pair(model, odd, even, pixel_size_a=4.0, **options)
    # measured: odd 0.69 → 0.94, average 0.81 → 0.96, pair 0.96
    assert correlation(denoised_odd, clean) > correlation(odd, clean) + 0.15
    assert correlation(denoised_average, clean) > correlation(average, clean) + 0.1
    assert correlation(denoised_pair, clean) > correlation(average, clean) + 0.1
    print(  # the numbers quoted above, shown with pytest -s
        [round(v, 3) for _, v in trained.report.validations],
        trained.report.input_validation_loss,
        [
            round(correlation(x, clean), 3)
            for x in (odd, denoised_odd, average, denoised_average, denoised_pair)
        ],
    )
    # the output keeps the image's scale (mean of the counts)
    assert float(denoised_average.mean()) == pytest.approx(float(average.mean()), rel=0.05)


def test_training_is_deterministic_for_a_seed() -> None:
    settings = DenoiserTrainingSettings(
        steps=4, batch_size=2, crop_px=32, eval_every_steps=2, validation_crops=2
    )
    pairs = _pairs(2, 80)
    first, second, other = _network(), _network(), _network()
    a = train_denoiser(first, pairs, settings=settings)
    b = train_denoiser(second, pairs, settings=settings)
    c = train_denoiser(other, pairs, settings=settings.model_copy(update={"seed": 1}))
    assert a.losses == b.losses
    assert a.validations == b.validations
    for key, value in first.state_dict().items():
        assert torch.equal(value, second.state_dict()[key]), key
    assert a.losses != c.losses


@pytest.mark.parametrize(
    ("learning_rate", "steps_run", "diverged"),
    [
        (0.1, 2, False),  # too high: validation losses 1.46 → 3e4 → 1e9, early stop after 2
        (1e3, 1, True),  # absurd: the validation loss after one step is NaN
    ],
)
def test_early_stop_and_divergence_keep_the_best_weights(
    learning_rate: float, steps_run: int, diverged: bool
) -> None:
    network = _network()
    initial = copy.deepcopy(network.state_dict())
    settings = DenoiserTrainingSettings(
        steps=20,
        batch_size=2,
        crop_px=32,
        learning_rate=learning_rate,
        eval_every_steps=1,
        validation_crops=2,
        early_stop_evaluations=2,
    )
    report = train_denoiser(network, _pairs(2, 80), settings=settings)
    assert report.stopped_early
    assert report.diverged == diverged
    assert len(report.losses) == steps_run
    assert report.best_step == 0
    assert all(not value < report.validations[0][1] for _, value in report.validations[1:])
    for key, value in initial.items():
        assert torch.equal(network.state_dict()[key], value), key
    assert not network.training


def test_unusable_pairs_are_refused_with_clear_messages() -> None:
    settings = DenoiserTrainingSettings(steps=1, batch_size=1, crop_px=32)
    with pytest.raises(InvalidValuesError, match="no odd/even pairs"):
        train_denoiser(_network(), [], settings=settings)
    odd, even = _pairs(1, 80)[0]
    with pytest.raises(DimensionMismatchError, match=r"training pair 1: odd \(80, 80\)"):
        train_denoiser(_network(), [(odd, even), (odd, even[:, :70])], settings=settings)
    with pytest.raises(InvalidValuesError, match=r"training pair 0: 60×80 px is too small"):
        train_denoiser(_network(), [(odd[:60], even[:60])], settings=settings)
    with pytest.raises(InvalidValuesError, match="constant"):
        train_denoiser(_network(), [(torch.ones(80, 80), torch.ones(80, 80))], settings=settings)
    with pytest.raises(ValueError, match="multiple of 4"):
        train_denoiser(
            _network(), [(odd, even)], settings=settings.model_copy(update={"crop_px": 30})
        )


def test_settings_forbid_unknown_keys_and_document_every_field() -> None:
    with pytest.raises(ValueError, match="extra"):
        DenoiserTrainingSettings(stepz=3)  # type: ignore[call-arg]
    for name, info in DenoiserTrainingSettings.model_fields.items():
        assert info.description, name
