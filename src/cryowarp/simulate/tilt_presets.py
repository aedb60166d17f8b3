"""Typed settings of the tilt-series simulator and its presets (tiny, small).

Every physical parameter of a simulated tilt series lives in :class:`TiltSeriesSettings`;
the CLI (``cryowarp simulate tilt-series``) reads its defaults and help texts from here.
Units are in the names; conventions: docs/conventions.md (§9 for the tilt geometry); the
physics and the output files: docs/simulator.md ("Tilt series").
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from cryowarp.simulate.ice import VITREOUS_ICE_DENSITY_G_PER_CM3
from cryowarp.simulate.presets import SpeciesSpec, preset_with_overrides
from cryowarp.simulate.tilt_schemes import TiltScheme

__all__ = ["TILT_SERIES_PRESETS", "TiltPresetName", "TiltSeriesSettings", "tilt_series_preset"]

#: Settings schema version (written into ground_truth.json).
TILT_SETTINGS_SCHEMA_VERSION = 2  # 2: ice_texture, ice_density_g_per_cm3

TiltPresetName = Literal["tiny", "small"]


class TiltSeriesSettings(BaseModel):
    """Every parameter of a simulated tilt series.  Defaults are the ``tiny`` preset."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    schema_version: int = Field(
        default=TILT_SETTINGS_SCHEMA_VERSION, description="Settings version."
    )
    name: str = Field(default="TS_01", description="Base name of the output files.")
    # -- acquisition ----------------------------------------------------------------------
    pixel_size_a: float = Field(default=4.0, gt=0, description="Pixel size in Å.")
    shape_px: tuple[int, int] = Field(
        default=(128, 128), description="Image size (height, width) in pixels."
    )
    voltage_kv: float = Field(default=300.0, gt=0, description="Acceleration voltage in kV.")
    cs_mm: float = Field(default=2.7, ge=0, description="Spherical aberration in mm.")
    amplitude_contrast: float = Field(
        default=0.07, ge=0, lt=1, description="Amplitude contrast (fraction)."
    )
    # -- tilt scheme ----------------------------------------------------------------------
    scheme: TiltScheme = Field(
        default="dose_symmetric", description="Tilt scheme: dose_symmetric or bidirectional."
    )
    min_angle_deg: float = Field(default=-60.0, ge=-90, le=90, description="Lowest tilt (°).")
    max_angle_deg: float = Field(default=60.0, ge=-90, le=90, description="Highest tilt (°).")
    step_deg: float = Field(default=15.0, gt=0, description="Tilt increment in degrees.")
    start_angle_deg: float = Field(default=0.0, description="First tilt in degrees.")
    group_size: int = Field(
        default=2, ge=1, description="Tilts per group of the dose-symmetric scheme (Hagen: 2)."
    )
    first_direction: Literal[1, -1] = Field(
        default=1, description="Direction of the first group/branch: 1 = positive angles."
    )
    tilt_axis_angle_deg: float = Field(
        default=175.0,
        description="In-plane direction of the tilt axis from +x towards +y in degrees "
        "(conventions §9; SerialEM/IMOD/Warp axis angle = this − 90°).",
    )
    angle_error_std_deg: float = Field(
        default=0.3, ge=0, description="RMS error of the true tilt angles vs nominal (°)."
    )
    shift_error_std_a: float = Field(
        default=20.0, ge=0, description="RMS stage-shift error per tilt in Å."
    )
    dose_per_tilt_e_per_a2: float = Field(
        default=3.0, gt=0, description="Exposure per tilt in e⁻/Å²."
    )
    exposure_time_s: float = Field(default=1.0, gt=0, description="Exposure time per tilt (s).")
    frames_per_tilt: int = Field(
        default=1, ge=1, description="Frames per tilt movie (1: no movies are written)."
    )
    frame_jitter_a: float = Field(
        default=0.5, ge=0, description="RMS frame-to-frame shift within a tilt movie in Å."
    )
    stack_order: Literal["acquisition", "angle"] = Field(
        default="acquisition",
        description="Order of the tilts in the stack, .tlt, .xf and .mdoc: acquisition "
        "(as SerialEM writes) or angle (sorted ascending).",
    )
    # -- CTF ------------------------------------------------------------------------------
    target_defocus_um: float = Field(
        default=3.0, description="Target defocus in µm (underfocus positive)."
    )
    defocus_std_um: float = Field(
        default=0.2, ge=0, description="RMS deviation of each tilt's defocus from the target."
    )
    astigmatism_um: float = Field(default=0.05, ge=0, description="Astigmatism (U − V)/2 in µm.")
    astigmatism_angle_deg: float = Field(
        default=30.0, description="Angle of U from +x towards +y in degrees."
    )
    astigmatism_std_um: float = Field(
        default=0.01, ge=0, description="RMS per-tilt variation of each astigmatism component."
    )
    # -- specimen -------------------------------------------------------------------------
    thickness_a: float = Field(default=300.0, gt=0, description="Slab (ice) thickness in Å.")
    pretilt_deg: float = Field(
        default=0.0,
        description="Inclination of the slab (lamella) about the tilt axis in degrees.",
    )
    ice_density_g_per_cm3: float = Field(
        default=VITREOUS_ICE_DENSITY_G_PER_CM3,
        ge=0,
        description="Density of the vitreous ice in g/cm³ (sets the strength of its texture).",
    )
    ice_texture: bool = Field(
        default=True,
        description="Molecular texture of the ice (uncorrelated water molecules: projected-"
        "potential fluctuations of variance ∝ path length, simulate/ice.py).",
    )
    inelastic_mean_free_path_a: float = Field(
        default=3800.0, gt=0, description="Inelastic mean free path in ice in Å (zero-loss)."
    )
    n_particles: int = Field(default=6, ge=0, description="Particles in the field (at most).")
    particle_spacing: float = Field(
        default=1.1, ge=0, description="Minimal centre distance in units of the sum of radii."
    )
    species: tuple[SpeciesSpec, ...] = Field(
        default=(SpeciesSpec(name="protein_a", mass_kda=300.0),),
        description="Species of the specimen.",
    )

    @model_validator(mode="after")
    def _check(self) -> TiltSeriesSettings:
        if self.min_angle_deg > self.max_angle_deg:
            raise ValueError(
                f"min_angle_deg {self.min_angle_deg} exceeds max_angle_deg {self.max_angle_deg}"
            )
        if not self.min_angle_deg <= self.start_angle_deg <= self.max_angle_deg:
            raise ValueError(f"start_angle_deg {self.start_angle_deg} is outside the tilt range")
        if min(self.shape_px) < 16:
            raise ValueError(f"shape_px must be at least 16 × 16, got {self.shape_px}")
        if not self.species:
            raise ValueError("at least one species is needed")
        if abs(self.pretilt_deg) >= 80:
            raise ValueError(f"pretilt_deg must be within ±80°, got {self.pretilt_deg}")
        return self

    @property
    def field_size_a(self) -> tuple[float, float]:
        """Field of view ``(width, height)`` in Å."""
        return (self.shape_px[1] * self.pixel_size_a, self.shape_px[0] * self.pixel_size_a)

    @property
    def mdoc_tilt_axis_angle_deg(self) -> float:
        """The tilt-axis angle as SerialEM, IMOD and Warp give it: from +y towards −x
        (``tilt_axis_angle_deg − 90``), in (−180°, 180°]."""
        angle = (self.tilt_axis_angle_deg - 90.0) % 360.0
        return angle - 360.0 if angle > 180.0 else angle


TILT_SERIES_PRESETS: dict[str, TiltSeriesSettings] = {
    # Unit tests: 128² at 4 Å, ±60° in 15° steps (9 tilts), a few particles.
    "tiny": TiltSeriesSettings(),
    # Integration: 1024² at 2 Å, ±60° in 3° steps (41 tilts), two species, thicker ice.
    "small": TiltSeriesSettings(
        pixel_size_a=2.0,
        shape_px=(1024, 1024),
        step_deg=3.0,
        dose_per_tilt_e_per_a2=3.0,
        thickness_a=1000.0,
        n_particles=80,
        species=(
            SpeciesSpec(name="protein_a", mass_kda=300.0),
            SpeciesSpec(name="protein_b", mass_kda=500.0, symmetry="C2", abundance=0.5),
        ),
    ),
}


def tilt_series_preset(name: str, **overrides: object) -> TiltSeriesSettings:
    """The settings of preset ``name`` with ``overrides`` applied (and validated)."""
    return preset_with_overrides(TILT_SERIES_PRESETS, name, overrides)
