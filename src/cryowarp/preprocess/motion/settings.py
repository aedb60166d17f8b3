"""Typed settings of frame-series motion correction and of reading a movie.

:class:`MovieInputSettings` says how raw frames become gain-corrected frames (gain orientation,
defects, EER grouping, binning); :class:`MotionSettings` says how motion is fitted and how the
average is made. Both are pydantic models with unknown keys rejected; the CLI and the pipeline
read their defaults and help texts from here. Conventions: docs/conventions.md §4 (shifts),
§7 (dose weighting), §12 (grids), §14 (gain).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = ["MOTION_SETTINGS_VERSION", "MotionSettings", "MovieInputSettings"]

MOTION_SETTINGS_VERSION = 1


class MovieInputSettings(BaseModel):
    """How a movie's raw frames are read and corrected before anything else."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    pixel_size_a: float | None = Field(
        default=None,
        gt=0,
        description="Pixel size of the raw frames in Å (unset: from the file header).",
    )
    dose_per_frame_e_per_a2: float = Field(
        default=1.0, gt=0, description="Exposure per frame (per EER fraction) in e⁻/Å²."
    )
    pre_exposure_e_per_a2: float = Field(
        default=0.0, ge=0, description="Exposure before the first frame in e⁻/Å²."
    )
    gain_path: str | None = Field(
        default=None, description="Gain reference (MRC or TIFF), multiplied into the frames."
    )
    gain_transpose: bool = Field(default=False, description="Transpose the gain first.")
    gain_rotation_quarter_turns: int = Field(
        default=0,
        ge=0,
        le=3,
        description="Then rotate the gain by this many 90° turns counter-clockwise "
        "(RELION --gain_rot, MotionCor2 -RotGain).",
    )
    gain_flip: Literal["none", "x", "y"] = Field(
        default="none",
        description="Then flip the gain: y = upside down (RELION --gain_flip 1), "
        "x = left-right (2).",
    )
    check_gain_orientation: bool = Field(
        default=True,
        description="Refuse a gain whose transposed/rotated/flipped version flattens the frame "
        "sum clearly better (a wrongly oriented gain).",
    )
    defects_path: str | None = Field(
        default=None,
        description="Defect list (SerialEM .txt) or mask image (MRC/TIFF, non-zero = bad).",
    )
    detect_hot_pixels: bool = Field(
        default=True, description="Also treat pixels far brighter than the frame sum as defects."
    )
    flip_tiff_y: bool = Field(
        default=True, description="Flip TIFF movies and gains along y (as SerialEM writes them)."
    )
    eer_upsampling: Literal[1, 2, 4] = Field(
        default=1, description="EER rendering grid: 1 = physical pixels, 2 or 4 super-resolution."
    )
    eer_n_fractions: int | None = Field(
        default=None, ge=1, description="Group raw EER frames into this many fractions."
    )
    eer_dose_per_fraction_e_per_a2: float | None = Field(
        default=None,
        gt=0,
        description="Or group raw EER frames into fractions of this dose (e⁻/Å²); needs "
        "eer_total_dose_e_per_a2.",
    )
    eer_total_dose_e_per_a2: float | None = Field(
        default=None, gt=0, description="Total dose of an EER movie in e⁻/Å² (for grouping)."
    )
    bin_factor: float = Field(
        default=1.0,
        ge=1.0,
        description="Bin the output by Fourier cropping: output pixel = raw pixel × factor "
        "(2 for super-resolution frames).",
    )
    min_frames: int = Field(
        default=3, ge=2, description="Refuse movies with fewer frames than this."
    )

    @model_validator(mode="after")
    def _eer_grouping(self) -> MovieInputSettings:
        if self.eer_n_fractions is not None and self.eer_dose_per_fraction_e_per_a2 is not None:
            raise ValueError("give eer_n_fractions or eer_dose_per_fraction_e_per_a2, not both")
        if self.eer_dose_per_fraction_e_per_a2 is not None and self.eer_total_dose_e_per_a2 is None:
            raise ValueError("eer_dose_per_fraction_e_per_a2 needs eer_total_dose_e_per_a2")
        return self


class MotionSettings(BaseModel):
    """How motion is fitted (Warp's model) and how the corrected average is made."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    schema_version: int = Field(default=MOTION_SETTINGS_VERSION, description="Settings version.")
    # -- fit ------------------------------------------------------------------------------
    min_resolution_a: float = Field(
        default=500.0, gt=0, description="Lowest resolution used in the fit, in Å."
    )
    max_resolution_a: float = Field(
        default=7.0, gt=0, description="Highest resolution used in the fit, in Å."
    )
    bfactor_a2: float = Field(
        default=-500.0,
        le=0,
        description="B-factor (Å², ≤ 0) weighting the spatial frequencies of the fit.",
    )
    patch_size_px: int = Field(
        default=512,
        ge=32,
        description="Patch size in pixels of the (binned) output grid; patches are "
        "clipped to the frame.",
    )
    patch_overlap: float = Field(
        default=0.5, ge=0, lt=1, description="Overlap of neighbouring patches (fraction)."
    )
    global_temporal_nodes: int | None = Field(
        default=None,
        ge=1,
        description="Temporal nodes of the global 1×1×T grid (unset: one per frame; fewer "
        "regularise finely fractionated data).",
    )
    local_grid: tuple[int, int, int] = Field(
        default=(5, 5, 3),
        description="Local motion grid nodes (X, Y, T); 1×1×1 turns local motion off.",
    )
    max_iterations: int = Field(
        default=60, ge=1, description="L-BFGS iterations per refinement stage."
    )
    # -- average --------------------------------------------------------------------------
    dose_weighting: bool = Field(
        default=True, description="Weight frames by exposure (Warp: B = −4 Å² per e⁻/Å²)."
    )
    local_tolerance_px: float = Field(
        default=0.1,
        ge=0,
        description="Frames whose local deformations differ by less than this (output pixels) "
        "are deformed together when averaging; 0 deforms every frame on its own.",
    )
    write_odd_even: bool = Field(
        default=True, description="Also write averages of the odd and even frames."
    )
    write_aligned_stack: bool = Field(
        default=False, description="Also write the aligned (not dose-weighted) frames."
    )
    write_png: bool = Field(default=True, description="Also write a PNG of the motion tracks.")

    @model_validator(mode="after")
    def _check(self) -> MotionSettings:
        if self.max_resolution_a >= self.min_resolution_a:
            raise ValueError(
                f"max_resolution_a ({self.max_resolution_a} Å) must be finer (smaller) than "
                f"min_resolution_a ({self.min_resolution_a} Å)"
            )
        if min(self.local_grid) < 1:
            raise ValueError(f"local_grid needs ≥ 1 node per axis, got {self.local_grid}")
        if self.local_motion and self.local_grid[2] < 2:
            raise ValueError(
                f"local_grid {tuple(self.local_grid)} has one temporal node, which is held at "
                "zero (frame 0 is the reference), so no local motion could be fitted; use at "
                "least 2 temporal nodes, or (1, 1, 1) to turn local motion off"
            )
        return self

    @property
    def local_motion(self) -> bool:
        """Whether a local grid is fitted (more than one node in some axis)."""
        return max(self.local_grid) > 1
