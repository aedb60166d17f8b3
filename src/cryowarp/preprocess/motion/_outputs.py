"""The files of one motion-corrected movie: their layout, the metadata JSON, the RELION STAR.

Layout under the output folder (``<stem>`` = the movie's file stem; docs/motion.md)::

    average/<stem>.mrc          exposure-weighted average (float32, pixel size in the header)
    average/odd/<stem>.mrc      average of the odd frames (1, 3, 5, …)
    average/even/<stem>.mrc     average of the even frames (0, 2, 4, …)
    aligned/<stem>.mrcs         aligned frames, not exposure-weighted
    motion/<stem>.json          metadata (:data:`MOTION_METADATA_VERSION`)
    motion/<stem>.star          RELION motion STAR file (for Bayesian polishing)
    motion/<stem>.png           motion tracks
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cryowarp import __version__
from cryowarp.io.files import write_text_atomically
from cryowarp.io.relion_motion import (
    RelionMotion,
    evaluate_relion_local_model,
    fit_relion_local_model,
    relion_global_shifts_px,
    write_relion_motion,
)
from cryowarp.preprocess.motion.average import MotionAverages
from cryowarp.preprocess.motion.fit import MotionFit
from cryowarp.preprocess.motion.frames import LoadedMovie
from cryowarp.preprocess.motion.settings import MotionSettings, MovieInputSettings
from cryowarp.preprocess.motion.summary import MotionSummary, summary_positions_a

__all__ = [
    "MOTION_METADATA_VERSION",
    "MotionPaths",
    "motion_metadata",
    "motion_output_paths",
    "write_metadata",
    "write_relion_star",
]

MOTION_METADATA_VERSION = 1
"""Version of the metadata JSON written by :func:`motion_metadata`."""

_RELION_FIT_POINTS = 9  # per axis: positions at which RELION's polynomial is fitted


@dataclass(frozen=True)
class MotionPaths:
    """Where the outputs of one movie are (``None``: not written)."""

    average: Path
    metadata: Path
    odd: Path | None = None
    even: Path | None = None
    aligned: Path | None = None
    star: Path | None = None
    png: Path | None = None

    def files(self) -> dict[str, Path]:
        """The paths that are written, by name; the metadata JSON last."""
        named = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "metadata"}
        named = {name: path for name, path in named.items() if path is not None}
        named["metadata"] = self.metadata
        return named

    def folders(self) -> set[Path]:
        """The folders that hold the files."""
        return {path.parent for path in self.files().values()}

    def relative_to(self, root: Path) -> dict[str, str | None]:
        """Every output name with its path relative to ``root`` (POSIX), ``None`` if unused."""
        return {
            f.name: None if getattr(self, f.name) is None
            else getattr(self, f.name).relative_to(root).as_posix()
            for f in fields(self)
        }  # fmt: skip

    def moved(self, root: Path, new_root: Path) -> MotionPaths:
        """The same layout under ``new_root`` instead of ``root``."""
        changes = {name: new_root / path.relative_to(root) for name, path in self.files().items()}
        return replace(self, **changes)

    def claim_from(self, staged: MotionPaths, *, stale: MotionPaths) -> None:
        """Move the files of ``staged`` (the same layout elsewhere) into place, the metadata
        last, then delete the files of ``stale`` (a full layout of the same stem) that this
        set does not hold (left from a run with other settings)."""
        for folder in self.folders():
            folder.mkdir(parents=True, exist_ok=True)
        mine = self.files()
        theirs = staged.files()
        if mine.keys() != theirs.keys():
            raise ValueError(f"staged outputs {sorted(theirs)} differ from {sorted(mine)}")
        for name, destination in mine.items():
            os.replace(theirs[name], destination)
        kept = set(mine.values())
        for path in stale.files().values():
            if path not in kept and path.is_file():
                path.unlink()


def motion_output_paths(
    out_dir: str | Path,
    stem: str,
    *,
    odd_even: bool = True,
    aligned_stack: bool = True,
    relion_star: bool = True,
    png: bool = True,
) -> MotionPaths:
    """The output layout of the movie ``stem`` under ``out_dir`` (module docstring)."""
    root = Path(out_dir)
    return MotionPaths(
        average=root / "average" / f"{stem}.mrc",
        metadata=root / "motion" / f"{stem}.json",
        odd=root / "average" / "odd" / f"{stem}.mrc" if odd_even else None,
        even=root / "average" / "even" / f"{stem}.mrc" if odd_even else None,
        aligned=root / "aligned" / f"{stem}.mrcs" if aligned_stack else None,
        star=root / "motion" / f"{stem}.star" if relion_star else None,
        png=root / "motion" / f"{stem}.png" if png else None,
    )


def motion_metadata(
    movie: LoadedMovie,
    fit: MotionFit,
    averages: MotionAverages,
    summary: MotionSummary,
    *,
    input_settings: MovieInputSettings,
    settings: MotionSettings,
    files: dict[str, str | None],
    seconds: dict[str, float],
    relion_local_model_error_px: float | None = None,
) -> dict[str, Any]:
    """The metadata document of one movie (docs/motion.md, "Metadata")."""
    motion = fit.motion
    track = motion.global_shifts_at()  # (n, 2)
    centres = fit.patch_centres_a.detach().to("cpu", torch.float64)  # (p, 2)
    patch_tracks = motion.shifts_at(centres)  # (p, n, 2)
    return {
        "schema_version": MOTION_METADATA_VERSION,
        "generator": f"cryowarp {__version__} motion",
        "movie": str(movie.path),
        "input_settings": input_settings.model_dump(mode="json"),
        "settings": settings.model_dump(mode="json"),
        "n_frames": movie.n_frames,
        "frame_shape_px": list(movie.frame_shape),
        "output_shape_px": list(averages.shape),
        "field_size_a": [float(v) for v in movie.field_size_a],
        "raw_pixel_size_a": movie.pixel_size_a,
        "alignment_pixel_size_a": fit.alignment_pixel_size_a,
        "output_pixel_size_a": averages.pixel_size_a,
        "dose": {
            "dose_per_frame_e_per_a2": input_settings.dose_per_frame_e_per_a2,
            "pre_exposure_e_per_a2": input_settings.pre_exposure_e_per_a2,
            "accumulated_dose_e_per_a2": _floats(movie.accumulated_dose_e_per_a2()),
            "dose_weighted": settings.dose_weighting,
        },
        "motion": motion.to_dict(),
        "global_track_a": _floats(track),
        "patch_tracks": {
            "positions_a": _floats(centres),
            "patch_size_a": fit.patch_size_a,
            "shifts_a": _floats(patch_tracks),
        },
        "summary": summary.to_dict(),
        "fit": {
            "final_cost": _finite_or_none(fit.final_cost),
            "initial_track_a": _floats(fit.initial_track_a),
            "stages": [
                {
                    "global_nodes": stage.global_nodes,
                    "cost_start": _finite_or_none(stage.cost_start),
                    "cost_end": _finite_or_none(stage.cost_end),
                    "evaluations": stage.evaluations,
                    "seconds": stage.seconds,
                }
                for stage in fit.stages
            ],
            "deformation_groups": averages.n_deformation_groups,
            "relion_local_model_max_error_px": relion_local_model_error_px,
        },
        "seconds": dict(seconds),
        "files": files,
    }


def write_metadata(path: Path, document: dict[str, Any]) -> None:
    """Write the metadata document as JSON (atomic, keys in the given order)."""
    write_text_atomically(path, json.dumps(document, indent=1, allow_nan=False) + "\n")


def write_relion_star(
    path: Path,
    movie: LoadedMovie,
    fit: MotionFit,
    *,
    input_settings: MovieInputSettings,
    voltage_kv: float | None,
) -> float:
    """Write RELION's motion STAR file of ``movie``; return the largest error (unbinned px)
    of RELION's polynomial local model against the fitted local field (0 without one).

    Global shifts are the fitted global track; the local field is fitted with RELION's
    third-order polynomial (:func:`~cryowarp.io.relion_motion.fit_relion_local_model`) on a
    9 × 9 grid of positions and all frames. The local model is left out when the motion has
    no local field or fewer than 4 frames (3 frames after the start frame are needed).
    """
    motion = fit.motion
    px = movie.pixel_size_a
    width, height = movie.frame_shape[1], movie.frame_shape[0]
    global_px = relion_global_shifts_px(motion.global_shifts_at(), original_pixel_size_a=px)
    coefficients = None
    error_px = 0.0
    if max(motion.local_grid_dims) > 1 and movie.n_frames >= 4:
        positions_a = summary_positions_a(movie.field_size_a, points=_RELION_FIT_POINTS).reshape(
            -1, 2
        )
        local_a = motion.local_shifts_at(positions_a)  # (p, n, 2)
        local_px = relion_global_shifts_px(local_a, original_pixel_size_a=px)
        positions_px = positions_a.numpy() / px
        frames = np.arange(movie.n_frames, dtype=np.float64)
        coefficients = fit_relion_local_model(
            positions_px, frames, local_px, image_size_xy=(width, height)
        )
        model = evaluate_relion_local_model(
            coefficients,
            positions_px[:, None, 0],
            positions_px[:, None, 1],
            frames[None, :],
            image_size_xy=(width, height),
        )
        error_px = float(np.abs(model - local_px).max())
    write_relion_motion(
        path,
        RelionMotion(
            image_size_xyz=(width, height, movie.n_frames),
            movie_name=str(movie.path),
            global_shifts_px=global_px,
            gain_name=input_settings.gain_path,
            defect_file=input_settings.defects_path,
            binning=input_settings.bin_factor,
            original_pixel_size_a=px,
            dose_per_frame_e_per_a2=input_settings.dose_per_frame_e_per_a2,
            pre_exposure_e_per_a2=input_settings.pre_exposure_e_per_a2,
            voltage_kv=voltage_kv,
            local_model_coefficients=coefficients,
        ),
    )
    return error_px


def _floats(values: torch.Tensor) -> Any:
    """A tensor as nested lists of Python floats (JSON)."""
    return values.detach().to("cpu", torch.float64).tolist()


def _finite_or_none(value: float) -> float | None:
    return value if math.isfinite(value) else None
