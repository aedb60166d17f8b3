"""The processing steps of an item, what each depends on, and when one is stale
(docs/pipeline.md, "Steps and staleness").

Steps run in the order of :data:`STEPS`: motion → CTF → picking
(:mod:`cryowarp.pipeline.picking_step`) → display views
(:mod:`cryowarp.pipeline.display_step`). A step's settings hash is the SHA-256 of the
canonical JSON of the settings it reads together with the hash of the step before it, so
changing a step's settings makes it and every later step stale, and nothing before it. A step
also reruns, with every later one, when its record is missing, ended in an unexpected error,
or one of its outputs is missing or has another size. A step that failed or whose input was
quarantined is not retried until its hash (or, for the raw file, the item's identity) changes.

Each step writes into an empty staging folder with the project's layout and reports the
files it made; the runner moves them into place (:mod:`cryowarp.pipeline.runner`).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import torch

from cryowarp.io.files import write_text_atomically
from cryowarp.io.mrc import read_mrc
from cryowarp.pipeline._step_types import (
    Step,
    StepContext,
    StepOutput,
    file_identity,
    finite_or_none,
)
from cryowarp.pipeline.display_step import display_outputs, display_settings, run_display_step
from cryowarp.pipeline.items import ItemRecord, Scalar
from cryowarp.pipeline.picking_step import picking_outputs, picking_settings, run_picking_step
from cryowarp.pipeline.project import Project
from cryowarp.preprocess.ctf.estimate import estimate_ctf
from cryowarp.preprocess.ctf.plot import write_ctf_png
from cryowarp.preprocess.ctf.spectrum_files import write_spectrum_files
from cryowarp.preprocess.motion import correct_movie, motion_output_paths
from cryowarp.preprocess.motion.frames import load_movie

__all__ = [
    "STEPS",
    "STEP_STATES",
    "Step",
    "StepContext",
    "StepOutput",
    "StepState",
    "ctf_output_paths",
    "run_ctf_step",
    "run_motion_step",
    "settings_hashes",
    "stale_steps",
    "step_states",
]


# -- motion ------------------------------------------------------------------------------


def _motion_settings(project: Project) -> Mapping[str, Any]:
    settings = project.settings
    movie = settings.data.movie.model_dump(mode="json")
    for key in ("gain_path", "defects_path"):  # by content: a moved dataset stays up to date
        if movie[key] is not None:
            movie[key] = file_identity(project.resolve(movie[key]))
    return {
        "movie": movie,
        "motion": settings.motion.model_dump(mode="json"),
        "voltage_kv": settings.optics.voltage_kv,  # written to RELION's motion STAR
    }


def run_motion_step(context: StepContext) -> StepOutput:
    """Motion-correct the item's movie (:func:`~cryowarp.preprocess.motion.correct_movie`)
    into the staging folder; results are the motion summary (Å) and pixel sizes (Å)."""
    settings = context.project.settings
    result = correct_movie(
        context.movie_path,
        input_settings=context.project.movie_input_settings(),
        settings=settings.motion,
        out_dir=context.staging,
        device=context.device,
        relion_voltage_kv=settings.optics.voltage_kv,
    )
    files = {
        name: path.relative_to(context.staging).as_posix()
        for name, path in result.paths.files().items()
    }
    results: dict[str, Scalar] = dict(result.summary.to_dict())
    results["raw_pixel_size_a"] = result.raw_pixel_size_a
    results["output_pixel_size_a"] = result.output_pixel_size_a
    return StepOutput(files=files, results=results)


def _motion_outputs(name: str) -> list[str]:
    paths = motion_output_paths(Path("."), name)
    return [path.as_posix() for path in paths.files().values()]


# -- CTF ---------------------------------------------------------------------------------


def _ctf_settings(project: Project) -> Mapping[str, Any]:
    return {
        "ctf": project.settings.ctf.model_dump(mode="json"),
        "optics": project.settings.optics.model_dump(mode="json"),
    }


def ctf_output_paths(name: str) -> dict[str, str]:
    """The CTF outputs of item ``name`` relative to the project: ``json``, ``png`` and the
    spectra for viewers ``spectrum_json``, ``spectrum_png``
    (:mod:`~cryowarp.preprocess.ctf.spectrum_files`)."""
    return {
        "json": f"ctf/{name}_ctf.json",
        "png": f"ctf/{name}_ctf.png",
        "spectrum_json": f"ctf/{name}_ctf_spectrum.json",
        "spectrum_png": f"ctf/{name}_ctf_spectrum.png",
    }


def run_ctf_step(context: StepContext) -> StepOutput:
    """Estimate the CTF (:func:`~cryowarp.preprocess.ctf.estimate.estimate_ctf`).

    With ``ctf.spectrum_source = "frames"`` the gain-corrected frames of the raw movie are
    fitted (Warp's choice), with ``"average"`` the motion-corrected average of the motion step.
    Writes ``ctf/<name>_ctf.json`` (:meth:`CtfResult.to_dict`) and, when the fit succeeded,
    ``ctf/<name>_ctf.png``. A fit that finds no Thon rings is a failed step, not an error.
    """
    settings = context.project.settings
    data: torch.Tensor
    if settings.ctf.spectrum_source == "frames":
        movie = load_movie(context.movie_path, context.project.movie_input_settings())
        data = movie.corrected_frames(0, movie.n_frames, device=context.device)
        pixel_size_a = movie.pixel_size_a
    else:
        average_path = context.project.folder / motion_output_paths(Path("."), context.name).average
        array, header = read_mrc(average_path)
        data = torch.from_numpy(array.astype("float32")).to(context.device)
        pixel_size_a = float(header.voxel_size_a[0])
    optics = settings.optics
    result = estimate_ctf(
        data,
        pixel_size_a=pixel_size_a,
        voltage_kv=optics.voltage_kv,
        cs_mm=optics.cs_mm,
        amplitude_contrast=optics.amplitude_contrast,
        settings=settings.ctf,
    )
    paths = ctf_output_paths(context.name)
    json_path = context.staging / paths["json"]
    json_path.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomically(json_path, json.dumps(result.to_dict(), indent=2) + "\n")
    files = {"json": paths["json"]}
    if not result.failed and result.diagnostics is not None:
        write_ctf_png(result, context.staging / paths["png"], title=context.name)
        write_spectrum_files(
            result,
            json_path=context.staging / paths["spectrum_json"],
            png_path=context.staging / paths["spectrum_png"],
        )
        files.update({key: paths[key] for key in ("png", "spectrum_json", "spectrum_png")})
    results: dict[str, Scalar] = {
        "defocus_um": finite_or_none(result.defocus_um),
        "defocus_u_um": finite_or_none(result.defocus_u_um),
        "defocus_v_um": finite_or_none(result.defocus_v_um),
        "astigmatism_angle_deg": finite_or_none(result.astigmatism_angle_deg),
        "phase_shift_deg": finite_or_none(result.phase_shift_deg),
        "resolution_a": finite_or_none(result.resolution_a),
        "fit_score": finite_or_none(result.fit_score),
    }
    return StepOutput(
        files=files, results=results, failure=result.failure_reason if result.failed else None
    )


def _ctf_outputs(name: str) -> list[str]:
    return list(ctf_output_paths(name).values())


# -- the registry ------------------------------------------------------------------------

STEPS: tuple[Step, ...] = (
    Step("motion", _motion_settings, run_motion_step, _motion_outputs),
    Step("ctf", _ctf_settings, run_ctf_step, _ctf_outputs),
    Step("picking", picking_settings, run_picking_step, picking_outputs),
    Step("display", display_settings, run_display_step, display_outputs),
)
"""Every step, in the order they run."""


def settings_hashes(project: Project) -> dict[str, str]:
    """Each step's settings hash (hex SHA-256) under the project's settings, chained through
    the steps before it. Gain and defect files enter by content (size and SHA-256 of the first
    MiB), not by path."""
    hashes: dict[str, str] = {}
    upstream = ""
    for step in STEPS:
        document = {"step": step.name, "settings": step.depends_on(project), "after": upstream}
        canonical = json.dumps(document, sort_keys=True, separators=(",", ":"), allow_nan=False)
        upstream = hashlib.sha256(canonical.encode()).hexdigest()
        hashes[step.name] = upstream
    return hashes


def stale_steps(record: ItemRecord, hashes: Mapping[str, str], project_folder: Path) -> list[str]:
    """The steps of ``record`` to run now, in order (module docstring for the rule).

    A stale step makes every later step stale. A step that ``failed`` or was ``quarantined``
    with the current hash blocks the steps after it (nothing to run).
    """
    todo: list[str] = []
    for step in STEPS:
        previous = record.steps.get(step.name)
        if (
            todo
            or previous is None
            or previous.settings_hash != hashes[step.name]
            or previous.status in ("error", "stale")
        ):
            todo.append(step.name)
        elif previous.status == "quarantined":
            break
        elif not _outputs_intact(previous.outputs.values(), project_folder):
            todo.append(step.name)
        elif previous.status == "failed":
            break
    return todo


StepState = Literal["done", "failed", "quarantined", "error", "pending", "blocked"]
STEP_STATES: tuple[StepState, ...] = (
    "done",
    "failed",
    "quarantined",
    "error",
    "pending",
    "blocked",
)


def step_states(
    record: ItemRecord, hashes: Mapping[str, str], project_folder: Path
) -> dict[str, StepState]:
    """The state of each step of ``record`` under the current settings (``hashes``).

    ``pending``: to be (re)done (:func:`stale_steps`); ``error``: to be retried after an
    unexpected error with the current settings (the steps after it are ``blocked`` until
    then); ``failed``/``quarantined``: stopped here with the current settings (later steps
    ``blocked``); ``done``: up to date.
    """
    todo = stale_steps(record, hashes, project_folder)
    states: dict[str, StepState] = {}
    blocked = False
    for step in STEPS:
        previous = record.steps.get(step.name)
        state: StepState
        if blocked:
            state = "blocked"
        elif step.name in todo:
            retry = (
                previous is not None
                and previous.status == "error"
                and previous.settings_hash == hashes[step.name]
            )
            state = "error" if retry else "pending"
            blocked = retry
        else:
            assert previous is not None  # stale_steps runs every step without a record
            state = previous.status  # type: ignore[assignment]  # done, failed, quarantined
            blocked = state != "done"
        states[step.name] = state
    return states


def _outputs_intact(outputs: Any, project_folder: Path) -> bool:
    folder = os.fspath(project_folder)  # plain strings: the dashboard checks 5,000 items at once
    for output in outputs:
        try:
            if os.stat(os.path.join(folder, output.path)).st_size != output.size_bytes:
                return False
        except OSError:
            return False
    return True
