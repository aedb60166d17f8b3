"""The picking step: BoxNet on the item's motion-corrected average (docs/picking.md).

Writes ``picking/<name>_picks.star`` (RELION coordinates with scores), ``_picking.mrc``
(probabilities at 8 Å/px, for re-thresholding without the network), ``_picking.json``,
``_mask.mrc`` (artefact mask) and ``_picks.png`` (:mod:`cryowarp.preprocess.picking.outputs`).
The model is named by the project's ``picking.model`` and looked up in the project's
``models/boxnet/`` first, then among the models shipped with cryowarp; the step's hash holds
the model file's content, so a retrained model of the same name re-picks every item. The
model's name is recorded in the item's results (``picking_model``), with the number of
picks and the masked fraction that ``cryowarp export`` filters on.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from cryowarp.io.mrc import read_mrc
from cryowarp.pipeline._step_types import StepContext, StepOutput, file_identity
from cryowarp.pipeline.items import Scalar
from cryowarp.pipeline.project import Project
from cryowarp.preprocess.motion import motion_output_paths
from cryowarp.preprocess.picking.inference import pick_micrograph
from cryowarp.preprocess.picking.model_file import (
    BoxNetModel,
    load_boxnet_model,
    resolve_boxnet_model,
)
from cryowarp.preprocess.picking.outputs import write_picks

__all__ = [
    "PICKING_FOLDER",
    "picking_model_folder",
    "picking_output_paths",
    "picking_settings",
    "run_picking_step",
]

PICKING_FOLDER = "picking"


def picking_model_folder(project: Project) -> Path:
    """Where a project keeps its own BoxNet models (``models/boxnet``)."""
    return project.folder / "models" / "boxnet"


def _model_path(project: Project) -> Path:
    return resolve_boxnet_model(
        project.settings.picking.model, search=(picking_model_folder(project),)
    )


def picking_settings(project: Project) -> Mapping[str, Any]:
    """What the picking step depends on: its settings and the model file's content."""
    settings = project.settings.picking.model_dump(mode="json")
    try:
        model = file_identity(_model_path(project))
    except FileNotFoundError:  # reported by the step itself, with the places searched
        model = f"missing:{settings['model']}"
    return {"picking": settings, "model_file": model}


def picking_output_paths(name: str) -> dict[str, str]:
    """The picking outputs of item ``name`` relative to the project."""
    suffixes = {
        "star": "_picks.star",
        "probabilities": "_picking.mrc",
        "mask": "_mask.mrc",
        "metadata": "_picking.json",
        "png": "_picks.png",
    }
    return {key: f"{PICKING_FOLDER}/{name}{suffix}" for key, suffix in suffixes.items()}


@functools.lru_cache(maxsize=4)
def _load_model(path: str, size: int, mtime_ns: int) -> BoxNetModel:
    return load_boxnet_model(path)


def run_picking_step(context: StepContext) -> StepOutput:
    """Pick the item's average (:func:`~cryowarp.preprocess.picking.inference.pick_micrograph`)
    and write the picking files into the staging folder."""
    project = context.project
    settings = project.settings.picking
    path = _model_path(project)
    stat = path.stat()
    model = _load_model(str(path), stat.st_size, stat.st_mtime_ns)
    average_path = project.folder / motion_output_paths(Path("."), context.name).average
    array, header = read_mrc(average_path)
    image = torch.from_numpy(array.astype("float32"))
    result = pick_micrograph(
        image,
        pixel_size_a=float(header.voxel_size_a[0]),
        model=model,
        settings=settings,
        device=context.device,
    )
    write_picks(result, micrograph_name=context.name, out_dir=context.staging / PICKING_FOLDER)
    results: dict[str, Scalar] = {
        "n_picks": result.n_picks,
        "masked_fraction": float(result.picks.masked_fraction),
        "picking_model": model.name,
    }
    return StepOutput(files=picking_output_paths(context.name), results=results)


def picking_outputs(name: str) -> list[str]:
    """Every file the picking step can write for item ``name``."""
    return list(picking_output_paths(name).values())
