"""Typed settings of the frame-series simulator and its presets (tiny, small, k3).

Every physical parameter of a simulated movie lives in :class:`FrameSeriesSettings`; the CLI
(``cryowarp simulate frame-series``) reads its defaults and help texts from here.  Units are in
the names; conventions: docs/conventions.md; the physics: docs/simulator.md.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, model_validator

from cryowarp.simulate.ice import VITREOUS_ICE_DENSITY_G_PER_CM3

__all__ = [
    "FRAME_SERIES_PRESETS",
    "FrameSeriesJob",
    "FrameSeriesSettings",
    "PresetName",
    "SpeciesSpec",
    "frame_series_preset",
    "preset_with_overrides",
]

#: Settings schema version (written into ground_truth.json).
SETTINGS_SCHEMA_VERSION = 2  # 2: ice_density_g_per_cm3 and ice_texture replace the MIP

PresetName = Literal["tiny", "small", "k3"]

_Settings = TypeVar("_Settings", bound=BaseModel)


class SpeciesSpec(BaseModel):
    """One species of the specimen: where its potential comes from and how abundant it is."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(description="Name of the species (used in the ground truth).")
    kind: Literal["procedural", "map", "model"] = Field(
        default="procedural",
        description="procedural: a generated protein-like blob; map: an MRC potential map; "
        "model: a PDB/mmCIF atomic model.",
    )
    path: str | None = Field(default=None, description="File of a map or model species.")
    mass_kda: float = Field(default=150.0, gt=0, description="Mass of a procedural species (kDa).")
    symmetry: str = Field(default="C1", description="Point group of a procedural species.")
    abundance: float = Field(default=1.0, gt=0, description="Relative number of particles.")

    @model_validator(mode="after")
    def _path_when_needed(self) -> SpeciesSpec:
        if self.kind != "procedural" and not self.path:
            raise ValueError(f"species {self.name!r} of kind {self.kind!r} needs a path")
        return self


class FrameSeriesSettings(BaseModel):
    """Every parameter of a simulated movie (frame series).

    Ranges ``(low, high)`` are sampled uniformly per movie.  Defaults are those of the
    ``small`` preset's physics on a 256-pixel field (the ``tiny`` preset).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    schema_version: int = Field(default=SETTINGS_SCHEMA_VERSION, description="Settings version.")
    # -- acquisition ----------------------------------------------------------------------
    pixel_size_a: float = Field(default=1.5, gt=0, description="Pixel size in Å.")
    shape_px: tuple[int, int] = Field(
        default=(256, 256), description="Frame size (height, width) in pixels."
    )
    n_frames: int = Field(default=8, ge=1, description="Number of frames per movie.")
    dose_per_frame_e_per_a2: float = Field(
        default=1.0, gt=0, description="Exposure per frame in e⁻/Å²."
    )
    voltage_kv: float = Field(default=300.0, gt=0, description="Acceleration voltage in kV.")
    cs_mm: float = Field(default=2.7, ge=0, description="Spherical aberration in mm.")
    amplitude_contrast: float = Field(
        default=0.07, ge=0, lt=1, description="Amplitude contrast (fraction)."
    )
    # -- CTF ------------------------------------------------------------------------------
    defocus_range_um: tuple[float, float] = Field(
        default=(1.0, 2.5),
        description="Range of the defocus at the field centre in µm (underfocus positive).",
    )
    astigmatism_range_um: tuple[float, float] = Field(
        default=(0.0, 0.05), description="Range of the astigmatism (U − V)/2 in µm."
    )
    astigmatism_angle_deg: float | None = Field(
        default=None, description="Angle of U from +x towards +y in degrees (random if unset)."
    )
    phase_shift_deg: float = Field(default=0.0, description="Phase-plate shift in degrees.")
    sample_tilt_range_deg: tuple[float, float] = Field(
        default=(0.0, 0.0), description="Range of the sample-plane tilt in degrees."
    )
    sample_tilt_axis_deg: float | None = Field(
        default=None,
        description="Tilt-axis direction from +x towards +y in degrees (random if unset).",
    )
    # -- specimen -------------------------------------------------------------------------
    ice_thickness_a: float = Field(default=300.0, ge=0, description="Ice thickness in Å.")
    ice_density_g_per_cm3: float = Field(
        default=VITREOUS_ICE_DENSITY_G_PER_CM3,
        ge=0,
        description="Density of the vitreous ice in g/cm³; with the scattering factors of "
        "water it sets the mean inner potential (0.92 g/cm³: 4.48 V) and the texture.",
    )
    ice_texture: bool = Field(
        default=True,
        description="Molecular texture of the ice (uncorrelated water molecules: white "
        "projected-potential fluctuations of variance ∝ thickness); the main source of "
        "Thon rings.",
    )
    ice_thickness_variation_a: float = Field(
        default=10.0, ge=0, description="RMS of smooth ice-thickness variations in Å."
    )
    ice_variation_length_a: float = Field(
        default=300.0, gt=0, description="Correlation length of the thickness variations in Å."
    )
    n_particles: int = Field(default=6, ge=0, description="Particles per movie (at most).")
    particle_spacing: float = Field(
        default=1.1, ge=0, description="Minimal centre distance in units of the sum of radii."
    )
    species: tuple[SpeciesSpec, ...] = Field(
        default=(SpeciesSpec(name="protein_a", mass_kda=150.0),),
        description="Species of the specimen.",
    )
    # -- motion ---------------------------------------------------------------------------
    drift_a: float = Field(default=10.0, ge=0, description="Total global stage drift in Å.")
    jitter_a: float = Field(default=0.5, ge=0, description="RMS frame-to-frame jitter in Å.")
    local_motion_a: float = Field(
        default=2.0, ge=0, description="Amplitude of the local (beam-induced) motion in Å."
    )
    local_grid_shape: tuple[int, int, int] = Field(
        default=(3, 3, 3), description="Local-motion spline grid nodes (x, y, t)."
    )
    # -- detector -------------------------------------------------------------------------
    detector_mtf: str | None = Field(
        default="k3_300kV", description="Detector MTF table name or file (none: perfect)."
    )
    gain_sigma: float = Field(default=0.05, ge=0, description="RMS of the gain reference.")
    n_hot_pixels: int = Field(default=4, ge=0, description="Hot pixels per detector.")
    n_dead_columns: int = Field(default=1, ge=0, description="Dead columns per detector.")
    # -- artefacts ------------------------------------------------------------------------
    n_ethane_drops: int = Field(default=0, ge=0, description="Ethane drops per movie.")
    carbon_edge: bool = Field(default=False, description="Put a carbon edge in the field.")
    n_aggregates: int = Field(default=0, ge=0, description="Protein aggregates per movie.")
    # -- output ---------------------------------------------------------------------------
    output_format: Literal["mrc", "tiff"] = Field(
        default="mrc", description="Movie file format (mrc or tiff)."
    )
    frames_per_chunk: int = Field(
        default=4, ge=1, description="Frames rendered at once (bounds the memory)."
    )

    @model_validator(mode="after")
    def _check(self) -> FrameSeriesSettings:
        for name in ("defocus_range_um", "astigmatism_range_um", "sample_tilt_range_deg"):
            low, high = getattr(self, name)
            if low > high:
                raise ValueError(f"{name} must be (low, high), got ({low}, {high})")
        if min(self.shape_px) < 16:
            raise ValueError(f"shape_px must be at least 16 × 16, got {self.shape_px}")
        if min(self.local_grid_shape) < 1:
            raise ValueError(f"local_grid_shape needs ≥ 1 node per axis: {self.local_grid_shape}")
        if not self.species:
            raise ValueError("at least one species is needed")
        return self

    @property
    def field_size_a(self) -> tuple[float, float]:
        """Field of view ``(width, height)`` in Å."""
        return (self.shape_px[1] * self.pixel_size_a, self.shape_px[0] * self.pixel_size_a)


class FrameSeriesJob(BaseModel):
    """What to simulate besides the physics: the preset, how many movies, the seed."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    preset: PresetName = Field(default="tiny", description="Preset: tiny, small or k3.")
    n_movies: int = Field(default=1, ge=1, description="Number of movies to write.")
    seed: int = Field(
        default=0, ge=0, description="Seed of every random draw (same seed → same bytes)."
    )


FRAME_SERIES_PRESETS: dict[str, FrameSeriesSettings] = {
    # Unit tests: a 256² field, 8 frames, one small species.
    "tiny": FrameSeriesSettings(),
    # Integration: ~1k², 20 frames, two species.
    "small": FrameSeriesSettings(
        pixel_size_a=1.2,
        shape_px=(1024, 1024),
        n_frames=20,
        dose_per_frame_e_per_a2=2.0,
        n_particles=60,
        ice_thickness_a=400.0,
        drift_a=20.0,
        jitter_a=0.7,
        local_motion_a=3.0,
        local_grid_shape=(4, 4, 3),
        species=(
            SpeciesSpec(name="protein_a", mass_kda=150.0),
            SpeciesSpec(name="protein_b", mass_kda=300.0, symmetry="C2", abundance=0.5),
        ),
        n_hot_pixels=20,
        n_dead_columns=2,
        n_ethane_drops=1,
        n_aggregates=1,
    ),
    # Benchmarks: a full K3 movie (5760 × 4092 pixels, 40 frames).
    "k3": FrameSeriesSettings(
        pixel_size_a=0.83,
        shape_px=(4092, 5760),
        n_frames=40,
        dose_per_frame_e_per_a2=1.0,
        n_particles=300,
        ice_thickness_a=400.0,
        drift_a=40.0,
        jitter_a=1.0,
        local_motion_a=4.0,
        local_grid_shape=(5, 5, 3),
        species=(
            SpeciesSpec(name="protein_a", mass_kda=300.0, symmetry="C2"),
            SpeciesSpec(name="protein_b", mass_kda=500.0, symmetry="D2", abundance=0.5),
        ),
        n_hot_pixels=200,
        n_dead_columns=3,
        n_ethane_drops=2,
        carbon_edge=True,
        n_aggregates=3,
    ),
}


def preset_with_overrides(
    presets: Mapping[str, _Settings], name: str, overrides: Mapping[str, object]
) -> _Settings:
    """``presets[name]`` with ``overrides`` applied and the result validated.

    Raises
    ------
    ValueError
        An unknown preset name.
    pydantic.ValidationError
        An unknown setting or a value out of range.
    """
    if name not in presets:
        raise ValueError(f"unknown preset {name!r}; choose one of {sorted(presets)}")
    preset = presets[name]
    return type(preset).model_validate({**preset.model_dump(), **overrides})


def frame_series_preset(name: str, **overrides: object) -> FrameSeriesSettings:
    """The settings of preset ``name`` with ``overrides`` applied (and validated)."""
    return preset_with_overrides(FRAME_SERIES_PRESETS, name, overrides)
