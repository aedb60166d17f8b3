"""RELION ``micrographs_ctf.star`` tables from CTF results.

One row per successful estimate, with RELION's CTF columns: ``rlnDefocusU/V`` in Å,
``rlnDefocusAngle`` and ``rlnPhaseShift`` in degrees, ``rlnCtfAstigmatism`` (``|U − V|`` in Å),
``rlnCtfMaxResolution`` in Å and ``rlnCtfFigureOfMerit`` (conventions: docs/conventions.md §6).
Optics groups are made from the distinct (pixel size, voltage, Cs, amplitude contrast) of the
results unless given. Failed estimates are left out: RELION cannot use a row of NaNs, and the
reason of each failure lives in the item's own metadata.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence

import pandas as pd

from cryowarp.errors import DimensionMismatchError
from cryowarp.io.relion import MicrographTable, OpticsGroup, write_micrographs
from cryowarp.preprocess.ctf.result import CtfResult

__all__ = ["ctf_micrograph_table", "write_micrographs_ctf_star"]

_UM_TO_A = 1.0e4


def _optics_key(result: CtfResult) -> tuple[float, float, float, float]:
    return (result.pixel_size_a, result.voltage_kv, result.cs_mm, result.amplitude_contrast)


def _optics_groups(results: Sequence[CtfResult]) -> list[OpticsGroup]:
    keys = list(dict.fromkeys(_optics_key(r) for r in results))
    return [
        OpticsGroup(
            optics_group=i + 1,
            name=f"opticsGroup{i + 1}",
            pixel_size_a=pixel,
            voltage_kv=voltage,
            cs_mm=cs,
            amplitude_contrast=contrast,
        )
        for i, (pixel, voltage, cs, contrast) in enumerate(keys)
    ]


def _group_of(result: CtfResult, optics: Sequence[OpticsGroup]) -> int:
    key = _optics_key(result)
    for group in optics:
        known = (group.pixel_size_a, group.voltage_kv, group.cs_mm, group.amplitude_contrast)
        if all(math.isclose(a, b, rel_tol=1e-6) for a, b in zip(key, known, strict=True)):
            return group.optics_group
    raise DimensionMismatchError(
        None,
        f"no optics group matches the CTF result's optics (pixel {key[0]} Å, {key[1]} kV, "
        f"Cs {key[2]} mm, amplitude contrast {key[3]})",
    )


def ctf_micrograph_table(
    micrograph_names: Sequence[str],
    results: Sequence[CtfResult],
    *,
    optics: Sequence[OpticsGroup] | None = None,
) -> tuple[list[OpticsGroup], MicrographTable]:
    """The optics groups and the micrograph table of a batch of CTF estimates.

    Parameters
    ----------
    micrograph_names:
        ``rlnMicrographName`` of each result (paths as RELION should read them).
    results:
        One :class:`CtfResult` per name; failed ones are left out of the table.
    optics:
        Optics groups to assign rows to (matched on pixel size, voltage, Cs and amplitude
        contrast); by default one group per distinct combination in ``results`` (failed ones
        included when their optics are known, so that a batch without a success still writes a
        readable file).

    Returns
    -------
    (optics, table)
        The optics groups used and a :class:`~cryowarp.io.relion.MicrographTable` whose
        rows follow the order of the successful results.
    """
    if len(micrograph_names) != len(results):
        raise DimensionMismatchError(
            None, f"{len(micrograph_names)} micrograph names for {len(results)} CTF results"
        )
    kept = [(name, r) for name, r in zip(micrograph_names, results, strict=True) if not r.failed]
    known = [r for r in results if all(math.isfinite(v) for v in _optics_key(r))]
    groups = list(optics) if optics is not None else _optics_groups(known)
    rows = [
        {
            "rlnMicrographName": str(name),
            "rlnOpticsGroup": _group_of(r, groups),
            "rlnDefocusU": r.defocus_u_um * _UM_TO_A,
            "rlnDefocusV": r.defocus_v_um * _UM_TO_A,
            "rlnDefocusAngle": r.astigmatism_angle_deg,
            "rlnCtfAstigmatism": abs(r.defocus_u_um - r.defocus_v_um) * _UM_TO_A,
            "rlnPhaseShift": r.phase_shift_deg,
            "rlnCtfMaxResolution": r.resolution_a,
            "rlnCtfFigureOfMerit": r.fit_score,
        }
        for name, r in kept
    ]
    columns = [
        "rlnMicrographName",
        "rlnOpticsGroup",
        "rlnDefocusU",
        "rlnDefocusV",
        "rlnDefocusAngle",
        "rlnCtfAstigmatism",
        "rlnPhaseShift",
        "rlnCtfMaxResolution",
        "rlnCtfFigureOfMerit",
    ]
    frame = pd.DataFrame.from_records(rows, columns=columns)
    frame["rlnOpticsGroup"] = frame["rlnOpticsGroup"].astype("int64")
    for column in columns[2:]:
        frame[column] = frame[column].astype("float64")
    return groups, MicrographTable(frame, groups)


def write_micrographs_ctf_star(
    path: str | os.PathLike[str],
    micrograph_names: Sequence[str],
    results: Sequence[CtfResult],
    *,
    optics: Sequence[OpticsGroup] | None = None,
) -> int:
    """Write ``micrographs_ctf.star`` (RELION 3.1+ layout, atomically).

    Parameters are those of :func:`ctf_micrograph_table`.

    Returns
    -------
    int
        The number of rows written (the successful estimates).
    """
    groups, table = ctf_micrograph_table(micrograph_names, results, optics=optics)
    write_micrographs(path, groups, table)
    return len(table)
