"""Denoiser model files: round trip, names and search order, damaged and foreign files."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from cryowarp.errors import CorruptFileError, FileFormatError, MissingFileError
from cryowarp.io.model_files import save_model_document
from cryowarp.preprocess.denoise.n2n_model_file import (
    DEFAULT_DENOISER_MODEL,
    DenoiserModel,
    load_denoiser_model,
    packaged_denoiser_folder,
    resolve_denoiser_model,
    save_denoiser_model,
    shipped_denoiser_names,
)
from cryowarp.preprocess.denoise.n2n_network import DenoiserArchitecture, DenoiserUNet


def _model(name: str = "n2n_unit_test", pixel_size_a: float = 3.7) -> DenoiserModel:
    torch.manual_seed(0)
    network = DenoiserUNet(DenoiserArchitecture(widths=(4, 8, 12), convs_per_level=1))
    for module in network.modules():
        if isinstance(module, torch.nn.BatchNorm2d):  # buffers must travel too
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
    metadata = {"seed": 0, "parent": None, "validation_losses": [1.4, 0.8]}
    return DenoiserModel(network, name, pixel_size_a, metadata)


def test_round_trip_keeps_name_pixel_size_metadata_and_outputs(tmp_path: Path) -> None:
    model = _model()
    path = save_denoiser_model(model, tmp_path / "models" / "mine")
    assert path == tmp_path / "models" / "mine.n2n.pt"
    assert save_denoiser_model(model, path) == path  # suffix not doubled
    loaded = load_denoiser_model(path)
    assert loaded.name == "n2n_unit_test"
    assert loaded.pixel_size_a == 3.7
    assert loaded.metadata == model.metadata
    assert loaded.network.architecture == model.network.architecture
    assert not loaded.network.training
    x = torch.randn(2, 1, 32, 48, generator=torch.Generator().manual_seed(1))
    model.network.eval()
    with torch.no_grad():
        expected = model.network(x)
        got = loaded.network(x)
        # weights are stored as float16: with weights rounded the same way, outputs agree
        for tensor in model.network.state_dict().values():
            if tensor.is_floating_point():
                tensor.copy_(tensor.half().float())
        rounded = model.network(x)
    assert torch.allclose(got, expected, rtol=0, atol=2e-3 * float(expected.abs().max()))
    assert torch.allclose(got, rounded, rtol=0, atol=1e-6 * float(rounded.abs().max()))


def test_names_resolve_from_search_folders_before_the_package(tmp_path: Path) -> None:
    save_denoiser_model(_model("mine"), tmp_path / "mine")
    assert resolve_denoiser_model("mine", search=(tmp_path,)) == tmp_path / "mine.n2n.pt"
    assert resolve_denoiser_model("mine.n2n.pt", search=(tmp_path,)) == tmp_path / "mine.n2n.pt"
    path = tmp_path / "mine.n2n.pt"
    assert resolve_denoiser_model(path) == path
    with pytest.raises(MissingFileError, match=r"available: .*mine") as caught:
        resolve_denoiser_model("nobody", search=(tmp_path,))
    assert str(packaged_denoiser_folder()) in str(caught.value)
    for bad in ("../escape", "a b", "x.n2n.pt", ""):
        with pytest.raises(ValueError, match="model name"):
            save_denoiser_model(_model(bad), tmp_path / "x")
    with pytest.raises(ValueError, match="pixel size"):
        save_denoiser_model(_model(pixel_size_a=0.0), tmp_path / "x")


def test_damaged_and_foreign_files_give_typed_errors_naming_them(tmp_path: Path) -> None:
    path = save_denoiser_model(_model(), tmp_path / "m")
    data = path.read_bytes()
    truncated = tmp_path / "truncated.n2n.pt"
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(CorruptFileError, match=r"truncated\.n2n\.pt: .*denoiser"):
        load_denoiser_model(truncated)
    with pytest.raises(MissingFileError, match=r"absent\.n2n\.pt"):
        load_denoiser_model(tmp_path / "absent.n2n.pt")
    foreign = save_model_document(
        tmp_path / "boxnet.pt",
        format_tag="cryowarp-boxnet",
        format_version=1,
        state_dict={},
        fields={"name": "boxnet"},
    )
    with pytest.raises(FileFormatError, match="not a cryowarp Noise2Noise denoiser model"):
        load_denoiser_model(foreign)
    # the right tag but weights of another architecture
    model = _model()
    state = model.network.state_dict()
    mismatched = save_model_document(
        tmp_path / "mismatch.n2n.pt",
        format_tag="cryowarp-n2n-denoiser",
        format_version=1,
        state_dict=state,
        fields={
            "name": "x",
            "architecture": {"widths": [4, 8, 16], "convs_per_level": 1},
            "pixel_size_a": 4.0,
            "metadata": {},
        },
    )
    with pytest.raises(CorruptFileError, match=r"mismatch\.n2n\.pt: .*damaged"):
        load_denoiser_model(mismatched)


def test_the_default_model_loads_when_shipped() -> None:
    if DEFAULT_DENOISER_MODEL not in shipped_denoiser_names():
        pytest.skip(f"{DEFAULT_DENOISER_MODEL} is not in {packaged_denoiser_folder()} yet")
    model = load_denoiser_model(resolve_denoiser_model(DEFAULT_DENOISER_MODEL))
    assert model.name == DEFAULT_DENOISER_MODEL
    assert model.pixel_size_a == pytest.approx(4.0)
