"""Generic model files: exact round trip, typed errors naming the file, no code on loading."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from cryowarp.errors import CorruptFileError, FileFormatError, MissingFileError
from cryowarp.io.model_files import load_model_document, save_model_document

_TAG = "cryowarp-unit-test-model"


def _state() -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(3)
    return {
        # float16-representable values: the round trip must be exact
        "conv.weight": torch.randn(4, 2, 3, 3, generator=generator).half().float(),
        "bn.running_var": (torch.rand(4, generator=generator) + 0.5).half().float(),
        "bn.num_batches_tracked": torch.tensor(1234, dtype=torch.int64),
    }


def _fields() -> dict[str, object]:
    return {
        "name": "unit_test",
        "pixel_size_a": 4.25,
        "architecture": {"widths": [8, 16], "convs_per_level": 2},
        "metadata": {"seed": 7, "parent": None, "ok": True, "losses": [0.5, 0.25]},
    }


def _save(path: Path, version: int = 1) -> Path:
    return save_model_document(
        path, format_tag=_TAG, format_version=version, state_dict=_state(), fields=_fields()
    )


def test_round_trip_is_exact_for_float16_values_and_leaves_no_temporary_file(
    tmp_path: Path,
) -> None:
    path = _save(tmp_path / "sub" / "m.pt")
    assert path == tmp_path / "sub" / "m.pt"
    assert [p.name for p in path.parent.iterdir()] == ["m.pt"]
    fields, state = load_model_document(path, format_tag=_TAG, format_version=1)
    assert fields == _fields()
    original = _state()
    assert state.keys() == original.keys()
    for key, value in original.items():
        assert state[key].dtype == (torch.float32 if value.is_floating_point() else value.dtype)
        assert torch.equal(state[key], value), key


def test_floating_weights_are_stored_as_float16(tmp_path: Path) -> None:
    path = save_model_document(
        tmp_path / "m.pt",
        format_tag=_TAG,
        format_version=1,
        state_dict={"w": torch.tensor([0.1, 1 / 3], dtype=torch.float64)},
        fields={},
    )
    raw = torch.load(path, weights_only=True)
    assert raw["state_dict"]["w"].dtype == torch.float16
    _, state = load_model_document(path, format_tag=_TAG, format_version=1)
    expected = torch.tensor([0.1, 1 / 3]).half().float()
    assert torch.equal(state["w"], expected)
    assert not torch.equal(state["w"], torch.tensor([0.1, 1 / 3]))


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(MissingFileError, match=r"nowhere\.pt"):
        load_model_document(tmp_path / "nowhere.pt", format_tag=_TAG, format_version=1)


@pytest.mark.parametrize("damage", ["truncate", "garbage"])
def test_damaged_file_is_corrupt_and_named(tmp_path: Path, damage: str) -> None:
    path = _save(tmp_path / "m.pt")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2] if damage == "truncate" else b"not a torch file")
    with pytest.raises(CorruptFileError) as caught:
        load_model_document(path, format_tag=_TAG, format_version=1, description="toy model")
    assert caught.value.path == path
    assert str(path) in str(caught.value)
    assert "toy model" in str(caught.value)


def test_other_kind_or_version_is_a_format_error(tmp_path: Path) -> None:
    path = _save(tmp_path / "m.pt", version=2)
    with pytest.raises(FileFormatError, match="not a cryowarp toy model file") as caught:
        load_model_document(path, format_tag="other", format_version=2, description="toy model")
    assert caught.value.path == path
    with pytest.raises(FileFormatError, match=r"version 2 is not supported.*reads version 1"):
        load_model_document(path, format_tag=_TAG, format_version=1)
    plain = tmp_path / "plain.pt"
    torch.save([1, 2, 3], plain)
    with pytest.raises(FileFormatError):
        load_model_document(plain, format_tag=_TAG, format_version=1)


def test_weights_that_are_not_tensors_are_corrupt(tmp_path: Path) -> None:
    path = tmp_path / "m.pt"
    torch.save({"format": _TAG, "format_version": 1, "state_dict": [1.0, 2.0]}, path)
    with pytest.raises(CorruptFileError, match="weights are damaged"):
        load_model_document(path, format_tag=_TAG, format_version=1)


class _MakesAFolderWhenUnpickled:
    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.mkdir, (str(self.folder),))


def test_a_file_with_a_pickled_object_is_refused_without_running_it(tmp_path: Path) -> None:
    marker = tmp_path / "code_ran"
    path = tmp_path / "evil.pt"
    document = {
        "format": _TAG,
        "format_version": 1,
        "state_dict": {},
        "payload": _MakesAFolderWhenUnpickled(marker),
    }
    torch.save(document, path)
    with pytest.raises(CorruptFileError, match=r"evil\.pt"):
        load_model_document(path, format_tag=_TAG, format_version=1)
    assert not marker.exists()
    # the file really is dangerous: an unrestricted load runs its code
    torch.load(path, weights_only=False)
    assert marker.is_dir()


def test_fields_must_be_plain_data_without_reserved_keys(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="reserved"):
        save_model_document(
            tmp_path / "m.pt",
            format_tag=_TAG,
            format_version=1,
            state_dict={},
            fields={"state_dict": 1},
        )
    with pytest.raises(TypeError, match=r"fields\['metadata'\]\['where'\] is a .*Path"):
        save_model_document(
            tmp_path / "m.pt",
            format_tag=_TAG,
            format_version=1,
            state_dict={},
            fields={"metadata": {"where": tmp_path}},
        )
    assert not (tmp_path / "m.pt").exists()


def test_a_str_subclass_is_refused_before_it_makes_an_unloadable_file(tmp_path: Path) -> None:
    # torch.__version__ is a str subclass: pickled as its class, refused by weights_only loading
    with pytest.raises(TypeError, match=r"fields\['torch'\] is a TorchVersion"):
        save_model_document(
            tmp_path / "m.pt",
            format_tag=_TAG,
            format_version=1,
            state_dict={},
            fields={"torch": torch.__version__},
        )
    assert not (tmp_path / "m.pt").exists()
