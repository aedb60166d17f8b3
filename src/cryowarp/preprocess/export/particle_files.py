"""Per-micrograph particle files and the project-wide ``particles.star`` derived from them.

Layout under an export folder ``OUT`` (docs/relion_export.md):

- ``OUT/particles/<name>.mrcs`` — the particle stack (``odd/``, ``even/`` hold the half
  stacks from odd and even frames);
- ``OUT/particles/<name>.star`` — the particles of that micrograph in RELION 3.1+ form, image
  and micrograph paths relative to ``OUT``.

The per-micrograph STAR files are the item metadata of extraction: :func:`merge_particle_stars`
joins any selection of them into one ``particles.star`` (optics groups merged and renumbered,
paths made relative to a chosen folder) at any time, without extracting again. Every file is
written atomically.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

from cryowarp.errors import InvalidValuesError
from cryowarp.io.mrc import write_mrc
from cryowarp.io.relion import OpticsGroup, ParticleTable, read_particles, write_particles
from cryowarp.preprocess.export.micrograph_particles import ExtractedMicrograph
from cryowarp.preprocess.export.star_tables import particle_optics_group, relative_path

__all__ = [
    "HalfStack",
    "ParticleFiles",
    "merge_particle_stars",
    "particle_file_paths",
    "write_micrograph_particles",
]

HalfStack = Literal["full", "odd", "even"]

_POSE_COLUMNS = ("rlnAngleRot", "rlnAngleTilt", "rlnAnglePsi")


@dataclass(frozen=True)
class ParticleFiles:
    """The files of one micrograph's particles (``odd``/``even`` ``None`` when not made)."""

    star: Path
    stack: Path
    odd: Path | None
    even: Path | None


def particle_file_paths(
    out_dir: str | os.PathLike[str], name: str, *, odd_even: bool
) -> ParticleFiles:
    """Where the particles of micrograph ``name`` go under ``out_dir`` (module docstring)."""
    root = Path(out_dir) / "particles"
    return ParticleFiles(
        star=root / f"{name}.star",
        stack=root / f"{name}.mrcs",
        odd=root / "odd" / f"{name}.mrcs" if odd_even else None,
        even=root / "even" / f"{name}.mrcs" if odd_even else None,
    )


def _table(
    extracted: ExtractedMicrograph, files: ParticleFiles, out_dir: Path
) -> tuple[OpticsGroup, pd.DataFrame]:
    source, particles, ctf = extracted.source, extracted.particles, extracted.ctf
    n = len(particles)
    optics = particle_optics_group(
        optics_group=1,
        name="opticsGroup1",
        image_pixel_size_a=extracted.pixel_size_a,
        image_size_px=int(extracted.stack.shape[-1]),
        micrograph_original_pixel_size_a=source.raw_pixel_size_a,
        voltage_kv=ctf.voltage_kv,
        cs_mm=ctf.cs_mm,
        amplitude_contrast=ctf.amplitude_contrast,
        phase_flipped=extracted.ctf_correction == "phase_flip",
        ctf_premultiplied=extracted.ctf_correction == "premultiply",
    )
    # rlnCoordinateX/Y are in pixels of the averages: say which (RELION knows the label)
    optics = replace(optics, micrograph_pixel_size_a=extracted.micrograph_pixel_size_a)
    stack_name = relative_path(files.stack, out_dir)
    micrograph = relative_path(source.average_path, out_dir) if source.average_path else source.name
    coordinates = particles.positions_px(extracted.micrograph_pixel_size_a).numpy()
    columns: dict[str, object] = {
        "rlnCoordinateX": coordinates[:, 0],
        "rlnCoordinateY": coordinates[:, 1],
        "rlnImageName": [f"{i + 1:06d}@{stack_name}" for i in range(n)],
        "rlnMicrographName": [micrograph] * n,
        "rlnOpticsGroup": np.ones(n, dtype=np.int64),
        "rlnDefocusU": ctf.defocus_u_a.numpy(),
        "rlnDefocusV": ctf.defocus_v_a.numpy(),
        "rlnDefocusAngle": ctf.defocus_angle_deg.numpy(),
        "rlnPhaseShift": np.full(n, ctf.phase_shift_deg),
        "rlnCtfBfactor": np.zeros(n),
        "rlnCtfScalefactor": np.ones(n),
        "rlnCtfMaxResolution": np.full(n, ctf.ctf_max_resolution_a),
        "rlnCtfFigureOfMerit": np.full(n, ctf.ctf_figure_of_merit),
    }
    if particles.euler_deg is not None:
        for i, column in enumerate(_POSE_COLUMNS):
            columns[column] = particles.euler_deg[:, i].numpy()
    if particles.origins_a is not None:
        columns["rlnOriginXAngst"] = particles.origins_a[:, 0].numpy()
        columns["rlnOriginYAngst"] = particles.origins_a[:, 1].numpy()
    frame = pd.DataFrame(columns)
    if particles.extra is not None:
        extra = particles.extra.drop(columns=[c for c in particles.extra if c in frame])
        frame = pd.concat([frame, extra.reset_index(drop=True)], axis=1)
    return optics, frame


def write_micrograph_particles(
    extracted: ExtractedMicrograph,
    out_dir: str | os.PathLike[str],
    *,
    float16: bool = False,
) -> ParticleFiles:
    """Write the stacks and the per-micrograph STAR file of ``extracted`` (atomically; the
    STAR file last, so that it exists only when its stacks do)."""
    root = Path(out_dir)
    files = particle_file_paths(root, extracted.source.name, odd_even=extracted.odd is not None)
    mode = 12 if float16 else 2
    px = extracted.pixel_size_a
    for path, stack in (
        (files.stack, extracted.stack),
        (files.odd, extracted.odd),
        (files.even, extracted.even),
    ):
        if path is not None and stack is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            write_mrc(path, stack.numpy(), voxel_size_a=px, mode=mode, is_stack=True)
    optics, frame = _table(extracted, files, root)
    write_particles(files.star, [optics], ParticleTable(frame, [optics], source=files.star))
    return files


def _optics_key(group: OpticsGroup) -> tuple[object, ...]:
    return (
        round(group.pixel_size_a, 6),
        group.image_size_px,
        round(group.voltage_kv, 6),
        round(group.cs_mm, 6),
        round(group.amplitude_contrast, 6),
        None
        if group.micrograph_original_pixel_size_a is None
        else round(group.micrograph_original_pixel_size_a, 6),
        group.ctf_premultiplied,
        None if group.micrograph_pixel_size_a is None else round(group.micrograph_pixel_size_a, 6),
        tuple(sorted((k, str(v)) for k, v in group.extra.items())),
    )


def _half_name(name: str, half: HalfStack) -> str:
    if half == "full":
        return name
    index, _, path = name.partition("@")
    folder, _, file = path.rpartition("/")
    return f"{index}@{folder}/{half}/{file}" if folder else f"{index}@{half}/{file}"


def merge_particle_stars(
    stars: Sequence[str | os.PathLike[str]],
    targets: Mapping[HalfStack, str | os.PathLike[str]],
    *,
    out_dir: str | os.PathLike[str],
    root: str | os.PathLike[str] | None = None,
) -> list[int]:
    """Join per-micrograph particle STAR files into ``particles.star`` (and its halves).

    Parameters
    ----------
    stars:
        Per-micrograph files written by :func:`write_micrograph_particles` (in this order);
        each is read once.
    targets:
        The merged file of each stack to point at: ``"full"`` the stacks, ``"odd"``/``"even"``
        the half stacks (each written atomically).
    out_dir:
        The export folder the per-micrograph paths are relative to.
    root:
        Folder the merged paths are made relative to (RELION resolves paths from its
        project folder); default: the folder of each merged file.

    Returns
    -------
    list[int]
        The number of particles of each input file.
    """
    export = Path(out_dir)
    groups: dict[tuple[object, ...], OpticsGroup] = {}
    frames: list[pd.DataFrame] = []
    for star in stars:
        optics, table = read_particles(star)
        frame = table.frame
        renumber: dict[int, int] = {}
        for group in optics:
            key = _optics_key(group)
            if key not in groups:
                number = len(groups) + 1
                groups[key] = replace(group, optics_group=number, name=f"opticsGroup{number}")
            renumber[group.optics_group] = groups[key].optics_group
        frame["rlnOpticsGroup"] = [renumber[int(g)] for g in frame["rlnOpticsGroup"]]
        frames.append(frame)
    if not frames:
        raise InvalidValuesError(None, "no particle files to merge")
    merged = pd.concat(frames, ignore_index=True)
    optics_list = sorted(groups.values(), key=lambda g: g.optics_group)
    for half, target in targets.items():
        out = Path(target)
        base = Path(root) if root is not None else out.parent
        rows = merged.copy()
        rows["rlnImageName"] = [
            _rebase(_half_name(str(n), half), export, base) for n in merged["rlnImageName"]
        ]
        rows["rlnMicrographName"] = [
            _rebase_path(str(n), export, base) for n in merged["rlnMicrographName"]
        ]
        write_particles(out, optics_list, ParticleTable(rows, optics_list, source=out))
    return [len(frame) for frame in frames]


def _rebase_path(name: str, export: Path, base: Path) -> str:
    if os.path.isabs(name):
        return relative_path(Path(name), base)
    return relative_path(export / name, base)


def _rebase(name: str, export: Path, base: Path) -> str:
    index, _, file = name.partition("@")
    return f"{index}@{_rebase_path(file, export, base)}"
