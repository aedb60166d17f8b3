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
  flat slab) and ``φ_ice`` white fluctuations whose variance grows with ``L``.  Each frame of
  the tilt is filtered by ``exp(B k²/4)``, ``B = −4 ×`` the dose accumulated by the middle of
  the frame (§7), shifted by its frame shift, and Poisson-sampled at its dose.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from cryowarp.core.ctf import CTFParams, ctf_2d
from cryowarp.core.dose import dose_bfactors_a2
from cryowarp.core.electron import electron_wavelength_a
from cryowarp.core.fourier import irfft_centered
from cryowarp.core.fourier_grids import frequency_magnitude
from cryowarp.core.projection import prepare_volume_for_projection, project_fourier
from cryowarp.core.resize import crop_or_pad
from cryowarp.core.rotations import random_rotations
from cryowarp.core.shift import shift_phase_ramp
from cryowarp.core.tilt_geometry import defocus_at_positions_um, tilt_rotation_matrix
from cryowarp.errors import DimensionMismatchError
from cryowarp.simulate.frame_series import SpeciesLike, interaction_constant_rad_per_va
from cryowarp.simulate.tilt_presets import TiltSeriesSettings
from cryowarp.simulate.tilt_schemes import tilt_angles_deg

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
class TiltSeriesGeometry:
    """Per-tilt acquisition parameters, in **acquisition order** (``n`` tilts).

    Attributes
    ----------
    nominal_angles_deg:
        ``(n,)`` angles the stage reported (the mdoc's ``TiltAngle``).
    angle_errors_deg:
        ``(n,)`` true minus nominal angle.
    tilt_axis_angle_deg:
        In-plane tilt-axis direction from +x towards +y (conventions §9).
    shifts_a:
        ``(n, 2)`` stage-shift error (x, y) in Å: where the content moved to in the raw image.
    defocus_um, astig_x_um, astig_y_um:
        ``(n,)`` defocus at the eucentric point (µm, underfocus positive) and astigmatism
        ``(δ cos 2θ, δ sin 2θ)`` (conventions §6).
    target_defocus_um:
        The defocus the microscope aimed at.
    dose_e_per_a2:
        ``(n,)`` exposure of each tilt.
    frame_shifts_a:
        ``(n, f, 2)`` shift (Å) of each frame of a tilt movie relative to the tilt image
        (mean over frames 0).
    """

    nominal_angles_deg: torch.Tensor  # (n,) float64
    angle_errors_deg: torch.Tensor  # (n,)
    tilt_axis_angle_deg: float
    shifts_a: torch.Tensor  # (n, 2)
    defocus_um: torch.Tensor  # (n,)
    astig_x_um: torch.Tensor  # (n,)
    astig_y_um: torch.Tensor  # (n,)
    target_defocus_um: float
    dose_e_per_a2: torch.Tensor  # (n,)
    frame_shifts_a: torch.Tensor  # (n, f, 2)

    @property
    def n_tilts(self) -> int:
        return int(self.nominal_angles_deg.shape[0])

    @property
    def angles_deg(self) -> torch.Tensor:
        """``(n,)`` true tilt angles in degrees."""
        return self.nominal_angles_deg + self.angle_errors_deg

    @property
    def prior_dose_e_per_a2(self) -> torch.Tensor:
        """``(n,)`` dose received before each tilt (e⁻/Å²), in acquisition order."""
        return torch.cumsum(self.dose_e_per_a2, 0) - self.dose_e_per_a2

    def frame_bfactors_a2(self) -> torch.Tensor:
        """``(n, f)`` radiation-damage B-factor of each frame: ``−4 ×`` the dose accumulated
        at the middle of the frame (conventions §7)."""
        f = self.frame_shifts_a.shape[1]
        fraction = (torch.arange(f, dtype=torch.float64) + 0.5) / f
        dose = self.prior_dose_e_per_a2[:, None] + fraction * self.dose_e_per_a2[:, None]
        return dose_bfactors_a2(dose)

    def rotations(self, *, dtype: torch.dtype = torch.float64) -> torch.Tensor:
        """``(n, 3, 3)`` tilt rotations ``R_t`` at the true angles."""
        return tilt_rotation_matrix(
            self.angles_deg.to(dtype), tilt_axis_angle_deg=self.tilt_axis_angle_deg, dtype=dtype
        )


@dataclass(frozen=True)
class SpecimenParticles:
    """Particles in the specimen frame (see the module docstring), ``m`` rows.

    Attributes
    ----------
    positions_a:
        ``(m, 3)`` float64 (x, y, z) in Å from the eucentric point.
    orientations:
        ``(m, 3, 3)`` float64 matrices ``A`` (reference → specimen, conventions §8).
    species_index:
        ``(m,)`` int64 index into the species list.
    """

    positions_a: torch.Tensor
    orientations: torch.Tensor
    species_index: torch.Tensor

    def __len__(self) -> int:
        return int(self.positions_a.shape[0])

    def image_positions_px(
        self, geometry: TiltSeriesGeometry, *, shape_px: tuple[int, int], pixel_size_a: float
    ) -> torch.Tensor:
        """``(m, n, 2)`` (x, y) pixel position of each particle's centre in each raw tilt
        image: ``(w//2, h//2) + ((R_t r)_xy + s_t) / pixel``."""
        rotated = torch.einsum("nij,mj->mni", geometry.rotations(), self.positions_a)
        centre = torch.tensor([shape_px[1] // 2, shape_px[0] // 2], dtype=torch.float64)
        return centre + (rotated[..., :2] + geometry.shifts_a[None]) / pixel_size_a

    def defocus_um(self, geometry: TiltSeriesGeometry) -> torch.Tensor:
        """``(m, n)`` mean defocus (µm) of each particle in each tilt."""
        return defocus_at_positions_um(
            self.positions_a[:, None, :],
            defocus_um=geometry.defocus_um[None, :],
            rotation=geometry.rotations()[None],
        )


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


def random_tilt_geometry(
    settings: TiltSeriesSettings, *, generator: torch.Generator
) -> TiltSeriesGeometry:
    """Draw the per-tilt errors (angle, stage shift, defocus, astigmatism, frame shifts)
    around the nominal tilt scheme of ``settings``."""
    nominal = torch.tensor(
        tilt_angles_deg(
            settings.scheme,
            min_angle_deg=settings.min_angle_deg,
            max_angle_deg=settings.max_angle_deg,
            step_deg=settings.step_deg,
            start_angle_deg=settings.start_angle_deg,
            group_size=settings.group_size,
            first_direction=settings.first_direction,
        ),
        dtype=torch.float64,
    )
    n, f = nominal.shape[0], settings.frames_per_tilt

    def normal(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=generator, dtype=torch.float64)

    errors = settings.angle_error_std_deg * normal(n)
    shifts = settings.shift_error_std_a * normal(n, 2)
    defocus = settings.target_defocus_um + settings.defocus_std_um * normal(n)
    two_theta = math.radians(2 * settings.astigmatism_angle_deg)
    astig = torch.tensor(
        [math.cos(two_theta), math.sin(two_theta)], dtype=torch.float64
    ) * settings.astigmatism_um + settings.astigmatism_std_um * normal(n, 2)
    steps = settings.frame_jitter_a * normal(n, f, 2)
    steps[:, 0] = 0
    frame_shifts = torch.cumsum(steps, 1)
    frame_shifts = frame_shifts - frame_shifts.mean(1, keepdim=True)
    return TiltSeriesGeometry(
        nominal_angles_deg=nominal,
        angle_errors_deg=errors,
        tilt_axis_angle_deg=settings.tilt_axis_angle_deg,
        shifts_a=shifts,
        defocus_um=defocus,
        astig_x_um=astig[:, 0].contiguous(),
        astig_y_um=astig[:, 1].contiguous(),
        target_defocus_um=settings.target_defocus_um,
        dose_e_per_a2=torch.full((n,), settings.dose_per_tilt_e_per_a2, dtype=torch.float64),
        frame_shifts_a=frame_shifts,
    )


def _pretilt_rotation(settings: TiltSeriesSettings) -> torch.Tensor:
    return tilt_rotation_matrix(
        settings.pretilt_deg, tilt_axis_angle_deg=settings.tilt_axis_angle_deg, dtype=torch.float64
    )


def place_particles(
    settings: TiltSeriesSettings,
    radii_a: Sequence[float],
    *,
    generator: torch.Generator,
) -> SpecimenParticles:
    """Random, non-overlapping particles in the slab, centres inside the field of view.

    Species are drawn by their ``abundance``; centres lie at least ``radius`` inside the
    slab faces (at the mid-plane when the slab is thinner than the particle) and at least
    ``particle_spacing × (r_i + r_j)`` apart.  Fewer than ``n_particles`` are returned when
    the slab is full.
    """
    width_a, height_a = settings.field_size_a
    stretch = 1.0 / math.cos(math.radians(settings.pretilt_deg))
    abundance = torch.tensor([s.abundance for s in settings.species], dtype=torch.float64)
    n_candidates = 20 * max(settings.n_particles, 1)
    kinds = torch.multinomial(abundance, n_candidates, replacement=True, generator=generator)
    u = torch.rand(n_candidates, 3, generator=generator, dtype=torch.float64)
    radii = torch.tensor(list(radii_a), dtype=torch.float64)[kinds]
    half_depth = torch.clamp(settings.thickness_a / 2 - radii, min=0.0)
    slab = torch.stack(
        [
            (u[:, 0] - 0.5) * width_a * stretch,
            (u[:, 1] - 0.5) * height_a * stretch,
            (2 * u[:, 2] - 1) * half_depth,
        ],
        dim=-1,
    )
    candidates = slab @ _pretilt_rotation(settings).T
    inside = (candidates[:, 0].abs() <= width_a / 2) & (candidates[:, 1].abs() <= height_a / 2)
    accepted: list[int] = []
    for i in torch.nonzero(inside).flatten().tolist():
        if len(accepted) == settings.n_particles:
            break
        if accepted:
            others = torch.tensor(accepted)
            distance = (candidates[others] - candidates[i]).norm(dim=-1)
            if bool((distance < settings.particle_spacing * (radii[others] + radii[i])).any()):
                continue
        accepted.append(i)
    index = torch.tensor(accepted, dtype=torch.int64)
    orientations = random_rotations(len(accepted), generator=generator, dtype=torch.float64)
    return SpecimenParticles(
        positions_a=candidates[index], orientations=orientations, species_index=kinds[index]
    )


def slab_path_lengths_a(settings: TiltSeriesSettings, geometry: TiltSeriesGeometry) -> torch.Tensor:
    """``(n,)`` path length (Å) of the beam through the slab at each tilt:
    ``thickness / |n_z|`` with ``n`` the slab normal after pre-tilt and tilt."""
    normal = _pretilt_rotation(settings)[:, 2]
    n_z = (geometry.rotations() @ normal)[:, 2]
    return settings.thickness_a / n_z.abs().clamp(min=1e-3)


def _paste_box_px(box_px: int, settings: TiltSeriesSettings, defocus_um: float) -> int:
    """Even box (px) that holds a particle and its CTF delocalisation at Nyquist,
    ``λ Δz k + Cs λ³ k³`` on each side (at most the image size)."""
    k = 0.5 / settings.pixel_size_a
    wavelength = electron_wavelength_a(settings.voltage_kv)
    spread_a = wavelength * defocus_um * 1e4 * k + settings.cs_mm * 1e7 * wavelength**3 * k**3
    padded = box_px + 2 * math.ceil(spread_a / settings.pixel_size_a)
    padded = min(padded, max(max(settings.shape_px), box_px))
    return padded + padded % 2


def _paste(
    image: torch.Tensor,  # (h, w), modified in place
    boxes: torch.Tensor,  # (k, p, p)
    corners: torch.Tensor,  # (k, 2) int64 (x, y) of box pixel (0, 0) in the image
) -> None:
    """Add boxes into ``image`` (clipped at its edges) through a canvas with a margin of
    one box, so that every index is valid (no boolean masks)."""
    h, w = image.shape
    p = boxes.shape[-1]
    limits = torch.tensor([w, h], device=corners.device)
    corners = torch.minimum(corners.clamp(min=-p), limits) + p  # outside stays outside
    wide = w + 2 * p
    canvas = image.new_zeros((h + 2 * p) * wide)
    offsets = torch.arange(p, device=image.device)
    flat = (corners[:, 1, None, None] + offsets[:, None]) * wide + (
        corners[:, 0, None, None] + offsets
    )
    canvas.index_add_(0, flat.reshape(-1), boxes.reshape(-1))
    image += canvas.view(h + 2 * p, wide)[p : p + h, p : p + w]


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
            corners = (whole.to(torch.int64) - padded // 2).to(device)
            _paste(phase, torch.fft.irfft2(spectra, s=(padded, padded)), corners)
            _paste(contrast, torch.fft.irfft2(spectra * box_ctf, s=(padded, padded)), corners)
        ice_std = sigma * settings.ice_potential_std_v * math.sqrt(pixel * float(paths[t]))
        ice = ice_std * torch.randn(h, w, generator=generator).to(device)
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
