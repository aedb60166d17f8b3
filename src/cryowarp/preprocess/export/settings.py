"""Settings of particle extraction (docs/relion_export.md); the CLI reads defaults from here."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["CtfCorrection", "ExtractionSettings", "ExtractionSource"]

ExtractionSource = Literal["frames", "average"]
CtfCorrection = Literal["none", "phase_flip", "premultiply"]


class ExtractionSettings(BaseModel):
    """How particles are cut out, weighted, rescaled and normalised."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    box_size_px: int = Field(
        default=128,
        ge=16,
        multiple_of=2,
        description="Edge of the extracted box in output pixels (even).",
    )
    pixel_size_a: float | None = Field(
        default=None,
        gt=0,
        description="Output pixel size in Å (Fourier rescaling, never finer than the raw "
        "frames); default: the pixel size of the motion-corrected averages. The box read "
        "from the frames is the nearest even size, so the pixel size written is "
        "raw pixel × read box / output box.",
    )
    source: ExtractionSource = Field(
        default="frames",
        description="'frames': from the raw frames, each particle shifted by the motion at "
        "its centre in every frame and exposure-weighted; 'average': from the "
        "motion-corrected average (and its odd/even halves).",
    )
    particle_diameter_a: float | None = Field(
        default=None,
        gt=0,
        description="Particle diameter in Å; images are normalised to zero mean and unit "
        "standard deviation of the background outside this circle. Default: outside 75 % of "
        "the box radius (RELION's default).",
    )
    invert_contrast: bool = Field(
        default=True, description="Make protein white, as RELION and cryoSPARC expect."
    )
    normalize: bool = Field(
        default=True, description="Normalise against the background (particle_diameter_a)."
    )
    ctf_correction: CtfCorrection = Field(
        default="none",
        description="'phase_flip' multiplies each spectrum by the sign of its CTF, "
        "'premultiply' by the CTF (RELION rlnCtfDataArePhaseFlipped / "
        "rlnCtfDataAreCtfPremultiplied); done on a box twice as large, then cropped.",
    )
    dose_weighting: bool = Field(
        default=True,
        description="Weight frames per frequency by exp(-4 D k²/4) normalised over frames "
        "(Warp's exposure weighting; 'frames' source only).",
    )
    odd_even: bool = Field(
        default=True,
        description="Also write half stacks from odd (1, 3, 5…) and even (0, 2, 4…) frames "
        "(or from the odd/even averages).",
    )
    float16: bool = Field(
        default=False, description="Write stacks as float16 (MRC mode 12) to halve their size."
    )
    skip_edge_particles: bool = Field(
        default=False,
        description="Leave out particles whose box crosses the micrograph edge; otherwise "
        "the missing pixels repeat the nearest edge pixel.",
    )
