"""Give an existing particle table the local defocus of cryowarp's CTF estimates.

For every particle whose micrograph (:func:`~cryowarp.preprocess.export.coordinates.
micrograph_key` of ``rlnMicrographName``) has a usable :class:`CtfResult`, the mean defocus is
read from the result's spatial grid at the particle's centre and the astigmatism, its angle,
the phase shift and the fit resolution from the result (docs/conventions.md §6):

- ``rlnDefocusU = (mean + δ) · 10⁴``, ``rlnDefocusV = (mean − δ) · 10⁴`` (Å; ``δ`` =
  :attr:`CtfResult.astigmatism_um`), ``rlnDefocusAngle`` (degrees),
- ``rlnPhaseShift`` (degrees), ``rlnCtfMaxResolution`` (Å).

The particle's centre in the micrograph is ``rlnCoordinate × micrograph pixel size −
rlnOriginX/YAngst`` (§4), in Å from the centre of pixel (0, 0), the frame the CTF grid uses.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
import pandas as pd
import torch

from cryowarp.io.relion import ParticleTable
from cryowarp.preprocess.ctf.result import CtfResult
from cryowarp.preprocess.export._coordinates_names import micrograph_key
from cryowarp.preprocess.export._coordinates_relion import micrograph_pixel_size_a

__all__ = ["UPDATED_COLUMNS", "update_particle_defocus"]

UPDATED_COLUMNS = (
    "rlnDefocusU",
    "rlnDefocusV",
    "rlnDefocusAngle",
    "rlnPhaseShift",
    "rlnCtfMaxResolution",
)
"""The columns :func:`update_particle_defocus` writes."""

_DEFAULTS = {"rlnPhaseShift": 0.0}
"""Value of a newly added column in rows without an estimate (others get NaN)."""


def update_particle_defocus(
    table: ParticleTable,
    ctf_by_micrograph: Mapping[str, CtfResult],
    *,
    pixel_size_a: float | None = None,
) -> tuple[ParticleTable, list[str]]:
    """A copy of ``table`` with the CTF columns of particles on estimated micrographs updated.

    Parameters
    ----------
    table:
        Particles with ``rlnMicrographName`` and ``rlnCoordinateX/Y`` (pixels).
    ctf_by_micrograph:
        CTF estimates by item name (movie stem); failed results count as absent.
    pixel_size_a:
        Micrograph pixel size (Å) for optics groups without ``rlnMicrographPixelSize``.

    Returns
    -------
    (ParticleTable, list[str])
        The updated table (``table`` itself is not modified; rows of other micrographs keep
        their values, and a column that was absent gets NaN there, 0 for ``rlnPhaseShift``)
        and the sorted names of micrographs without a usable estimate.

    Raises
    ------
    MissingColumnError
        ``rlnMicrographName`` or ``rlnCoordinateX/Y`` is absent, or a micrograph pixel size
        is needed and unknown.
    """
    names = [micrograph_key(name) for name in table.micrograph_names()]
    usable = {k: r for k, r in ctf_by_micrograph.items() if not r.failed}
    missing = sorted({n for n in names if n not in usable})
    frame = table.frame
    rows = np.array([n in usable for n in names], dtype=bool)
    if rows.any():
        centres = _centres_a(table, pixel_size_a=pixel_size_a)
        values = {c: _column(frame, c) for c in UPDATED_COLUMNS}
        for name in sorted({n for n in names if n in usable}):
            index = np.flatnonzero(np.array(names, dtype=object) == name)
            result = usable[name]
            mean_um = result.defocus_at(torch.from_numpy(centres[index])).numpy()
            values["rlnDefocusU"][index] = (mean_um + result.astigmatism_um) * 1e4
            values["rlnDefocusV"][index] = (mean_um - result.astigmatism_um) * 1e4
            values["rlnDefocusAngle"][index] = result.astigmatism_angle_deg
            values["rlnPhaseShift"][index] = result.phase_shift_deg
            values["rlnCtfMaxResolution"][index] = result.resolution_a
        for column, value in values.items():
            frame[column] = value
    return ParticleTable(frame, table.optics, source=table.source), missing


def _column(frame: pd.DataFrame, column: str) -> np.ndarray:
    if column in frame.columns:
        return pd.to_numeric(frame[column]).to_numpy(dtype=np.float64).copy()
    return np.full(len(frame), _DEFAULTS.get(column, math.nan), dtype=np.float64)


def _centres_a(table: ParticleTable, *, pixel_size_a: float | None) -> np.ndarray:  # (n, 2)
    pixel = micrograph_pixel_size_a(table, pixel_size_a=pixel_size_a)
    coordinates = table.coordinates_px()[:, :2]
    centres: np.ndarray = coordinates * pixel[:, None] - table.origins_a()[:, :2]
    return centres
