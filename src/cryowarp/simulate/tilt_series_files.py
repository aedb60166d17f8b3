"""Write a simulated tilt series as real users' files plus its ground truth (read it back
with :func:`cryowarp.simulate.tilt_series_truth.read_tilt_series_truth`).

Layout (docs/simulator.md, "Tilt series")::

    OUT/
      TS_01.mrc               tilt stack, float32 counts (stack order: settings.stack_order)
      TS_01.mrc.mdoc          SerialEM-style metadata, one [ZValue] per stack image
      TS_01.tlt / .rawtlt     true / nominal tilt angles (degrees), stack order
      TS_01.xf                IMOD transforms that align the raw tilts
      frames/TS_01_000_0.0.mrc  tilt movies (when frames_per_tilt > 1), acquisition index
      ground_truth/
        ground_truth.json     schema_version 1, kind "tilt_series"
        TS_01_clean.mrc       expected counts of each stack image (noise-free)
        TS_01_phase.mrc       phase of the particles (rad), no CTF/ice/damage
        species_<name>.mrc    noise-free potential map of each species (V)

The ``.xf`` of view ``i`` rotates by ``90° − α`` (α = tilt-axis angle, conventions §9), which
makes the tilt axis point along +y, and removes the stage shift ``s`` (Å):
``A = R(90° − α)``, ``(DX, DY) = −A · s / pixel``.  So ``−atan2(A21, A11) = α − 90°`` is the
axis angle as Warp/IMOD/SerialEM give it and ``−A⁻¹ (DX, DY) · pixel = s`` (the relation of
conventions §9).  Same seed and settings → the same bytes.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cryowarp.core.rotations import matrix_to_euler
from cryowarp.io.imod import XfTransforms, write_tlt, write_xf
from cryowarp.io.mdoc_write import MdocData, MdocSectionData, MdocValue, write_mdoc
from cryowarp.io.mrc import write_mrc
from cryowarp.simulate.ground_truth import (
    GROUND_TRUTH_FOLDER,
    write_ground_truth_json,
    write_species_maps,
)
from cryowarp.simulate.species_like import SpeciesLike
from cryowarp.simulate.tilt_presets import TiltSeriesSettings
from cryowarp.simulate.tilt_series import TiltSeriesGeometry, TiltSeriesSimulation
from cryowarp.simulate.tilt_series_truth import (
    TILT_GROUND_TRUTH_SCHEMA_VERSION,
    TiltSeriesTruth,
    read_tilt_series_truth,
)
from cryowarp.simulate.write import write_movie

__all__ = [
    "TILT_GROUND_TRUTH_SCHEMA_VERSION",
    "TiltSeriesDataset",
    "TiltSeriesTruth",
    "read_tilt_series_truth",
    "stack_order_indices",
    "write_tilt_series_dataset",
    "xf_transforms",
]

_START_TIME = datetime(2024, 1, 1, 9, 0, 0)
_OVERHEAD_S = 30.0  # tilting, tracking, focusing between exposures


@dataclass(frozen=True)
class TiltSeriesDataset:
    """What :func:`write_tilt_series_dataset` wrote."""

    folder: Path
    stack: Path
    mdoc: Path
    tlt: Path
    rawtlt: Path
    xf: Path
    movies: tuple[Path, ...]
    ground_truth: Path


def stack_order_indices(settings: TiltSeriesSettings, geometry: TiltSeriesGeometry) -> torch.Tensor:
    """``(n,)`` acquisition index of each stack image (identity for ``"acquisition"``,
    ascending nominal angle for ``"angle"``)."""
    if settings.stack_order == "angle":
        return torch.argsort(geometry.nominal_angles_deg, stable=True)
    return torch.arange(geometry.n_tilts)


def xf_transforms(
    geometry: TiltSeriesGeometry, *, pixel_size_a: float, order: torch.Tensor | None = None
) -> XfTransforms:
    """IMOD transforms that align the raw tilts (module docstring), one per view of
    ``order`` (acquisition indices; all tilts in acquisition order by default)."""
    index = torch.arange(geometry.n_tilts) if order is None else order
    theta = math.radians(90.0 - geometry.tilt_axis_angle_deg)
    c, s = math.cos(theta), math.sin(theta)
    matrix = np.array([[c, -s], [s, c]])
    shifts_px = geometry.shifts_a[index].numpy() / pixel_size_a
    d = -np.einsum("ij,nj->ni", matrix, shifts_px)
    return XfTransforms(matrices=np.repeat(matrix[None], len(index), axis=0), shifts_px=d)


def _movie_name(settings: TiltSeriesSettings, acquisition: int, angle_deg: float) -> str:
    return f"{settings.name}_{acquisition:03d}_{angle_deg:.1f}.mrc"


def _mdoc(
    sim: TiltSeriesSimulation, order: torch.Tensor, stack: np.ndarray, movies: Sequence[str]
) -> MdocData:
    settings, geometry = sim.settings, sim.geometry
    prior = geometry.prior_dose_e_per_a2
    sections = []
    for z, a in enumerate(order.tolist()):
        image = stack[z]
        when = _START_TIME + timedelta(seconds=a * (settings.exposure_time_s + _OVERHEAD_S))
        entries: dict[str, MdocValue] = {
            "TiltAngle": round(float(geometry.nominal_angles_deg[a]), 4),
            "StagePosition": (0.0, 0.0),
            "StageZ": 0.0,
            "ExposureDose": round(float(geometry.dose_e_per_a2[a]), 6),
            "PriorRecordDose": round(float(prior[a]), 6),
            "PixelSpacing": settings.pixel_size_a,
            "Defocus": round(-float(geometry.defocus_um[a]), 5),
            "TargetDefocus": -settings.target_defocus_um,
            "ImageShift": (0.0, 0.0),
            "RotationAngle": round(settings.mdoc_tilt_axis_angle_deg + 90.0, 4),
            "ExposureTime": settings.exposure_time_s,
            "Binning": 1,
            "MinMaxMean": (
                round(float(image.min()), 3),
                round(float(image.max()), 3),
                round(float(image.mean()), 3),
            ),
        }
        if movies:
            entries["SubFramePath"] = "frames\\" + movies[a]
            entries["NumSubFrames"] = settings.frames_per_tilt
            per_frame = float(geometry.dose_e_per_a2[a]) / settings.frames_per_tilt
            entries["FrameDosesAndNumber"] = (round(per_frame, 6), settings.frames_per_tilt)
        entries["DateTime"] = when.strftime("%d-%b-%y  %H:%M:%S")
        sections.append(MdocSectionData("ZValue", z, entries))
    h, w = settings.shape_px
    return MdocData(
        header={
            "PixelSpacing": settings.pixel_size_a,
            "Voltage": settings.voltage_kv,
            "ImageFile": f"{settings.name}.mrc",
            "ImageSize": (w, h),
            "DataMode": 2,
        },
        titles=(
            "SerialEM: cryowarp simulate tilt-series    "
            + _START_TIME.strftime("%d-%b-%y  %H:%M:%S"),
            f"    Tilt axis angle = {settings.mdoc_tilt_axis_angle_deg:.2f}, binning = 1  "
            "spot = 8  camera = 0",
        ),
        sections=sections,
    )


def _relion_defocus(geometry: TiltSeriesGeometry, a: int) -> dict[str, float]:
    """rlnDefocusU/V (Å) and rlnDefocusAngle (deg) of tilt ``a`` (conventions §6)."""
    ax, ay = float(geometry.astig_x_um[a]), float(geometry.astig_y_um[a])
    delta_um = math.hypot(ax, ay)
    mean_um = float(geometry.defocus_um[a])
    return {
        "defocus_u_a": (mean_um + delta_um) * 1e4,
        "defocus_v_a": (mean_um - delta_um) * 1e4,
        "defocus_angle_deg": math.degrees(math.atan2(ay, ax)) / 2,
    }


def _truth_document(
    sim: TiltSeriesSimulation,
    order: torch.Tensor,
    seed: int,
    species: Sequence[SpeciesLike],
    species_entries: list[dict[str, Any]],
) -> dict[str, Any]:
    settings, geometry, particles = sim.settings, sim.geometry, sim.particles
    prior = geometry.prior_dose_e_per_a2
    bfactors = geometry.frame_bfactors_a2()
    positions_px = particles.image_positions_px(
        geometry, shape_px=settings.shape_px, pixel_size_a=settings.pixel_size_a
    )
    defocus = particles.defocus_um(geometry)
    tilts = []
    for z, a in enumerate(order.tolist()):
        tilts.append(
            {
                "stack_index": z,
                "acquisition_index": a,
                "nominal_angle_deg": float(geometry.nominal_angles_deg[a]),
                "angle_error_deg": float(geometry.angle_errors_deg[a]),
                "angle_deg": float(geometry.angles_deg[a]),
                "shift_a": geometry.shifts_a[a].tolist(),
                "defocus_um": float(geometry.defocus_um[a]),
                "astig_x_um": float(geometry.astig_x_um[a]),
                "astig_y_um": float(geometry.astig_y_um[a]),
                **_relion_defocus(geometry, a),
                "dose_e_per_a2": float(geometry.dose_e_per_a2[a]),
                "prior_dose_e_per_a2": float(prior[a]),
                "frame_bfactors_a2": bfactors[a].tolist(),
                "frame_shifts_a": geometry.frame_shifts_a[a].tolist(),
                "ice_path_length_a": float(sim.ice_path_lengths_a[a]),
            }
        )
    names = [s.name for s in species]
    particle_rows = []
    euler = matrix_to_euler(particles.orientations)
    for p in range(len(particles)):
        particle_rows.append(
            {
                "species": names[int(particles.species_index[p])],
                "position_a": particles.positions_a[p].tolist(),
                "euler_deg": euler[p].tolist(),
                "defocus_um": defocus[p, order].tolist(),
                "image_position_px": positions_px[p, order].tolist(),
            }
        )
    stem = settings.name
    return {
        "schema_version": TILT_GROUND_TRUTH_SCHEMA_VERSION,
        "kind": "tilt_series",
        "generator": "cryowarp simulate tilt-series",
        "conventions": "docs/conventions.md (§8 Euler angles, §9 tilt geometry)",
        "seed": seed,
        "settings": settings.model_dump(mode="json"),
        "tilt_axis_angle_deg": settings.tilt_axis_angle_deg,
        "mdoc_tilt_axis_angle_deg": settings.mdoc_tilt_axis_angle_deg,
        "stack_order": settings.stack_order,
        "files": {
            "stack": f"{stem}.mrc",
            "mdoc": f"{stem}.mrc.mdoc",
            "tlt": f"{stem}.tlt",
            "rawtlt": f"{stem}.rawtlt",
            "xf": f"{stem}.xf",
            "clean": f"{stem}_clean.mrc",
            "phase": f"{stem}_phase.mrc",
        },
        "species": species_entries,
        "tilts": tilts,
        "particles": particle_rows,
    }


def write_tilt_series_dataset(
    folder: str | Path,
    sim: TiltSeriesSimulation,
    *,
    seed: int,
    species: Sequence[SpeciesLike],
) -> TiltSeriesDataset:
    """Write ``sim`` (made with ``seed`` from ``species``) as stack, mdoc, .tlt, .rawtlt,
    .xf, tilt movies and ground truth (layout in the module docstring)."""
    settings, geometry = sim.settings, sim.geometry
    out = Path(folder)
    truth_dir = out / GROUND_TRUTH_FOLDER
    truth_dir.mkdir(parents=True, exist_ok=True)
    order = stack_order_indices(settings, geometry)
    stem, pixel = settings.name, settings.pixel_size_a
    stack = sim.stack_counts[order].numpy().astype(np.float32)
    write_mrc(out / f"{stem}.mrc", stack, voxel_size_a=pixel, is_stack=True)

    movie_names: list[str] = []
    movies: list[Path] = []
    if sim.frames_counts is not None:
        (out / "frames").mkdir(exist_ok=True)
        for a in range(geometry.n_tilts):
            name = _movie_name(settings, a, float(geometry.nominal_angles_deg[a]))
            path = out / "frames" / name
            write_movie(path, sim.frames_counts[a].to(torch.int32), pixel_size_a=pixel)
            movie_names.append(name)
            movies.append(path)

    write_tlt(out / f"{stem}.tlt", geometry.angles_deg[order].numpy(), decimals=4)
    write_tlt(out / f"{stem}.rawtlt", geometry.nominal_angles_deg[order].numpy())
    write_xf(out / f"{stem}.xf", xf_transforms(geometry, pixel_size_a=pixel, order=order))
    mdoc_path = out / f"{stem}.mrc.mdoc"
    write_mdoc(mdoc_path, _mdoc(sim, order, stack, movie_names))

    for name, images in (("clean", sim.clean_counts), ("phase", sim.phase_rad)):
        path = truth_dir / f"{stem}_{name}.mrc"
        write_mrc(path, images[order].numpy(), voxel_size_a=pixel, is_stack=True)
    species_entries = write_species_maps(truth_dir, species)
    document = _truth_document(sim, order, seed, species, species_entries)
    truth = write_ground_truth_json(truth_dir, document)
    return TiltSeriesDataset(
        folder=out,
        stack=out / f"{stem}.mrc",
        mdoc=mdoc_path,
        tlt=out / f"{stem}.tlt",
        rawtlt=out / f"{stem}.rawtlt",
        xf=out / f"{stem}.xf",
        movies=tuple(movies),
        ground_truth=truth,
    )
