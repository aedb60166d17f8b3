"""Write a simulated tilt series as real users' files plus its ground truth, and read the
ground truth back.

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

import json
import math
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cryowarp.core.rotations import euler_to_matrix, matrix_to_euler
from cryowarp.errors import FileFormatError, MissingFileError
from cryowarp.io.imod import XfTransforms, write_tlt, write_xf
from cryowarp.io.mdoc_write import MdocData, MdocSectionData, MdocValue, write_mdoc
from cryowarp.io.mrc import write_mrc
from cryowarp.simulate.frame_series import SpeciesLike
from cryowarp.simulate.ground_truth import write_ground_truth_json
from cryowarp.simulate.tilt_presets import TiltSeriesSettings
from cryowarp.simulate.tilt_series import (
    SpecimenParticles,
    TiltSeriesGeometry,
    TiltSeriesSimulation,
)
from cryowarp.simulate.write import write_movie

__all__ = [
    "TILT_GROUND_TRUTH_SCHEMA_VERSION",
    "TiltSeriesDataset",
    "TiltSeriesTruth",
    "build_tilt_species",
    "read_tilt_series_truth",
    "stack_order_indices",
    "write_tilt_series_dataset",
    "xf_transforms",
]

TILT_GROUND_TRUTH_SCHEMA_VERSION = 1
GROUND_TRUTH_FOLDER = "ground_truth"
_START_TIME = datetime(2024, 1, 1, 9, 0, 0)
_OVERHEAD_S = 30.0  # tilting, tracking, focusing between exposures
_MRC_LABEL = b"cryowarp simulate tilt-series".ljust(80)


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


@dataclass(frozen=True)
class TiltSeriesTruth:
    """The ground truth of a written tilt series, as read back.

    ``geometry`` is in **acquisition order**; ``stack_to_acquisition[i]`` is the acquisition
    index of stack image ``i``.  ``particle_defocus_um`` and ``particle_positions_px`` are
    ``(m, n)`` / ``(m, n, 2)`` in stack order.
    """

    document: dict[str, Any]
    settings: TiltSeriesSettings
    geometry: TiltSeriesGeometry
    particles: SpecimenParticles
    species_names: tuple[str, ...]
    stack_to_acquisition: torch.Tensor  # (n,) int64
    particle_defocus_um: torch.Tensor  # (m, n) float64, stack order
    particle_positions_px: torch.Tensor  # (m, n, 2) float64, stack order
    folder: Path

    def species_map_path(self, name: str) -> Path:
        """The noise-free map (V) of species ``name``."""
        for entry in self.document["species"]:
            if entry["name"] == name:
                return self.folder / GROUND_TRUTH_FOLDER / str(entry["map"])
        raise KeyError(f"no species {name!r}; have {list(self.species_names)}")


def build_tilt_species(settings: TiltSeriesSettings, *, seed: int) -> list[SpeciesLike]:
    """The species of ``settings`` at its pixel size (procedural ones seeded by name, as the
    frame-series simulator does)."""
    from cryowarp.simulate import species as specimen

    built: list[SpeciesLike] = []
    for spec in settings.species:
        path = spec.path or ""  # the settings guarantee a path for map and model species
        if spec.kind == "procedural":
            built.append(
                specimen.procedural_species(
                    mass_kda=spec.mass_kda,
                    symmetry=spec.symmetry,
                    seed=zlib.crc32(f"{seed}/species/{spec.name}".encode()),
                    pixel_size_a=settings.pixel_size_a,
                    name=spec.name,
                )
            )
        elif spec.kind == "model":
            built.append(
                specimen.species_from_model(
                    path, pixel_size_a=settings.pixel_size_a, name=spec.name
                )
            )
        else:
            loaded = specimen.species_from_map(path, name=spec.name)
            built.append(loaded.at_pixel_size(settings.pixel_size_a))
    return built


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


def _write_mrc(
    path: Path, data: np.ndarray, *, pixel_size_a: float, mode: int | None = None
) -> None:
    """:func:`write_mrc` with a fixed first label (mrcfile stamps the creation time there,
    which would make files of the same seed differ)."""
    write_mrc(path, data, voxel_size_a=pixel_size_a, is_stack=data.ndim == 3)
    _fix_label(path)


def _fix_label(path: Path) -> None:
    with open(path, "r+b") as handle:
        handle.seek(224)
        handle.write(_MRC_LABEL)


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
    sim: TiltSeriesSimulation, order: torch.Tensor, seed: int, species: Sequence[SpeciesLike]
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
        "species": [
            {
                "name": s.name,
                "map": f"species_{s.name}.mrc",
                "pixel_size_a": float(s.pixel_size_a),
                "box_size_px": int(s.potential_v.shape[-1]),
                "symmetry": str(getattr(s, "symmetry", "C1")),
                "source": str(getattr(s, "source", "")),
            }
            for s in species
        ],
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
    _write_mrc(out / f"{stem}.mrc", stack, pixel_size_a=pixel)

    movie_names: list[str] = []
    movies: list[Path] = []
    if sim.frames_counts is not None:
        (out / "frames").mkdir(exist_ok=True)
        for a in range(geometry.n_tilts):
            name = _movie_name(settings, a, float(geometry.nominal_angles_deg[a]))
            path = out / "frames" / name
            write_movie(path, sim.frames_counts[a].to(torch.int32), pixel_size_a=pixel)
            _fix_label(path)
            movie_names.append(name)
            movies.append(path)

    write_tlt(out / f"{stem}.tlt", geometry.angles_deg[order].numpy(), decimals=4)
    write_tlt(out / f"{stem}.rawtlt", geometry.nominal_angles_deg[order].numpy())
    write_xf(out / f"{stem}.xf", xf_transforms(geometry, pixel_size_a=pixel, order=order))
    mdoc_path = out / f"{stem}.mrc.mdoc"
    write_mdoc(mdoc_path, _mdoc(sim, order, stack, movie_names))

    _write_mrc(truth_dir / f"{stem}_clean.mrc", sim.clean_counts[order].numpy(), pixel_size_a=pixel)
    _write_mrc(truth_dir / f"{stem}_phase.mrc", sim.phase_rad[order].numpy(), pixel_size_a=pixel)
    for s in species:
        volume = s.potential_v.detach().cpu().float().numpy()
        _write_mrc(truth_dir / f"species_{s.name}.mrc", volume, pixel_size_a=s.pixel_size_a)
    truth = write_ground_truth_json(truth_dir, _truth_document(sim, order, seed, species))
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


def read_tilt_series_truth(folder: str | Path) -> TiltSeriesTruth:
    """Read the ground truth of a tilt series written by :func:`write_tilt_series_dataset`.

    ``folder`` is the dataset folder or its ``ground_truth`` folder.

    Raises
    ------
    MissingFileError, FileFormatError
        No ``ground_truth.json``, not a tilt series, or an unknown schema version.
    """
    folder = Path(folder)
    if folder.name == GROUND_TRUTH_FOLDER:
        folder = folder.parent
    path = folder / GROUND_TRUTH_FOLDER / "ground_truth.json"
    if not path.is_file():
        raise MissingFileError(path, "no ground_truth.json", "simulate a tilt series first")
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise FileFormatError(path, f"not valid JSON ({error})") from error
    if doc.get("kind") != "tilt_series":
        raise FileFormatError(path, f"not a tilt-series ground truth (kind {doc.get('kind')!r})")
    if doc.get("schema_version") != TILT_GROUND_TRUTH_SCHEMA_VERSION:
        raise FileFormatError(path, f"unknown schema_version {doc.get('schema_version')!r}")
    settings = TiltSeriesSettings.model_validate(doc["settings"])
    tilts = doc["tilts"]
    to_acq = torch.tensor([t["acquisition_index"] for t in tilts], dtype=torch.int64)
    by_acq = sorted(tilts, key=lambda t: int(t["acquisition_index"]))

    def column(key: str) -> torch.Tensor:
        return torch.tensor([t[key] for t in by_acq], dtype=torch.float64)

    geometry = TiltSeriesGeometry(
        nominal_angles_deg=column("nominal_angle_deg"),
        angle_errors_deg=column("angle_error_deg"),
        tilt_axis_angle_deg=float(doc["tilt_axis_angle_deg"]),
        shifts_a=column("shift_a").reshape(-1, 2),
        defocus_um=column("defocus_um"),
        astig_x_um=column("astig_x_um"),
        astig_y_um=column("astig_y_um"),
        target_defocus_um=settings.target_defocus_um,
        dose_e_per_a2=column("dose_e_per_a2"),
        frame_shifts_a=column("frame_shifts_a").reshape(len(by_acq), -1, 2),
    )
    names = tuple(str(s["name"]) for s in doc["species"])
    rows = doc["particles"]
    euler = torch.tensor([r["euler_deg"] for r in rows], dtype=torch.float64).reshape(-1, 3)
    particles = SpecimenParticles(
        positions_a=torch.tensor([r["position_a"] for r in rows], dtype=torch.float64).reshape(
            -1, 3
        ),
        orientations=euler_to_matrix(euler),
        species_index=torch.tensor([names.index(r["species"]) for r in rows], dtype=torch.int64),
    )
    n = len(tilts)
    return TiltSeriesTruth(
        document=doc,
        settings=settings,
        geometry=geometry,
        particles=particles,
        species_names=names,
        stack_to_acquisition=to_acq,
        particle_defocus_um=torch.tensor(
            [r["defocus_um"] for r in rows], dtype=torch.float64
        ).reshape(-1, n),
        particle_positions_px=torch.tensor(
            [r["image_position_px"] for r in rows], dtype=torch.float64
        ).reshape(-1, n, 2),
        folder=folder,
    )
