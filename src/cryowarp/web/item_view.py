"""What the dashboard's item view shows of one item (docs/dashboard_api.md, ``/api/items``).

Every file is found from the item's name through the project layout (motion, CTF, picking and
display outputs), never from a path the browser sends, and must lie inside the project folder.
"""

from __future__ import annotations

import io
import json
import math
import re
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from cryowarp.errors import CryowarpInputError, MissingFileError
from cryowarp.io.mrc import read_mrc
from cryowarp.pipeline.picking_step import PICKING_FOLDER
from cryowarp.pipeline.steps import ctf_output_paths
from cryowarp.preprocess.ctf.spectrum_files import read_spectrum_curves
from cryowarp.preprocess.denoise.display import display_file_names
from cryowarp.preprocess.export.filters import decide_filters
from cryowarp.preprocess.motion import motion_output_paths
from cryowarp.preprocess.picking.outputs import read_pick_result
from cryowarp.web.overview import selection_of
from cryowarp.web.project_index import IndexSnapshot, ItemRow

__all__ = [
    "IMAGE_KINDS",
    "NAME_PATTERN",
    "ItemNotFound",
    "average_png",
    "image_file",
    "item_document",
    "picks_document",
    "spectrum_document",
]

NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,199}$")
"""Item names the API accepts (no separators, no leading dot: never a path)."""

IMAGE_KINDS = ("average", "deconvolved", "denoised", "spectrum")
_AVERAGE_MAX_PX = 1024


class ItemNotFound(LookupError):
    """No such item, or the output asked for does not exist (yet)."""


def _inside(folder: Path, relative: str) -> Path:
    """``folder / relative``, refused unless it stays inside ``folder`` (links resolved)."""
    path = (folder / relative).resolve()
    if not path.is_relative_to(folder.resolve()):
        raise ItemNotFound(f"{relative} lies outside the project")
    return path


def _json(path: Path) -> dict[str, Any] | None:
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    return document if isinstance(document, dict) else None


def _finite(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def _ctf_part(folder: Path, row: ItemRow) -> dict[str, Any] | None:
    step = row.record.steps.get("ctf")
    if step is None or step.status not in ("done", "failed"):
        return None
    document = _json(_inside(folder, ctf_output_paths(row.name)["json"])) or {}
    part: dict[str, Any] = {key: _finite(value) for key, value in step.results.items()}
    part["astigmatism_um"] = row.figures.astigmatism_um
    part["failed"] = step.status == "failed"
    part["reason"] = step.reason
    grid = document.get("defocus_grid_um")
    part["defocus_grid_um"] = grid if isinstance(grid, list) else None
    return part


def _motion_part(folder: Path, row: ItemRow) -> tuple[dict[str, Any] | None, list[float] | None]:
    step = row.record.steps.get("motion")
    if step is None or step.status != "done":
        return None, None
    paths = motion_output_paths(Path("."), row.name)
    document = _json(_inside(folder, paths.metadata.as_posix())) or {}
    patches = document.get("patch_tracks") or {}
    part = {
        "n_frames": document.get("n_frames"),
        "early_motion_a_per_frame": _finite(step.results.get("early_motion_a_per_frame")),
        "total_drift_a": _finite(step.results.get("total_drift_a")),
        "global_track_a": document.get("global_track_a"),
        "patch_positions_a": patches.get("positions_a"),
        "patch_shifts_a": patches.get("shifts_a"),
    }
    field = document.get("field_size_a")
    return part, field if isinstance(field, list) and len(field) == 2 else None


def item_document(snapshot: IndexSnapshot, name: str) -> dict[str, Any]:
    """The item view's document (``GET /api/items/{name}``).

    Raises
    ------
    ItemNotFound
        No such item.
    """
    index = snapshot.positions.get(name)
    if index is None:
        raise ItemNotFound(f"no item named {name!r} in this project")
    row = snapshot.rows[index]
    folder = snapshot.project.folder
    decision = (
        decide_filters([row.figures], snapshot.project.settings.filters)[0]
        if row.state == "done"
        else None
    )
    motion, field = _motion_part(folder, row)
    ctf = _ctf_part(folder, row)
    if field is None and ctf is not None:
        document = _json(_inside(folder, ctf_output_paths(name)["json"])) or {}
        size = document.get("image_size_xy_a")
        field = size if isinstance(size, list) and len(size) == 2 else None
    picking_step = row.record.steps.get("picking")
    settings = snapshot.project.settings.picking
    picking = None
    if picking_step is not None and picking_step.status == "done":
        picking = {
            "n_picks": picking_step.results.get("n_picks"),
            "threshold": settings.threshold,
            "diameter_a": settings.diameter_a,
            "masked_fraction": _finite(picking_step.results.get("masked_fraction")),
            "model": picking_step.results.get("picking_model"),
        }
    rows = snapshot.rows
    return {
        "name": name,
        "index": index,
        "previous": rows[index - 1].name if index > 0 else None,
        "next": rows[index + 1].name if index + 1 < len(rows) else None,
        "state": row.state,
        "reason": row.reason,
        "acquired_at": row.acquired_at,
        "selection": selection_of(name, snapshot.project.settings.filters),
        "accepted": decision is not None and decision.accepted,
        "reasons": [] if decision is None else list(decision.reasons),
        "steps": {
            step_name: {"status": step.status, "seconds": step.seconds, "reason": step.reason}
            for step_name, step in row.record.steps.items()
        },
        "field_size_xy_a": field,
        "ctf": ctf,
        "motion": motion,
        "picking": picking,
        "images": {kind: _image_exists(snapshot, row, kind) for kind in IMAGE_KINDS},
    }


def _image_exists(snapshot: IndexSnapshot, row: ItemRow, kind: str) -> bool:
    try:
        image_file(snapshot, row.name, kind)
    except ItemNotFound:
        return False
    return True


def image_file(snapshot: IndexSnapshot, name: str, kind: str) -> Path:
    """The file behind image ``kind`` of item ``name`` (an MRC for ``average``, else a PNG).

    Raises
    ------
    ItemNotFound
        No such item, kind or file.
    """
    row = snapshot.row(name)
    if row is None:
        raise ItemNotFound(f"no item named {name!r} in this project")
    folder = snapshot.project.folder
    relative: str
    if kind == "average":
        relative = motion_output_paths(Path("."), name).average.as_posix()
    elif kind == "deconvolved":
        relative = display_file_names(name, denoised=False)["deconv_png"]
    elif kind == "denoised":
        relative = display_file_names(name, denoised=True)["denoised_png"]
    elif kind == "spectrum":
        relative = ctf_output_paths(name)["spectrum_png"]
    else:
        raise ItemNotFound(f"no image kind {kind!r} (one of {', '.join(IMAGE_KINDS)})")
    path = _inside(folder, relative)
    if not path.is_file():
        raise ItemNotFound(f"item {name} has no {kind} image (not written yet)")
    return path


def average_png(path: Path) -> bytes:
    """The motion-corrected average as an 8-bit PNG: binned by an integer factor to at most
    1024 px on its longer side, contrast from the 0.5–99.5 % quantiles, row 0 at the top."""
    try:
        array, _ = read_mrc(path)
    except CryowarpInputError as error:
        raise ItemNotFound(str(error)) from error
    image = np.asarray(array, dtype=np.float32)
    if image.ndim == 3:
        image = image[0]
    factor = max(1, math.ceil(max(image.shape) / _AVERAGE_MAX_PX))
    h, w = (image.shape[0] // factor) * factor, (image.shape[1] // factor) * factor
    binned = image[:h, :w].reshape(h // factor, factor, w // factor, factor).mean(axis=(1, 3))
    finite = binned[np.isfinite(binned)]
    low, high = np.quantile(finite, (0.005, 0.995)) if finite.size else (0.0, 1.0)
    scale = 255.0 / max(float(high - low), 1e-12)
    pixels = np.clip((np.nan_to_num(binned, nan=low) - low) * scale, 0, 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def spectrum_document(snapshot: IndexSnapshot, name: str) -> dict[str, Any]:
    """The 1-D spectrum and fit of item ``name`` (``GET /api/items/{name}/spectrum``)."""
    if snapshot.row(name) is None:
        raise ItemNotFound(f"no item named {name!r} in this project")
    path = _inside(snapshot.project.folder, ctf_output_paths(name)["spectrum_json"])
    try:
        document = read_spectrum_curves(path)
    except MissingFileError as error:
        raise ItemNotFound(
            f"item {name} has no saved CTF spectrum (not estimated yet, or estimated by a "
            "cryowarp older than the dashboard: redo its CTF step to get one)"
        ) from error
    except CryowarpInputError as error:
        raise ItemNotFound(str(error)) from error
    return {
        key: document.get(key)
        for key in (
            "frequencies_per_a",
            "spectrum",
            "simulated",
            "correlation",
            "fit_range_per_a",
            "resolution_a",
        )
    }


def picks_document(snapshot: IndexSnapshot, name: str, threshold: float | None) -> dict[str, Any]:
    """The picks of item ``name`` at ``threshold`` (the project's when ``None``), re-made from
    the saved probabilities; positions in Å from the image's top-left corner."""
    row = snapshot.row(name)
    if row is None:
        raise ItemNotFound(f"no item named {name!r} in this project")
    step = row.record.steps.get("picking")
    if step is None or step.status != "done":
        raise ItemNotFound(f"item {name} has not been picked yet")
    folder = _inside(snapshot.project.folder, PICKING_FOLDER)
    try:
        result = read_pick_result(folder, name)
    except CryowarpInputError as error:
        raise ItemNotFound(str(error)) from error
    settings = snapshot.project.settings.picking
    chosen = settings.threshold if threshold is None else threshold
    if chosen != result.settings.threshold:
        result = result.rethreshold(chosen)
    half_pixel_a = 0.5 * result.prepared.original_pixel_size_a  # centre of pixel 0 → corner
    positions = result.positions_a.double().numpy() + half_pixel_a
    return {
        "threshold": chosen,
        "diameter_a": result.settings.diameter_a,
        "n_picks": int(result.n_picks),
        "x_a": [round(float(v), 2) for v in positions[:, 0]],
        "y_a": [round(float(v), 2) for v in positions[:, 1]],
        "score": [round(float(v), 4) for v in result.scores.float().numpy()],
    }
