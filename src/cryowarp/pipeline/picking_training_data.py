"""Simulated micrographs for BoxNet's generic model (docs/picking_training_data.md).

One micrograph = one field simulated by :func:`cryowarp.simulate.frame_series.
simulate_frame_series` without frames (``render_frames=False``) at
``settings.simulation_pixel_size_a`` (4 Å: a 256² micrograph at 8 Å is a 512² field of
2048 Å), whose clean image goes through the fast detector path
:func:`~cryowarp.preprocess.picking.training_data.labelled_from_clean` (Fourier crop to 8 Å,
Poisson counts of the total dose, robust normalisation — what ``prepare_micrograph`` gives
for a real dose-weighted average). Every draw derives from ``(seed, index)``, so each file of
a dataset can be made (and remade) on its own and the same seed gives the same bytes.

This module lives in the pipeline layer because it joins the simulator and the picking code
(tests/test_layering.py); settings, labels and dataset files are in
:mod:`cryowarp.preprocess.picking.training_data`.
"""

from __future__ import annotations

import json
import logging
import math
import time
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from cryowarp.errors import CryowarpInputError
from cryowarp.io.files import write_text_atomically
from cryowarp.pipeline.picking_species_pool import PoolSpecies, generic_species_pool
from cryowarp.preprocess.picking.labels import LabelledMicrograph, load_labelled, save_labelled
from cryowarp.preprocess.picking.training_data import (
    GenericTrainingSettings,
    dataset_file,
    dataset_hash,
    labelled_from_clean,
)
from cryowarp.simulate.frame_series import SimulatedFrameSeries, simulate_frame_series
from cryowarp.simulate.presets import FrameSeriesSettings, SpeciesSpec

__all__ = [
    "TrainingField",
    "build_generic_dataset",
    "micrograph_settings",
    "simulate_training_field",
    "simulate_training_micrograph",
]

_LOG = logging.getLogger(__name__)


class _Draw:
    """Scalar draws from one generator, in call order."""

    def __init__(self, key: str) -> None:
        self.g = torch.Generator().manual_seed(zlib.crc32(key.encode()))

    def uniform(self, low: float, high: float) -> float:
        return low + (high - low) * float(torch.rand((), generator=self.g, dtype=torch.float64))

    def chance(self, p: float) -> bool:
        return self.uniform(0.0, 1.0) < p

    def integer(self, low: int, high: int) -> int:  # inclusive
        return int(torch.randint(low, high + 1, (1,), generator=self.g))


def _choose_species(
    draw: _Draw, pool: Sequence[PoolSpecies], settings: GenericTrainingSettings
) -> list[PoolSpecies]:
    real = [s for s in pool if s.real]
    procedural = [s for s in pool if not s.real]
    chosen: list[PoolSpecies] = []
    for _ in range(draw.integer(*settings.species_per_micrograph)):
        use_real = bool(real) and (not procedural or draw.chance(settings.real_species_probability))
        candidates = [s for s in (real if use_real else procedural) if s not in chosen]
        if candidates:
            chosen.append(candidates[draw.integer(0, len(candidates) - 1)])
    return chosen


def micrograph_settings(
    index: int,
    *,
    settings: GenericTrainingSettings,
    seed: int,
    species: Sequence[PoolSpecies],
) -> tuple[FrameSeriesSettings, float]:
    """The simulator settings and the detected dose (total dose × DQE, e⁻/Å²) of micrograph
    ``index``, with every per-micrograph choice of ``settings`` drawn (deterministic for
    ``seed`` and ``index``)."""
    draw = _Draw(f"boxnet-generic/{seed}/{index}/optics")
    if draw.chance(settings.phase_plate_fraction):
        defocus = draw.uniform(*settings.phase_plate_defocus_range_um)
        phase_shift = draw.uniform(*settings.phase_shift_range_deg)
    else:
        defocus, phase_shift = draw.uniform(*settings.defocus_range_um), 0.0
    astigmatism = draw.uniform(*settings.astigmatism_range_um)
    tilt = draw.uniform(*settings.sample_tilt_range_deg)
    tilt = tilt if draw.chance(settings.tilted_fraction) else 0.0
    thickness = draw.uniform(*settings.ice_thickness_range_a)
    variation = draw.uniform(*settings.ice_variation_range) * thickness
    variation_length = draw.uniform(*settings.ice_variation_length_range_a)
    dose = draw.uniform(*settings.dose_range_e_per_a2)
    dqe = draw.uniform(*settings.dqe_range)
    carbon, drops, aggregates = False, 0, 0
    if draw.chance(settings.artefact_fraction):
        carbon = draw.chance(settings.carbon_edge_probability)
        drops = draw.integer(0, settings.max_ethane_drops)
        aggregates = draw.integer(0, settings.max_aggregates)
        if not (carbon or drops or aggregates):
            drops = min(1, settings.max_ethane_drops)
            aggregates = 0 if drops else min(1, settings.max_aggregates)
    abundances = [draw.uniform(0.5, 1.5) for _ in species]
    h, w = settings.simulation_shape_px
    px = settings.simulation_pixel_size_a
    mean_area_a2 = sum(
        a * math.pi * (s.diameter_a / 2) ** 2 for a, s in zip(abundances, species, strict=True)
    ) / max(sum(abundances), 1e-12)
    coverage = draw.uniform(*settings.coverage_range)
    n_particles = round(coverage * h * w * px * px / max(mean_area_a2, 1.0))
    n_particles = min(max(n_particles, 1), settings.max_particles)
    simulation = FrameSeriesSettings(
        pixel_size_a=px,
        shape_px=(h, w),
        n_frames=1,
        dose_per_frame_e_per_a2=dose,
        voltage_kv=settings.voltage_kv,
        cs_mm=settings.cs_mm,
        amplitude_contrast=settings.amplitude_contrast,
        defocus_range_um=(defocus, defocus),
        astigmatism_range_um=(astigmatism, astigmatism),
        phase_shift_deg=phase_shift,
        sample_tilt_range_deg=(tilt, tilt),
        ice_thickness_a=thickness,
        ice_thickness_variation_a=variation,
        ice_variation_length_a=variation_length,
        n_particles=n_particles,
        particle_spacing=settings.particle_spacing,
        species=tuple(
            SpeciesSpec(name=s.name, mass_kda=max(s.mass_kda, 1e-3), abundance=a)
            for s, a in zip(species, abundances, strict=True)
        ),
        drift_a=0.0,
        jitter_a=0.0,
        local_motion_a=0.0,
        detector_mtf=None,
        gain_sigma=0.0,
        n_hot_pixels=0,
        n_dead_columns=0,
        n_ethane_drops=drops,
        carbon_edge=carbon,
        n_aggregates=aggregates,
    )
    return simulation, dose * dqe


@dataclass(frozen=True)
class TrainingField:
    """The simulated field behind one generic micrograph.

    Attributes
    ----------
    simulation:
        The simulator's output (clean micrograph, artefact mask, particle truth, CTF).
    settings:
        The simulator settings drawn for it (artefacts that did not fit removed).
    detected_dose_e_per_a2:
        Total dose × DQE: the counts per Å² of the shot noise.
    species:
        The pool species it holds.
    """

    simulation: SimulatedFrameSeries
    settings: FrameSeriesSettings
    detected_dose_e_per_a2: float
    species: tuple[PoolSpecies, ...]


def simulate_training_field(
    index: int,
    *,
    settings: GenericTrainingSettings,
    seed: int,
    species_pool: Sequence[PoolSpecies],
) -> TrainingField:
    """The noise-free field of micrograph ``index`` (see :func:`simulate_training_micrograph`).

    Artefacts that do not fit the field are dropped one at a time (drops first) until they do.
    """
    if not species_pool:
        raise ValueError("the species pool is empty")
    for entry in species_pool:
        if abs(entry.species.pixel_size_a - settings.simulation_pixel_size_a) > 1e-6:
            raise ValueError(
                f"species {entry.name} is at {entry.species.pixel_size_a} Å, the simulation at "
                f"{settings.simulation_pixel_size_a} Å"
            )
    key = f"boxnet-generic/{seed}/{index}"
    chosen = _choose_species(_Draw(f"{key}/species"), species_pool, settings)
    simulation, detected_dose = micrograph_settings(
        index, settings=settings, seed=seed, species=chosen
    )
    while True:
        try:
            result = simulate_frame_series(
                [s.species for s in chosen],
                simulation,
                seed=zlib.crc32(f"boxnet-generic/{seed}".encode()),
                movie_index=index,
                shot_noise=False,
                render_frames=False,
            )
            return TrainingField(result, simulation, detected_dose, tuple(chosen))
        except ValueError as error:  # artefacts that do not fit the field
            if "cannot place another artefact" not in str(error):
                raise
            fewer = (
                {"n_ethane_drops": simulation.n_ethane_drops - 1}
                if simulation.n_ethane_drops
                else {"n_aggregates": simulation.n_aggregates - 1}
            )
            simulation = simulation.model_copy(update=fewer)


def simulate_training_micrograph(
    index: int,
    *,
    settings: GenericTrainingSettings,
    seed: int,
    species_pool: Sequence[PoolSpecies],
) -> LabelledMicrograph:
    """Micrograph ``index`` of the generic dataset of ``seed`` (module docstring).

    ``species_pool`` (:func:`~cryowarp.pipeline.picking_species_pool.generic_species_pool`
    or, for a benchmark, ``heldout_species_pool``) must be at
    ``settings.simulation_pixel_size_a``. ``source`` of the result lists the draws.
    """
    field = simulate_training_field(index, settings=settings, seed=seed, species_pool=species_pool)
    result, simulation = field.simulation, field.settings
    diameter_of = {s.name: s.diameter_a for s in field.species}
    diameters = torch.tensor([diameter_of[n] for n in result.particles.species])
    ctf = result.ctf
    source = (
        f"generic seed={seed} index={index} species={','.join(s.name for s in field.species)} "
        f"particles={len(diameters)} defocus_um={ctf.defocus_um:.2f} "
        f"phase_shift_deg={ctf.phase_shift_deg:.0f} tilt_deg={ctf.sample_tilt_deg:.1f} "
        f"ice_a={simulation.ice_thickness_a:.0f} "
        f"dose_e_per_a2={simulation.dose_per_frame_e_per_a2:.1f} "
        f"detected_e_per_a2={field.detected_dose_e_per_a2:.1f} "
        f"carbon={int(simulation.carbon_edge)} drops={simulation.n_ethane_drops} "
        f"aggregates={simulation.n_aggregates}"
    )
    noise = torch.Generator().manual_seed(
        zlib.crc32(f"boxnet-generic/{seed}/{index}/noise".encode())
    )
    return labelled_from_clean(
        result.clean_micrograph,
        pixel_size_a=settings.simulation_pixel_size_a,
        positions_a=result.particles.positions_a[:, :2],
        diameters_a=diameters,
        artefact_mask=result.artefact_mask,
        dose_e_per_a2=field.detected_dose_e_per_a2,
        generator=noise,
        source=source,
        picking_pixel_size_a=settings.picking_pixel_size_a,
    )


def _readable(file: Path) -> bool:
    if not file.is_file():
        return False
    try:
        load_labelled(file)
    except CryowarpInputError:
        return False
    return True


def build_generic_dataset(
    settings: GenericTrainingSettings,
    *,
    seed: int,
    out_dir: str | Path,
    extra_species_paths: Sequence[str | Path] = (),
    progress: Callable[[int, int], None] | None = None,
) -> list[Path]:
    """Write the generic dataset to ``out_dir`` (one ``.npz`` per micrograph, see
    :func:`~cryowarp.preprocess.picking.training_data.dataset_file`) and return its files.

    Files that already exist with the same settings hash and read back are reused (the
    species pool is only built when something is missing), so a rerun is free and an
    interrupted run resumes. A manifest ``generic_<hash>.json`` records the settings, seed,
    species (name, mass, diameter, source) and timings. ``progress(done, total)`` is called
    once with the reused count and after each new micrograph.
    """
    folder = Path(out_dir)
    folder.mkdir(parents=True, exist_ok=True)
    paths = [str(p) for p in extra_species_paths]
    digest = dataset_hash(settings, seed=seed, extra_species=paths)
    files = [dataset_file(folder, digest, i) for i in range(settings.n_micrographs)]
    missing = [i for i, file in enumerate(files) if not _readable(file)]
    total = len(files)
    if progress is not None:
        progress(total - len(missing), total)
    if not missing:
        return files
    start = time.perf_counter()
    pool = generic_species_pool(settings, seed=seed, extra_species_paths=paths)
    pool_seconds = time.perf_counter() - start
    _LOG.info("species pool of %d built in %.1f s", len(pool), pool_seconds)
    start = time.perf_counter()
    for done, i in enumerate(missing, start=total - len(missing) + 1):
        labelled = simulate_training_micrograph(i, settings=settings, seed=seed, species_pool=pool)
        save_labelled(labelled, files[i])
        if progress is not None:
            progress(done, total)
    seconds = (time.perf_counter() - start) / len(missing)
    manifest = {
        "dataset_hash": digest,
        "seed": seed,
        "settings": settings.model_dump(mode="json"),
        "extra_species": paths,
        "species": [
            {
                "name": s.name,
                "mass_kda": round(s.mass_kda, 1),
                "diameter_a": round(s.diameter_a, 1),
                "symmetry": s.species.symmetry,
                "source": s.source,
                "real": s.real,
            }
            for s in pool
        ],
        "pool_seconds": round(pool_seconds, 2),
        "seconds_per_micrograph": round(seconds, 3),
        "files": [f.name for f in files],
    }
    write_text_atomically(
        folder / f"generic_{digest}.json", json.dumps(manifest, indent=1, sort_keys=True) + "\n"
    )
    return files
