"""Simulated odd/even half-averages with their clean image, for training and testing denoisers.

A Noise2Noise denoiser (docs/denoising.md) learns from two images of the same specimen with
independent noise: the averages of the odd and of the even frames of a movie. This module
makes such pairs **together with the noise-free image** they are noisy versions of, on a
varied population of simulated micrographs (species, defocus, dose, ice, artefacts, phase
plate), at the denoiser's working pixel size.

How a pair is made (docs/denoising_training.md):

1. the clean micrograph (intensity per unit dose, vacuum = 1: particles, ice, artefacts,
   each through its CTF; no motion, damage, MTF or noise;
   :func:`~cryowarp.simulate.frame_series.simulate_frame_series` with ``render_frames=False``)
   is rendered at ``render_oversampling`` × finer pixels and Fourier-cropped to the working
   pixel size (:func:`cryowarp.core.resize.rescale`), as real averages are. Two corrections
   keep the signal-to-noise ratio of the particles near that of real data: the species'
   potentials are scaled to their **excess over the ice** (× (1 − 4.48 V / 7.9 V) ≈ 0.43;
   the simulator adds particles on top of the ice without removing the water they displace),
   and the molecular ice texture, too strong at these resolutions (docs/simulator.md), is on
   in only ``ice_texture_fraction`` of the micrographs;
2. it is filtered by the radiation-damage transfer of an exposure-weighted average of
   ``n_frames`` frames (docs/conventions.md §7): ``E(k) = Σ_t w_t(k)·a_t(k)`` with
   ``a_t = exp(−D_t k²)`` (``B = −4 D_t``, ``D_t`` the dose at the middle of frame ``t``) and
   ``w_t = a_t / Σ_s a_s`` — this is :attr:`SimulatedOddEven.clean`, the expectation of both
   halves and of their average;
3. each half gets **its own Poisson draw at half the total dose** (expected counts per pixel
   ``dose/2 · pixel² · clean``), divided back to intensity per unit dose.

Why the halves are independent in noise: the odd and the even frames record disjoint sets of
electrons; counts of a Poisson process over disjoint exposures are independent given the
specimen, so given ``clean`` the two halves are independent Poisson images with the same
mean. Here that holds exactly: the draws come from separate generators. What this leaves out
(on purpose, to keep ``clean`` the exact expectation): motion, the detector MTF, gain
defects, and the colouring of the noise by exposure weighting (the noise is white).
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass, replace

import torch
from pydantic import BaseModel, ConfigDict, Field

from cryowarp.core.dose import dose_weights
from cryowarp.core.resize import rescale
from cryowarp.simulate.frame_series import simulate_frame_series
from cryowarp.simulate.ice import ice_mean_inner_potential_v
from cryowarp.simulate.presets import FrameSeriesSettings, SpeciesSpec
from cryowarp.simulate.procedural import procedural_species
from cryowarp.simulate.sample_ctf import SampleCTF
from cryowarp.simulate.species import (
    PROTEIN_DENSITY_DA_PER_A3,
    Species,
    protein_potential_per_kda_v_a3,
)

__all__ = ["OddEvenSimulationSettings", "SimulatedOddEven", "simulated_pairs"]

_SYMMETRIES = ("C1", "C1", "C2", "C3", "C4", "D2", "D3", "T")


class OddEvenSimulationSettings(BaseModel):
    """The population of simulated micrographs: ranges ``(low, high)`` are drawn uniformly
    per micrograph."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    field_px: tuple[int, int] = Field(
        default=(512, 512), description="Micrograph size (height, width) in working pixels."
    )
    render_oversampling: int = Field(
        default=2,
        ge=1,
        description="The clean micrograph is rendered at working pixel size / this and "
        "Fourier-cropped (1: rendered at the working pixel size).",
    )
    dose_range_e_per_a2: tuple[float, float] = Field(
        default=(20.0, 60.0), description="Total dose of both halves together in e⁻/Å²."
    )
    n_frames: int = Field(
        default=40, ge=2, description="Frames of the exposure (sets the radiation damage)."
    )
    radiation_damage: bool = Field(
        default=True, description="Filter the clean image by the exposure-weighted damage."
    )
    defocus_range_um: tuple[float, float] = Field(
        default=(0.6, 3.5), description="Defocus without phase plate in µm (underfocus > 0)."
    )
    astigmatism_range_um: tuple[float, float] = Field(
        default=(0.0, 0.1), description="Astigmatism (U − V)/2 in µm."
    )
    phase_plate_fraction: float = Field(
        default=0.2, ge=0, le=1, description="Fraction of micrographs with a phase plate."
    )
    phase_plate_defocus_range_um: tuple[float, float] = Field(
        default=(0.2, 1.0), description="Defocus with a phase plate in µm."
    )
    phase_shift_range_deg: tuple[float, float] = Field(
        default=(40.0, 130.0), description="Phase-plate shift in degrees."
    )
    voltages_kv: tuple[float, ...] = Field(
        default=(300.0, 300.0, 300.0, 200.0), description="Voltages drawn from (kV)."
    )
    ice_thickness_range_a: tuple[float, float] = Field(
        default=(150.0, 800.0), description="Ice thickness in Å."
    )
    ice_variation_range_a: tuple[float, float] = Field(
        default=(0.0, 60.0), description="RMS of smooth ice-thickness variations in Å."
    )
    ice_texture_fraction: float = Field(
        default=0.25,
        ge=0,
        le=1,
        description="Fraction of micrographs with the simulator's molecular ice texture "
        "(too strong below 1/5 Å⁻¹, docs/simulator.md; off on the others).",
    )
    solvent_excess: bool = Field(
        default=True,
        description="Scale particle potentials to their excess over the ice's mean inner "
        "potential (the simulator does not remove the water the particles displace).",
    )
    n_species_pool: int = Field(
        default=8, ge=1, description="Procedural species made per call, shared by micrographs."
    )
    max_species_per_micrograph: int = Field(
        default=3, ge=1, description="Species per micrograph: 1 to this many from the pool."
    )
    mass_range_kda: tuple[float, float] = Field(
        default=(60.0, 1200.0), description="Mass of a species in kDa (log-uniform)."
    )
    coverage_range: tuple[float, float] = Field(
        default=(0.03, 0.35),
        description="Fraction of the field covered by particle disks (sets their number).",
    )
    carbon_edge_fraction: float = Field(
        default=0.15, ge=0, le=1, description="Fraction of micrographs with a carbon edge."
    )
    artefact_fraction: float = Field(
        default=0.3,
        ge=0,
        le=1,
        description="Fraction of micrographs with ethane drops and aggregates (up to the "
        "maxima below; at least one of either).",
    )
    max_ethane_drops: int = Field(default=1, ge=0, description="Most ethane drops.")
    max_aggregates: int = Field(default=2, ge=0, description="Most protein aggregates.")


@dataclass(frozen=True, eq=False)
class SimulatedOddEven:
    """One simulated micrograph's half-averages and their noise-free expectation.

    Attributes
    ----------
    name:
        ``sim_<seed>_<index>``.
    odd, even:
        ``(h, w)`` float32 half-averages, intensity per unit dose (vacuum = 1), independent
        Poisson noise at half the dose each.
    clean:
        ``(h, w)`` float32 expectation of ``odd``, ``even`` and their average (the clean
        micrograph Fourier-cropped to the working pixel size and damped by the exposure's
        radiation damage).
    ctf:
        The true CTF (no sample tilt), with ``pixel_size_a`` the working pixel size.
    dose_e_per_a2:
        Total dose of both halves (e⁻/Å²).
    pixel_size_a:
        Working pixel size (Å).
    n_particles:
        Particles in the field.
    """

    name: str
    odd: torch.Tensor  # (h, w)
    even: torch.Tensor  # (h, w)
    clean: torch.Tensor  # (h, w)
    ctf: SampleCTF
    dose_e_per_a2: float
    pixel_size_a: float
    n_particles: int

    @property
    def average(self) -> torch.Tensor:  # (h, w)
        """The full average ``(odd + even) / 2`` (what the motion step's average holds)."""
        return 0.5 * (self.odd + self.even)


def simulated_pairs(
    n: int,
    *,
    seed: int,
    pixel_size_a: float = 4.0,
    settings: OddEvenSimulationSettings | None = None,
) -> list[SimulatedOddEven]:
    """``n`` simulated micrographs as odd/even half-averages with their clean image.

    Parameters
    ----------
    n:
        Number of micrographs.
    seed:
        Every draw derives from it (same seed and settings → same images; another seed →
        other species, fields and noise).
    pixel_size_a:
        Working pixel size (Å) of the returned images.
    settings:
        The population (:class:`OddEvenSimulationSettings`; default when ``None``).

    Returns
    -------
    list[SimulatedOddEven]
        CPU float32 images of ``settings.field_px``.
    """
    if n < 0 or not pixel_size_a > 0:
        raise ValueError(f"need n ≥ 0 and a positive pixel size, got {n}, {pixel_size_a}")
    config = settings if settings is not None else OddEvenSimulationSettings()
    render_px = pixel_size_a / config.render_oversampling
    pool = _species_pool(config, seed=seed, render_pixel_size_a=render_px)
    return [_one(config, pool, seed=seed, index=i, pixel_size_a=pixel_size_a) for i in range(n)]


# -- helpers -------------------------------------------------------------------------------


def _generator(seed: int, *parts: object) -> torch.Generator:
    key = zlib.crc32("/".join(str(p) for p in (seed, "odd_even", *parts)).encode())
    return torch.Generator().manual_seed(key)


def _uniform(g: torch.Generator, low: float, high: float) -> float:
    return low + (high - low) * float(torch.rand((), generator=g, dtype=torch.float64))


def _integer(g: torch.Generator, low: int, high: int) -> int:
    """Uniform integer in ``[low, high]``."""
    return int(torch.randint(low, high + 1, (), generator=g))


def _species_pool(
    config: OddEvenSimulationSettings, *, seed: int, render_pixel_size_a: float
) -> list[Species]:
    g = _generator(seed, "species")
    low, high = config.mass_range_kda
    excess = (
        1.0 - ice_mean_inner_potential_v() / _protein_potential_v()
        if config.solvent_excess
        else 1.0
    )
    pool = []
    for k in range(config.n_species_pool):
        mass = math.exp(_uniform(g, math.log(low), math.log(high)))
        symmetry = _SYMMETRIES[_integer(g, 0, len(_SYMMETRIES) - 1)]
        species = procedural_species(
            mass_kda=mass,
            symmetry=symmetry,
            seed=_integer(g, 0, 2**31 - 1),
            pixel_size_a=render_pixel_size_a,
            name=f"species_{k}",
        )
        pool.append(replace(species, potential_v=species.potential_v * excess))
    return pool


def _protein_potential_v() -> float:
    """Mean potential (V) inside protein (≈ 7.9 V, :mod:`cryowarp.simulate.species`)."""
    return protein_potential_per_kda_v_a3() * PROTEIN_DENSITY_DA_PER_A3 / 1000.0


def _one(
    config: OddEvenSimulationSettings,
    pool: list[Species],
    *,
    seed: int,
    index: int,
    pixel_size_a: float,
) -> SimulatedOddEven:
    g = _generator(seed, index, "draws")
    n_species = _integer(g, 1, min(config.max_species_per_micrograph, len(pool)))
    chosen = [pool[int(i)] for i in torch.randperm(len(pool), generator=g)[:n_species]]
    abundances = [_uniform(g, 0.3, 1.0) for _ in chosen]
    h, w = config.field_px
    area_a2 = h * w * pixel_size_a**2
    mean_disk_a2 = sum(
        a * math.pi * s.radius_a() ** 2 for a, s in zip(abundances, chosen, strict=True)
    ) / sum(abundances)
    n_particles = round(_uniform(g, *config.coverage_range) * area_a2 / mean_disk_a2)
    phase_plate = _uniform(g, 0.0, 1.0) < config.phase_plate_fraction
    defocus = config.phase_plate_defocus_range_um if phase_plate else config.defocus_range_um
    defocus_um = _uniform(g, *defocus)
    phase_shift_deg = _uniform(g, *config.phase_shift_range_deg) if phase_plate else 0.0
    voltage_kv = config.voltages_kv[_integer(g, 0, len(config.voltages_kv) - 1)]
    astigmatism_um = _uniform(g, *config.astigmatism_range_um)
    dose = _uniform(g, *config.dose_range_e_per_a2)
    n_drops, n_aggregates = _artefact_counts(config, g)
    render_px = pixel_size_a / config.render_oversampling
    render = FrameSeriesSettings(
        pixel_size_a=render_px,
        shape_px=(h * config.render_oversampling, w * config.render_oversampling),
        n_frames=1,
        voltage_kv=voltage_kv,
        defocus_range_um=(defocus_um, defocus_um),
        astigmatism_range_um=(astigmatism_um, astigmatism_um),
        phase_shift_deg=phase_shift_deg,
        ice_thickness_a=_uniform(g, *config.ice_thickness_range_a),
        ice_thickness_variation_a=_uniform(g, *config.ice_variation_range_a),
        ice_texture=_uniform(g, 0.0, 1.0) < config.ice_texture_fraction,
        n_particles=n_particles,
        species=tuple(
            SpeciesSpec(name=s.name, abundance=a) for s, a in zip(chosen, abundances, strict=True)
        ),
        n_ethane_drops=n_drops,
        carbon_edge=_uniform(g, 0.0, 1.0) < config.carbon_edge_fraction,
        n_aggregates=n_aggregates,
        n_hot_pixels=0,
        n_dead_columns=0,
    )
    movie_seed = _integer(g, 0, 2**31 - 1)
    simulated = simulate_frame_series(chosen, render, seed=movie_seed, render_frames=False)
    clean = rescale(simulated.clean_micrograph.to(torch.float64), (h, w))
    if config.radiation_damage:
        clean = _damaged(
            clean, dose_e_per_a2=dose, n_frames=config.n_frames, pixel_size_a=pixel_size_a
        )
    clean = clean.clamp_min(0.0)
    counts_per_intensity = 0.5 * dose * pixel_size_a**2  # expected counts of a half at I = 1
    halves = []
    for half in ("odd", "even"):
        counts = torch.poisson(
            clean * counts_per_intensity, generator=_generator(seed, index, half)
        )
        halves.append((counts / counts_per_intensity).to(torch.float32))
    return SimulatedOddEven(
        name=f"sim_{seed}_{index:04d}",
        odd=halves[0],
        even=halves[1],
        clean=clean.to(torch.float32),
        ctf=replace(simulated.ctf, pixel_size_a=pixel_size_a),
        dose_e_per_a2=dose,
        pixel_size_a=pixel_size_a,
        n_particles=len(simulated.particles.species),
    )


def _artefact_counts(config: OddEvenSimulationSettings, g: torch.Generator) -> tuple[int, int]:
    """Ethane drops and aggregates: none, or 1 or more of either (``artefact_fraction``)."""
    with_artefacts = _uniform(g, 0.0, 1.0) < config.artefact_fraction
    most = config.max_ethane_drops + config.max_aggregates
    if not with_artefacts or most == 0:
        return 0, 0
    while True:
        drops = _integer(g, 0, config.max_ethane_drops)
        aggregates = _integer(g, 0, config.max_aggregates)
        if drops + aggregates > 0:
            return drops, aggregates


def _damaged(
    image: torch.Tensor,  # (h, w)
    *,
    dose_e_per_a2: float,
    n_frames: int,
    pixel_size_a: float,
) -> torch.Tensor:  # (h, w)
    """The image through the damage transfer of an exposure-weighted average (module doc)."""
    per_frame = dose_e_per_a2 / n_frames
    doses = (torch.arange(n_frames, dtype=torch.float64) + 0.5) * per_frame
    shape = (int(image.shape[-2]), int(image.shape[-1]))
    weights = dose_weights(doses, shape, pixel_size_a=pixel_size_a)  # (n, h, w//2+1)
    damage = dose_weights(doses, shape, pixel_size_a=pixel_size_a, normalize=False)
    transfer = (weights * damage).sum(0)
    filtered: torch.Tensor = torch.fft.irfft2(torch.fft.rfft2(image) * transfer, s=shape)
    return filtered
