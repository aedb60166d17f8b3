"""BoxNet training labels: disks, precedence, the ≥ 50 % mask rule, files, user micrographs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from cryowarp.errors import (
    CorruptFileError,
    DimensionMismatchError,
    FileFormatError,
    InvalidValuesError,
    MissingFileError,
)
from cryowarp.io.mrc import write_mrc
from cryowarp.preprocess.picking.labels import (
    IGNORE,
    LabelledMicrograph,
    downsample_mask,
    label_radius_px,
    labelled_from_micrograph,
    labels_from_positions,
    load_labelled,
    read_painted_mask,
    save_labelled,
)


def test_label_radius_is_a_fifth_of_the_diameter_clamped() -> None:
    assert label_radius_px(150.0, 8.0) == pytest.approx(3.75)
    assert label_radius_px(40.0, 8.0) == 1.5  # 1.0 px raised to the minimum
    assert label_radius_px(400.0, 8.0) == 5.0  # 10 px lowered to the maximum
    assert label_radius_px(100.0, 4.0) == 5.0


def test_disk_has_the_exact_radius_and_position() -> None:
    shape = (40, 48)
    x0, y0 = 17.3, 22.6
    labels = labels_from_positions(shape, torch.tensor([[x0, y0]]), 150.0, pixel_size_a=8.0)
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    expected = (xx - x0) ** 2 + (yy - y0) ** 2 <= 3.75**2
    assert np.array_equal(labels.numpy() == 1, expected)
    assert set(labels.unique().tolist()) == {0, 1}
    # Lattice points in a disk of radius 5 about a pixel centre: Gauss's circle count N(5) = 81.
    disk = labels_from_positions((20, 20), torch.tensor([[9.0, 11.0]]), 500.0, pixel_size_a=8.0)
    assert int((disk == 1).sum()) == 81
    ys, xs = torch.nonzero(disk == 1, as_tuple=True)
    assert (float(xs.double().mean()), float(ys.double().mean())) == (9.0, 11.0)


def test_disks_are_clipped_at_the_border_and_per_particle_diameters_apply() -> None:
    labels = labels_from_positions(
        (10, 10),
        torch.tensor([[0.0, 0.0], [7.0, 7.0]]),
        torch.tensor([24.0, 80.0]),
        pixel_size_a=8.0,
    )
    # 24 Å → 0.6 px, raised to 1.5 px: the quarter disk left in the image is (0, 0), (1, 0),
    # (0, 1) and (1, 1) (distance² 2 ≤ 2.25); 80 Å → 2 px: 13 lattice points about (7, 7).
    assert int((labels[:4, :4] == 1).sum()) == 4
    assert int((labels[4:, 4:] == 1).sum()) == 13
    assert int((labels == 1).sum()) == 4 + 13


def test_artefact_wins_over_particle_and_particle_over_ignore() -> None:
    artefact = torch.zeros(16, 16, dtype=torch.bool)
    artefact[:, :8] = True
    ignore = torch.zeros(16, 16, dtype=torch.bool)
    ignore[8:, :] = True
    labels = labels_from_positions(
        (16, 16),
        torch.tensor([[8.0, 4.0], [12.0, 12.0]]),
        160.0,
        pixel_size_a=8.0,
        artefact_mask=artefact,
        ignore_mask=ignore,
    )
    assert bool((labels[:, :8] == 2).all())
    assert int(labels[4, 8]) == 1
    assert int(labels[4, 9]) == 1
    assert int(labels[12, 12]) == 1  # a pick inside an ignored region is a particle
    assert int(labels[15, 15]) == IGNORE
    assert int(labels[2, 14]) == 0


def test_mask_reduction_keeps_pixels_at_least_half_covered() -> None:
    # Halving: coarse pixel j is centred on fine pixel 2j (box centres N//2 ↔ M//2) and spans
    # half of 2j−1, all of 2j and half of 2j+1.
    fine = torch.zeros(16, 16, dtype=torch.bool)
    fine[:, 6] = True  # the whole of fine column 2j for j = 3 → exactly 50 %
    fine[:, 11] = True  # half of coarse columns 5 and 6 each → 25 % of each
    coarse = downsample_mask(fine, (8, 8))
    assert coarse[:, 3].all()
    assert not coarse[:, [2, 4, 5, 6]].any()
    fine[:, 13] = True  # fine 11 and 13 are the two halves of coarse column 6 → 50 %
    assert downsample_mask(fine, (8, 8))[:, 6].all()


def test_mask_reduction_matches_a_supersampled_area_for_odd_ratios() -> None:
    g = torch.Generator().manual_seed(3)
    fine = (
        torch.nn.functional.interpolate(
            torch.rand(1, 1, 13, 11, generator=g), size=(101, 77), mode="nearest"
        )[0, 0]
        > 0.5
    )
    h, w = 37, 29
    coarse = downsample_mask(fine, (h, w))
    # Supersample each coarse pixel with 40 × 40 points; a point belongs to the fine pixel
    # whose centre is nearest (fine pixel i spans i ± ½).
    sub = (np.arange(40) + 0.5) / 40 - 0.5
    fraction = np.zeros((h, w))
    for name, n_in, n_out in (("y", 101, h), ("x", 77, w)):
        s = n_in / n_out
        centres = (np.arange(n_out) - n_out // 2) * s + n_in // 2
        points = centres[:, None] + sub[None, :] * s
        index = np.clip(np.floor(points + 0.5), -1, n_in).astype(int)
        if name == "y":
            ry, vy = index, (index >= 0) & (index < n_in)
        else:
            rx, vx = index, (index >= 0) & (index < n_in)
    values = fine.numpy()
    for j in range(h):
        for i in range(w):
            yy, xx = ry[j][vy[j]], rx[i][vx[i]]
            fraction[j, i] = values[np.ix_(yy, xx)].mean()
    clear = np.abs(fraction - 0.5) > 0.03
    assert clear.mean() > 0.7
    assert np.array_equal(coarse.numpy()[clear], (fraction >= 0.5)[clear])


def _random_labelled(seed: int, n: int = 5) -> LabelledMicrograph:
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(-1, 3, (24, 30), generator=g)
    return LabelledMicrograph(
        image=torch.randn(24, 30, generator=g),
        labels=labels,
        positions_px=torch.rand(n, 2, generator=g) * 20,
        diameters_a=torch.rand(n, generator=g) * 300,
        artefact_mask=labels == 2,
        pixel_size_a=8.0,
        source="unit test ü",
    )


def test_save_load_round_trip_is_exact_and_bytes_repeat(tmp_path: Path) -> None:
    original = _random_labelled(0)
    path = save_labelled(original, tmp_path / "a.npz")
    back = load_labelled(path)
    for name in ("image", "labels", "positions_px", "diameters_a", "artefact_mask"):
        a, b = getattr(original, name), getattr(back, name)
        assert a.dtype == b.dtype, name
        assert torch.equal(a, b), name
    assert (back.pixel_size_a, back.source) == (8.0, "unit test ü")
    again = save_labelled(original, tmp_path / "b.npz")
    assert again.read_bytes() == path.read_bytes()
    empty = _random_labelled(1, n=0)
    assert load_labelled(save_labelled(empty, tmp_path / "c.npz")).positions_px.shape == (0, 2)


def test_damaged_or_foreign_files_raise_typed_errors(tmp_path: Path) -> None:
    good = save_labelled(_random_labelled(2), tmp_path / "good.npz").read_bytes()
    truncated = tmp_path / "truncated.npz"
    truncated.write_bytes(good[: len(good) // 2])
    flipped = bytearray(good)
    flipped[len(good) // 3] ^= 0xFF
    damaged = tmp_path / "flipped.npz"
    damaged.write_bytes(bytes(flipped))
    for path in (truncated, damaged):
        with pytest.raises(CorruptFileError) as info:
            load_labelled(path)
        assert info.value.path == path
    foreign = tmp_path / "foreign.npz"
    with foreign.open("wb") as handle:
        np.savez(handle, x=np.zeros(3))
    with pytest.raises(FileFormatError):
        load_labelled(foreign)
    with pytest.raises(MissingFileError):
        load_labelled(tmp_path / "absent.npz")


def test_invalid_labelled_micrographs_are_refused() -> None:
    lm = _random_labelled(3)
    with pytest.raises(ValueError, match="shape"):
        LabelledMicrograph(
            lm.image, lm.labels[:-1], lm.positions_px, lm.diameters_a, lm.artefact_mask
        )
    with pytest.raises(ValueError, match="diameters"):
        LabelledMicrograph(
            lm.image, lm.labels, lm.positions_px, lm.diameters_a[:-1], lm.artefact_mask
        )


def _dark_disks(shape: tuple[int, int], centres_px: list[tuple[float, float]], radius_px: float):
    yy, xx = torch.meshgrid(torch.arange(shape[0]), torch.arange(shape[1]), indexing="ij")
    image = 100.0 + torch.randn(shape, generator=torch.Generator().manual_seed(0))
    for x, y in centres_px:
        image[(xx - x) ** 2 + (yy - y) ** 2 <= radius_px**2] -= 20.0
    return image


def test_user_micrograph_becomes_labels_at_8_angstrom() -> None:
    # 256² at 4 Å → 128² at 8 Å; prepared px = (x/4 − 128)/2 + 64 = x_a / 8.
    centres_px = [(40.0, 60.0), (200.0, 100.0), (120.0, 220.0)]
    image = _dark_disks((256, 256), centres_px, 10.0)
    positions_a = torch.tensor(centres_px) * 4.0
    ignore = torch.zeros(256, 256, dtype=torch.bool)
    ignore[:, 240:] = True
    artefact = torch.zeros(256, 256, dtype=torch.bool)
    artefact[:32, :64] = True
    lm = labelled_from_micrograph(
        image,
        pixel_size_a=4.0,
        positions_a=torch.cat([positions_a, torch.tensor([[5000.0, 10.0]])]),  # last: outside
        diameter_a=120.0,
        painted_artefacts=artefact,
        painted_ignore=ignore,
        source="user",
    )
    assert lm.image.shape == (128, 128)
    assert lm.pixel_size_a == 8.0
    assert torch.allclose(lm.positions_px, positions_a / 8.0)
    assert lm.diameters_a.tolist() == [120.0] * 3
    for x, y in lm.positions_px.round().long().tolist():
        assert int(lm.labels[y, x]) == 1
        assert float(lm.image[y, x]) < -3  # dark disk in robust units
    assert int((lm.labels == 1).sum()) == 3 * 29  # radius 0.2·120/8 = 3 px: 29 lattice points
    assert bool(lm.artefact_mask[:16, :32].all())
    assert int(lm.artefact_mask.sum()) == 16 * 32
    assert bool((lm.labels[:16, :32] == 2).all())
    assert bool((lm.labels[:, 120:] == IGNORE).all())
    assert not bool((lm.labels[:, :120] == -1).any())


def test_bad_user_inputs_raise_typed_errors() -> None:
    image = _dark_disks((128, 128), [(64.0, 64.0)], 8.0)
    kwargs = dict(pixel_size_a=4.0, positions_a=torch.tensor([[256.0, 256.0]]))
    with pytest.raises(InvalidValuesError, match="diameter"):
        labelled_from_micrograph(image, diameter_a=600.0, **kwargs)  # type: ignore[arg-type]
    with pytest.raises(InvalidValuesError, match="none of the 1 positions"):
        labelled_from_micrograph(
            image, pixel_size_a=4.0, positions_a=torch.tensor([[900.0, 40.0]]), diameter_a=100.0
        )
    with pytest.raises(DimensionMismatchError):
        labelled_from_micrograph(
            image,
            diameter_a=100.0,
            painted_ignore=torch.zeros(64, 64, dtype=torch.bool),
            **kwargs,  # type: ignore[arg-type]
        )
    with pytest.raises(InvalidValuesError, match="blank"):
        labelled_from_micrograph(torch.ones(128, 128), diameter_a=100.0, **kwargs)  # type: ignore[arg-type]


def test_painted_masks_from_png_and_mrc(tmp_path: Path) -> None:
    painted = np.zeros((20, 30), dtype=bool)
    painted[3:9, 5:17] = True
    gray = tmp_path / "gray.png"
    Image.fromarray((painted * 255).astype(np.uint8)).save(gray)
    rgba = np.zeros((20, 30, 4), dtype=np.uint8)
    rgba[..., 3] = 255  # opaque black background
    rgba[painted] = (200, 0, 0, 255)  # red paint
    rgba[15, 25] = (255, 255, 255, 0)  # white but fully transparent: not painted
    colour = tmp_path / "colour.png"
    Image.fromarray(rgba, mode="RGBA").save(colour)
    mrc = tmp_path / "mask.mrc"
    write_mrc(mrc, painted.astype(np.float32) * 0.8, voxel_size_a=1.0)
    for path in (gray, colour, mrc):
        mask = read_painted_mask(path, (20, 30))
        assert mask.dtype == torch.bool
        assert np.array_equal(mask.numpy(), painted), path
    assert not read_painted_mask(mrc, (20, 30), threshold=0.9).any()
    flipped = read_painted_mask(gray, (20, 30), flip_y=True)
    assert np.array_equal(flipped.numpy(), painted[::-1])
    with pytest.raises(DimensionMismatchError) as info:
        read_painted_mask(gray, (30, 20))
    assert info.value.path == gray
    (tmp_path / "mask.txt").write_text("0 1")
    with pytest.raises(FileFormatError):
        read_painted_mask(tmp_path / "mask.txt", (20, 30))
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    with pytest.raises(CorruptFileError):
        read_painted_mask(tmp_path / "broken.png", (20, 30))
