"""Tables of the RELION 5 STAR files the exporter writes: optics groups, corrected micrographs
and the relative paths that go into them.

Pure functions: they build :class:`~cryowarp.io.relion.OpticsGroup` records and
:class:`~cryowarp.io.relion.MicrographTable` tables that
:func:`~cryowarp.io.relion.write_particles` / :func:`~cryowarp.io.relion.write_micrographs`
write and :func:`~cryowarp.io.relion_validate.validate_relion_star` accepts. Column meanings
and units: docs/relion_export.md; conventions: docs/conventions.md.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from cryowarp.errors import InvalidValuesError, MissingColumnError
from cryowarp.io.relion import MicrographTable, OpticsGroup

__all__ = [
    "CorrectedMicrograph",
    "corrected_micrographs_table",
    "micrograph_optics_group",
    "particle_optics_group",
    "relative_path",
]


def _check_optics(
    optics_group: int,
    name: str,
    positive: dict[str, float | int],
    voltage_kv: float,
    cs_mm: float,
    amplitude_contrast: float,
) -> None:
    """Raise InvalidValuesError naming every argument RELION could not use."""
    problems = [
        f"{key} must be > 0, got {value}" for key, value in positive.items() if not value > 0
    ]
    if optics_group < 1:
        problems.append(f"optics_group must be >= 1, got {optics_group}")
    if not name or any(c.isspace() for c in name):
        problems.append(f"name must be non-empty text without spaces, got {name!r}")
    if not voltage_kv > 0:
        problems.append(f"voltage_kv must be > 0, got {voltage_kv}")
    if not math.isfinite(cs_mm):
        problems.append(f"cs_mm must be finite, got {cs_mm}")
    if not 0 <= amplitude_contrast < 1:
        problems.append(f"amplitude_contrast must be in [0, 1), got {amplitude_contrast}")
    if problems:
        raise InvalidValuesError(None, "; ".join(problems))


def particle_optics_group(
    *,
    optics_group: int,
    name: str,
    image_pixel_size_a: float,
    image_size_px: int,
    micrograph_original_pixel_size_a: float,
    voltage_kv: float,
    cs_mm: float,
    amplitude_contrast: float,
    phase_flipped: bool,
    ctf_premultiplied: bool,
) -> OpticsGroup:
    """One ``data_optics`` row of a particle STAR file for RELION 5.

    Written as ``rlnImagePixelSize`` (Å, extracted particles), ``rlnImageSize`` (px),
    ``rlnImageDimensionality`` 2, ``rlnMicrographOriginalPixelSize`` (Å, unbinned movie),
    ``rlnVoltage`` (kV), ``rlnSphericalAberration`` (mm), ``rlnAmplitudeContrast``,
    ``rlnCtfDataArePhaseFlipped`` and ``rlnCtfDataAreCtfPremultiplied`` (0/1).

    Raises
    ------
    InvalidValuesError
        A group number < 1, a name that is empty or has spaces, a size or pixel size <= 0, a
        voltage <= 0, an amplitude contrast outside [0, 1).
    """
    pixels = {
        "image_pixel_size_a": image_pixel_size_a,
        "micrograph_original_pixel_size_a": micrograph_original_pixel_size_a,
        "image_size_px": image_size_px,
    }
    _check_optics(optics_group, name, pixels, voltage_kv, cs_mm, amplitude_contrast)
    return OpticsGroup(
        optics_group=int(optics_group),
        name=name,
        pixel_size_a=float(image_pixel_size_a),
        voltage_kv=float(voltage_kv),
        cs_mm=float(cs_mm),
        amplitude_contrast=float(amplitude_contrast),
        image_size_px=int(image_size_px),
        image_dimensionality=2,
        micrograph_original_pixel_size_a=float(micrograph_original_pixel_size_a),
        ctf_premultiplied=bool(ctf_premultiplied),
        extra={"rlnCtfDataArePhaseFlipped": int(bool(phase_flipped))},
    )


def micrograph_optics_group(
    *,
    optics_group: int,
    name: str,
    micrograph_pixel_size_a: float,
    original_pixel_size_a: float,
    voltage_kv: float,
    cs_mm: float,
    amplitude_contrast: float,
) -> OpticsGroup:
    """One ``data_optics`` row of a micrograph STAR file (``corrected_micrographs.star``,
    ``micrographs_ctf.star``): ``rlnMicrographPixelSize`` (Å, the written micrographs) and
    ``rlnMicrographOriginalPixelSize`` (Å, the unbinned movie) besides voltage (kV), Cs (mm)
    and amplitude contrast.

    Raises
    ------
    InvalidValuesError
        As :func:`particle_optics_group`.
    """
    pixels = {
        "micrograph_pixel_size_a": micrograph_pixel_size_a,
        "original_pixel_size_a": original_pixel_size_a,
    }
    _check_optics(optics_group, name, pixels, voltage_kv, cs_mm, amplitude_contrast)
    return OpticsGroup(
        optics_group=int(optics_group),
        name=name,
        pixel_size_a=float(micrograph_pixel_size_a),
        voltage_kv=float(voltage_kv),
        cs_mm=float(cs_mm),
        amplitude_contrast=float(amplitude_contrast),
        micrograph_pixel_size_a=float(micrograph_pixel_size_a),
        micrograph_original_pixel_size_a=float(original_pixel_size_a),
    )


@dataclass(frozen=True)
class CorrectedMicrograph:
    """One row of ``corrected_micrographs.star``.

    Attributes
    ----------
    micrograph_name:
        The motion-corrected average (``rlnMicrographName``), a path as RELION should read it
        (see :func:`relative_path`).
    metadata_name:
        The movie's motion STAR file (``rlnMicrographMetadata``), read by Bayesian polishing.
    optics_group:
        ``rlnOpticsGroup``, a group of the optics the table is made with.
    accum_motion_total_a, accum_motion_early_a, accum_motion_late_a:
        ``rlnAccumMotionTotal/Early/Late``: accumulated global motion in Å over the whole
        movie, its first frames and its last frames (RELION's ``metadata_label.h``).
    """

    micrograph_name: str
    metadata_name: str
    optics_group: int
    accum_motion_total_a: float
    accum_motion_early_a: float
    accum_motion_late_a: float

    def __post_init__(self) -> None:
        motions = (self.accum_motion_total_a, self.accum_motion_early_a, self.accum_motion_late_a)
        if not all(math.isfinite(m) and m >= 0 for m in motions):
            raise InvalidValuesError(
                None, f"{self.micrograph_name}: accumulated motions must be >= 0, got {motions}"
            )
        if not self.micrograph_name.strip() or not self.metadata_name.strip():
            raise InvalidValuesError(None, "micrograph_name and metadata_name must not be empty")


def corrected_micrographs_table(
    rows: Sequence[CorrectedMicrograph], *, optics: Sequence[OpticsGroup]
) -> tuple[list[OpticsGroup], MicrographTable]:
    """``(optics, table)`` for :func:`~cryowarp.io.relion.write_micrographs`, one row per
    corrected micrograph, columns ``rlnMicrographName``, ``rlnMicrographMetadata``,
    ``rlnOpticsGroup``, ``rlnAccumMotionTotal/Early/Late`` (Å).

    Raises
    ------
    MissingColumnError
        A row names an optics group that ``optics`` lacks, or a group has no
        ``micrograph_original_pixel_size_a`` (RELION needs ``rlnMicrographOriginalPixelSize``
        for corrected micrographs).
    InvalidValuesError
        Two optics groups share a number.
    """
    groups = list(optics)
    lacking = [g.optics_group for g in groups if g.micrograph_original_pixel_size_a is None]
    if lacking:
        raise MissingColumnError(
            None, f"optics group(s) {lacking} have no micrograph_original_pixel_size_a"
        )
    frame = pd.DataFrame(
        {
            "rlnMicrographName": [r.micrograph_name for r in rows],
            "rlnMicrographMetadata": [r.metadata_name for r in rows],
            "rlnOpticsGroup": pd.Series([r.optics_group for r in rows], dtype="int64"),
            "rlnAccumMotionTotal": pd.Series([r.accum_motion_total_a for r in rows], dtype=float),
            "rlnAccumMotionEarly": pd.Series([r.accum_motion_early_a for r in rows], dtype=float),
            "rlnAccumMotionLate": pd.Series([r.accum_motion_late_a for r in rows], dtype=float),
        }
    )
    return groups, MicrographTable(frame, groups)


def relative_path(path: str | os.PathLike[str], root: str | os.PathLike[str]) -> str:
    """``path`` relative to the folder ``root``, with ``/`` separators (``..`` where ``path``
    lies outside ``root``), as written into STAR files that RELION reads from ``root``.

    Relative arguments are taken from the current folder; symbolic links are not resolved, so
    the result follows the folder layout the user sees.
    """
    relative = os.path.relpath(os.path.abspath(path), os.path.abspath(root))
    return Path(relative).as_posix()
