"""Export the particles of many micrographs: filter, extract, write, merge (docs/relion_export.md).

:func:`export_particles` is the batch entry point that the CLI and the pipeline call. Each
accepted micrograph is extracted and written on its own (:mod:`.particle_files`); a micrograph
that fails with a :class:`~cryowarp.errors.CryowarpInputError` is recorded with its reason and
the others go on. The merged ``particles.star`` (and ``particles_odd.star`` /
``particles_even.star`` for the half stacks) is then derived from the per-micrograph STAR
files, so it can be regenerated at any time with :func:`merge_particle_stars`.

A micrograph whose per-micrograph STAR file was written with the same extraction settings and
is newer than its inputs is not extracted again (``reuse=True``).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

from cryowarp.errors import CryowarpInputError
from cryowarp.io.files import write_text_atomically
from cryowarp.preprocess.export.filters import (
    ExportFilters,
    FilterDecision,
    apply_filters,
    latest_particles,
)
from cryowarp.preprocess.export.micrograph_particles import extract_micrograph_particles
from cryowarp.preprocess.export.particle_files import (
    HalfStack,
    merge_particle_stars,
    particle_file_paths,
    write_micrograph_particles,
)
from cryowarp.preprocess.export.particle_set import ParticleSet
from cryowarp.preprocess.export.settings import ExtractionSettings
from cryowarp.preprocess.export.sources import MicrographSource

__all__ = ["ParticleExport", "export_particles"]

_SETTINGS_FILE = "extraction_settings.json"


@dataclass(frozen=True)
class ParticleExport:
    """What :func:`export_particles` did.

    Attributes
    ----------
    star, odd_star, even_star:
        The merged STAR files (``None`` when not written: no particles, or no half stacks).
    n_particles:
        Particles in ``star``.
    counts:
        Particles written per exported micrograph.
    reused:
        Micrographs whose earlier extraction was kept.
    failures:
        Micrograph name → reason, for micrographs that could not be extracted.
    decisions:
        The quality-filter decision of every micrograph.
    """

    star: Path | None
    odd_star: Path | None
    even_star: Path | None
    n_particles: int
    counts: dict[str, int] = field(default_factory=dict)
    reused: tuple[str, ...] = ()
    failures: dict[str, str] = field(default_factory=dict)
    decisions: tuple[FilterDecision, ...] = ()


def _settings_text(settings: ExtractionSettings) -> str:
    return json.dumps(settings.model_dump(mode="json"), sort_keys=True, indent=1) + "\n"


def _is_current(star: Path, source: MicrographSource, settings_same: bool) -> bool:
    if not settings_same or not star.is_file():
        return False
    inputs = [source.motion_metadata_path, source.ctf_path, source.average_path]
    stamp = star.stat().st_mtime
    return all(p is None or not p.is_file() or p.stat().st_mtime <= stamp for p in inputs)


def export_particles(
    sources: Sequence[MicrographSource],
    particle_sets: Mapping[str, ParticleSet],
    settings: ExtractionSettings,
    *,
    out_dir: str | os.PathLike[str],
    filters: ExportFilters | None = None,
    latest_n_particles: int | None = None,
    star_path: str | os.PathLike[str] | None = None,
    root: str | os.PathLike[str] | None = None,
    reuse: bool = True,
    device: torch.device | str = "cpu",
    progress: Callable[[str, int, int], None] | None = None,
) -> ParticleExport:
    """Filter micrographs, extract their particles and write the merged STAR files.

    Parameters
    ----------
    sources:
        The micrographs (:func:`~.sources.scan_processing_folder`).
    particle_sets:
        Particles by micrograph name (:func:`~.coordinates.read_coordinates`, a picker);
        micrographs without an entry export no particles.
    settings:
        How particles are extracted.
    out_dir:
        Export folder (``particles/`` inside it; :mod:`.particle_files`).
    filters:
        Which micrographs are exported (default: all with a usable CTF).
    latest_n_particles:
        Keep only the most recent accepted micrographs that hold this many particles (a
        streaming set for downstream processing).
    star_path:
        The merged file (default ``out_dir/particles.star``; ``_odd``/``_even`` beside it).
    root:
        Folder the merged paths are relative to (default: the folder of ``star_path``).
    reuse:
        Keep a micrograph's earlier extraction when its settings and inputs are unchanged.
    progress:
        Called with the micrograph name, the number done and the total.
    """
    out = Path(out_dir)
    star = Path(star_path) if star_path is not None else out / "particles.star"
    counts_in = {name: len(p) for name, p in particle_sets.items()}
    decisions = apply_filters(sources, filters or ExportFilters(), particle_counts=counts_in)
    chosen = {d.name for d in decisions if d.accepted}
    if latest_n_particles is not None:
        chosen = set(latest_particles(sources, decisions, counts_in, latest_n_particles))
    todo = [s for s in sources if s.name in chosen and counts_in.get(s.name, 0) > 0]

    (out / "particles").mkdir(parents=True, exist_ok=True)
    settings_file = out / "particles" / _SETTINGS_FILE
    text = _settings_text(settings)
    same = settings_file.is_file() and settings_file.read_text() == text
    if not same:  # earlier extractions with other settings must not be reused
        write_text_atomically(settings_file, text)

    counts: dict[str, int] = {}
    failures: dict[str, str] = {}
    reused: list[str] = []
    stars: list[Path] = []
    names: list[str] = []
    for done, source in enumerate(todo):
        files = particle_file_paths(out, source.name, odd_even=settings.odd_even)
        if reuse and _is_current(files.star, source, same):
            reused.append(source.name)
        else:
            try:
                extracted = extract_micrograph_particles(
                    source, particle_sets[source.name], settings, device=device
                )
            except CryowarpInputError as error:
                failures[source.name] = str(error)
                continue
            if len(extracted.particles) == 0:
                failures[source.name] = "no particle left after leaving out edge particles"
                continue
            files = write_micrograph_particles(extracted, out, float16=settings.float16)
        stars.append(files.star)
        names.append(source.name)
        if progress is not None:
            progress(source.name, done + 1, len(todo))

    written: dict[HalfStack, Path | None] = {"full": None, "odd": None, "even": None}
    if stars:
        halves: tuple[HalfStack, ...] = ("full", "odd", "even") if settings.odd_even else ("full",)
        targets: dict[HalfStack, Path] = {
            half: star if half == "full" else star.with_name(f"{star.stem}_{half}{star.suffix}")
            for half in halves
        }
        sizes = merge_particle_stars(stars, targets, out_dir=out, root=root)
        counts = dict(zip(names, sizes, strict=True))
        written.update(targets)
    return ParticleExport(
        star=written["full"],
        odd_star=written["odd"],
        even_star=written["even"],
        n_particles=sum(counts.values()),
        counts=counts,
        reused=tuple(reused),
        failures=failures,
        decisions=tuple(decisions),
    )
