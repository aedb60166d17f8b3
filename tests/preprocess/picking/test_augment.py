"""Augmentation of BoxNet crops: labels follow the image, exact quarter turns and flips,
outside → ignore, noise renormalised, crops around particles."""

from __future__ import annotations

import torch

from cryowarp.preprocess.picking.augment import (
    augment_batch,
    augmentation_window_px,
    random_crops,
)
from cryowarp.preprocess.picking.labels import IGNORE, LabelledMicrograph, labels_from_positions


def _generator(device: torch.device, seed: int) -> torch.Generator:
    return torch.Generator(device=device).manual_seed(seed)


def _dihedral(x: torch.Tensor) -> list[torch.Tensor]:
    turns = [torch.rot90(x, k, dims=(-2, -1)) for k in range(4)]
    return turns + [torch.flip(t, dims=(-1,)) for t in turns]


def test_quarter_turns_and_flips_are_exact_permutations(device: torch.device) -> None:
    g = torch.Generator().manual_seed(0)
    image = torch.randn(1, 16, 16, generator=g).to(device)
    labels = torch.randint(-1, 3, (1, 16, 16), generator=g).to(device)
    b = 64
    out_images, out_labels = augment_batch(
        image.expand(b, -1, -1),
        labels.expand(b, -1, -1),
        generator=_generator(device, 1),
        crop_px=16,
        continuous_rotation=False,
        shear_max=0.0,
        noise_max=0.0,
    )
    assert out_images.shape == (b, 1, 16, 16)
    assert out_labels.shape == (b, 16, 16)
    assert out_images.device.type == device.type
    candidates = list(zip(_dihedral(image[0]), _dihedral(labels[0]), strict=True))
    seen = set()
    for im, lab in zip(out_images[:, 0], out_labels, strict=True):
        hits = [i for i, (ci, cl) in enumerate(candidates) if torch.equal(im, ci)]
        assert len(hits) == 1, "not an exact rotation/flip of the input"
        assert torch.equal(lab, candidates[hits[0]][1]), "labels transformed differently"
        seen.add(hits[0])
    assert seen == set(range(8))


def test_plain_crops_are_exact_windows_and_stay_inside(device: torch.device) -> None:
    g = torch.Generator().manual_seed(2)
    images = torch.randn(6, 40, 52, generator=g).to(device)
    labels = torch.randint(0, 3, (6, 40, 52), generator=g).to(device)
    out_images, out_labels = augment_batch(
        images,
        labels,
        generator=_generator(device, 3),
        crop_px=24,
        rotate=False,
        flip=False,
        shear_max=0.0,
        noise_max=0.0,
    )
    assert not bool((out_labels == IGNORE).any())
    for k in range(6):
        windows = images[k].unfold(0, 24, 1).unfold(1, 24, 1)  # (17, 29, 24, 24)
        match = (windows == out_images[k, 0]).flatten(2).all(-1).nonzero()
        assert match.shape[0] == 1
        y0, x0 = match[0].tolist()
        assert torch.equal(out_labels[k], labels[k, y0 : y0 + 24, x0 : x0 + 24])


def test_outside_the_image_is_ignore_and_zero(device: torch.device) -> None:
    image = torch.randn(2, 10, 10, generator=torch.Generator().manual_seed(4)).to(device)
    labels = torch.ones(2, 10, 10, dtype=torch.long, device=device)
    out_images, out_labels = augment_batch(
        image,
        labels,
        generator=_generator(device, 5),
        crop_px=16,
        rotate=False,
        flip=False,
        shear_max=0.0,
        noise_max=0.0,
    )
    # The crop is centred on the image: input pixel (i, j) lands on (i + 3, j + 3).
    assert torch.equal(out_images[:, 0, 3:13, 3:13], image)
    assert bool((out_labels[:, 3:13, 3:13] == 1).all())
    border = torch.ones(16, 16, dtype=torch.bool, device=device)
    border[3:13, 3:13] = False
    assert bool((out_labels[:, border] == IGNORE).all())
    assert bool((out_images[:, 0, border] == 0).all())


def test_label_disk_follows_the_image_under_rotation_and_shear(device: torch.device) -> None:
    n = 64
    yy, xx = torch.meshgrid(torch.arange(float(n)), torch.arange(float(n)), indexing="ij")
    x0, y0 = 41.0, 25.0  # off the centre (32, 32): the rotation moves it
    blob = -torch.exp(-((xx - x0) ** 2 + (yy - y0) ** 2) / (2 * 2.0**2))
    labels = labels_from_positions((n, n), torch.tensor([[x0, y0]]), 200.0, pixel_size_a=8.0)
    b = 16
    out_images, out_labels = augment_batch(
        blob.expand(b, -1, -1).to(device),
        labels.expand(b, -1, -1).to(device),
        generator=_generator(device, 6),
        crop_px=n,
        shear_max=0.1,
        noise_max=0.0,
    )
    grid_y, grid_x = (t.to(device) for t in (yy, xx))
    distances, centres = [], []
    for im, lab in zip(out_images[:, 0], out_labels, strict=True):
        weight = (-im).clamp(min=0)
        blob_xy = torch.stack([(weight * grid_x).sum(), (weight * grid_y).sum()]) / weight.sum()
        disk = (lab == 1).double()
        disk_xy = torch.stack([(disk * grid_x).sum(), (disk * grid_y).sum()]) / disk.sum()
        distances.append(float((blob_xy - disk_xy).norm()))
        centres.append(blob_xy)
        assert 50 <= int(disk.sum()) <= 130  # a 5 px disk (81 points), scaled by ≤ ±20 %
    assert max(distances) < 0.5
    # The transforms did move the blob (about the crop centre, 10.8 px away) ...
    spread = torch.stack(centres).std(dim=0)
    assert float(spread.min()) > 4.0
    # ... and the rotated corners reach outside the input.
    assert bool((out_labels == IGNORE).any())


def test_noise_is_added_and_crops_are_renormalised(device: torch.device) -> None:
    g = torch.Generator().manual_seed(7)
    images = torch.randn(8, 48, 48, generator=g).to(device)
    labels = torch.zeros(8, 48, 48, dtype=torch.long, device=device)
    out_images, _out_labels = augment_batch(
        images,
        labels,
        generator=_generator(device, 8),
        crop_px=32,
        rotate=False,
        flip=False,
        shear_max=0.0,
        noise_max=1.0,
    )
    flat = out_images.flatten(1)
    median = flat.median(dim=1).values
    mad = (flat - median[:, None]).abs().median(dim=1).values
    assert float(median.abs().max()) < 1e-5
    assert torch.allclose(1.4826 * mad, torch.ones_like(mad), atol=1e-4)
    again, _ = augment_batch(
        images,
        labels,
        generator=_generator(device, 8),
        crop_px=32,
        rotate=False,
        flip=False,
        shear_max=0.0,
        noise_max=1.0,
    )
    assert torch.equal(again, out_images)  # same generator state, same batch


def _sparse_micrograph(seed: int) -> LabelledMicrograph:
    g = torch.Generator().manual_seed(seed)
    positions = torch.tensor([[40.0, 180.0], [200.0, 60.0]])
    labels = labels_from_positions((256, 256), positions, 150.0, pixel_size_a=8.0)
    return LabelledMicrograph(
        image=torch.randn(256, 256, generator=g),
        labels=labels,
        positions_px=positions,
        diameters_a=torch.full((2,), 150.0),
        artefact_mask=torch.zeros(256, 256, dtype=torch.bool),
    )


def test_random_crops_prefer_particles() -> None:
    data = [_sparse_micrograph(0), _sparse_micrograph(1)]
    g = torch.Generator().manual_seed(9)
    images, labels = random_crops(data, 400, crop_px=24, generator=g)
    assert images.shape == (400, 24, 24)
    assert labels.shape == (400, 24, 24)
    with_particle = (labels == 1).flatten(1).any(1).double().mean()
    assert 0.72 < float(with_particle) < 0.88  # 80 % aimed at particles, ~1 % by chance
    assert not bool((labels == IGNORE).any())  # windows stay inside a large micrograph
    k = int((labels == 1).flatten(1).any(1).nonzero()[0])
    ys, _xs = torch.nonzero(labels[k] == 1, as_tuple=True)
    assert len(ys) == 45  # a whole disk of radius 3.75 px, inside the window's middle half
    _, plain = random_crops(data, 400, crop_px=24, generator=g, positive_fraction=0.0)
    assert float((plain == 1).flatten(1).any(1).double().mean()) < 0.06


def test_small_micrographs_are_padded_with_ignore() -> None:
    small = _sparse_micrograph(2)
    small = LabelledMicrograph(
        image=small.image[:20, :20].contiguous(),
        labels=small.labels[:20, :20].contiguous(),
        positions_px=torch.zeros(0, 2),
        diameters_a=torch.zeros(0),
        artefact_mask=small.artefact_mask[:20, :20].contiguous(),
    )
    images, labels = random_crops([small], 3, crop_px=32, generator=torch.Generator())
    inside = labels != IGNORE
    assert int(inside[0].sum()) == 400
    assert bool((images[~inside] == 0).all())
    window = augmentation_window_px(128, shear_max=0.1)
    assert window % 2 == 0
    assert window >= 128 * 2**0.5 * 1.2
