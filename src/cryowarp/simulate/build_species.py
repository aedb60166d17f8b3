"""The species a simulation's settings name, built at its pixel size.

One function for the frame-series and tilt-series simulators, so that the same ``seed`` and
species specification give the same particles in both.
"""

from __future__ import annotations

import zlib
from typing import Protocol

from cryowarp.simulate.presets import SpeciesSpec
from cryowarp.simulate.procedural import procedural_species
from cryowarp.simulate.species import Species, species_from_map, species_from_model

__all__ = ["build_species", "species_seed"]


class _SpeciesSettings(Protocol):
    """What :func:`build_species` needs of ``FrameSeriesSettings``/``TiltSeriesSettings``."""

    @property
    def species(self) -> tuple[SpeciesSpec, ...]: ...

    @property
    def pixel_size_a(self) -> float: ...


def species_seed(seed: int, name: str) -> int:
    """Seed of the procedural species ``name`` of a dataset simulated with ``seed``."""
    return zlib.crc32(f"{seed}/species/{name}".encode())


def build_species(settings: _SpeciesSettings, *, seed: int) -> list[Species]:
    """The species of ``settings``, in order, at ``settings.pixel_size_a``.

    Procedural species are seeded by ``seed`` and their name (:func:`species_seed`); atomic
    models are computed at the pixel size; maps are Fourier-resampled to it
    (:meth:`Species.at_pixel_size`) when theirs differs by more than 10⁻⁶ relative.
    """
    return [_build_one(spec, settings.pixel_size_a, seed) for spec in settings.species]


def _build_one(spec: SpeciesSpec, pixel_size_a: float, seed: int) -> Species:
    if spec.kind == "procedural":
        return procedural_species(
            mass_kda=spec.mass_kda,
            symmetry=spec.symmetry,
            seed=species_seed(seed, spec.name),
            pixel_size_a=pixel_size_a,
            name=spec.name,
        )
    path = str(spec.path)  # SpeciesSpec guarantees a path for map and model species
    if spec.kind == "model":
        return species_from_model(path, pixel_size_a=pixel_size_a, name=spec.name)
    loaded = species_from_map(path, name=spec.name, symmetry=spec.symmetry)
    if abs(loaded.pixel_size_a - pixel_size_a) <= 1e-6 * pixel_size_a:
        return loaded
    return loaded.at_pixel_size(pixel_size_a)
