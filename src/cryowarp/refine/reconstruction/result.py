"""What a reconstruction returns: half-maps, full map, FSC curves and resolutions.

FSC shells and resolutions follow docs/conventions.md §11; maps are ``(d, h, w)`` centred at
``N // 2`` (§2). :func:`load_reference` and :func:`fsc_mask` are the helpers that reading a
reference map and masking the FSC share.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cryowarp.core.fsc import fsc, fsc_resolution_a, shell_frequencies_a
from cryowarp.core.masks import spherical_mask
from cryowarp.errors import DimensionMismatchError
from cryowarp.io.mrc import read_mrc

__all__ = [
    "ReconstructionResult",
    "fsc_mask",
    "load_reference",
    "masked_fsc",
    "resolution_or_none",
]

_PIXEL_TOLERANCE = 1e-3  # relative difference of pixel sizes still taken as equal


@dataclass(frozen=True, eq=False)
class ReconstructionResult:
    """Half-maps, the full map and their FSC measurements.

    Attributes
    ----------
    half1, half2, full:
        ``(d, h, w)`` maps, on the device of the reconstruction: the unregularised half-maps
        and the full map from the accumulators of both halves (Wiener-regularised unless the
        settings say ``"none"``).
    pixel_size_a:
        Voxel size in Å.
    symmetry:
        Point group imposed (RELION name).
    n_particles:
        Particle images inserted into half 1 and half 2 (before symmetry expansion).
    fsc, resolution_a:
        ``(N//2 + 1,)`` FSC between the unmasked half-maps and where it drops below 0.143 (Å).
    fsc_masked, resolution_masked_a:
        The same with the soft spherical mask of the settings; ``None`` without a mask.
    ssnr:
        ``(N//2 + 1,)`` SSNR of the full map that set its Wiener filter; ``None`` without it.
    fsc_reference, reference_resolution_0143_a, reference_resolution_05_a:
        FSC of the full map against a reference map (masked when a mask is set) and where it
        drops below 0.143 and 0.5 (Å); ``None`` without a reference.
    half_set_source:
        ``"rlnRandomSubset"`` or ``"random split (seed N)"``.
    subsets:
        ``(n_rows,)`` int64: half-set (1 or 2) of every particle row; 0 for skipped rows.
    regularisation:
        ``"wiener"`` or ``"none"``.
    skipped:
        One message per skipped image stack (file and reason).
    files:
        Files written (empty when nothing was written).
    """

    half1: torch.Tensor  # (d, h, w)
    half2: torch.Tensor  # (d, h, w)
    full: torch.Tensor  # (d, h, w)
    pixel_size_a: float
    symmetry: str
    n_particles: tuple[int, int]
    fsc: torch.Tensor  # (N//2 + 1,)
    resolution_a: float
    fsc_masked: torch.Tensor | None
    resolution_masked_a: float | None
    ssnr: torch.Tensor | None
    fsc_reference: torch.Tensor | None
    reference_resolution_0143_a: float | None
    reference_resolution_05_a: float | None
    half_set_source: str
    subsets: torch.Tensor  # (n_rows,)
    regularisation: str
    skipped: tuple[str, ...] = ()
    files: tuple[Path, ...] = ()

    @property
    def box_size(self) -> int:
        return int(self.full.shape[-1])

    def frequencies_per_a(self) -> torch.Tensor:
        """``(N//2 + 1,)`` frequency of each FSC shell in Å⁻¹."""
        return shell_frequencies_a(self.box_size, self.pixel_size_a)

    def summary(self) -> dict[str, Any]:
        """A JSON-ready summary (numbers and lists; no maps)."""

        def curve(values: torch.Tensor | None) -> list[float] | None:
            return None if values is None else [float(v) for v in values.detach().cpu()]

        return {
            "box_size_px": self.box_size,
            "pixel_size_a": self.pixel_size_a,
            "symmetry": self.symmetry,
            "n_particles_half1": self.n_particles[0],
            "n_particles_half2": self.n_particles[1],
            "half_set_source": self.half_set_source,
            "regularisation": self.regularisation,
            "resolution_a": _finite(self.resolution_a),
            "resolution_masked_a": _finite(self.resolution_masked_a),
            "reference_resolution_0143_a": _finite(self.reference_resolution_0143_a),
            "reference_resolution_05_a": _finite(self.reference_resolution_05_a),
            "frequency_per_a": curve(self.frequencies_per_a()),
            "fsc": curve(self.fsc),
            "fsc_masked": curve(self.fsc_masked),
            "fsc_reference": curve(self.fsc_reference),
            "ssnr": curve(self.ssnr),
            "skipped": list(self.skipped),
            "files": [str(f) for f in self.files],
        }


def _finite(value: float | None) -> float | None:
    return None if value is None or not math.isfinite(value) else float(value)


def fsc_mask(
    box_size: int,
    pixel_size_a: float,
    diameter_a: float | None,
    *,
    soft_edge_px: float,
    device: torch.device | str | None = None,
) -> torch.Tensor | None:
    """``(N, N, N)`` soft spherical mask of ``diameter_a`` (docs/conventions.md §13), or
    ``None`` when no diameter is given."""
    if diameter_a is None:
        return None
    radius_px = diameter_a / 2 / pixel_size_a
    return spherical_mask((box_size,) * 3, radius_px, soft_edge_px=soft_edge_px, device=device)


def masked_fsc(a: torch.Tensor, b: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """FSC of two ``(d, h, w)`` maps, each multiplied by ``mask`` first when given."""
    if mask is None:
        return fsc(a, b)
    return fsc(a * mask, b * mask)


def load_reference(
    reference: torch.Tensor | str | os.PathLike[str],
    *,
    box_shape: tuple[int, int, int],
    pixel_size_a: float,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """A reference map as a float32 ``box_shape`` tensor on ``device``.

    A path is read as MRC; its header's voxel size, when it has one, must equal
    ``pixel_size_a``. Raises :class:`~cryowarp.errors.DimensionMismatchError` (naming the
    file) when the shape or the pixel size differ.
    """
    path: Path | None = None
    if isinstance(reference, torch.Tensor):
        volume = reference.detach().to(device=device, dtype=torch.float32)
    else:
        path = Path(reference)
        data, header = read_mrc(path)
        header_pixel = header.pixel_size_a
        if header_pixel is not None and not _same_pixel(header_pixel, pixel_size_a):
            raise DimensionMismatchError(
                path,
                f"reference voxel size {header_pixel:.4f} Å differs from the particles' "
                f"{pixel_size_a:.4f} Å",
                "resample the reference to the particles' pixel size",
            )
        volume = torch.from_numpy(np.asarray(data, dtype=np.float32)).to(device)
    if tuple(volume.shape) != box_shape:
        raise DimensionMismatchError(
            path, f"reference of shape {tuple(volume.shape)}, the maps are {box_shape}"
        )
    return volume


def _same_pixel(a: float, b: float) -> bool:
    return abs(a - b) <= _PIXEL_TOLERANCE * max(abs(a), abs(b))


def resolution_or_none(
    curve: torch.Tensor | None, box_size: int, pixel_size_a: float, threshold: float
) -> float | None:
    """:func:`~cryowarp.core.fsc.fsc_resolution_a` of a curve, ``None`` for no curve."""
    if curve is None:
        return None
    return fsc_resolution_a(curve, box_size, pixel_size_a, threshold=threshold)
