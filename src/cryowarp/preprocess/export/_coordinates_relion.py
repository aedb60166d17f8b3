"""Particle positions from RELION particle/coordinate STAR files and Warp 1.x STAR files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import numpy.typing as npt
import pandas as pd
import torch

from cryowarp.errors import InvalidValuesError, MissingColumnError
from cryowarp.io.relion import ParticleTable, read_particles
from cryowarp.io.star import StarBlock, read_star
from cryowarp.preprocess.export._coordinates_names import group_by_micrograph, micrograph_key
from cryowarp.preprocess.export.particle_set import ParticleSet

__all__ = [
    "empty_set",
    "is_warp_star",
    "micrograph_pixel_size_a",
    "read_relion_coordinates",
    "read_warp_coordinates",
]

_COORDINATES = ("rlnCoordinateX", "rlnCoordinateY")
_EULER = ("rlnAngleRot", "rlnAngleTilt", "rlnAnglePsi")
_ORIGINS = ("rlnOriginXAngst", "rlnOriginYAngst")
_LEGACY_ORIGINS = ("rlnOriginX", "rlnOriginY")
_LEGACY_PIXEL = ("rlnPixelSize", "rlnDetectorPixelSize", "rlnMagnification")
_NOT_EXTRA = frozenset(
    {
        # coordinates, poses and origins have their own fields in ParticleSet
        "rlnCoordinateX", "rlnCoordinateY", "rlnCoordinateZ", *_EULER, *_ORIGINS,
        *_LEGACY_ORIGINS, "rlnOriginZAngst", "rlnOriginZ",
        # images and micrographs are re-made by extraction
        "rlnImageName", "rlnImageOriginalName", "rlnMicrographName", "rlnCtfImage",
        # optics (per group, or per row in RELION 3.0 / Warp files)
        "rlnOpticsGroup", "rlnOpticsGroupName", "rlnVoltage", "rlnSphericalAberration",
        "rlnAmplitudeContrast", *_LEGACY_PIXEL, "rlnImagePixelSize",
        # the CTF is re-estimated
        "rlnDefocusU", "rlnDefocusV", "rlnDefocusAngle", "rlnPhaseShift", "rlnCtfBfactor",
        "rlnCtfScalefactor", "rlnCtfMaxResolution", "rlnCtfFigureOfMerit", "rlnCtfAstigmatism",
        "rlnCtfDefocusAverage",
    }
)  # fmt: skip


def read_relion_coordinates(
    file: Path, *, pixel_size_a: float | None, micrograph: str | None
) -> list[ParticleSet]:
    """A RELION 3.1+/5 or 3.0 particle STAR file, or a coordinate STAR file (one table of
    ``rlnCoordinateX/Y`` without ``rlnImageName``) of micrograph ``micrograph``."""
    blocks = read_star(file)
    table = _coordinate_table(file, blocks)
    if "rlnImageName" in table.columns:
        _no_single_micrograph(micrograph, file)
        if "optics" in blocks:
            return _particle_star(file, pixel_size_a=pixel_size_a)
        return _legacy_star(file, table, pixel_size_a=pixel_size_a, warp=False)
    if pixel_size_a is None:
        raise MissingColumnError(
            file,
            "a coordinate STAR file carries no pixel size",
            "pass pixel_size_a, the pixel size (Å) of the micrograph the coordinates refer to",
        )
    name = micrograph or micrograph_key(file.name)
    if len(table) == 0:
        return [empty_set(name, file)]
    return _sets(file, table, [name] * len(table), np.full(len(table), pixel_size_a))


def read_warp_coordinates(
    file: Path, *, pixel_size_a: float | None, micrograph: str | None
) -> list[ParticleSet]:
    """A Warp 1.x STAR file (RELION 3.0 layout): coordinates in pixels of the averages, whose
    pixel size is ``rlnPixelSize`` or ``rlnDetectorPixelSize`` (µm) × 10⁴ /
    ``rlnMagnification``, else ``pixel_size_a``."""
    _no_single_micrograph(micrograph, file)
    table = _coordinate_table(file, read_star(file))
    return _legacy_star(file, table, pixel_size_a=pixel_size_a, warp=True)


def is_warp_star(blocks: dict[str, StarBlock]) -> bool:
    """A legacy table (no ``data_optics``) whose ``rlnMicrographName`` points into Warp's
    ``average/`` folder."""
    if "optics" in blocks:
        return False
    for block in blocks.values():
        if isinstance(block, pd.DataFrame) and "rlnMicrographName" in block.columns:
            names = block["rlnMicrographName"].astype(str).tolist()
            return bool(names) and Path(names[0].replace("\\", "/")).parent.name == "average"
    return False


# ---------------------------------------------------------------------------- helpers


def _legacy_star(
    file: Path, table: pd.DataFrame, *, pixel_size_a: float | None, warp: bool
) -> list[ParticleSet]:
    """A table in RELION 3.0 layout (optics per row). Its pixel size (``rlnPixelSize`` or
    detector pixel × 10⁴ / magnification) is that of the particle images and converts pixel
    origins; coordinates use it only for Warp files (whose particles and averages share it),
    otherwise ``pixel_size_a``."""
    if "rlnMicrographName" not in table.columns:
        raise MissingColumnError(file, "missing column rlnMicrographName")
    image_pixel = _legacy_pixel_size_a(file, table)
    if warp and image_pixel is not None:
        pixel = image_pixel
    elif pixel_size_a is not None:
        pixel = np.full(len(table), float(pixel_size_a))
    else:
        what = "Warp's averages" if warp else "the micrographs"
        hint = f"pass pixel_size_a, the pixel size (Å) of {what}"
        if image_pixel is not None and len(image_pixel):
            hint += f"; the particle images' is {image_pixel[0]:.6g} Å"
        problem = "no micrograph pixel size" + ("" if warp else " in a RELION 3.0 table")
        raise MissingColumnError(file, problem, hint)
    table = table.copy()
    for axis in "XY":
        legacy = f"rlnOrigin{axis}"
        if legacy in table.columns and f"{legacy}Angst" not in table.columns:
            if image_pixel is None:
                raise MissingColumnError(file, f"{legacy} (pixels) without a pixel size")
            table[f"{legacy}Angst"] = _numbers(file, table, legacy) * image_pixel
    names = [micrograph_key(str(n)) for n in table["rlnMicrographName"].tolist()]
    return _sets(file, table, names, pixel)


def _particle_star(file: Path, *, pixel_size_a: float | None) -> list[ParticleSet]:
    _, particles = read_particles(file)
    frame = particles.frame
    if not set(_COORDINATES) <= set(frame.columns):
        raise MissingColumnError(file, "missing column(s) rlnCoordinateX/Y")
    pixel = micrograph_pixel_size_a(particles, pixel_size_a=pixel_size_a)
    names = [micrograph_key(n) for n in particles.micrograph_names()]
    return _sets(file, frame, names, pixel)


def micrograph_pixel_size_a(
    table: ParticleTable, *, pixel_size_a: float | None
) -> npt.NDArray[np.float64]:  # (n,)
    """Per-row micrograph pixel size: the optics group's ``rlnMicrographPixelSize``, else
    ``pixel_size_a``; raises :class:`~cryowarp.errors.MissingColumnError` otherwise."""
    by_group: dict[int, float] = {}
    for group in table.optics:
        value = group.micrograph_pixel_size_a or pixel_size_a
        if value is None:
            original = group.micrograph_original_pixel_size_a
            hint = "pass pixel_size_a, the pixel size (Å) of the micrographs"
            if original is not None:
                hint += f" (the movies' pixel size rlnMicrographOriginalPixelSize is {original} Å)"
            raise MissingColumnError(
                table.source,
                f"optics group {group.optics_group} has no rlnMicrographPixelSize",
                hint,
            )
        by_group[group.optics_group] = float(value)
    return np.array([by_group[int(i)] for i in table.optics_group_ids()], dtype=np.float64)


def _coordinate_table(file: Path, blocks: dict[str, StarBlock]) -> pd.DataFrame:
    preferred = [blocks[k] for k in ("particles", "coordinates") if k in blocks]
    candidates = [*preferred, *blocks.values()]
    for block in candidates:
        if isinstance(block, pd.DataFrame) and set(_COORDINATES) <= set(block.columns):
            return block
    raise MissingColumnError(file, "no table with rlnCoordinateX and rlnCoordinateY")


def _numbers(file: Path, frame: pd.DataFrame, column: str) -> npt.NDArray[np.float64]:
    try:
        return pd.to_numeric(frame[column]).to_numpy(dtype=np.float64)
    except (ValueError, TypeError) as error:
        raise InvalidValuesError(file, f"column {column}: {error}") from error


def _legacy_pixel_size_a(file: Path, frame: pd.DataFrame) -> npt.NDArray[np.float64] | None:
    if "rlnPixelSize" in frame.columns:
        return _numbers(file, frame, "rlnPixelSize")
    if {"rlnDetectorPixelSize", "rlnMagnification"} <= set(frame.columns):
        detector_um = _numbers(file, frame, "rlnDetectorPixelSize")
        magnification = _numbers(file, frame, "rlnMagnification")
        pixel: npt.NDArray[np.float64] = detector_um * 1e4 / magnification
        return pixel
    return None


def _sets(
    file: Path,
    frame: pd.DataFrame,
    names: list[str],
    pixel_a: npt.NDArray[np.float64],  # (n,)
) -> list[ParticleSet]:
    if np.any(~np.isfinite(pixel_a)) or np.any(pixel_a <= 0):
        raise InvalidValuesError(file, "micrograph pixel size must be positive and finite")
    coordinates = np.stack([_numbers(file, frame, c) for c in _COORDINATES], axis=-1)
    if not np.all(np.isfinite(coordinates)):
        raise InvalidValuesError(file, "NaN or Inf in rlnCoordinateX/Y")
    columns = set(frame.columns)
    euler = None
    if set(_EULER) <= columns:
        euler = np.stack([_numbers(file, frame, c) for c in _EULER], axis=-1)
    origins = None
    if set(_ORIGINS) <= columns:
        origins = np.stack([_numbers(file, frame, c) for c in _ORIGINS], axis=-1)
    kept = [c for c in frame.columns if c not in _NOT_EXTRA]
    if euler is None:  # a lone rlnAnglePsi (picking) is carried along as a column
        kept += [c for c in _EULER if c in columns]
    extra = frame[kept].reset_index(drop=True) if kept else None
    return group_by_micrograph(
        names,
        coordinates * pixel_a[:, None],
        euler_deg=euler,
        origins_a=origins,
        extra=extra,
        source=str(file),
    )


def empty_set(name: str, file: Path) -> ParticleSet:
    """A set without particles (a micrograph on which nothing was picked)."""
    return ParticleSet(name, torch.zeros((0, 2), dtype=torch.float64), source=str(file))


def _no_single_micrograph(micrograph: str | None, file: Path) -> None:
    if micrograph is not None:
        raise ValueError(
            f"{file}: names its micrographs itself; micrograph= is only for single-micrograph "
            "files (RELION coordinate STAR, .box)"
        )
