"""Typed settings of CTF estimation (Warp's defaults).

:class:`CtfSettings` says how power spectra are made (window, overlap, frames or average), where
the defocus is searched, which parameters are fitted and against which resolution range. A
pydantic model with unknown keys rejected; the CLI and the pipeline read defaults and help
texts from here. Conventions: docs/conventions.md §6 (CTF), §12 (grids).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = ["CTF_SETTINGS_VERSION", "CtfSettings"]

CTF_SETTINGS_VERSION = 1


class CtfSettings(BaseModel):
    """How the CTF of a micrograph (or of a precomputed power spectrum) is estimated."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    schema_version: int = Field(default=CTF_SETTINGS_VERSION, description="Settings version.")
    # -- spectra --------------------------------------------------------------------------
    window_size_px: int = Field(
        default=512,
        ge=64,
        le=2048,
        description="Side of the square patches whose power spectra are fitted, in pixels "
        "(even; 512–1024 for real data; clipped to the image when it is smaller).",
    )
    patch_overlap: float = Field(
        default=0.5, ge=0, lt=1, description="Overlap of neighbouring patches (fraction)."
    )
    spectrum_source: Literal["frames", "average"] = Field(
        default="frames",
        description="For movies: frames sums the power spectra of the individual frames "
        "(immune to motion blur, Warp's choice); average takes the power spectrum of the frame "
        "sum (better signal when the frames are already aligned).",
    )
    # -- search ---------------------------------------------------------------------------
    defocus_min_um: float = Field(
        default=0.3, gt=0, description="Lowest defocus searched in µm (underfocus positive)."
    )
    defocus_max_um: float = Field(
        default=5.0, gt=0, description="Highest defocus searched in µm (underfocus positive)."
    )
    defocus_step_um: float = Field(
        default=0.01, gt=0, description="Step of the exhaustive 1-D defocus search in µm."
    )
    min_resolution_a: float = Field(
        default=30.0, gt=0, description="Lowest resolution used in the fit (Å): start of the range."
    )
    max_resolution_a: float = Field(
        default=4.0,
        gt=0,
        description="Highest resolution used in the fit (Å): end of the range (raised to "
        "Nyquist when finer than it).",
    )
    # -- model ----------------------------------------------------------------------------
    fit_astigmatism: bool = Field(
        default=True, description="Fit global astigmatism (magnitude and angle)."
    )
    fit_phase_shift: bool = Field(
        default=False, description="Fit a phase-plate shift (Volta phase plate data)."
    )
    phase_shift_min_deg: float = Field(
        default=0.0, ge=-180, le=360, description="Lowest phase shift searched in degrees."
    )
    phase_shift_max_deg: float = Field(
        default=180.0, ge=-180, le=360, description="Highest phase shift searched in degrees."
    )
    phase_shift_step_deg: float = Field(
        default=5.0, gt=0, description="Step of the phase-shift search in degrees."
    )
    spatial_grid: tuple[int, int] | Literal["plane"] = Field(
        default=(5, 5),
        description="Defocus model over the field: spline grid nodes (X, Y) (Warp dims "
        "X×Y×1; (1, 1) = constant) or 'plane' (a tilted plane, 3 parameters). At most about "
        "half the patches per axis (≥ 2) are used, and the constant defocus is kept when the "
        "spatial model does not improve the fit significantly.",
    )
    max_iterations: int = Field(default=60, ge=1, description="L-BFGS iterations of the 2-D fit.")
    resolution_threshold: float = Field(
        default=0.3,
        gt=0,
        lt=1,
        description="Thon rings count as fitted up to where the sliding-window correlation "
        "of fitted CTF and spectrum falls below this value.",
    )
    resolution_window_samples: int = Field(
        default=16,
        ge=16,
        description="Width of the sliding window of the resolution estimate (1-D samples).",
    )

    @model_validator(mode="after")
    def _check(self) -> CtfSettings:
        if self.window_size_px % 2:
            raise ValueError(f"window_size_px must be even, got {self.window_size_px}")
        if self.defocus_max_um <= self.defocus_min_um:
            raise ValueError(
                f"defocus_max_um ({self.defocus_max_um} µm) must exceed defocus_min_um "
                f"({self.defocus_min_um} µm)"
            )
        if self.max_resolution_a >= self.min_resolution_a:
            raise ValueError(
                f"max_resolution_a ({self.max_resolution_a} Å) must be finer (smaller) than "
                f"min_resolution_a ({self.min_resolution_a} Å)"
            )
        if self.fit_phase_shift and self.phase_shift_max_deg < self.phase_shift_min_deg:
            raise ValueError(
                f"phase_shift_max_deg ({self.phase_shift_max_deg}°) is below "
                f"phase_shift_min_deg ({self.phase_shift_min_deg}°)"
            )
        if not isinstance(self.spatial_grid, str) and min(self.spatial_grid) < 1:
            raise ValueError(f"spatial_grid needs ≥ 1 node per axis, got {self.spatial_grid}")
        return self

    def fit_range_per_a(self, pixel_size_a: float) -> tuple[float, float]:
        """``(low, high)`` frequencies of the fit range in Å⁻¹ at ``pixel_size_a`` (Å): from
        ``1/min_resolution_a`` to ``1/max_resolution_a``, at most 98 % of Nyquist."""
        nyquist = 0.5 / pixel_size_a
        return 1.0 / self.min_resolution_a, min(1.0 / self.max_resolution_a, 0.98 * nyquist)

    @property
    def grid_dims(self) -> tuple[int, int, int]:
        """Warp dims (X, Y, 1) of the stored defocus grid ('plane' is stored on 2 × 2 nodes,
        which a bilinear surface through a plane reproduces exactly)."""
        if isinstance(self.spatial_grid, str):
            return (2, 2, 1)
        return (self.spatial_grid[0], self.spatial_grid[1], 1)
