"""Network model files: weights plus plain facts, saved so that loading cannot run code.

A model file is a ``torch.save`` of one dictionary holding only plain data: the format tag
(``"format"``) and version (``"format_version"``), the network's weights (``"state_dict"``;
floating tensors stored as float16 to keep files small, other tensors unchanged) and the
caller's fields (name, architecture, pixel size, metadata ...) as further top-level keys.
It is read back with ``torch.load(..., weights_only=True)``, which refuses any pickled object
other than tensors and plain containers, so a model file from elsewhere cannot execute code.

Each model kind (BoxNet, the Noise2Noise denoiser, ...) has its own tag and version and its
own module that turns the fields into a network; this module only writes and checks files.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import torch

from cryowarp.errors import CorruptFileError, FileFormatError, MissingFileError
from cryowarp.io.files import atomic_output

__all__ = [
    "RESERVED_KEYS",
    "check_model_name",
    "load_model_document",
    "model_names",
    "resolve_model_file",
    "save_model_document",
]

RESERVED_KEYS = frozenset({"format", "format_version", "state_dict"})
"""Top-level keys the file format itself uses; ``fields`` may not use them."""

_PLAIN_SCALARS = (str, int, float, bool, type(None))
_NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,99}$")


def check_model_name(name: str, *, suffix: str = "") -> None:
    """Raise :class:`ValueError` unless ``name`` is a valid model name: 1–100 letters, digits,
    ``_``, ``.``, ``-``, starting with a letter or digit (no path), not ending in the model
    kind's file ``suffix``."""
    if not _NAME_PATTERN.match(name) or (suffix and name.endswith(suffix)):
        raise ValueError(
            f"model name {name!r}: use 1–100 letters, digits, '_', '.', '-' (no path, no suffix)"
        )


def save_model_document(
    path: str | os.PathLike[str],
    *,
    format_tag: str,
    format_version: int,
    state_dict: dict[str, torch.Tensor],
    fields: dict[str, Any],
) -> Path:
    """Write a model file at ``path`` atomically (parent folders are created).

    Parameters
    ----------
    path:
        The file to write, used as given (callers add their own suffix).
    format_tag, format_version:
        What kind of model this is, checked by :func:`load_model_document`.
    state_dict:
        The network's ``state_dict()``; floating tensors are stored as float16 (values are
        rounded to float16), other tensors as they are, all on the CPU.
    fields:
        Further facts, stored as top-level keys: plain data only (``str``, ``int``,
        ``float``, ``bool``, ``None``, lists/tuples and ``str``-keyed dicts of those), not
        using :data:`RESERVED_KEYS`.

    Returns
    -------
    Path
        The path written.

    Raises
    ------
    ValueError
        ``fields`` uses a reserved key.
    TypeError
        ``fields`` holds something other than plain data, or ``state_dict`` a non-tensor.
    """
    clash = RESERVED_KEYS.intersection(fields)
    if clash:
        raise ValueError(f"model fields may not use the reserved keys {sorted(clash)}")
    _check_plain(fields, "fields")
    state: dict[str, torch.Tensor] = {}
    for key, value in state_dict.items():
        if not isinstance(value, torch.Tensor):
            raise TypeError(f"state_dict[{key!r}] is a {type(value).__name__}, not a tensor")
        value = value.detach().to("cpu")
        state[key] = value.to(torch.float16) if value.is_floating_point() else value.clone()
    document: dict[str, Any] = {
        "format": format_tag,
        "format_version": int(format_version),
        **fields,
        "state_dict": state,
    }
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_output(out) as tmp:
        torch.save(document, tmp)
    return out


def load_model_document(
    path: str | os.PathLike[str],
    *,
    format_tag: str,
    format_version: int,
    description: str = "model",
) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """Read a file written by :func:`save_model_document` and check its kind.

    Parameters
    ----------
    path:
        The model file.
    format_tag, format_version:
        The kind of model expected.
    description:
        What the model is called in error messages (e.g. ``"Noise2Noise denoiser model"``).

    Returns
    -------
    fields, state_dict
        The fields given when saving (without the reserved keys) and the weights, floating
        tensors as float32, everything on the CPU.

    Raises
    ------
    MissingFileError
        No such file.
    CorruptFileError
        The file cannot be read as a torch file of plain data (truncated, damaged, or holding
        pickled objects that ``weights_only`` loading refuses), or its weights are not a
        dictionary of tensors.
    FileFormatError
        A readable file that is not a model of this kind, or of another format version.
    """
    source = Path(path)
    if not source.is_file():
        raise MissingFileError(source, f"no such {description} file")
    try:
        document = torch.load(source, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises many types for damaged or unsafe files
        raise CorruptFileError(
            source,
            f"cannot read the {description} file ({type(error).__name__}: {_first_line(error)})",
            "model files hold plain data only; re-create or re-download the file",
        ) from error
    if not isinstance(document, dict) or document.get("format") != format_tag:
        raise FileFormatError(source, f"not a cryowarp {description} file")
    if document.get("format_version") != format_version:
        raise FileFormatError(
            source,
            f"{description} format version {document.get('format_version')!r} is not "
            f"supported (this cryowarp reads version {format_version})",
        )
    state = document.get("state_dict")
    if not isinstance(state, dict) or not all(
        isinstance(key, str) and isinstance(value, torch.Tensor) for key, value in state.items()
    ):
        raise CorruptFileError(source, f"the {description} file's weights are damaged")
    weights = {
        key: value.to(torch.float32) if value.is_floating_point() else value
        for key, value in state.items()
    }
    fields = {key: value for key, value in document.items() if key not in RESERVED_KEYS}
    return fields, weights


def _check_plain(value: object, where: str) -> None:
    if type(value) in _PLAIN_SCALARS:  # exact types: a str subclass (torch.__version__) is
        return  # pickled as its class, which weights_only loading refuses
    if isinstance(value, list | tuple):
        for i, item in enumerate(value):
            _check_plain(item, f"{where}[{i}]")
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise TypeError(f"{where} has a non-string key {key!r}")
            _check_plain(item, f"{where}[{key!r}]")
        return
    raise TypeError(f"{where} is a {type(value).__name__}; model fields must be plain data")


def _first_line(error: Exception) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else "no details"


def model_names(folder: str | os.PathLike[str], *, suffix: str) -> list[str]:
    """Names (file names without ``suffix``) of the model files in ``folder``, sorted."""
    return sorted(p.name[: -len(suffix)] for p in Path(folder).glob(f"*{suffix}"))


def resolve_model_file(
    name_or_path: str | os.PathLike[str],
    *,
    suffix: str,
    folders: tuple[Path, ...],
    description: str = "model",
) -> Path:
    """The file of a model given by path, or by name: ``<name><suffix>`` in the first of
    ``folders`` that holds it (a project's own models first, the shipped ones last).

    Raises :class:`~cryowarp.errors.MissingFileError` listing the folders searched and the
    models available.
    """
    candidate = Path(name_or_path)
    if candidate.is_file():
        return candidate
    name = str(name_or_path)
    if name.endswith(suffix):
        name = name[: -len(suffix)]
    for folder in folders:
        path = Path(folder) / f"{name}{suffix}"
        if path.is_file():
            return path
    available = sorted({n for f in folders for n in model_names(f, suffix=suffix)})
    raise MissingFileError(
        candidate,
        f"no {description} file or model of that name",
        f"searched {', '.join(str(f) for f in folders)}; "
        f"available: {', '.join(available) or 'none'}",
    )
