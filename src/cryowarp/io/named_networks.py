"""Named networks in model files: what every kind of cryowarp network (BoxNet, the
Noise2Noise denoiser, ...) stores besides its weights, written and checked in one place.

A named network file (:mod:`cryowarp.io.model_files`, plain data only) holds the model's name,
its architecture (a plain dictionary the kind's network class is built from), the pixel size
(Å) it works at, free metadata and any further fields of the kind. Each kind is described by
a :class:`ModelKind` (file suffix, format tag and version, name in messages) and supplies the
function that builds its network from the architecture dictionary.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from cryowarp.errors import CorruptFileError
from cryowarp.io.model_files import check_model_name, load_model_document, save_model_document

__all__ = ["LoadedNetwork", "ModelKind", "load_named_network", "save_named_network"]


@dataclass(frozen=True)
class ModelKind:
    """One kind of named network file."""

    suffix: str
    format_tag: str
    format_version: int
    description: str


@dataclass(frozen=True)
class LoadedNetwork:
    """What :func:`load_named_network` read: the network (float32, CPU, eval mode), its
    name, pixel size (Å), metadata and every stored field (for kind-specific checks)."""

    network: torch.nn.Module
    name: str
    pixel_size_a: float
    metadata: dict[str, Any]
    fields: dict[str, Any]


def save_named_network(
    kind: ModelKind,
    path: str | os.PathLike[str],
    *,
    name: str,
    network: torch.nn.Module,
    architecture: Mapping[str, Any],
    pixel_size_a: float,
    metadata: Mapping[str, Any],
    extra_fields: Mapping[str, Any] | None = None,
) -> Path:
    """Write a named network to ``path`` atomically (``kind.suffix`` added when missing);
    the path written.

    Raises ``ValueError`` for a bad name or a pixel size that is not positive, ``TypeError``
    for metadata that are not plain data.
    """
    check_model_name(name, suffix=kind.suffix)
    if not pixel_size_a > 0:
        raise ValueError(f"model pixel size must be positive, got {pixel_size_a}")
    out = Path(path)
    if not out.name.endswith(kind.suffix):
        out = out.with_name(out.name + kind.suffix)
    return save_model_document(
        out,
        format_tag=kind.format_tag,
        format_version=kind.format_version,
        state_dict=network.state_dict(),
        fields={
            "name": name,
            "architecture": dict(architecture),
            "pixel_size_a": float(pixel_size_a),
            **(extra_fields or {}),
            "metadata": dict(metadata),
        },
    )


def load_named_network(
    kind: ModelKind,
    path: str | os.PathLike[str],
    build: Callable[[dict[str, Any]], torch.nn.Module],
    *,
    check: Callable[[Path, dict[str, Any]], None] | None = None,
) -> LoadedNetwork:
    """Read a file written by :func:`save_named_network`; ``build`` makes the kind's network
    from the stored architecture dictionary, ``check`` (given the file and the fields) may
    refuse kind-specific contents before the network is built.

    Raises
    ------
    MissingFileError
        No such file.
    CorruptFileError
        The file is damaged (truncated, not a torch file, weights that do not fit, a pixel
        size that is not positive).
    FileFormatError
        A readable file that is not of this kind or of a version this cryowarp knows (and
        whatever ``check`` raises).
    """
    source = Path(path)
    fields, state = load_model_document(
        source,
        format_tag=kind.format_tag,
        format_version=kind.format_version,
        description=kind.description,
    )
    if check is not None:
        check(source, fields)
    try:
        network = build(fields["architecture"])
        network.load_state_dict(state)
        name = str(fields["name"])
        pixel_size_a = float(fields["pixel_size_a"])
        metadata = dict(fields.get("metadata", {}))
    except (KeyError, ValueError, TypeError, RuntimeError, AttributeError) as error:
        raise CorruptFileError(
            source, f"the {kind.description}'s contents are damaged ({error})"
        ) from error
    if not pixel_size_a > 0:
        raise CorruptFileError(source, f"the model's pixel size {pixel_size_a} Å is not positive")
    network.eval()
    return LoadedNetwork(network, name, pixel_size_a, metadata, fields)
