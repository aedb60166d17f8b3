"""``reconstruct_from_star``: half-maps, full map and FSC from a RELION particle STAR file.

Reads the particles in batches (:class:`.from_star.StarParticles`), splits them into the
half-sets of ``rlnRandomSubset`` (or a seeded random split, written to
``particles_half_sets.star``), accumulates CTF-weighted slices with symmetry
(:mod:`.half_maps`), regularises (:mod:`.wiener`) and writes the results (:mod:`.write`).
Algorithm and conventions: docs/reconstruction.md.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from cryowarp.errors import InvalidValuesError
from cryowarp.io.relion import ParticleTable, write_particles
from cryowarp.refine.reconstruction.from_star import StarParticles
from cryowarp.refine.reconstruction.half_maps import HalfMapAccumulator, finish_half_maps
from cryowarp.refine.reconstruction.result import ReconstructionResult, load_reference
from cryowarp.refine.reconstruction.settings import ReconstructionSettings
from cryowarp.refine.reconstruction.write import write_reconstruction

__all__ = ["HALF_SETS_STAR", "reconstruct_from_star"]

HALF_SETS_STAR = "particles_half_sets.star"
"""The input particles with the random half-set split in ``rlnRandomSubset``."""


def reconstruct_from_star(
    star_path: str | os.PathLike[str],
    *,
    settings: ReconstructionSettings | None = None,
    out_dir: str | os.PathLike[str] | None = None,
    device: torch.device | str = "cpu",
    reference: torch.Tensor | str | os.PathLike[str] | None = None,
    root: str | os.PathLike[str] | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> ReconstructionResult:
    """Reconstruct half-maps and the full map from the particles of a RELION STAR file.

    Parameters
    ----------
    star_path:
        RELION 3.0/3.1/5 particle STAR file (poses, origins and CTF as RELION defines them;
        :mod:`.from_star` lists the columns read).
    settings:
        :class:`ReconstructionSettings` (defaults when ``None``).
    out_dir:
        When given, write ``half1.mrc``, ``half2.mrc``, ``map.mrc``, ``fsc.star``,
        ``reconstruction.json`` (and ``particles_half_sets.star`` after a random split) there.
    device:
        Where the accumulators live and the work is done.
    reference:
        Optional reference map (tensor or MRC file, same box and pixel size) for an FSC of the
        full map against it.
    root:
        Folder the image paths in the STAR file are relative to (default: its folder).
    progress:
        Called with ``(images inserted, images to insert)`` after each batch.

    Raises
    ------
    CryowarpInputError
        A missing or malformed STAR file or stack (unless ``settings.skip_bad_stacks``),
        particles of different box or pixel sizes, or an empty half-set; the message names the
        file.
    """
    settings = settings or ReconstructionSettings()
    particles = StarParticles(star_path, root=root, skip_bad_stacks=settings.skip_bad_stacks)
    subsets, source = _half_sets(particles, settings.half_set_seed)
    if reference is not None:  # read and checked before the long part
        box_shape = (particles.box_size,) * 3
        reference = load_reference(
            reference, box_shape=box_shape, pixel_size_a=particles.pixel_size_a, device=device
        )
    accumulator = HalfMapAccumulator(
        particles.box_size,
        symmetry=settings.symmetry,
        oversampling=settings.oversampling,
        device=device,
    )
    subsets_t = torch.from_numpy(subsets)
    total, done = int(particles.usable.sum()), 0
    for batch in particles.batches(settings.batch_size, device=device):
        accumulator.insert(
            batch.images,
            batch.rotations,
            batch.ctf,
            subsets_t[torch.from_numpy(batch.rows)],
            origins_a=batch.origins_a,
            data_premultiplied=batch.data_premultiplied,
            data_phase_flipped=batch.data_phase_flipped,
        )
        done += len(batch.rows)
        if progress is not None:
            progress(done, total)
    result = finish_half_maps(
        accumulator,
        pixel_size_a=particles.pixel_size_a,
        settings=settings,
        half_set_source=source,
        subsets=subsets_t,
        reference=reference,
        skipped=tuple(particles.skipped),
    )
    if out_dir is None:
        return result
    files = write_reconstruction(result, out_dir)
    if source != "rlnRandomSubset":
        files = (*files, _write_half_sets(particles, subsets, Path(out_dir)))
    return replace(result, files=files)


def _half_sets(particles: StarParticles, seed: int) -> tuple[np.ndarray, str]:
    """``(n_rows,)`` int64 half-set per row (0 for unusable rows) and where it came from."""
    usable = particles.usable
    subsets = np.zeros(len(usable), dtype=np.int64)
    if "rlnRandomSubset" in particles.table.frame.columns:
        given = particles.table.random_subset()
        bad = sorted(set(given[usable].tolist()) - {1, 2})
        if bad:
            raise InvalidValuesError(
                particles.path,
                f"rlnRandomSubset must be 1 or 2, found {bad}",
                "fix the column or remove it for a random split",
            )
        subsets[usable] = given[usable]
        return subsets, "rlnRandomSubset"
    rows = np.flatnonzero(usable)
    order = np.random.default_rng(seed).permutation(rows)
    first = (len(rows) + 1) // 2
    subsets[order[:first]] = 1
    subsets[order[first:]] = 2
    return subsets, f"random split (seed {seed})"


def _write_half_sets(particles: StarParticles, subsets: np.ndarray, out: Path) -> Path:
    """The input table with ``rlnRandomSubset`` and image paths relative to ``out``."""
    frame = particles.table.frame
    frame["rlnRandomSubset"] = subsets
    names = [
        f"{index + 1:06d}@{Path(os.path.relpath(path, out)).as_posix()}"
        for index, path in zip(particles.stack_indices(), particles.image_paths(), strict=True)
    ]
    frame["rlnImageName"] = names
    frame = frame[particles.usable].reset_index(drop=True)
    path = out / HALF_SETS_STAR
    write_particles(path, particles.optics, ParticleTable(frame, particles.optics))
    return path
