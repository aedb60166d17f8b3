"""What the simulators need of a species: the interface of
:class:`cryowarp.simulate.species.Species`, so that tests can pass simple stand-ins."""

from __future__ import annotations

from typing import Protocol

import torch

__all__ = ["SpeciesLike"]


class SpeciesLike(Protocol):
    """What the simulator needs of a species (:class:`cryowarp.simulate.species.Species`)."""

    @property
    def name(self) -> str: ...

    @property
    def potential_v(self) -> torch.Tensor: ...  # (d, h, w) volts

    @property
    def pixel_size_a(self) -> float: ...

    def radius_a(self, threshold_fraction: float = 0.05) -> float: ...

    def at_pixel_size(self, pixel_size_a: float, box_size_px: int | None = None) -> SpeciesLike: ...
