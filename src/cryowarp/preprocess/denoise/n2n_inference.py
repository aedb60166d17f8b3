"""Denoising a micrograph of any size with a trained Noise2Noise network, tile by tile.

The image is normalised (:func:`normalisation`), padded by reflection, cut into overlapping
square tiles of ``tile_px`` whose starts are ``keep_px`` apart, and only the central
``keep_px × keep_px`` of each network output is kept: every output pixel comes from the
centre of a tile, at least ``(tile_px − keep_px) / 2`` pixels from the tile's edge. When that
margin covers the network's receptive radius
(:attr:`~cryowarp.preprocess.denoise.n2n_network.DenoiserArchitecture.receptive_radius_px`,
51 px for the default network; the default margin is 64 px), the result equals one pass of
the network over the whole (reflect-padded) image, with bounded memory.

Images are ``(h, w)`` arrays indexed (y, x) (docs/conventions.md §1). Denoised images are for
looking at only (docs/denoising.md).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from cryowarp.errors import InvalidValuesError
from cryowarp.preprocess.denoise.n2n_model_file import DenoiserModel

__all__ = [
    "PIXEL_SIZE_TOLERANCE",
    "Normalisation",
    "apply_in_tiles",
    "check_pixel_size",
    "denoise_image",
    "denoise_pair",
    "normalisation",
]

PIXEL_SIZE_TOLERANCE = 0.01
"""Largest relative difference between an image's and a model's pixel size."""


@dataclass(frozen=True)
class Normalisation:
    """The affine map between an image's values and the network's scale.

    ``apply(x) = (x − mean) / std`` and ``undo(y) = y · std + mean``.
    """

    mean: float
    std: float

    def apply(self, image: torch.Tensor) -> torch.Tensor:
        return (image - self.mean) / self.std

    def undo(self, image: torch.Tensor) -> torch.Tensor:
        return image * self.std + self.mean


def normalisation(
    image: torch.Tensor,  # (h, w)
    other: torch.Tensor | None = None,  # (h, w): the other half of an odd/even pair
    *,
    source: str | Path | None = None,
) -> Normalisation:
    """Mean and standard deviation of ``image``, or of ``(image + other) / 2`` for a pair.

    Training normalises both halves of an odd/even pair with the statistics of their average,
    so that input and target share one scale (a Noise2Noise target must stay an unbiased
    estimate of the clean input); denoising a pair does the same.

    Raises
    ------
    InvalidValuesError
        Non-finite values, or a constant image (standard deviation 0); names ``source``.
    """
    combined = image if other is None else (image + other) / 2
    values = combined.to(torch.float64)
    if not bool(torch.isfinite(values).all()):
        raise InvalidValuesError(source, "the image contains NaN or infinite values")
    std = float(values.std(unbiased=False))
    if not std > 0:
        raise InvalidValuesError(source, "the image is constant; there is nothing to denoise")
    return Normalisation(mean=float(values.mean()), std=std)


def check_pixel_size(
    model: DenoiserModel, pixel_size_a: float, *, source: str | Path | None = None
) -> None:
    """Raise :class:`~cryowarp.errors.InvalidValuesError` when ``pixel_size_a`` (Å) differs
    from the model's working pixel size by more than :data:`PIXEL_SIZE_TOLERANCE`."""
    if abs(pixel_size_a - model.pixel_size_a) > PIXEL_SIZE_TOLERANCE * model.pixel_size_a:
        raise InvalidValuesError(
            source,
            f"the image's pixel size is {pixel_size_a:.4g} Å but denoiser model "
            f"{model.name!r} works at {model.pixel_size_a:.4g} Å",
            f"rescale the image to {model.pixel_size_a:.4g} Å/px, or retrain a model at "
            f"{pixel_size_a:.4g} Å/px",
        )


def apply_in_tiles(
    function: Callable[[torch.Tensor], torch.Tensor],
    image: torch.Tensor,  # (h, w)
    *,
    tile_px: int = 256,
    keep_px: int = 128,
    batch_tiles: int = 8,
) -> torch.Tensor:  # (h, w)
    """Apply a size-preserving ``function`` of ``(b, 1, tile_px, tile_px)`` batches to an image
    of any size, keeping the central ``keep_px`` square of each tile (module docstring).

    ``function`` runs on the device of ``image``; the result has the image's shape.
    """
    if image.dim() != 2:
        raise ValueError(f"expected an (h, w) image, got shape {tuple(image.shape)}")
    margin2 = tile_px - keep_px
    if keep_px < 1 or margin2 < 0 or margin2 % 2:
        raise ValueError(
            f"tile_px ({tile_px}) − keep_px ({keep_px}) must be even and ≥ 0, keep_px ≥ 1"
        )
    if batch_tiles < 1:
        raise ValueError(f"batch_tiles must be at least 1, got {batch_tiles}")
    margin = margin2 // 2
    h, w = image.shape
    n_y, n_x = math.ceil(h / keep_px), math.ceil(w / keep_px)
    rows = _reflect_indices(-margin, n_y * keep_px + margin, h, image.device)
    cols = _reflect_indices(-margin, n_x * keep_px + margin, w, image.device)
    padded = image[rows][:, cols]
    out = image.new_empty((n_y * keep_px, n_x * keep_px))
    starts = [(iy * keep_px, ix * keep_px) for iy in range(n_y) for ix in range(n_x)]
    for first in range(0, len(starts), batch_tiles):
        chunk = starts[first : first + batch_tiles]
        tiles = torch.stack([padded[y : y + tile_px, x : x + tile_px] for y, x in chunk])
        result = function(tiles[:, None])
        if result.shape != (len(chunk), 1, tile_px, tile_px):
            raise ValueError(f"the function returned shape {tuple(result.shape)} for tiles")
        for (y, x), tile in zip(chunk, result[:, 0], strict=True):
            centre = tile[margin : margin + keep_px, margin : margin + keep_px]
            out[y : y + keep_px, x : x + keep_px] = centre
    return out[:h, :w]


def denoise_image(
    model: DenoiserModel,
    image: torch.Tensor,  # (h, w) deconvolved micrograph at the model's pixel size
    *,
    pixel_size_a: float,
    scale: Normalisation | None = None,
    device: torch.device | str | None = None,
    tile_px: int = 256,
    keep_px: int = 128,
    batch_tiles: int = 8,
    source: str | Path | None = None,
) -> torch.Tensor:  # (h, w)
    """Denoise one micrograph with ``model``, tile by tile (module docstring).

    Parameters
    ----------
    model:
        The denoiser; its network is moved to ``device`` and run in eval mode without
        gradients (its train/eval mode is restored afterwards).
    image:
        ``(h, w)`` image, any size; normally the deconvolved average (or one half) of a
        micrograph at the model's working pixel size.
    pixel_size_a:
        Pixel size of ``image`` (Å); must match the model's within 1 %.
    scale:
        Normalisation to use; default :func:`normalisation` of ``image`` itself.
    device:
        Where the network runs; default the image's device. The result is on the image's
        device, float32, on the scale of ``image``.
    tile_px, keep_px, batch_tiles:
        Tile side, side of the kept centre (both multiples of the network's
        ``multiple_px``), and tiles per network call.
    source:
        The file the image came from, named in errors.

    Raises
    ------
    InvalidValuesError
        Pixel size mismatch, non-finite or constant image.
    """
    check_pixel_size(model, pixel_size_a, source=source)
    network = model.network
    multiple = network.architecture.multiple_px
    if tile_px % multiple or keep_px % multiple:
        raise ValueError(
            f"tile_px ({tile_px}) and keep_px ({keep_px}) must be multiples of {multiple}"
        )
    scale = scale if scale is not None else normalisation(image, source=source)
    run_on = torch.device(device) if device is not None else image.device
    network.to(run_on)
    was_training = network.training
    network.eval()
    try:
        with torch.no_grad():
            normalised = scale.apply(image.to(run_on, torch.float32))
            denoised = apply_in_tiles(
                network, normalised, tile_px=tile_px, keep_px=keep_px, batch_tiles=batch_tiles
            )
    finally:
        network.train(was_training)
    return scale.undo(denoised).to(image.device)


def denoise_pair(
    model: DenoiserModel,
    odd: torch.Tensor,  # (h, w)
    even: torch.Tensor,  # (h, w)
    *,
    pixel_size_a: float,
    device: torch.device | str | None = None,
    tile_px: int = 256,
    keep_px: int = 128,
    batch_tiles: int = 8,
    source: str | Path | None = None,
) -> torch.Tensor:  # (h, w)
    """Denoise the odd and the even half separately (each normalised as in training) and
    average the two results: the network sees exactly the noise level it was trained on.

    Costs two passes; :func:`denoise_image` of the average is the one-pass alternative
    (docs/denoising.md compares them).
    """
    if odd.shape != even.shape:
        raise ValueError(f"odd {tuple(odd.shape)} and even {tuple(even.shape)} differ in shape")
    scale = normalisation(odd, even, source=source)
    halves = [
        denoise_image(
            model,
            half,
            pixel_size_a=pixel_size_a,
            scale=scale,
            device=device,
            tile_px=tile_px,
            keep_px=keep_px,
            batch_tiles=batch_tiles,
            source=source,
        )
        for half in (odd, even)
    ]
    return (halves[0] + halves[1]) / 2


def _reflect_indices(start: int, stop: int, n: int, device: torch.device) -> torch.Tensor:
    """Indices ``start … stop − 1`` folded into ``0 … n − 1`` by mirror reflection about the
    first and last sample (``−1 → 1``, ``n → n − 2``), for any distance outside."""
    index = torch.arange(start, stop, device=device)
    if n == 1:
        return torch.zeros_like(index)
    period = 2 * (n - 1)
    index = torch.remainder(index, period)
    return torch.where(index >= n, period - index, index)
