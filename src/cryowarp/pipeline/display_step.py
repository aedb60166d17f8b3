"""The display step: deconvolved and Noise2Noise-denoised views of the item's average for
looking at (docs/denoising.md, docs/deconvolution.md) — never for averaging or extraction.

Writes ``display/<name>_deconv.png|.mrc`` and, when ``display.denoiser_model`` is set,
``display/<name>_denoised.png|.mrc`` at the display pixel size
(:mod:`cryowarp.preprocess.denoise.display`). The denoiser is looked up in the project's
``models/denoise/`` first, then among the models shipped with cryowarp; the step's hash holds
the model file's content, so retraining a model of the same name redoes the views. The model's
name is recorded in the item's results (``denoiser_model``).
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from cryowarp.io.mrc import read_mrc
from cryowarp.pipeline._step_types import StepContext, StepOutput, file_identity
from cryowarp.pipeline.items import Scalar
from cryowarp.pipeline.project import Project
from cryowarp.preprocess.ctf.result import CtfResult
from cryowarp.preprocess.denoise.display import (
    display_file_names,
    display_images,
    write_display_images,
)
from cryowarp.preprocess.denoise.n2n_model_file import (
    DenoiserModel,
    load_denoiser_model,
    resolve_denoiser_model,
)
from cryowarp.preprocess.motion import motion_output_paths

__all__ = [
    "denoiser_model_folder",
    "display_outputs",
    "display_settings",
    "run_display_step",
]


def denoiser_model_folder(project: Project) -> Path:
    """Where a project keeps its own denoiser models (``models/denoise``)."""
    return project.folder / "models" / "denoise"


def _model_path(project: Project) -> Path | None:
    name = project.settings.display.denoiser_model
    if name is None:
        return None
    return resolve_denoiser_model(name, search=(denoiser_model_folder(project),))


def display_settings(project: Project) -> Mapping[str, Any]:
    """What the display step depends on: its settings and the denoiser file's content."""
    settings = project.settings.display.model_dump(mode="json")
    try:
        path = _model_path(project)
        model = None if path is None else file_identity(path)
    except FileNotFoundError:  # reported by the step itself, with the places searched
        model = f"missing:{settings['denoiser_model']}"
    return {"display": settings, "model_file": model}


@functools.lru_cache(maxsize=2)
def _load_model(path: str, size: int, mtime_ns: int) -> DenoiserModel:
    return load_denoiser_model(path)


def _read(path: Path) -> tuple[torch.Tensor, float]:
    array, header = read_mrc(path)
    return torch.from_numpy(array.astype("float32")), float(header.voxel_size_a[0])


def run_display_step(context: StepContext) -> StepOutput:
    """Make and write the item's views into the staging folder."""
    from cryowarp.pipeline.steps import ctf_output_paths  # the registry imports this module

    project = context.project
    settings = project.settings.display
    paths = motion_output_paths(project.folder, context.name)
    average, pixel_size_a = _read(paths.average)
    ctf_document = json.loads((project.folder / ctf_output_paths(context.name)["json"]).read_text())
    ctf = CtfResult.from_dict(ctf_document)
    model: DenoiserModel | None = None
    odd = even = None
    model_path = _model_path(project)
    if model_path is not None:
        stat = model_path.stat()
        model = _load_model(str(model_path), stat.st_size, stat.st_mtime_ns)
        if (
            paths.odd is not None
            and paths.even is not None
            and paths.odd.is_file()
            and paths.even.is_file()
        ):
            odd, _ = _read(paths.odd)
            even, _ = _read(paths.even)
    images = display_images(
        average,
        pixel_size_a=pixel_size_a,
        ctf=ctf,
        deconvolution=settings.deconvolution,
        denoiser=model,
        odd=odd,
        even=even,
        settings=settings.image,
        device=context.device,
    )
    write_display_images(
        images, name=context.name, out_dir=context.staging, settings=settings.image
    )
    files = display_file_names(context.name, denoised=images.denoised is not None)
    results: dict[str, Scalar] = {
        "denoiser_model": images.model_name,
        "display_pixel_size_a": images.pixel_size_a,
    }
    return StepOutput(files=files, results=results)


def display_outputs(name: str) -> list[str]:
    """Every file the display step can write for item ``name``."""
    return list(display_file_names(name, denoised=True).values())
