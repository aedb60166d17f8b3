"""The species BoxNet's training and benchmark micrographs are simulated with.

Two disjoint families of procedural species (:func:`cryowarp.simulate.procedural.
procedural_species`), told apart by the **namespace** of their seeds:

* ``train`` — :func:`generic_species_pool`, what the generic model is trained on, plus the
  real maps and models given by path;
* ``heldout`` — :func:`heldout_species_pool`, for the benchmark: the generic model never
  sees these (seeds are ``crc32("heldout/<seed>/<i>")`` against ``crc32("train/<seed>/<i>")``,
  and the masses and point groups are drawn from another stream).

Each species gets a **diameter**: twice the largest distance from the box centre of the
voxels of its main body (the highest voxels that fill its mass at 0.81 Da/Å³, largest
connected component), i.e. the longest dimension a user would enter. Real maps are first
centred on that body, masked softly 2 px beyond it and cropped, so that noise in their box
corners neither counts as particle nor inflates the simulator's placement radius.

**Solvent displacement.** The simulator adds the ice everywhere and does not subtract the
water a particle displaces (docs/simulator.md), which roughly doubles the contrast of protein
(7.9 V) against ice (4.48 V). Pool species therefore carry ``V − V_ice · occupancy``, the
occupancy being the main body blurred by one voxel (``displace_solvent=False`` keeps the
plain potential).

Building species is the slow part of a pool (about 1 s for 4 MDa at 4 Å): build a pool once
and pass it to every micrograph.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from scipy import ndimage

from cryowarp.core.masks import spherical_mask
from cryowarp.core.resize import crop_or_pad
from cryowarp.core.symmetry import point_group_order
from cryowarp.preprocess.picking.training_data import GenericTrainingSettings
from cryowarp.simulate.ice import ice_mean_inner_potential_v
from cryowarp.simulate.procedural import procedural_species
from cryowarp.simulate.species import (
    PROTEIN_DENSITY_DA_PER_A3,
    Species,
    species_from_map,
    species_from_model,
)

__all__ = [
    "HELDOUT_MASS_RANGE_KDA",
    "REAL_SPECIES_IN_SHARED_DATA",
    "PoolSpecies",
    "generic_species_pool",
    "heldout_species_pool",
    "parse_species_path",
    "real_species",
]

REAL_SPECIES_IN_SHARED_DATA = (
    "models/apoferritin_human_6z6u/6z6u.pdb",
    "maps/emdb_EMD-1832_sfftk/emd_1832.map",
    "maps/empiar10076_50S_classD_classE_32px/10076_classD_32.mrc:13.1",
    "maps/emdb_EMD-5625_sfftk/emd_5625.map",
)
"""Real species of ``../shared/data`` (relative to it; ``:13.1`` overrides a header pixel
size of 1.0 that is not the map's)."""

HELDOUT_MASS_RANGE_KDA = (80.0, 2000.0)
"""Masses of held-out species (kDa), log-uniform."""

_MODEL_SUFFIXES = (".pdb", ".ent", ".cif", ".mmcif")
_MAP_MARGIN_PX = 2.0  # soft mask of real maps: this far beyond the body, then a cosine edge
_MAP_EDGE_PX = 3.0


@dataclass(frozen=True, eq=False)
class PoolSpecies:
    """A species of a pool with what the labels need.

    Attributes
    ----------
    species:
        The potential map (at the pool's pixel size).
    name:
        Unique within the pool.
    diameter_a:
        Longest dimension in Å (module docstring).
    mass_kda:
        Mass in kDa (procedural: exact; model: the atoms'; map: from its volume).
    source:
        Where it came from.
    real:
        ``True`` for maps and models read from files.
    """

    species: Species
    name: str
    diameter_a: float
    mass_kda: float
    source: str
    real: bool = False


def _body(potential: torch.Tensor, mass_kda: float, pixel_size_a: float) -> torch.Tensor:
    """``(N, N, N)`` bool: the highest voxels filling the mass's volume, largest component."""
    n_voxels = round(mass_kda * 1000.0 / PROTEIN_DENSITY_DA_PER_A3 / pixel_size_a**3)
    n_voxels = min(max(n_voxels, 1), potential.numel())
    level = torch.topk(potential.flatten(), n_voxels).values[-1]
    labels, n = ndimage.label((potential >= level).numpy())
    if n > 1:
        sizes = np.bincount(labels.ravel())[1:]
        return torch.from_numpy(labels == 1 + int(np.argmax(sizes)))
    return torch.from_numpy(labels > 0)


def _radius_px(body: torch.Tensor) -> float:
    """Largest distance (px) of a body voxel from the box centre ``N//2``, plus half a voxel."""
    where = torch.nonzero(body).to(torch.float64)  # (m, 3) z y x
    centre = torch.tensor([n // 2 for n in body.shape], dtype=torch.float64)
    return float((where - centre).norm(dim=1).max()) + 0.5


def _pool_entry(
    species: Species, *, source: str, real: bool, displace_solvent: bool
) -> PoolSpecies:
    mass = float(species.mass_kda or 0.0)
    body = _body(species.potential_v, mass, species.pixel_size_a)
    if displace_solvent:
        occupancy = ndimage.gaussian_filter(body.numpy().astype(np.float32), 1.0)
        solvent = ice_mean_inner_potential_v() * torch.from_numpy(occupancy)
        species = replace(species, potential_v=(species.potential_v - solvent).contiguous())
    return PoolSpecies(
        species=species,
        name=species.name,
        diameter_a=2 * _radius_px(body) * species.pixel_size_a,
        mass_kda=mass,
        source=source,
        real=real,
    )


def _tidy_map(species: Species) -> Species:
    """Centre a map on its main body, mask it softly just beyond it and crop the box."""
    mass = float(species.mass_kda or 0.0)
    volume = species.potential_v
    body = _body(volume, mass, species.pixel_size_a)
    weights = volume.clamp(min=0) * body
    grid = torch.stack(torch.meshgrid(*(torch.arange(n) for n in volume.shape), indexing="ij"))
    com = (grid * weights).flatten(1).sum(1) / weights.sum().clamp(min=1e-30)
    shift = [n // 2 - round(float(c)) for n, c in zip(volume.shape, com, strict=True)]
    volume = torch.roll(volume, shifts=shift, dims=(0, 1, 2))
    body = torch.roll(body, shifts=shift, dims=(0, 1, 2))
    radius = _radius_px(body) + _MAP_MARGIN_PX
    volume = volume * spherical_mask(volume.shape, radius, soft_edge_px=_MAP_EDGE_PX)
    box = min(volume.shape[0], 2 * math.ceil(radius + _MAP_EDGE_PX + 1))
    return replace(species, potential_v=crop_or_pad(volume, (box,) * 3).contiguous())


def parse_species_path(text: str | Path) -> tuple[Path, float | None]:
    """``"map.mrc:13.1"`` → ``(Path("map.mrc"), 13.1)``; no suffix → pixel size ``None``."""
    text = str(text)
    head, sep, tail = text.rpartition(":")
    if sep:
        try:
            return Path(head), float(tail)
        except ValueError:
            pass
    return Path(text), None


def real_species(
    path: str | Path, *, pixel_size_a: float, displace_solvent: bool = True
) -> PoolSpecies:
    """A map (MRC) or atomic model (PDB/mmCIF) at ``pixel_size_a``; ``path`` may end in
    ``:<pixel size Å>`` to override a map header's voxel size (:func:`parse_species_path`).

    Raises the typed errors of :func:`~cryowarp.simulate.species.species_from_map` and
    :func:`~cryowarp.simulate.species.species_from_model` (missing, unreadable file).
    """
    file, override = parse_species_path(path)
    if file.suffix.lower() in _MODEL_SUFFIXES:
        species = species_from_model(file, pixel_size_a=pixel_size_a)
    else:
        loaded = _tidy_map(species_from_map(file, pixel_size_a=override))
        ratio = abs(loaded.pixel_size_a - pixel_size_a) / pixel_size_a
        species = loaded if ratio <= 1e-6 else loaded.at_pixel_size(pixel_size_a)
    return _pool_entry(species, source=str(path), real=True, displace_solvent=displace_solvent)


def _procedural_pool(
    namespace: str,
    *,
    seed: int,
    n: int,
    pixel_size_a: float,
    mass_range_kda: tuple[float, float],
    symmetries: Sequence[str],
    min_mass_per_subunit_kda: float,
    displace_solvent: bool,
) -> list[PoolSpecies]:
    g = torch.Generator().manual_seed(zlib.crc32(f"{namespace}/{seed}/pool".encode()))
    out = []
    for i in range(n):
        symmetry = symmetries[int(torch.randint(len(symmetries), (1,), generator=g))]
        hi = mass_range_kda[1]
        lo = min(hi, max(mass_range_kda[0], min_mass_per_subunit_kda * point_group_order(symmetry)))
        u = float(torch.rand((), generator=g, dtype=torch.float64))
        mass = round(math.exp(math.log(lo) + u * (math.log(hi) - math.log(lo))), 1)
        species_seed = zlib.crc32(f"{namespace}/{seed}/{i}".encode())
        species = procedural_species(
            mass_kda=mass,
            symmetry=symmetry,
            seed=species_seed,
            pixel_size_a=pixel_size_a,
            name=f"{namespace}{seed}_{i:03d}_{symmetry}_{mass:.0f}kDa",
        )
        out.append(
            _pool_entry(
                species, source=species.source, real=False, displace_solvent=displace_solvent
            )
        )
    return out


def _unique_names(pool: list[PoolSpecies]) -> list[PoolSpecies]:
    seen: dict[str, int] = {}
    out = []
    for entry in pool:
        count = seen.get(entry.name, 0)
        seen[entry.name] = count + 1
        if count:
            name = f"{entry.name}_{count + 1}"
            entry = replace(entry, name=name, species=replace(entry.species, name=name))
        out.append(entry)
    return out


def generic_species_pool(
    settings: GenericTrainingSettings,
    *,
    seed: int,
    extra_species_paths: Sequence[str | Path] = (),
) -> list[PoolSpecies]:
    """The training pool: ``settings.n_procedural_species`` procedural species from the
    ``train`` namespace (masses log-uniform in ``settings.procedural_mass_range_kda``, point
    groups from ``settings.symmetries``) and the real maps/models of
    ``extra_species_paths`` (e.g. :data:`REAL_SPECIES_IN_SHARED_DATA` under
    ``../shared/data``), all at ``settings.simulation_pixel_size_a``."""
    px = settings.simulation_pixel_size_a
    pool = _procedural_pool(
        "train",
        seed=seed,
        n=settings.n_procedural_species,
        pixel_size_a=px,
        mass_range_kda=settings.procedural_mass_range_kda,
        symmetries=settings.symmetries,
        min_mass_per_subunit_kda=settings.min_mass_per_subunit_kda,
        displace_solvent=settings.displace_solvent,
    )
    pool += [
        real_species(path, pixel_size_a=px, displace_solvent=settings.displace_solvent)
        for path in extra_species_paths
    ]
    return _unique_names(pool)


def heldout_species_pool(
    seed: int,
    n: int,
    *,
    pixel_size_a: float = 4.0,
    mass_range_kda: tuple[float, float] = HELDOUT_MASS_RANGE_KDA,
    symmetries: Sequence[str] = ("C1", "C2", "C3", "C4", "D2", "D3", "D5", "T", "O"),
    displace_solvent: bool = True,
) -> list[PoolSpecies]:
    """``n`` procedural species of the ``heldout`` namespace, which the generic model never
    sees (module docstring); names start with ``heldout``."""
    return _procedural_pool(
        "heldout",
        seed=seed,
        n=n,
        pixel_size_a=pixel_size_a,
        mass_range_kda=mass_range_kda,
        symmetries=symmetries,
        min_mass_per_subunit_kda=10.0,
        displace_solvent=displace_solvent,
    )
