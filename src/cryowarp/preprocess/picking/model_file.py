"""Named BoxNet models on disk: the generic one shipped in the package and retrained ones.

A model file (``<name>.boxnet.pt``) is a file of :mod:`cryowarp.io.model_files` (plain data
only, loaded with ``weights_only=True``, so a file cannot run code): the format tag and
version, the model's name, the architecture, the pixel size it works at, the class names,
the weights (float16 to keep files small; computation is float32) and free metadata (how
it was trained, from which parent model, on what data). The name is what item metadata
records (``picking.model``).

Models are found by :func:`resolve_boxnet_model`: an existing path, else ``<name>.boxnet.pt``
in each search folder given (a project's ``models/boxnet/``), else a model shipped in
``cryowarp/preprocess/picking/models/``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryowarp.errors import FileFormatError
from cryowarp.io.model_files import model_names, resolve_model_file
from cryowarp.io.named_networks import ModelKind, load_named_network, save_named_network
from cryowarp.preprocess.picking.network import CLASS_NAMES, BoxNet, BoxNetArchitecture
from cryowarp.preprocess.picking.prepare import PICKING_PIXEL_SIZE_A

__all__ = [
    "DEFAULT_BOXNET_MODEL",
    "MODEL_SUFFIX",
    "BoxNetModel",
    "load_boxnet_model",
    "packaged_models_folder",
    "resolve_boxnet_model",
    "save_boxnet_model",
    "shipped_model_names",
]

MODEL_SUFFIX = ".boxnet.pt"
DEFAULT_BOXNET_MODEL = "boxnet_generic_v1"
"""Name of the generic model shipped in the package."""

_KIND = ModelKind(
    suffix=MODEL_SUFFIX, format_tag="cryowarp-boxnet", format_version=1, description="BoxNet model"
)


@dataclass
class BoxNetModel:
    """A BoxNet with its identity.

    Attributes
    ----------
    network:
        The network (float32; on the CPU after loading, moved by the caller).
    name:
        Version name, e.g. ``boxnet_generic_v1`` (letters, digits, ``_ . -``).
    pixel_size_a:
        Pixel size (Å) of the images it was trained on (8 Å).
    metadata:
        JSON-ready facts: training command, seed, parent model, data, accuracies.
    """

    network: BoxNet
    name: str
    pixel_size_a: float = PICKING_PIXEL_SIZE_A
    metadata: dict[str, Any] = field(default_factory=dict)


def save_boxnet_model(model: BoxNetModel, path: str | Path) -> Path:
    """Write ``model`` to ``path`` atomically (suffix :data:`MODEL_SUFFIX` added when missing).

    Returns the path written.
    """
    return save_named_network(
        _KIND,
        path,
        name=model.name,
        network=model.network,
        architecture=model.network.architecture.to_dict(),
        pixel_size_a=model.pixel_size_a,
        metadata=model.metadata,
        extra_fields={"classes": list(CLASS_NAMES)},
    )


def _check_classes(source: Path, fields: dict[str, Any]) -> None:
    if list(fields.get("classes", [])) != list(CLASS_NAMES):
        raise FileFormatError(source, f"the model's classes are {fields.get('classes')}")


def load_boxnet_model(path: str | Path) -> BoxNetModel:
    """Read a model file written by :func:`save_boxnet_model` (float32, CPU, eval mode).

    Raises
    ------
    MissingFileError
        No such file.
    CorruptFileError
        The file is damaged (truncated, not a torch file, weights that do not fit).
    FileFormatError
        A readable file that is not a BoxNet model of a version this cryowarp knows.
    """
    loaded = load_named_network(
        _KIND,
        path,
        lambda architecture: BoxNet(BoxNetArchitecture.from_dict(architecture)),
        check=_check_classes,
    )
    assert isinstance(loaded.network, BoxNet)
    return BoxNetModel(loaded.network, loaded.name, loaded.pixel_size_a, loaded.metadata)


def packaged_models_folder() -> Path:
    """The folder of the models shipped with cryowarp."""
    return Path(__file__).resolve().parent / "models"


def shipped_model_names() -> list[str]:
    """Names of the models shipped with cryowarp, sorted."""
    return model_names(packaged_models_folder(), suffix=MODEL_SUFFIX)


def resolve_boxnet_model(name_or_path: str | Path, *, search: tuple[Path, ...] = ()) -> Path:
    """The file of a model given by path or by name (module docstring for the order).

    Raises :class:`~cryowarp.errors.MissingFileError` listing the places searched and the
    models available.
    """
    return resolve_model_file(
        name_or_path,
        suffix=MODEL_SUFFIX,
        folders=(*(Path(f) for f in search), packaged_models_folder()),
        description="BoxNet model",
    )
