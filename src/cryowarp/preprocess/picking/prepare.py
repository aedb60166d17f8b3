"""Bring a micrograph to the pixel size and intensity scale BoxNet works at.

Training and inference both go through :func:`prepare_micrograph`, so the network always sees
images made the same way: Fourier-cropped (ideal low-pass, no aliasing) to
:data:`PICKING_PIXEL_SIZE_A` (8 Å/px, Warp's BoxNet pixel size) and normalised to a median of 0
and a robust standard deviation of 1 (1.4826 × the median absolute deviation, so that a dark
carbon film or ethane drop covering part of the field does not set the scale), then clipped
to ±:data:`CLIP_SIGMA`.

Protein is dark in raw micrographs (docs/simulator.md, "Image formation"); the prepared image
keeps that contrast.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from cryowarp.core.resize import rescale, rescaled_shape
from cryowarp.errors import InvalidValuesError

__all__ = [
    "CLIP_SIGMA",
    "MAX_INPUT_PIXEL_SIZE_A",
    "PICKING_PIXEL_SIZE_A",
    "PreparedMicrograph",
    "normalise_robust",
    "prepare_micrograph",
]

PICKING_PIXEL_SIZE_A = 8.0
"""Pixel size (Å) BoxNet sees (Warp's choice)."""

MAX_INPUT_PIXEL_SIZE_A = PICKING_PIXEL_SIZE_A
"""Coarsest input pixel size (Å): BoxNet never upsamples."""

CLIP_SIGMA = 6.0
"""Prepared images are clipped to ±this many robust standard deviations."""

_MIN_PIXEL_SIZE_A = 0.1  # below any real detector pixel: metadata, not physics


@dataclass(frozen=True)
class PreparedMicrograph:
    """A micrograph at the picking pixel size.

    Attributes
    ----------
    image:
        ``(h', w')`` float32, median 0, robust standard deviation 1, protein dark.
    pixel_size_xy_a:
        Pixel size achieved along (x, y) in Å (``pixel_size_a · n / n'``; within one pixel
        of the field of :data:`PICKING_PIXEL_SIZE_A`).
    original_shape:
        ``(h, w)`` of the input.
    original_pixel_size_a:
        Pixel size of the input (Å).
    """

    image: torch.Tensor  # (h', w')
    pixel_size_xy_a: tuple[float, float]
    original_shape: tuple[int, int]
    original_pixel_size_a: float

    def to_original_px(self, positions_px: torch.Tensor) -> torch.Tensor:
        """Map ``(n, 2)`` (x, y) pixel positions of the prepared image to the input's pixels.

        Pixel centres map to pixel centres through the box centres (``N//2`` ↔ ``M//2``,
        conventions §2), as :func:`~cryowarp.core.resize.rescale` does.
        """
        h, w = self.original_shape
        hp, wp = self.image.shape[-2:]
        out = positions_px.clone().to(torch.float64)
        out[:, 0] = (out[:, 0] - wp // 2) * (w / wp) + w // 2
        out[:, 1] = (out[:, 1] - hp // 2) * (h / hp) + h // 2
        return out.to(positions_px.dtype)

    def to_prepared_px(self, positions_px: torch.Tensor) -> torch.Tensor:
        """Inverse of :meth:`to_original_px`."""
        h, w = self.original_shape
        hp, wp = self.image.shape[-2:]
        out = positions_px.clone().to(torch.float64)
        out[:, 0] = (out[:, 0] - w // 2) * (wp / w) + wp // 2
        out[:, 1] = (out[:, 1] - h // 2) * (hp / h) + hp // 2
        return out.to(positions_px.dtype)


def normalise_robust(image: torch.Tensor) -> torch.Tensor:  # (h, w) -> (h, w)
    """Median 0, robust standard deviation (1.4826 × MAD) 1, clipped to ±:data:`CLIP_SIGMA`.

    Raises :class:`~cryowarp.errors.InvalidValuesError` for non-finite or blank images.
    """
    values = image.to(torch.float32)
    if not bool(torch.isfinite(values).all()):
        raise InvalidValuesError(None, "the micrograph holds NaN or infinite values")
    flat = values.flatten()
    median = flat.median()
    mad = (flat - median).abs().median()
    scale = 1.4826 * mad
    if not float(scale) > 0:  # more than half the pixels equal: fall back to the std
        scale = flat.std()
    if not float(scale) > 1e-12 * max(1.0, float(flat.abs().max())):
        raise InvalidValuesError(
            None, "the micrograph is blank (constant values); there is nothing to pick"
        )
    return ((values - median) / scale).clamp(-CLIP_SIGMA, CLIP_SIGMA)


def prepare_micrograph(
    image: torch.Tensor,  # (h, w)
    *,
    pixel_size_a: float,
    picking_pixel_size_a: float = PICKING_PIXEL_SIZE_A,
) -> PreparedMicrograph:
    """Fourier-crop ``image`` to ``picking_pixel_size_a`` and normalise it (module docstring).

    Raises
    ------
    InvalidValuesError
        The pixel size is not a finite value between 0.1 Å and the picking pixel size (a
        wrong header: pass the right pixel size), or the image is blank or not finite.
    """
    if image.dim() != 2:
        raise InvalidValuesError(None, f"a micrograph must be 2-D, got shape {tuple(image.shape)}")
    if not (math.isfinite(pixel_size_a) and pixel_size_a >= _MIN_PIXEL_SIZE_A):
        raise InvalidValuesError(
            None,
            f"pixel size {pixel_size_a} Å is not a real detector pixel size",
            "give the micrograph's pixel size in Å explicitly",
        )
    if pixel_size_a > picking_pixel_size_a * (1 + 1e-6):
        raise InvalidValuesError(
            None,
            f"pixel size {pixel_size_a} Å is coarser than the picking pixel size "
            f"{picking_pixel_size_a} Å",
            "check the pixel size; BoxNet needs micrographs at ≤ 8 Å/px",
        )
    h, w = (int(n) for n in image.shape)
    new_shape = rescaled_shape(
        (h, w), pixel_size_a=pixel_size_a, new_pixel_size_a=picking_pixel_size_a
    )
    if min(new_shape) < 16:
        raise InvalidValuesError(
            None,
            f"the micrograph ({w} × {h} px at {pixel_size_a} Å) is only {new_shape[1]} × "
            f"{new_shape[0]} px at {picking_pixel_size_a} Å/px; BoxNet needs at least 16 × 16",
        )
    finite = image.to(torch.float32)
    if not bool(torch.isfinite(finite).all()):
        raise InvalidValuesError(None, "the micrograph holds NaN or infinite values")
    if float(finite.amax() - finite.amin()) <= 1e-6 * max(1.0, float(finite.abs().amax())):
        # checked before Fourier cropping, whose rounding noise would look like an image
        raise InvalidValuesError(
            None, "the micrograph is blank (constant values); there is nothing to pick"
        )
    small = rescale(finite, tuple(new_shape)) if tuple(new_shape) != (h, w) else finite
    achieved = (pixel_size_a * w / new_shape[1], pixel_size_a * h / new_shape[0])
    return PreparedMicrograph(
        image=normalise_robust(small),
        pixel_size_xy_a=achieved,
        original_shape=(h, w),
        original_pixel_size_a=float(pixel_size_a),
    )
