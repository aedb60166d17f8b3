"""The denoiser shipped in the package (``n2n_micrograph_v1``) and the entry that trains it
(docs/denoising_training.md)."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any, NoReturn

import pytest
import torch

from cryowarp.pipeline.denoise_default import correlation, train_default_denoiser
from cryowarp.preprocess.denoise.deconvolution import (
    DENOISER_INPUT_DECONVOLUTION,
    DeconvolutionSettings,
    deconvolve,
)
from cryowarp.preprocess.denoise.n2n_inference import denoise_pair
from cryowarp.preprocess.denoise.n2n_model_file import (
    DEFAULT_DENOISER_MODEL,
    load_denoiser_model,
    packaged_denoiser_folder,
    resolve_denoiser_model,
)
from cryowarp.preprocess.denoise.n2n_network import DenoiserArchitecture
from cryowarp.preprocess.denoise.n2n_training import DenoiserTrainingSettings
from cryowarp.simulate.odd_even_pairs import OddEvenSimulationSettings, simulated_pairs


def _no_network(*args: object, **kwargs: object) -> NoReturn:
    raise AssertionError("the shipped model must load without network access")


@pytest.fixture(scope="module")
def shipped() -> Any:
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(socket.socket, "connect", _no_network)
        patch.setattr(socket, "create_connection", _no_network)
        return load_denoiser_model(resolve_denoiser_model(DEFAULT_DENOISER_MODEL))


def test_the_shipped_model_is_a_package_file_that_loads_offline(shipped: Any) -> None:
    path = resolve_denoiser_model(DEFAULT_DENOISER_MODEL)
    assert path.parent == packaged_denoiser_folder()
    assert path.stat().st_size < 5_000_000
    assert shipped.name == DEFAULT_DENOISER_MODEL
    assert shipped.pixel_size_a == 4.0
    meta = shipped.metadata
    assert meta["trained_by"].startswith("python -m cryowarp.pipeline.denoise_default ")
    assert f"--seed {meta['seed']}" in meta["trained_by"]
    stored = DeconvolutionSettings.model_validate(meta["deconvolution"])
    assert stored == DENOISER_INPUT_DECONVOLUTION
    # Training lowered the validation loss clearly below predicting the input itself.
    training = meta["training"]
    assert meta["validation_loss"] < 0.8 * training["input_validation_loss"]
    assert meta["validation_loss"] < training["validations"][0][1]


def test_the_shipped_model_denoises_a_held_out_simulated_micrograph(shipped: Any) -> None:
    settings = OddEvenSimulationSettings(
        field_px=(192, 192),
        n_species_pool=2,
        mass_range_kda=(100.0, 400.0),
        coverage_range=(0.15, 0.3),
        dose_range_e_per_a2=(30.0, 40.0),
        ice_texture_fraction=0.0,
        carbon_edge_fraction=0.0,
        artefact_fraction=0.0,
        phase_plate_fraction=0.0,
    )
    m = simulated_pairs(1, seed=777, settings=settings)[0]  # not a training seed
    odd, even, clean = (
        deconvolve(x, pixel_size_a=4.0, ctf=m.ctf, settings=DENOISER_INPUT_DECONVOLUTION)
        for x in (m.odd, m.even, m.clean)
    )
    denoised = denoise_pair(shipped, odd, even, pixel_size_a=4.0)
    before = correlation((odd + even) / 2, clean)
    after = correlation(denoised, clean)
    assert after > before + 0.05, (before, after)


def test_the_training_entry_is_reproducible_and_records_how(tmp_path: Path) -> None:
    simulation = OddEvenSimulationSettings(
        field_px=(80, 80),
        n_species_pool=1,
        mass_range_kda=(60.0, 100.0),
        render_oversampling=1,
        artefact_fraction=0.0,
    )
    kwargs: dict[str, Any] = {
        "seed": 5,
        "n_micrographs": 2,
        "steps": 3,
        "n_held_out": 1,
        "simulation": simulation,
        "architecture": DenoiserArchitecture(widths=(4, 8), convs_per_level=1),
        "training": DenoiserTrainingSettings(crop_px=32, batch_size=2, validation_crops=2),
    }
    first = train_default_denoiser(tmp_path / "a", name="tiny_v1", **kwargs)
    second = train_default_denoiser(tmp_path / "b", name="tiny_v1", **kwargs)
    assert first.path == tmp_path / "a" / "tiny_v1.n2n.pt"
    loaded = [load_denoiser_model(r.path) for r in (first, second)]
    for a, b in zip(
        loaded[0].network.state_dict().values(),
        loaded[1].network.state_dict().values(),
        strict=True,
    ):
        assert torch.equal(a, b)
    meta = loaded[0].metadata
    assert meta["trained_by"] == (
        f"python -m cryowarp.pipeline.denoise_default --out {tmp_path / 'a'} --seed 5 "
        "--micrographs 2 --steps 3 --held-out 1"
    )
    assert meta["seed"] == 5
    assert meta["data"]["n_micrographs"] == 2
    assert meta["training"]["steps_run"] == 3
    assert meta["validation_loss"] == first.report.best_validation_loss
    assert set(first.held_out) == {"n_micrographs", "correlation_input", "correlation_denoised"}
