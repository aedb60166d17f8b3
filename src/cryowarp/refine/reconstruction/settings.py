"""Typed settings of a reconstruction from particles with known poses (docs/reconstruction.md).

:class:`ReconstructionSettings` says which point group to impose, how the Fourier accumulators
are padded and regularised, how the particles are split into half-sets when the STAR file
does not say, and which soft mask the masked FSC uses. The CLI reads its defaults and help
texts from here (one source of truth).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from cryowarp.core.symmetry import point_group_order
from cryowarp.errors import InvalidValuesError

__all__ = ["RECONSTRUCTION_SETTINGS_VERSION", "ReconstructionSettings"]

RECONSTRUCTION_SETTINGS_VERSION = 1


class ReconstructionSettings(BaseModel):
    """How half-maps and the full map are reconstructed from posed particle images."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    schema_version: int = Field(
        default=RECONSTRUCTION_SETTINGS_VERSION, description="Settings version."
    )
    symmetry: str = Field(
        default="C1",
        description="Point group imposed, in RELION's names and orientations: C<n>, D<n>, T, "
        "O, I (= I2) or I1-I4 (docs/conventions.md §10). Each image is inserted at all "
        "symmetry-equivalent poses.",
    )
    mask_diameter_a: float | None = Field(
        default=None,
        gt=0,
        description="Diameter in Å of the soft spherical mask for the masked FSC (and the "
        "FSC that sets the Wiener filter); none: only the unmasked FSC.",
    )
    mask_soft_edge_px: float = Field(
        default=5.0,
        ge=0,
        description="Width in pixels of the raised-cosine edge of that mask, outside the diameter.",
    )
    batch_size: int = Field(
        default=256,
        ge=1,
        description="Particle images read and inserted at once (memory grows with it).",
    )
    oversampling: float = Field(
        default=2.0,
        ge=1.0,
        le=4.0,
        description="Padding factor of the Fourier accumulators (2 as in RELION).",
    )
    regularisation: Literal["wiener", "none"] = Field(
        default="wiener",
        description="How the full map is regularised. wiener: RELION-like, dividing by "
        "weight + average weight of the shell / SSNR(shell), the SSNR from the half-map FSC; "
        "none: data / weight (relion_reconstruct's default). Half-maps are always "
        "data / weight.",
    )
    tau2_fudge: float = Field(
        default=1.0,
        gt=0,
        description="Multiplies the SSNR of the Wiener filter (RELION's --tau2_fudge, T); "
        "above 1 regularises less.",
    )
    half_set_seed: int = Field(
        default=0,
        description="Seed of the random half-set split used when the STAR file has no "
        "rlnRandomSubset column (the split is written to particles_half_sets.star).",
    )
    skip_bad_stacks: bool = Field(
        default=False,
        description="Skip (and report) particles whose image stack is missing or unreadable "
        "instead of stopping.",
    )

    @field_validator("symmetry")
    @classmethod
    def _known_point_group(cls, value: str) -> str:
        try:
            point_group_order(value)
        except InvalidValuesError as error:
            raise ValueError(error.problem + (f" ({error.hint})" if error.hint else "")) from error
        return value.strip().upper()
