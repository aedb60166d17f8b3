"""Simulate one movie (frame series) of particles in ice, with its exact ground truth.

Image formation (docs/simulator.md; conventions: docs/conventions.md):

* phase ``φ = σ(λ) · Vp`` with ``Vp`` the projected potential (V·Å) and ``σ`` the
  relativistic interaction constant
  (:func:`~cryowarp.core.electron.interaction_constant_rad_per_va`);
* intensity per unit dose ``I = 1 − 2·F⁻¹[CTF · F[φ]] − amplitude loss`` (weak phase, CTF of
  :mod:`cryowarp.core.ctf`, positive at low frequency: protein is dark);
* each particle is projected once, then per frame: radiation damage ``exp(B k²/4)`` with
  ``B = −4 ×`` the dose at the middle of the frame, its own CTF (defocus of its height in the
  tilted ice), and a rigid shift by the motion at its centre (global + local);
* the ice (mean and molecular texture of uncorrelated water molecules,
  :mod:`cryowarp.simulate.ice`, on a smoothly varying thickness) and the artefacts get the
  CTF of the tilted mid-plane where they lie, move with the global motion and are damaged
  per frame like the particles;
* the detector MTF blurs the frame; expected counts = dose per frame × pixel area × ``I``;
  Poisson noise, gain, hot pixels and dead columns by
  :func:`cryowarp.simulate.detector.record_frames`.

Particles are rendered in boxes large enough to hold their CTF delocalisation and pasted into
the frame, so the cost grows with the number of particles, not with the frame size.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from cryowarp.core.electron import interaction_constant_rad_per_va
from cryowarp.core.rotations import matrix_to_euler, random_rotations
from cryowarp.simulate import _frame_render
from cryowarp.simulate.artefacts import Artefacts, random_artefacts
from cryowarp.simulate.detector import DetectorDefects, random_detector_defects
from cryowarp.simulate.ground_truth import ParticleTruth
from cryowarp.simulate.motion import MotionTruth, random_motion
from cryowarp.simulate.presets import FrameSeriesSettings
from cryowarp.simulate.sample_ctf import SampleCTF
from cryowarp.simulate.species_like import SpeciesLike

__all__ = [
    "SimulatedFrameSeries",
    "SpeciesLike",
    "component_generator",
    "detector_for",
    "simulate_frame_series",
]

_PLACEMENT_TRIES = 256  # random candidate positions per particle


@dataclass(frozen=True)
class SimulatedFrameSeries:
    """One simulated movie and the exact parameters that made it.

    Attributes
    ----------
    frames:
        ``(n_frames, h, w)`` uint16 raw camera counts (float32 expected counts when simulated
        without shot noise).
    clean_micrograph:
        ``(h, w)`` intensity per unit dose without motion, radiation damage, MTF or noise
        (vacuum = 1).
    projected_potential_va:
        ``(h, w)`` projected potential of the particles (V·Å), before the CTF.
    artefact_mask:
        ``(h, w)`` bool, reference geometry (frame 0).
    ctf, motion, particles:
        Ground truth (see :mod:`cryowarp.simulate.ground_truth`).
    species:
        The species as rendered (at the movie's pixel size).
    """

    frames: torch.Tensor
    clean_micrograph: torch.Tensor
    projected_potential_va: torch.Tensor
    artefact_mask: torch.Tensor
    ctf: SampleCTF
    motion: MotionTruth
    particles: ParticleTruth
    species: tuple[SpeciesLike, ...]


def component_generator(seed: int, movie_index: int, component: str) -> torch.Generator:
    """A CPU generator for one random component of one movie (``movie_index = -1``: the
    dataset), so that changing one setting does not change the draws of the others."""
    key = zlib.crc32(f"{seed}/{movie_index}/{component}".encode())
    return torch.Generator().manual_seed(key)


def detector_for(settings: FrameSeriesSettings, *, seed: int) -> DetectorDefects:
    """The camera of a dataset: one gain reference and defect set for all its movies."""
    h, w = settings.shape_px
    return random_detector_defects(
        (h, w),
        generator=component_generator(seed, -1, "detector"),
        gain_sigma=settings.gain_sigma,
        n_hot=settings.n_hot_pixels,
        n_dead_columns=settings.n_dead_columns,
    )


def simulate_frame_series(
    species: Sequence[SpeciesLike],
    settings: FrameSeriesSettings,
    *,
    seed: int,
    movie_index: int = 0,
    defects: DetectorDefects | None = None,
    shot_noise: bool = True,
    render_frames: bool = True,
    radiation_damage: bool = True,
) -> SimulatedFrameSeries:
    """Simulate one movie.

    Parameters
    ----------
    species:
        One entry per species of ``settings.species`` (same order); resampled to
        ``settings.pixel_size_a`` when needed.
    settings:
        Physics and sizes (:class:`~cryowarp.simulate.presets.FrameSeriesSettings`).
    seed, movie_index:
        Every random draw derives from these (:func:`component_generator`).
    defects:
        The camera (:func:`detector_for` when ``None``).
    shot_noise:
        ``False`` returns the expected counts (MTF applied, no Poisson noise, no defects).
    render_frames:
        ``False`` skips the frames (``frames`` is empty): only the clean images and the truth.
    radiation_damage:
        ``False`` leaves out the dose-dependent B-factor.

    Returns
    -------
    SimulatedFrameSeries
        CPU tensors.
    """
    if len(species) != len(settings.species):
        raise ValueError(
            f"{len(species)} species given for {len(settings.species)} in the settings"
        )
    px = settings.pixel_size_a
    prepared = tuple(
        s if abs(s.pixel_size_a - px) <= 1e-6 * px else s.at_pixel_size(px) for s in species
    )
    ctf = _draw_ctf(settings, component_generator(seed, movie_index, "ctf"))
    particles, rotations = _place_particles(
        prepared, settings, ctf, component_generator(seed, movie_index, "particles")
    )
    motion = random_motion(
        settings.n_frames,
        field_size_a=settings.field_size_a,
        generator=component_generator(seed, movie_index, "motion"),
        drift_a=settings.drift_a,
        jitter_a=settings.jitter_a,
        local_amplitude_a=settings.local_motion_a,
        local_grid_shape=settings.local_grid_shape,
    )
    artefacts = _artefacts(settings, component_generator(seed, movie_index, "artefacts"))
    sigma = interaction_constant_rad_per_va(settings.voltage_kv)
    background = _frame_render.background_deviation(
        settings, ctf, artefacts, sigma, component_generator(seed, movie_index, "ice")
    )
    groups = _frame_render.render_groups(prepared, particles, rotations, settings, ctf, sigma)

    h, w = settings.shape_px
    clean_particles = torch.zeros(h, w)
    potential = torch.zeros(h, w)
    for group in groups:
        group.paste_clean(clean_particles, potential)
    clean = 1.0 + background + clean_particles
    del clean_particles

    frames = torch.zeros(0, h, w)
    if render_frames:
        frames = _frame_render.render_frames(
            groups,
            background,
            motion,
            settings,
            defects=defects if defects is not None else detector_for(settings, seed=seed),
            noise=component_generator(seed, movie_index, "shot_noise") if shot_noise else None,
            radiation_damage=radiation_damage,
        )
    return SimulatedFrameSeries(
        frames=frames,
        clean_micrograph=clean,
        projected_potential_va=potential,
        artefact_mask=artefacts.mask.to(torch.bool),
        ctf=ctf,
        motion=motion,
        particles=particles,
        species=prepared,
    )


# -- random draws ----------------------------------------------------------------------


def _uniform(generator: torch.Generator, low: float, high: float) -> float:
    return low + (high - low) * float(torch.rand((), generator=generator, dtype=torch.float64))


def _draw_ctf(settings: FrameSeriesSettings, generator: torch.Generator) -> SampleCTF:
    h, w = settings.shape_px
    px = settings.pixel_size_a
    angle = settings.astigmatism_angle_deg
    axis = settings.sample_tilt_axis_deg
    return SampleCTF(
        pixel_size_a=px,
        voltage_kv=settings.voltage_kv,
        cs_mm=settings.cs_mm,
        amplitude_contrast=settings.amplitude_contrast,
        defocus_um=_uniform(generator, *settings.defocus_range_um),
        astigmatism_um=_uniform(generator, *settings.astigmatism_range_um),
        astigmatism_angle_deg=_uniform(generator, -90.0, 90.0) if angle is None else angle,
        phase_shift_deg=settings.phase_shift_deg,
        sample_tilt_deg=_uniform(generator, *settings.sample_tilt_range_deg),
        sample_tilt_axis_deg=_uniform(generator, 0.0, 180.0) if axis is None else axis,
        centre_xy_a=((w // 2) * px, (h // 2) * px),
    )


def _species_counts(settings: FrameSeriesSettings) -> list[int]:
    """Particles per species in proportion to the abundances (largest remainder)."""
    weights = [s.abundance for s in settings.species]
    exact = [settings.n_particles * wt / sum(weights) for wt in weights]
    counts = [math.floor(e) for e in exact]
    order = sorted(range(len(exact)), key=lambda i: counts[i] - exact[i])
    for i in order[: settings.n_particles - sum(counts)]:
        counts[i] += 1
    return counts


def _place_particles(
    species: Sequence[SpeciesLike],
    settings: FrameSeriesSettings,
    ctf: SampleCTF,
    generator: torch.Generator,
) -> tuple[ParticleTruth, torch.Tensor]:
    """Random non-overlapping positions (largest species first), heights and orientations."""
    h, w = settings.shape_px
    px = settings.pixel_size_a
    size = torch.tensor([(w - 1) * px, (h - 1) * px], dtype=torch.float64)
    radii = [s.radius_a() for s in species]
    counts = _species_counts(settings)
    placed_xy = np.zeros((0, 2))
    placed_r = np.zeros(0)
    placed_species: list[int] = []
    for k in sorted(range(len(species)), key=lambda i: -radii[i]):
        r = radii[k]
        margin = torch.minimum(torch.full((2,), r, dtype=torch.float64), size / 4)
        for _ in range(counts[k]):
            draws = torch.rand((_PLACEMENT_TRIES, 2), generator=generator, dtype=torch.float64)
            candidates = (margin + draws * (size - 2 * margin)).numpy()
            distance = np.sqrt(((candidates[:, None] - placed_xy[None]) ** 2).sum(-1))
            ok = (distance >= settings.particle_spacing * (placed_r + r)).all(axis=1)
            if not ok.any():
                continue
            placed_xy = np.concatenate([placed_xy, candidates[ok][:1]])
            placed_r = np.append(placed_r, r)
            placed_species.append(k)
    n = len(placed_species)
    xy = torch.from_numpy(placed_xy)
    half = torch.tensor(
        [max(settings.ice_thickness_a / 2 - placed_r[i], 0.0) for i in range(n)],
        dtype=torch.float64,
    )
    offset = (2 * torch.rand(n, generator=generator, dtype=torch.float64) - 1) * half
    normal_z = float(ctf.plane_normal()[2])
    z = ctf.plane_height_a(xy) + offset / normal_z
    positions = torch.cat([xy, z[:, None]], dim=-1)
    euler = matrix_to_euler(random_rotations(n, generator=generator, dtype=torch.float64))
    defocus = ctf.defocus_at(positions)
    u, v, angle = ctf.relion_defocus_a(defocus)
    truth = ParticleTruth(
        positions_a=positions,
        euler_deg=euler,
        defocus_u_a=u,
        defocus_v_a=v,
        defocus_angle_deg=angle,
        species=tuple(species[k].name for k in placed_species),
    )
    return truth, torch.tensor(placed_species, dtype=torch.int64)


def _artefacts(settings: FrameSeriesSettings, generator: torch.Generator) -> Artefacts:
    h, w = settings.shape_px
    return random_artefacts(
        (h, w),
        pixel_size_a=settings.pixel_size_a,
        generator=generator,
        n_drops=settings.n_ethane_drops,
        carbon_edge=settings.carbon_edge,
        n_aggregates=settings.n_aggregates,
    )
