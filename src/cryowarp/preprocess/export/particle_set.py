"""The particles of one micrograph: positions, optional poses and columns to carry along.

A :class:`ParticleSet` is what every coordinate importer returns and what extraction and the
particle STAR writer consume. Positions are in **Å** from the centre of pixel (0, 0) of the
motion-corrected average, which is the geometry of the movie's frame 0
(docs/conventions.md §1, §4), so they do not depend on any pixel size; ``rlnCoordinateX`` of a
micrograph at pixel size ``p`` is ``x_a / p``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import pandas as pd
import torch

from cryowarp.errors import DimensionMismatchError

__all__ = ["ParticleSet", "concatenate_particle_sets"]


@dataclass(frozen=True, eq=False)
class ParticleSet:
    """Particles of one micrograph (``n`` rows).

    Attributes
    ----------
    micrograph:
        The item's name: the movie's file stem (``movie_000`` for ``movie_000.tif``).
    positions_a:
        ``(n, 2)`` float64 (x, y) in Å from the centre of pixel (0, 0), frame-0 geometry.
    euler_deg:
        ``(n, 3)`` RELION (rot, tilt, psi) in degrees (docs/conventions.md §8), or ``None``.
    origins_a:
        ``(n, 2)`` RELION 3.1 origins ``rlnOriginX/YAngst`` in Å (§4), or ``None``.
    extra:
        Other per-particle columns to carry into the exported STAR file (RELION labels
        without the underscore, e.g. ``rlnClassNumber``), ``n`` rows, or ``None``.
    source:
        Where the set came from (a file path, for messages), or ``None``.
    """

    micrograph: str
    positions_a: torch.Tensor  # (n, 2) float64
    euler_deg: torch.Tensor | None = None  # (n, 3)
    origins_a: torch.Tensor | None = None  # (n, 2)
    extra: pd.DataFrame | None = None
    source: str | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        n = self.positions_a.shape[0]
        _check(self.positions_a, (n, 2), "positions_a", self.source)
        if self.euler_deg is not None:
            _check(self.euler_deg, (n, 3), "euler_deg", self.source)
        if self.origins_a is not None:
            _check(self.origins_a, (n, 2), "origins_a", self.source)
        if self.extra is not None and len(self.extra) != n:
            raise DimensionMismatchError(
                self.source, f"{len(self.extra)} rows of extra columns for {n} particles"
            )

    def __len__(self) -> int:
        return int(self.positions_a.shape[0])

    def positions_px(self, pixel_size_a: float) -> torch.Tensor:
        """``(n, 2)`` (x, y) in pixels of a micrograph of pixel size ``pixel_size_a`` Å."""
        return self.positions_a / pixel_size_a

    def subset(self, keep: torch.Tensor | Sequence[int]) -> ParticleSet:
        """The particles selected by a boolean mask or index list, in that order."""
        index = torch.as_tensor(keep)
        if index.dtype == torch.bool:
            index = torch.nonzero(index).flatten()
        rows = index.tolist()
        return ParticleSet(
            micrograph=self.micrograph,
            positions_a=self.positions_a[index],
            euler_deg=None if self.euler_deg is None else self.euler_deg[index],
            origins_a=None if self.origins_a is None else self.origins_a[index],
            extra=None if self.extra is None else self.extra.iloc[rows].reset_index(drop=True),
            source=self.source,
        )


def concatenate_particle_sets(sets: Sequence[ParticleSet]) -> ParticleSet:
    """One set with the particles of ``sets`` (all of one micrograph), in order; poses,
    origins and extra columns are kept only when every set has them."""
    if not sets:
        raise ValueError("no particle sets to concatenate")
    names = {s.micrograph for s in sets}
    if len(names) > 1:
        raise ValueError(f"particle sets of different micrographs: {sorted(names)}")

    def joined(values: list[torch.Tensor | None]) -> torch.Tensor | None:
        kept = [v for v in values if v is not None]
        return torch.cat(kept) if len(kept) == len(values) else None

    extras = [s.extra for s in sets if s.extra is not None]
    return ParticleSet(
        micrograph=sets[0].micrograph,
        positions_a=torch.cat([s.positions_a for s in sets]),
        euler_deg=joined([s.euler_deg for s in sets]),
        origins_a=joined([s.origins_a for s in sets]),
        extra=pd.concat(extras, ignore_index=True) if len(extras) == len(sets) else None,
        source=sets[0].source,
    )


def _check(value: torch.Tensor, shape: tuple[int, int], name: str, source: str | None) -> None:
    if tuple(value.shape) != shape:
        raise DimensionMismatchError(source, f"{name} must be {shape}, got {tuple(value.shape)}")
