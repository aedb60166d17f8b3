"""Export micrographs: ``micrographs_ctf.star`` and ``corrected_micrographs.star``.

Both are derived from the per-micrograph metadata of motion correction and CTF estimation
(:class:`~.sources.MicrographSource`) and written atomically, so they can be regenerated at any
time. ``corrected_micrographs.star`` names each movie's RELION motion STAR file
(``rlnMicrographMetadata``), which RELION's Bayesian polishing reads; its accumulated motions
``rlnAccumMotionTotal/Early/Late`` (Å) are the path lengths of the global track over all
frames, over the frames whose exposure is at most 4 e⁻/Å² (early) and over the others (late),
as RELION's own motion correction reports them.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from cryowarp.io.relion import MicrographTable, OpticsGroup, write_micrographs
from cryowarp.preprocess.ctf.star import ctf_micrograph_table
from cryowarp.preprocess.export.filters import ExportFilters, FilterDecision, apply_filters
from cryowarp.preprocess.export.sources import MicrographSource
from cryowarp.preprocess.export.star_tables import (
    CorrectedMicrograph,
    corrected_micrographs_table,
    micrograph_optics_group,
    relative_path,
)

__all__ = [
    "EARLY_EXPOSURE_E_PER_A2",
    "MicrographExport",
    "accumulated_motion_a",
    "export_micrographs",
]

#: Frames up to this exposure count as "early" motion (RELION's definition).
EARLY_EXPOSURE_E_PER_A2 = 4.0


@dataclass(frozen=True)
class MicrographExport:
    """What :func:`export_micrographs` wrote: the two STAR files (``None`` when no row), the
    number of micrographs in them and the filter decision of every micrograph."""

    ctf_star: Path | None
    corrected_star: Path | None
    n_micrographs: int
    decisions: tuple[FilterDecision, ...]


def accumulated_motion_a(source: MicrographSource) -> tuple[float, float, float]:
    """``(total, early, late)`` path length (Å) of the global motion track (module doc)."""
    if source.motion is None:
        return 0.0, 0.0, 0.0
    track = source.motion.global_shifts_at().to(torch.float64)  # (n, 2)
    steps = torch.linalg.vector_norm(track[1:] - track[:-1], dim=-1)  # (n-1,)
    dose = torch.tensor(source.accumulated_dose_e_per_a2, dtype=torch.float64)
    early = dose[1:] <= EARLY_EXPOSURE_E_PER_A2 if dose.numel() == track.shape[0] else None
    total = float(steps.sum())
    early_a = float(steps[early].sum()) if early is not None else 0.0
    return total, early_a, total - early_a


def _optics(sources: Sequence[MicrographSource]) -> tuple[list[OpticsGroup], dict[str, int]]:
    groups: dict[tuple[float, ...], OpticsGroup] = {}
    member: dict[str, int] = {}
    for source in sources:
        ctf = source.ctf
        if ctf is None:
            continue
        key = (
            round(source.output_pixel_size_a, 6),
            round(source.raw_pixel_size_a, 6),
            round(ctf.voltage_kv, 6),
            round(ctf.cs_mm, 6),
            round(ctf.amplitude_contrast, 6),
        )
        if key not in groups:
            number = len(groups) + 1
            groups[key] = micrograph_optics_group(
                optics_group=number,
                name=f"opticsGroup{number}",
                micrograph_pixel_size_a=source.output_pixel_size_a,
                original_pixel_size_a=source.raw_pixel_size_a,
                voltage_kv=ctf.voltage_kv,
                cs_mm=ctf.cs_mm,
                amplitude_contrast=ctf.amplitude_contrast,
            )
        member[source.name] = groups[key].optics_group
    return list(groups.values()), member


def export_micrographs(
    sources: Sequence[MicrographSource],
    *,
    out_dir: str | os.PathLike[str],
    filters: ExportFilters | None = None,
    root: str | os.PathLike[str] | None = None,
) -> MicrographExport:
    """Write ``out_dir/micrographs_ctf.star`` and ``out_dir/corrected_micrographs.star``.

    Parameters
    ----------
    sources:
        The micrographs; those with an average and a usable CTF that pass ``filters`` are
        written (the corrected-micrographs file also needs the motion STAR file).
    out_dir:
        Where the two files go (created).
    filters:
        Quality filters (default: all with a usable CTF).
    root:
        Folder the paths inside are relative to (default ``out_dir``).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    base = Path(root) if root is not None else out
    decisions = apply_filters(sources, filters or ExportFilters())
    accepted = {d.name for d in decisions if d.accepted}
    chosen = [
        s
        for s in sources
        if s.name in accepted
        and s.average_path is not None
        and s.ctf is not None
        and not s.ctf.failed
    ]
    optics, member = _optics(chosen)
    ctf_star: Path | None = None
    corrected_star: Path | None = None
    if chosen:
        names = [relative_path(s.average_path, base) for s in chosen if s.average_path]
        results = [s.ctf for s in chosen if s.ctf is not None]
        _, table = ctf_micrograph_table(names, results, optics=optics)
        frame = table.frame
        frame["rlnOpticsGroup"] = [member[s.name] for s in chosen]
        frame["rlnMicrographMetadata"] = [
            relative_path(s.motion_star_path, base) if s.motion_star_path else "None"
            for s in chosen
        ]
        if all(s.motion_star_path is None for s in chosen):
            frame = frame.drop(columns=["rlnMicrographMetadata"])
        ctf_star = out / "micrographs_ctf.star"
        write_micrographs(ctf_star, optics, MicrographTable(frame, optics))
        rows = []
        for source in chosen:
            if source.motion_star_path is None or source.average_path is None:
                continue
            total, early, late = accumulated_motion_a(source)
            rows.append(
                CorrectedMicrograph(
                    micrograph_name=relative_path(source.average_path, base),
                    metadata_name=relative_path(source.motion_star_path, base),
                    optics_group=member[source.name],
                    accum_motion_total_a=total,
                    accum_motion_early_a=early,
                    accum_motion_late_a=late,
                )
            )
        if rows:
            groups, corrected = corrected_micrographs_table(rows, optics=optics)
            corrected_star = out / "corrected_micrographs.star"
            write_micrographs(corrected_star, groups, corrected)
    return MicrographExport(
        ctf_star=ctf_star,
        corrected_star=corrected_star,
        n_micrographs=len(chosen),
        decisions=tuple(decisions),
    )
