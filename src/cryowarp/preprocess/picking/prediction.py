"""Run BoxNet over a prepared micrograph in overlapping tiles (docs/picking_inference.md).

**Tiling.** Tiles of ``tile_px`` (shrunk to fit small micrographs) step by
``tile_px − tile_overlap_px``; the first starts ``tile_overlap_px / 2`` before the image and
the micrograph is mirrored (reflect padding) wherever a tile reaches past it. Each tile's
softmax is weighted by a separable window ``w(i) = min(1, sin²(π(i + ½)/(2·overlap)),
sin²(π(t − i − ½)/(2·overlap)))``, which rises from ~0 at a tile edge to 1 over the overlap:
where two tiles overlap their weights sum to 1, and each pixel's probability is the weighted
mean over every tile covering it. A pixel therefore takes its value mostly from the tile in
which it lies farthest from an edge, at least ``overlap / 2`` away. The default overlap (64 px)
is chosen from the default network's receptive field (±58 px; 99.99 % of the gradient of a
randomly initialised network lies within 32 px of the output pixel).
"""

from __future__ import annotations

import copy
import math

import torch

from cryowarp.errors import InvalidValuesError
from cryowarp.preprocess.picking.model_file import BoxNetModel
from cryowarp.preprocess.picking.network import CLASS_NAMES
from cryowarp.preprocess.picking.prepare import PreparedMicrograph
from cryowarp.preprocess.picking.settings import PickingSettings

__all__ = ["predict_probabilities"]


def _reflect_index(index: torch.Tensor, n: int) -> torch.Tensor:
    """Mirror indices into ``[0, n)`` (edge pixel not repeated), for any distance outside."""
    if n == 1:
        return torch.zeros_like(index)
    period = 2 * (n - 1)
    wrapped = index.remainder(period)
    return torch.where(wrapped >= n, period - wrapped, wrapped)


def _axis_tiles(n: int, *, tile: int, overlap: int, multiple: int) -> tuple[int, list[int]]:
    """Tile length and tile starts (image pixels, the first ``−overlap/2``) along one axis."""
    margin = overlap // 2
    span = n + 2 * margin
    tile = min(tile, multiple * math.ceil(span / multiple))
    stride = tile - overlap
    count = 1 if span <= tile else 1 + math.ceil((span - tile) / stride)
    return tile, [-margin + k * stride for k in range(count)]


def _window(tile: int, overlap: int, *, device: torch.device) -> torch.Tensor:  # (tile,)
    i = torch.arange(tile, device=device, dtype=torch.float64) + 0.5
    if overlap == 0:
        return torch.ones(tile, device=device, dtype=torch.float32)
    rise = torch.sin(torch.pi * i / (2 * overlap)) ** 2
    fall = torch.sin(torch.pi * (tile - i) / (2 * overlap)) ** 2
    ramp = torch.where(i < overlap, rise, torch.ones_like(i))
    ramp = torch.where(tile - i < overlap, torch.minimum(ramp, fall), ramp)
    return ramp.to(torch.float32)


def predict_probabilities(
    model: BoxNetModel,
    prepared: PreparedMicrograph,
    *,
    settings: PickingSettings,
    device: torch.device | str | None = None,
) -> torch.Tensor:  # (3, h', w')
    """Softmax probabilities of :data:`~cryowarp.preprocess.picking.network.CLASS_NAMES` for
    every pixel of ``prepared.image``, combined over overlapping tiles (module docstring).

    The network runs in eval mode (its previous mode is restored) without gradients, on
    ``device`` when given (a copy of the network is moved there if it lives elsewhere), else
    on the device of its weights. Returns float32 probabilities on that device.

    Raises
    ------
    InvalidValuesError
        ``tile_px`` or ``tile_overlap_px`` is not a multiple of the network's
        ``architecture.multiple_px``.
    """
    network = model.network
    weights = next(network.parameters(), None)
    own_device = weights.device if weights is not None else torch.device("cpu")
    target = torch.device(device) if device is not None else own_device
    if target != own_device:
        network = copy.deepcopy(network).to(target)
    multiple = int(network.architecture.multiple_px)
    tile_px, overlap = settings.tile_px, settings.tile_overlap_px
    if tile_px % multiple or overlap % multiple:
        raise InvalidValuesError(
            None,
            f"tile_px {tile_px} and tile_overlap_px {overlap} must be multiples of "
            f"{multiple} px for model {model.name}",
        )
    image = prepared.image.to(target, torch.float32)
    h, w = (int(n) for n in image.shape)
    tile_h, starts_y = _axis_tiles(h, tile=tile_px, overlap=overlap, multiple=multiple)
    tile_w, starts_x = _axis_tiles(w, tile=tile_px, overlap=overlap, multiple=multiple)
    y0, x0 = starts_y[0], starts_x[0]
    rows = _reflect_index(torch.arange(y0, starts_y[-1] + tile_h, device=target), h)
    cols = _reflect_index(torch.arange(x0, starts_x[-1] + tile_w, device=target), w)
    padded = image[rows][:, cols]  # (H, W)
    window = _window(tile_h, overlap, device=target)[:, None] * _window(
        tile_w, overlap, device=target
    )  # (tile_h, tile_w)
    total = torch.zeros((len(CLASS_NAMES), *padded.shape), device=target)
    weight = torch.zeros(padded.shape, device=target)
    corners = [(y - y0, x - x0) for y in starts_y for x in starts_x]
    was_training = network.training
    network.eval()
    try:
        with torch.no_grad():
            for first in range(0, len(corners), settings.batch_tiles):
                batch = corners[first : first + settings.batch_tiles]
                tiles = torch.stack([padded[y : y + tile_h, x : x + tile_w] for y, x in batch])
                probabilities = torch.softmax(network(tiles[:, None]).float(), dim=1)
                for (y, x), p in zip(batch, probabilities, strict=True):
                    total[:, y : y + tile_h, x : x + tile_w] += p * window
                    weight[y : y + tile_h, x : x + tile_w] += window
    finally:
        network.train(was_training)
    return (total / weight)[:, -y0 : -y0 + h, -x0 : -x0 + w]
