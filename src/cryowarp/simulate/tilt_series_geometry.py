"""The geometry of a simulated tilt series: per-tilt acquisition parameters and particles
in the specimen slab (the conventions: :mod:`cryowarp.simulate.tilt_series`, docs/conventions.md
§8, §9)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from cryowarp.core.dose import dose_bfactors_a2
from cryowarp.core.rotations import random_rotations
from cryowarp.core.tilt_geometry import defocus_at_positions_um, tilt_rotation_matrix
from cryowarp.simulate.tilt_presets import TiltSeriesSettings
from cryowarp.simulate.tilt_schemes import tilt_angles_deg

__all__ = [
    "SpecimenParticles",
    "TiltSeriesGeometry",
    "place_particles",
    "random_tilt_geometry",
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
