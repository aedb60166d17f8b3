"""Named denoiser models on disk: the default one shipped in the package and retrained ones.

A model file (``<name>.n2n.pt``, written through :mod:`cryowarp.io.model_files`, so loading
cannot run code) holds the model's name, the network's architecture and weights (float16 on
disk, float32 in memory), the **working pixel size** it was trained at and free metadata (how
it was trained, from which parent model, on what data). The name is what item metadata
records as the denoised images' model.

Models are found by :func:`resolve_denoiser_model`: an existing path, else ``<name>.n2n.pt``
in each search folder given (a project's own models folder), else a model shipped in
``cryowarp/preprocess/denoise/models/``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryowarp.io.model_files import model_names, resolve_model_file
from cryowarp.io.named_networks import ModelKind, load_named_network, save_named_network
from cryowarp.preprocess.denoise.n2n_network import DenoiserArchitecture, DenoiserUNet

__all__ = [
    "DEFAULT_DENOISER_MODEL",
    "DEFAULT_DENOISER_PIXEL_SIZE_A",
    "DENOISER_MODEL_SUFFIX",
    "DenoiserModel",
    "load_denoiser_model",
    "packaged_denoiser_folder",
    "resolve_denoiser_model",
    "save_denoiser_model",
    "shipped_denoiser_names",
]

DENOISER_MODEL_SUFFIX = ".n2n.pt"
DEFAULT_DENOISER_MODEL = "n2n_micrograph_v1"
"""Name of the default model shipped in the package."""
DEFAULT_DENOISER_PIXEL_SIZE_A = 4.0
"""Working pixel size (Å) of the default model: micrographs are Fourier-cropped to it."""

_KIND = ModelKind(
    suffix=DENOISER_MODEL_SUFFIX,
    format_tag="cryowarp-n2n-denoiser",
    format_version=1,
    description="Noise2Noise denoiser model",
)


@dataclass
class DenoiserModel:
    """A denoising network with its identity.

    Attributes
    ----------
    network:
        The network (float32; on the CPU after loading, moved by the caller or by
        :func:`~cryowarp.preprocess.denoise.n2n_inference.denoise_image`).
    name:
        Version name, e.g. ``n2n_micrograph_v1`` (letters, digits, ``_ . -``).
    pixel_size_a:
        Working pixel size (Å) of the images it was trained on; it denoises only images at
        this pixel size (±1 %).
    metadata:
        JSON-ready facts: training settings, seed, parent model, data, losses.
    """

    network: DenoiserUNet
    name: str
    pixel_size_a: float = DEFAULT_DENOISER_PIXEL_SIZE_A
    metadata: dict[str, Any] = field(default_factory=dict)


def save_denoiser_model(model: DenoiserModel, path: str | Path) -> Path:
    """Write ``model`` to ``path`` atomically (suffix ``.n2n.pt`` added when missing).

    Returns the path written. Raises ``ValueError`` for a bad name or a pixel size that is
    not positive, ``TypeError`` for metadata that are not plain data.
    """
    return save_named_network(
        _KIND,
        path,
        name=model.name,
        network=model.network,
        architecture=model.network.architecture.to_dict(),
        pixel_size_a=model.pixel_size_a,
        metadata=model.metadata,
    )


def load_denoiser_model(path: str | Path) -> DenoiserModel:
    """Read a model file written by :func:`save_denoiser_model` (float32, CPU, eval mode).

    Raises
    ------
    MissingFileError
        No such file.
    CorruptFileError
        The file is damaged (truncated, not a torch file, weights that do not fit).
    FileFormatError
        A readable file that is not a denoiser model of a version this cryowarp knows.
    """
    loaded = load_named_network(
        _KIND, path, lambda architecture: DenoiserUNet(DenoiserArchitecture.from_dict(architecture))
    )
    assert isinstance(loaded.network, DenoiserUNet)
    return DenoiserModel(loaded.network, loaded.name, loaded.pixel_size_a, loaded.metadata)


def packaged_denoiser_folder() -> Path:
    """The folder of the denoiser models shipped with cryowarp."""
    return Path(__file__).resolve().parent / "models"


def shipped_denoiser_names() -> list[str]:
    """Names of the denoiser models shipped with cryowarp, sorted."""
    return model_names(packaged_denoiser_folder(), suffix=DENOISER_MODEL_SUFFIX)


def resolve_denoiser_model(name_or_path: str | Path, *, search: tuple[Path, ...] = ()) -> Path:
    """The file of a model given by path or by name (module docstring for the order).

    Raises :class:`~cryowarp.errors.MissingFileError` listing the places searched and the
    models available.
    """
    return resolve_model_file(
        name_or_path,
        suffix=DENOISER_MODEL_SUFFIX,
        folders=(*(Path(f) for f in search), packaged_denoiser_folder()),
        description="denoiser model",
    )
