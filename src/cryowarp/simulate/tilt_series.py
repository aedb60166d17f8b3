"""Simulated tilt series: particles in a 3-D slab imaged at a series of stage tilts.

Geometry (docs/conventions.md §1, §8, §9; docs/simulator.md, "Tilt series"):

- A particle has a position ``r`` (Å, (x, y, z)) in the **specimen frame** — the untilted
  stage: x, y from the eucentric point, which is imaged at pixel ``(w//2, h//2)``, z from the
  mid-plane of the slab towards the electron source — and an orientation ``A`` (reference →
  specimen, RELION Euler angles, §8).  The slab may be a lamella inclined by the pre-tilt
  about the tilt axis: positions are drawn in the slab and turned by
  ``R_pre = tilt_rotation_matrix(pretilt)``.
- Tilt ``t`` has the true angle ``θ_t = nominal + error`` and
  ``R_t = tilt_rotation_matrix(θ_t, tilt_axis_angle_deg=α)`` (active rotation about the
  in-plane axis at α from +x towards +y).  The particle is seen at pose
  ``R_t · A`` (its projection is ``∫ V((R_t A)ᵀ r) dz``), at the image position
  ``(w//2, h//2) + (R_t r)_xy / pixel + s_t / pixel`` pixels, where ``s_t`` (Å) is the stage
  shift error of the tilt (the content moves by ``+s_t``, §4), and with the defocus
  ``Δz_t − (R_t r)_z · 10⁻⁴`` µm (:func:`~cryowarp.core.tilt_geometry.defocus_at_positions_um`).
- Image formation per tilt (weak phase): ``I = exp(−L/λ_in) · (1 − 2 Σ_p F⁻¹[CTF_p · F[φ_p]]
  − 2 F⁻¹[CTF_t · F[φ_ice]])`` with ``φ = σ · projected potential``, ``L`` the path length
  through the slab (``thickness / |n_z|``, n the slab normal after tilting: ``1/cos θ`` for a
  flat slab) and ``φ_ice`` the molecular texture of ``L`` of ice
  (:func:`~cryowarp.simulate.ice.ice_projected_potential_va`, zero mean: the mean ice
  potential is left out here).  Each frame of
  the tilt is filtered by ``exp(B k²/4)``, ``B = −4 ×`` the dose accumulated by the middle of
  the frame (§7), shifted by its frame shift, and Poisson-sampled at its dose.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from cryowarp.core.ctf import CTFParams, ctf_2d
from cryowarp.core.electron import interaction_constant_rad_per_va
from cryowarp.core.fourier import irfft_centered
from cryowarp.core.fourier_grids import frequency_magnitude
from cryowarp.core.projection import prepare_volume_for_projection, project_fourier
from cryowarp.core.resize import crop_or_pad
from cryowarp.core.shift import shift_phase_ramp
from cryowarp.errors import DimensionMismatchError
from cryowarp.simulate._boxes import ctf_delocalisation_a, paste_boxes
from cryowarp.simulate.ice import ice_projected_potential_va
from cryowarp.simulate.species_like import SpeciesLike
from cryowarp.simulate.tilt_presets import TiltSeriesSettings
from cryowarp.simulate.tilt_series_geometry import (
    SpecimenParticles,
    TiltSeriesGeometry,
    place_particles,
    random_tilt_geometry,
    slab_path_lengths_a,
)

__all__ = [
    "SpeciesLike",
    "SpecimenParticles",
    "TiltSeriesGeometry",
    "TiltSeriesSimulation",
    "place_particles",
    "random_tilt_geometry",
    "render_tilt_series",
    "simulate_tilt_series",
    "slab_path_lengths_a",
]


@dataclass(frozen=True)
class TiltSeriesSimulation:
    """A simulated tilt series and the truth that made it (acquisition order).

    Attributes
    ----------
    stack_counts:
        ``(n, h, w)`` float32 electron counts of each tilt image (sum of its frames).
    frames_counts:
        ``(n, f, h, w)`` float32 counts of the tilt movies, or ``None`` with one frame per tilt.
    clean_counts:
        ``(n, h, w)`` expected counts (the noise-free tilt images).
    phase_rad:
        ``(n, h, w)`` phase ``σ · projected potential`` of the particles (no CTF, damage,
        ice or frame motion) at their raw-image positions.
    ice_path_lengths_a:
        ``(n,)`` electron path length through the slab.
    """

    settings: TiltSeriesSettings
    species_names: tuple[str, ...]
    geometry: TiltSeriesGeometry
    particles: SpecimenParticles
    stack_counts: torch.Tensor
    frames_counts: torch.Tensor | None
    clean_counts: torch.Tensor
    phase_rad: torch.Tensor
    ice_path_lengths_a: torch.Tensor


def _paste_box_px(box_px: int, settings: TiltSeriesSettings, defocus_um: float) -> int:
    """Even box (px) that holds a particle and its CTF delocalisation at Nyquist,
    ``λ Δz k + Cs λ³ k³`` on each side (at most the image size)."""
    spread_a = ctf_delocalisation_a(
        defocus_um * 1e4,
        pixel_size_a=settings.pixel_size_a,
        voltage_kv=settings.voltage_kv,
        cs_mm=settings.cs_mm,
    )
    padded = box_px + 2 * math.ceil(spread_a / settings.pixel_size_a)
    padded = min(padded, max(max(settings.shape_px), box_px))
    return padded + padded % 2


def render_tilt_series(
    settings: TiltSeriesSettings,
    species: Sequence[SpeciesLike],
    geometry: TiltSeriesGeometry,
    particles: SpecimenParticles,
    *,
    generator: torch.Generator,
    device: torch.device | str | None = None,
) -> TiltSeriesSimulation:
    """Form the images of every tilt (see the module docstring for the model).

    ``species`` must be at the pixel size of ``settings`` (use ``Species.at_pixel_size``)
    with cubic boxes.  Random draws (ice, shot noise) use ``generator`` (CPU).
    """
    pixel = settings.pixel_size_a
    h, w = settings.shape_px
    device = torch.device("cpu") if device is None else torch.device(device)
    for s in species:
        shape = tuple(s.potential_v.shape)
        if len(shape) != 3 or len(set(shape)) != 1 or abs(s.pixel_size_a - pixel) > 1e-6 * pixel:
            raise DimensionMismatchError(
                None,
                f"species {s.name!r} has a box of shape {shape} at {s.pixel_size_a} Å/px; a "
                f"cubic box at {pixel} Å/px is needed",
                "resample it with Species.at_pixel_size",
            )
    sigma = interaction_constant_rad_per_va(settings.voltage_kv)
    prepared = [
        prepare_volume_for_projection(s.potential_v.to(device=device, dtype=torch.float32))
        for s in species
    ]
    n, f = geometry.n_tilts, geometry.frame_shifts_a.shape[1]
    rotations = geometry.rotations()
    positions_px = particles.image_positions_px(geometry, shape_px=(h, w), pixel_size_a=pixel)
    particle_defocus = particles.defocus_um(geometry)
    paths = slab_path_lengths_a(settings, geometry)
    bfactors = geometry.frame_bfactors_a2()
    max_defocus_um = float(particle_defocus.abs().max()) if len(particles) else 0.0
    max_defocus_um += math.hypot(settings.astigmatism_um, 3 * settings.astigmatism_std_um)
    k2 = (frequency_magnitude((h, w), device=device) / pixel) ** 2  # (h, w//2+1) Å⁻²

    def ctf(defocus_um: torch.Tensor | float, t: int, shape: tuple[int, int]) -> torch.Tensor:
        params = CTFParams.create(
            pixel_size_a=pixel,
            defocus_um=defocus_um,
            astig_x_um=float(geometry.astig_x_um[t]),
            astig_y_um=float(geometry.astig_y_um[t]),
            voltage_kv=settings.voltage_kv,
            cs_mm=settings.cs_mm,
            amplitude_contrast=settings.amplitude_contrast,
            device=device,
            dtype=torch.float32,
        )
        return ctf_2d(params, shape)

    stack, clean, phase_images, all_frames = [], [], [], []
    for t in range(n):
        phase = torch.zeros(h, w, device=device)
        contrast = torch.zeros(h, w, device=device)
        for s_index, volume in enumerate(prepared):
            members = torch.nonzero(particles.species_index == s_index).flatten()
            if members.numel() == 0:
                continue
            poses = (rotations[t] @ particles.orientations[members]).to(device, torch.float32)
            box = volume.box_shape[-1]
            padded = _paste_box_px(box, settings, max_defocus_um)
            projections = irfft_centered(project_fourier(volume, poses), shape=(box, box))
            boxes = crop_or_pad(projections * (sigma * pixel), (padded, padded))
            position = positions_px[members, t]
            whole = torch.round(position)
            ramp = shift_phase_ramp((padded, padded), (position - whole).to(device, torch.float32))
            spectra = torch.fft.rfft2(boxes) * ramp
            box_ctf = ctf(
                particle_defocus[members, t].to(device, torch.float32), t, (padded, padded)
            )
            paste_boxes(phase, torch.fft.irfft2(spectra, s=(padded, padded)), whole)
            paste_boxes(contrast, torch.fft.irfft2(spectra * box_ctf, s=(padded, padded)), whole)
        ice = torch.zeros(h, w, device=device)
        if settings.ice_texture:  # molecular texture of the ice on the tilt's path length
            path = torch.full((h, w), float(paths[t]), device=device)
            ice = sigma * ice_projected_potential_va(
                path,
                pixel_size_a=pixel,
                generator=generator,
                density_g_per_cm3=settings.ice_density_g_per_cm3,
                mean=False,
            )
        tilt_ctf = ctf(float(geometry.defocus_um[t]), t, (h, w))
        spectrum = torch.fft.rfft2(contrast) + tilt_ctf * torch.fft.rfft2(ice)
        attenuation = math.exp(-float(paths[t]) / settings.inelastic_mean_free_path_a)
        frame_dose = float(geometry.dose_e_per_a2[t]) / f * pixel**2
        damage = torch.exp(bfactors[t].to(device, torch.float32)[:, None, None] * k2 / 4)
        ramps = shift_phase_ramp(
            (h, w), (geometry.frame_shifts_a[t] / pixel).to(device, torch.float32)
        )
        frames_signal = torch.fft.irfft2(spectrum * damage * ramps, s=(h, w))
        expected = (frame_dose * attenuation * (1 - 2 * frames_signal)).clamp(min=0)  # (f, h, w)
        counts = torch.poisson(expected.cpu(), generator=generator)
        stack.append(counts.sum(0))
        clean.append(expected.sum(0).cpu())
        phase_images.append(phase.cpu())
        all_frames.append(counts)
    return TiltSeriesSimulation(
        settings=settings,
        species_names=tuple(s.name for s in species),
        geometry=geometry,
        particles=particles,
        stack_counts=torch.stack(stack),
        frames_counts=torch.stack(all_frames) if f > 1 else None,
        clean_counts=torch.stack(clean),
        phase_rad=torch.stack(phase_images),
        ice_path_lengths_a=paths,
    )


def simulate_tilt_series(
    settings: TiltSeriesSettings,
    species: Sequence[SpeciesLike],
    *,
    seed: int,
    device: torch.device | str | None = None,
) -> TiltSeriesSimulation:
    """Simulate a tilt series: draw the tilt geometry, place the particles, form the images.

    Parameters
    ----------
    settings:
        Every physical parameter (:class:`~cryowarp.simulate.tilt_presets.TiltSeriesSettings`).
    species:
        One species per ``settings.species`` entry, in that order, at ``settings.pixel_size_a``.
    seed:
        Seed of every random draw: the same seed gives the same images, bit for bit.
    device:
        Where the images are formed (CPU by default).
    """
    if len(species) != len(settings.species):
        raise DimensionMismatchError(
            None, f"{len(settings.species)} species in the settings, {len(species)} given"
        )
    generator = torch.Generator().manual_seed(seed)
    geometry = random_tilt_geometry(settings, generator=generator)
    particles = place_particles(settings, [s.radius_a() for s in species], generator=generator)
    return render_tilt_series(
        settings, species, geometry, particles, generator=generator, device=device
    )
