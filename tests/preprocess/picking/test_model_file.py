"""BoxNet model files: round trip, names, damaged files, offline loading of shipped models."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
import torch

from cryowarp.errors import CorruptFileError, FileFormatError, MissingFileError
from cryowarp.preprocess.picking.model_file import (
    DEFAULT_BOXNET_MODEL,
    BoxNetModel,
    load_boxnet_model,
    resolve_boxnet_model,
    save_boxnet_model,
    shipped_model_names,
)
from cryowarp.preprocess.picking.network import BoxNet, BoxNetArchitecture


def _model(name: str = "unit_test_model") -> BoxNetModel:
    torch.manual_seed(0)
    network = BoxNet(BoxNetArchitecture(widths=(4, 8), blocks_per_level=1))
    return BoxNetModel(network=network, name=name, metadata={"seed": 0, "note": "test"})


def test_round_trip_keeps_name_metadata_and_outputs(tmp_path: Path) -> None:
    model = _model()
    path = save_boxnet_model(model, tmp_path / "m")
    assert path.name == "m.boxnet.pt"
    loaded = load_boxnet_model(path)
    assert loaded.name == "unit_test_model"
    assert loaded.metadata == {"seed": 0, "note": "test"}
    assert loaded.network.architecture == model.network.architecture
    assert not loaded.network.training
    x = torch.randn(1, 1, 32, 32)
    model.network.eval()
    with torch.no_grad():
        expected = model.network(x)
        got = loaded.network(x)
    # weights are stored as float16: outputs agree to float16 precision
    assert torch.allclose(got, expected, atol=2e-2 * float(expected.abs().max()))


def test_names_resolve_from_search_folders_before_the_package(tmp_path: Path) -> None:
    save_boxnet_model(_model("mine"), tmp_path / "mine")
    assert resolve_boxnet_model("mine", search=(tmp_path,)) == tmp_path / "mine.boxnet.pt"
    with pytest.raises(MissingFileError, match=r"available: .*mine"):
        resolve_boxnet_model("nobody", search=(tmp_path,))
    with pytest.raises(ValueError, match="model name"):
        save_boxnet_model(_model("../escape"), tmp_path / "x")


def test_damaged_and_foreign_files_give_typed_errors(tmp_path: Path) -> None:
    path = save_boxnet_model(_model(), tmp_path / "m")
    data = path.read_bytes()
    truncated = tmp_path / "truncated.boxnet.pt"
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(CorruptFileError, match=r"truncated\.boxnet\.pt"):
        load_boxnet_model(truncated)
    text = tmp_path / "text.boxnet.pt"
    text.write_text("not a model")
    with pytest.raises(CorruptFileError):
        load_boxnet_model(text)
    foreign = tmp_path / "foreign.boxnet.pt"
    torch.save({"format": "something-else"}, foreign)
    with pytest.raises(FileFormatError, match="not a cryowarp BoxNet"):
        load_boxnet_model(foreign)
    with pytest.raises(MissingFileError):
        load_boxnet_model(tmp_path / "absent.boxnet.pt")


@pytest.mark.skipif(
    DEFAULT_BOXNET_MODEL not in shipped_model_names(), reason="generic model not shipped yet"
)
def test_the_shipped_generic_model_loads_on_the_cpu_without_network(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def _no_network(*args: object, **kwargs: object) -> None:
        raise AssertionError("loading a model must not touch the network")

    monkeypatch.setattr(socket, "socket", _no_network)
    model = load_boxnet_model(resolve_boxnet_model(DEFAULT_BOXNET_MODEL))
    assert model.name == DEFAULT_BOXNET_MODEL
    assert model.pixel_size_a == 8.0
    assert next(model.network.parameters()).device.type == "cpu"
    assert "command" in model.metadata
    size_mb = resolve_boxnet_model(DEFAULT_BOXNET_MODEL).stat().st_size / 1e6
    assert size_mb < 30
