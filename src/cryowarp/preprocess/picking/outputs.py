"""Files of a BoxNet picking result, and reading them back to re-threshold without the network.

:func:`write_picks` writes, per micrograph ``<name>`` into one folder (each file atomically):

- ``<name>_picks.star`` — RELION coordinate STAR file as RELION 5 autopicking writes it
  (``# version 50001``, block ``data_``, ``rlnCoordinateX/Y`` in pixels of the original
  micrograph, ``rlnClassNumber`` 0, ``rlnAutopickFigureOfMerit`` = score, ``rlnAnglePsi``
  0), read by :func:`cryowarp.preprocess.export.coordinates.read_coordinates`.
- ``<name>_picking.mrc`` — float16 stack at 8 Å/px, pixel size in the header: sections 0–2
  are the background, particle and artefact probabilities, section 3 the prepared micrograph
  (for overlays). :func:`read_probabilities` reads the probabilities.
- ``<name>_mask.mrc`` — int8 artefact mask at 8 Å/px (1 = artefact).
- ``<name>_picking.json`` — what re-thresholding needs besides the stack: settings, model
  name, original shape and pixel size, counts.
- ``<name>_picks.png`` — the micrograph at 8 Å/px (+y up), the mask tinted red, a circle of
  the particle diameter at each pick coloured by score.

:func:`read_pick_result` rebuilds the :class:`~cryowarp.preprocess.picking.inference.PickResult`
from these files; since picks are always made from the float16 probabilities, it re-thresholds
exactly as the original result does.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.collections import PatchCollection
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from matplotlib.patches import Circle
from pydantic import ValidationError

from cryowarp.errors import CorruptFileError, FileFormatError, InvalidValuesError
from cryowarp.io.files import atomic_output, require_file, write_text_atomically
from cryowarp.io.mrc import read_mrc, write_mrc
from cryowarp.io.star import RELION_STAR_VERSION, write_star
from cryowarp.preprocess.picking.inference import PickResult
from cryowarp.preprocess.picking.network import CLASS_NAMES
from cryowarp.preprocess.picking.prepare import PreparedMicrograph
from cryowarp.preprocess.picking.settings import PickingSettings

__all__ = [
    "PickFiles",
    "picks_figure",
    "read_pick_result",
    "read_probabilities",
    "write_picks",
]

_FORMAT = "cryowarp-picking"
_FORMAT_VERSION = 1
_STAR, _STACK, _MASK, _JSON, _PNG = (
    "_picks.star",
    "_picking.mrc",
    "_mask.mrc",
    "_picking.json",
    "_picks.png",
)


@dataclass(frozen=True)
class PickFiles:
    """Paths written by :func:`write_picks`, relative to its ``out_dir``."""

    star: Path
    probabilities: Path
    mask: Path
    metadata: Path
    png: Path


def write_picks(
    result: PickResult, *, micrograph_name: str, out_dir: str | os.PathLike[str], png: bool = True
) -> PickFiles:
    """Write the files of ``result`` (module docstring) into ``out_dir`` (created).

    ``png=False`` skips the overlay and removes one left by earlier picks (its path is
    still returned).
    """
    folder = Path(out_dir)
    folder.mkdir(parents=True, exist_ok=True)
    files = PickFiles(*(Path(micrograph_name + s) for s in (_STAR, _STACK, _MASK, _JSON, _PNG)))
    coordinates = result.positions_px.to(torch.float64).numpy()
    n = result.n_picks
    table = pd.DataFrame(
        {
            "rlnCoordinateX": coordinates[:, 0],
            "rlnCoordinateY": coordinates[:, 1],
            "rlnClassNumber": np.zeros(n, dtype=np.int64),
            "rlnAutopickFigureOfMerit": result.scores.to(torch.float64).numpy(),
            "rlnAnglePsi": np.zeros(n),
        }
    )
    write_star(folder / files.star, {"": table}, relion_version=RELION_STAR_VERSION)
    prepared = result.prepared
    px, py = prepared.pixel_size_xy_a
    stack = torch.cat([result.probabilities, prepared.image[None].to(torch.float16)])
    write_mrc(
        folder / files.probabilities, stack, voxel_size_a=(px, py, px), mode=12, is_stack=True
    )
    mask = result.artefact_mask.to(torch.int8)
    write_mrc(folder / files.mask, mask, voxel_size_a=(px, py, px), mode=0)
    metadata: dict[str, Any] = {
        "format": _FORMAT,
        "format_version": _FORMAT_VERSION,
        "micrograph": micrograph_name,
        "model": result.model_name,
        "settings": result.settings.model_dump(mode="json"),
        "original_shape": list(prepared.original_shape),
        "original_pixel_size_a": prepared.original_pixel_size_a,
        "pixel_size_xy_a": [px, py],
        "n_picks": n,
        "masked_fraction": result.picks.masked_fraction,
        "files": {k: str(v) for k, v in asdict(files).items()},
    }
    write_text_atomically(folder / files.metadata, json.dumps(metadata, indent=2) + "\n")
    if png:
        figure = picks_figure(result, title=micrograph_name)
        with atomic_output(folder / files.png) as tmp:
            figure.savefig(tmp, format="png", dpi=100)
    else:  # an overlay of earlier picks would now be wrong
        (folder / files.png).unlink(missing_ok=True)
    return files


def read_probabilities(
    path: str | os.PathLike[str],
) -> tuple[torch.Tensor, tuple[float, float]]:
    """The ``(3, h', w')`` float32 probabilities of a ``<name>_picking.mrc`` and its (x, y)
    pixel size in Å.

    Raises
    ------
    MissingFileError, FileFormatError
        No such file, or not a picking stack.
    """
    stack, pixel_xy = _read_stack(Path(path))
    return stack[: len(CLASS_NAMES)].clone(), pixel_xy


def read_pick_result(out_dir: str | os.PathLike[str], micrograph_name: str) -> PickResult:
    """The :class:`PickResult` saved by :func:`write_picks` (picks re-made from the saved
    probabilities with the saved settings).

    Raises
    ------
    MissingFileError, FileFormatError, CorruptFileError
        A file is missing, of another kind, or inconsistent with the other.
    """
    folder = Path(out_dir)
    meta_path = require_file(folder / f"{micrograph_name}{_JSON}")
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise CorruptFileError(meta_path, f"not valid JSON ({error})") from error
    if not isinstance(meta, dict) or meta.get("format") != _FORMAT:
        raise FileFormatError(meta_path, "not a cryowarp picking metadata file")
    if meta.get("format_version") != _FORMAT_VERSION:
        raise FileFormatError(meta_path, f"format version {meta.get('format_version')} unknown")
    stack_path = folder / f"{micrograph_name}{_STACK}"
    stack, pixel_xy = _read_stack(stack_path)
    try:
        settings = PickingSettings.model_validate(meta["settings"])
        h, w = (int(v) for v in meta["original_shape"])
        original_pixel = float(meta["original_pixel_size_a"])
        model_name = str(meta["model"])
    except (KeyError, TypeError, ValueError, ValidationError) as error:
        raise CorruptFileError(meta_path, f"damaged picking metadata ({error})") from error
    prepared = PreparedMicrograph(
        image=stack[len(CLASS_NAMES)].clone(),
        pixel_size_xy_a=pixel_xy,
        original_shape=(h, w),
        original_pixel_size_a=original_pixel,
    )
    return PickResult.from_probabilities(
        stack[: len(CLASS_NAMES)].to(torch.float16),
        prepared=prepared,
        settings=settings,
        model_name=model_name,
    )


def _read_stack(path: Path) -> tuple[torch.Tensor, tuple[float, float]]:
    data, header = read_mrc(require_file(path))
    expected = len(CLASS_NAMES) + 1
    if data.ndim != 3 or data.shape[0] != expected or header.mode != 12:
        raise FileFormatError(
            path,
            f"not a picking stack: expected {expected} float16 sections, got shape "
            f"{tuple(data.shape)} in mode {header.mode}",
        )
    px, py, _ = header.voxel_size_a
    if not (px > 0 and py > 0):
        raise FileFormatError(path, "the picking stack records no pixel size")
    return torch.from_numpy(data.astype(np.float32)), (float(px), float(py))


# --------------------------------------------------------------------------------- figure


def picks_figure(result: PickResult, *, title: str | None = None) -> Figure:
    """The overlay of the module docstring (matplotlib object API, no pyplot state)."""
    image = result.prepared.image.detach().to("cpu", torch.float32).numpy()
    mask = result.artefact_mask.cpu().numpy()
    h, w = image.shape
    if h == 0 or w == 0:
        raise InvalidValuesError(None, "nothing to draw: the micrograph is empty")
    width_in = 8.0
    figure = Figure(figsize=(width_in + 1.2, width_in * h / w + 0.9), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.add_subplot(1, 1, 1)
    extent = (-0.5, w - 0.5, -0.5, h - 0.5)
    low, high = np.percentile(image, [0.5, 99.5])
    axes.imshow(
        image,
        cmap="gray",
        vmin=low,
        vmax=high,
        origin="lower",  # +y up
        extent=extent,
        interpolation="nearest",
    )
    tint = np.zeros((h, w, 4), dtype=np.float32)
    tint[mask] = (1.0, 0.1, 0.1, 0.4)
    axes.imshow(tint, origin="lower", extent=extent, interpolation="nearest")
    positions = result.picks.positions_px.numpy()
    radius_px = 0.5 * result.settings.diameter_a / result.prepared.pixel_size_xy_a[0]
    circles = PatchCollection(
        [Circle((float(x), float(y)), radius_px) for x, y in positions],
        facecolors="none",
        linewidths=1.2,
        cmap="viridis",
        norm=Normalize(0.0, 1.0),
    )
    circles.set_array(result.scores.to(torch.float64).numpy())
    axes.add_collection(circles)
    figure.colorbar(circles, ax=axes, label="score", shrink=0.8)
    axes.set_xlim(extent[0], extent[1])
    axes.set_ylim(extent[2], extent[3])
    axes.set_xlabel(f"x (px at {result.prepared.pixel_size_xy_a[0]:.2f} Å)")
    axes.set_ylabel("y (px)")
    s = result.settings
    summary = (
        f"{result.n_picks} picks (score ≥ {s.threshold:g}, diameter {s.diameter_a:g} Å), "
        f"artefacts {100 * result.picks.masked_fraction:.1f} %, model {result.model_name}"
    )
    figure.suptitle(f"{title}\n{summary}" if title else summary, fontsize="medium")
    return figure
