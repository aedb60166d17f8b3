"""Typed settings of BoxNet picking (the project's ``picking`` section).

:class:`PickingSettings` names the model, the particle diameter, the thresholds that turn
BoxNet's probability maps into picks and an artefact mask, and how micrographs are tiled for
the network. A pydantic model with unknown keys rejected; the CLI and the pipeline read
defaults and help texts from here. What each threshold does: docs/picking_inference.md.
All pixel counts are at the picking pixel size (8 Å/px,
:data:`~cryowarp.preprocess.picking.prepare.PICKING_PIXEL_SIZE_A`).
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from cryowarp.preprocess.picking.model_file import DEFAULT_BOXNET_MODEL

__all__ = ["PICKING_SETTINGS_VERSION", "TILE_MULTIPLE_PX", "PickingSettings"]

PICKING_SETTINGS_VERSION = 1

TILE_MULTIPLE_PX = 8
"""Tile sides and overlaps are multiples of this (BoxNet's default ``multiple_px``), so that
every tile sees the same phase of the network's stride-2 grids."""


class PickingSettings(BaseModel):
    """How particles are picked and artefacts masked with BoxNet."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    schema_version: int = Field(default=PICKING_SETTINGS_VERSION, description="Settings version.")
    model: str = Field(
        default=DEFAULT_BOXNET_MODEL,
        min_length=1,
        description="BoxNet model: the name of a shipped or project model "
        "(e.g. boxnet_generic_v1) or the path of a .boxnet.pt file.",
    )
    diameter_a: float = Field(
        default=150.0,
        gt=0,
        description="Particle diameter in Å: two picks closer than this are the same particle "
        "(the one of larger area is kept); also the circle drawn in the overlay.",
    )
    threshold: float = Field(
        default=0.5,
        ge=0,
        le=1,
        description="Particle score threshold (0–1): a pick is kept when its score, the "
        "highest particle probability in its connected component, is at least this.",
    )
    candidate_threshold: float | None = Field(
        default=None,
        ge=0,
        le=1,
        description="Particle probability (0–1) at which connected components are traced; "
        "none: the same as threshold. Set it lower than threshold to trace pick shapes once "
        "and re-threshold above it by score alone.",
    )
    min_distance_to_mask_a: float = Field(
        default=0.0,
        ge=0,
        description="Picks whose centre is closer than this to the artefact mask (Å, to the "
        "centre of the nearest masked 8 Å pixel) are dropped; picks inside the mask always "
        "are. 0 drops only picks inside the mask.",
    )
    artefact_threshold: float = Field(
        default=0.1,
        gt=0,
        lt=1,
        description="Artefact probability (0–1) above which a pixel belongs to the artefact "
        "mask (carbon, ethane drops, ice contamination).",
    )
    min_artefact_component_px: int = Field(
        default=20,
        ge=1,
        description="Smallest artefact region kept in the mask, in 8 Å pixels "
        "(8-connected); smaller specks are ignored.",
    )
    tile_px: int = Field(
        default=256,
        ge=32,
        le=4096,
        description="Side of the square tiles the network sees, in 8 Å pixels (a multiple "
        "of 8; tiles shrink to fit micrographs smaller than one tile).",
    )
    tile_overlap_px: int = Field(
        default=64,
        ge=0,
        description="Overlap of neighbouring tiles in 8 Å pixels (a multiple of 8, at most "
        "half a tile). Every pixel is predicted at least half the overlap (256 Å at 64 px) "
        "from the edge of the tile that weighs most in its value.",
    )
    batch_tiles: int = Field(
        default=4, ge=1, le=256, description="Tiles per forward pass of the network."
    )

    @field_validator("tile_px", "tile_overlap_px")
    @classmethod
    def _multiple_of_eight(cls, value: int) -> int:
        if value % TILE_MULTIPLE_PX:
            raise ValueError(f"must be a multiple of {TILE_MULTIPLE_PX} pixels, got {value}")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> PickingSettings:
        if 2 * self.tile_overlap_px > self.tile_px:
            raise ValueError(
                f"tile_overlap_px ({self.tile_overlap_px}) must be at most half of tile_px "
                f"({self.tile_px})"
            )
        if self.candidate_threshold is not None and self.candidate_threshold > self.threshold:
            raise ValueError(
                f"candidate_threshold ({self.candidate_threshold}) must not exceed threshold "
                f"({self.threshold})"
            )
        return self

    @property
    def trace_threshold(self) -> float:
        """The particle probability at which components are traced."""
        return self.threshold if self.candidate_threshold is None else self.candidate_threshold
