"""Augmentation of BoxNet training crops: random crop, rotation, shear/scale, flips, noise.

:func:`augment_batch` resamples each image of a batch once, through one affine map (rotation
by an angle in [−45°, 45°) times ``I + S``, ``S`` a random 2×2 matrix with entries in
``±shear_max``: shear and anisotropic scale), then turns it by a random multiple of 90° and
flips it — exact permutations of the pixels — so any angle is reached. Images are sampled
bilinearly, labels by nearest neighbour; samples from outside the input get image 0 and label
−1 (ignore). When every sampling position is a whole pixel (no continuous rotation, no shear)
the crop is copied exactly. Finally Gaussian noise of a random strength (standard deviation
uniform in ``[0, noise_max]`` robust units) is added and each crop is normalised again with
the rule of :func:`~cryowarp.preprocess.picking.prepare.normalise_robust` over its valid
pixels. Everything is batched and runs on the device of the input.

:func:`random_crops` cuts training windows out of a list of
:class:`~cryowarp.preprocess.picking.labels.LabelledMicrograph`, most of them around a
particle or an artefact; :func:`augmentation_window_px` says how large a window must be for
any rotation and shear of a crop to stay inside it.

Positions and axes: docs/conventions.md §1 (x along the last axis), crops centred at
``c // 2`` (§2).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F

from cryowarp.preprocess.picking.labels import IGNORE, LabelledMicrograph
from cryowarp.preprocess.picking.prepare import CLIP_SIGMA

__all__ = ["augment_batch", "augmentation_window_px", "random_crops"]

_PARTICLE_SHARE = 0.7  # of the positive crops, when a micrograph has particles and artefacts


def augmentation_window_px(crop_px: int, *, shear_max: float = 0.1) -> int:
    """Smallest even window that holds a ``crop_px`` crop under any rotation and a shear/scale
    of entries up to ``shear_max`` (the spectral norm of ``I + S`` is ≤ 1 + 2·shear_max)."""
    reach = (crop_px / 2) * math.sqrt(2) * (1 + 2 * shear_max)
    return 2 * math.ceil(reach) + 2


def _rand(generator: torch.Generator, *shape: int) -> torch.Tensor:
    return torch.rand(shape, generator=generator, device=generator.device, dtype=torch.float64)


def _source_coordinates(
    shape: tuple[int, int],
    b: int,
    crop_px: int,
    *,
    generator: torch.Generator,
    continuous_rotation: bool,
    shear_max: float,
) -> torch.Tensor:  # (b, c, c, 2) x, y in input pixels, float64 on the generator's device
    h, w = shape
    angle = (_rand(generator, b) - 0.5) * (math.pi / 2) if continuous_rotation else None
    shear = (2 * _rand(generator, b, 2, 2) - 1) * shear_max
    matrix = torch.eye(2, dtype=torch.float64, device=generator.device) + shear  # (b, 2, 2)
    if angle is not None:
        cos, sin = torch.cos(angle), torch.sin(angle)
        rotation = torch.stack([torch.stack([cos, -sin], -1), torch.stack([sin, cos], -1)], -2)
        matrix = rotation @ matrix
    offsets = torch.arange(crop_px, dtype=torch.float64, device=generator.device) - crop_px // 2
    u = torch.stack(torch.meshgrid(offsets, offsets, indexing="ij")[::-1], dim=-1)  # (c, c, 2)
    moved = torch.einsum("bij,yxj->byxi", matrix, u)  # (b, c, c, 2)
    low = moved.flatten(1, 2).amin(1)  # (b, 2)
    high = moved.flatten(1, 2).amax(1)
    size = torch.tensor([w - 1, h - 1], dtype=torch.float64, device=generator.device)
    room = (size - (high - low)).floor()  # whole pixels of play, negative when too small
    start = torch.where(room >= 0, (_rand(generator, b, 2) * (room + 1)).floor(), room / 2)
    centre = start - low  # whole pixels when the crop fits: exact copies without resampling
    return centre[:, None, None, :] + moved


def _sample(
    images: torch.Tensor,  # (b, h, w)
    labels: torch.Tensor,  # (b, h, w)
    coords: torch.Tensor,  # (b, c, c, 2) x, y
) -> tuple[torch.Tensor, torch.Tensor]:
    b, h, w = images.shape
    coords = coords.to(images.device)
    if bool((coords == coords.round()).all()):  # a copy: exact
        x, y = coords[..., 0].long(), coords[..., 1].long()
        inside = (x >= 0) & (x < w) & (y >= 0) & (y < h)
        xc, yc = x.clamp(0, w - 1), y.clamp(0, h - 1)
        batch = torch.arange(b, device=images.device)[:, None, None]
        out_images = torch.where(inside, images[batch, yc, xc], images.new_zeros(()))
        out_labels = torch.where(inside, labels[batch, yc, xc], labels.new_full((), IGNORE))
        return out_images, out_labels
    scale = torch.tensor([2 / max(w - 1, 1), 2 / max(h - 1, 1)], device=images.device)
    grid = (coords * scale.to(torch.float64) - 1).to(images.dtype)
    out_images = F.grid_sample(
        images[:, None], grid, mode="bilinear", padding_mode="zeros", align_corners=True
    )[:, 0]
    shifted = (labels - IGNORE).to(images.dtype)[:, None]  # ignore and outside → 0
    nearest = F.grid_sample(shifted, grid, mode="nearest", padding_mode="zeros", align_corners=True)
    out_labels = nearest[:, 0].round().long() + IGNORE
    return out_images, out_labels


def _renormalise(images: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:  # (b, c, c)
    """Median 0, 1.4826·MAD 1 over the valid pixels of each image, clipped; invalid → 0."""
    flat = torch.where(valid, images, torch.nan).flatten(1)
    median = flat.nanmedian(dim=1).values
    mad = (flat - median[:, None]).abs().nanmedian(dim=1).values
    scale = (1.4826 * mad).nan_to_num(1.0).clamp(min=1e-6)
    out = (images - median.nan_to_num(0.0)[:, None, None]) / scale[:, None, None]
    return torch.where(valid, out.clamp(-CLIP_SIGMA, CLIP_SIGMA), images.new_zeros(()))


def augment_batch(
    images: torch.Tensor,  # (b, h, w) prepared images
    labels: torch.Tensor,  # (b, h, w) int64 labels
    *,
    generator: torch.Generator,
    crop_px: int,
    rotate: bool = True,
    flip: bool = True,
    shear_max: float = 0.1,
    noise_max: float = 0.3,
    continuous_rotation: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:  # (b, 1, c, c), (b, c, c)
    """Random crops of ``crop_px`` with random rotation, shear/scale, flips and noise (module
    docstring).

    Parameters
    ----------
    generator:
        Source of every random draw (any device; draws move to the input's device).
    rotate:
        Random multiples of 90° and, with ``continuous_rotation``, an extra angle in
        [−45°, 45°); ``continuous_rotation=False`` keeps only exact quarter turns.
    flip:
        Random flips along x and along y (each with probability ½).
    shear_max:
        Largest entry of the shear/scale matrix ``S`` (0: none).
    noise_max:
        Largest standard deviation of the added noise in robust units (0: no noise and no
        renormalisation).

    Returns
    -------
    images, labels:
        ``(b, 1, crop_px, crop_px)`` float and ``(b, crop_px, crop_px)`` int64 on the input's
        device; −1 where the crop reaches outside the input.
    """
    if images.dim() != 3 or tuple(labels.shape) != tuple(images.shape):
        raise ValueError(
            f"images {tuple(images.shape)} and labels {tuple(labels.shape)} must be (b, h, w)"
        )
    if crop_px < 1 or shear_max < 0 or noise_max < 0:
        raise ValueError(f"crop_px {crop_px} ≥ 1, shear_max {shear_max} and noise_max ≥ 0")
    b, h, w = images.shape
    coords = _source_coordinates(
        (h, w),
        b,
        crop_px,
        generator=generator,
        continuous_rotation=rotate and continuous_rotation,
        shear_max=shear_max,
    )
    out_images, out_labels = _sample(images, labels.long(), coords)
    quarter_turns = (_rand(generator, b) * 4).floor().long().tolist() if rotate else [0] * b
    flips = (_rand(generator, b, 2) < 0.5).tolist() if flip else [[False, False]] * b
    turned_images, turned_labels = [], []
    for image, label, k, (flip_x, flip_y) in zip(
        out_images, out_labels, quarter_turns, flips, strict=True
    ):
        dims = [d for d, f in ((-1, flip_x), (-2, flip_y)) if f]
        image, label = torch.rot90(image, k, dims=(-2, -1)), torch.rot90(label, k, dims=(-2, -1))
        if dims:
            image, label = torch.flip(image, dims), torch.flip(label, dims)
        turned_images.append(image)
        turned_labels.append(label)
    out_images, out_labels = torch.stack(turned_images), torch.stack(turned_labels)
    if noise_max > 0:
        valid = out_labels != IGNORE
        sigma = (_rand(generator, b) * noise_max).to(out_images)
        noise = torch.randn((b, crop_px, crop_px), generator=generator, device=generator.device).to(
            out_images
        )
        out_images = _renormalise(out_images + sigma[:, None, None] * noise, valid)
    return out_images[:, None], out_labels


def _window(
    micrograph: LabelledMicrograph, size_px: int, generator: torch.Generator, positive: bool
) -> tuple[torch.Tensor, torch.Tensor]:  # (s, s), (s, s)
    h, w = micrograph.image.shape
    centre: list[int] | None = None
    if positive:
        n_particles = micrograph.positions_px.shape[0]
        artefact = torch.nonzero(micrograph.artefact_mask)  # (m, 2) y x
        if n_particles and (not artefact.shape[0] or bool(_rand(generator, 1) < _PARTICLE_SHARE)):
            x, y = micrograph.positions_px[int(_rand(generator, 1) * n_particles)].round().long()
            centre = [int(y), int(x)]
        elif artefact.shape[0]:
            centre = artefact[int(_rand(generator, 1) * artefact.shape[0])].tolist()
    starts = []
    for axis, n in enumerate((h, w)):
        if centre is None:
            start = int(_rand(generator, 1) * (n - size_px + 1)) if n >= size_px else 0
            start = start if n >= size_px else n // 2 - size_px // 2
        else:  # the positive pixel lands within the middle half of the window
            start = centre[axis] - size_px // 2 + int((_rand(generator, 1) - 0.5) * size_px / 2)
            start = min(max(start, 0), n - size_px) if n >= size_px else start
        starts.append(start)
    y0, x0 = starts
    image = torch.zeros(size_px, size_px, dtype=micrograph.image.dtype)
    label = torch.full((size_px, size_px), IGNORE, dtype=torch.int64)
    ys, xs = slice(max(y0, 0), min(y0 + size_px, h)), slice(max(x0, 0), min(x0 + size_px, w))
    if ys.start < ys.stop and xs.start < xs.stop:
        target = (slice(ys.start - y0, ys.stop - y0), slice(xs.start - x0, xs.stop - x0))
        image[target] = micrograph.image[ys, xs]
        label[target] = micrograph.labels[ys, xs]
    return image, label


def random_crops(
    dataset: Sequence[LabelledMicrograph],
    n: int,
    *,
    crop_px: int,
    generator: torch.Generator,
    positive_fraction: float = 0.8,
) -> tuple[torch.Tensor, torch.Tensor]:  # (n, c, c), (n, c, c)
    """``n`` windows of ``crop_px`` from random micrographs of ``dataset`` (CPU tensors).

    With probability ``positive_fraction`` a window holds a particle (70 % of those when the
    micrograph also has artefacts) or an artefact pixel, at a random place within its middle
    half; otherwise it lies anywhere. Windows stay inside the micrograph when it is large
    enough; what they reach outside is image 0 and label −1. Pass
    :func:`augmentation_window_px` of the final crop as ``crop_px`` to leave room for
    :func:`augment_batch`'s rotations.
    """
    if not dataset:
        raise ValueError("the dataset is empty")
    images, labels = [], []
    for _ in range(n):
        micrograph = dataset[int(_rand(generator, 1) * len(dataset))]
        positive = bool(_rand(generator, 1) < positive_fraction)
        image, label = _window(micrograph, crop_px, generator, positive)
        images.append(image)
        labels.append(label)
    if not images:
        return torch.zeros(0, crop_px, crop_px), torch.zeros(0, crop_px, crop_px, dtype=torch.long)
    return torch.stack(images), torch.stack(labels)
