"""Micrograph preparation for BoxNet: pixel size, normalisation, coordinates, bad input."""

from __future__ import annotations

import pytest
import torch

from cryowarp.errors import InvalidValuesError
from cryowarp.preprocess.picking.prepare import (
    CLIP_SIGMA,
    PICKING_PIXEL_SIZE_A,
    prepare_micrograph,
)


def _dark_disk_image(shape: tuple[int, int], centre_xy: tuple[float, float], radius: float):
    h, w = shape
    y, x = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    r2 = (x - centre_xy[0]) ** 2 + (y - centre_xy[1]) ** 2
    generator = torch.Generator().manual_seed(0)
    return 100.0 + torch.randn(shape, generator=generator) - 5.0 * (r2 <= radius**2).float()


def test_downscales_to_the_picking_pixel_size_and_normalises_robustly() -> None:
    image = _dark_disk_image((400, 600), (300.0, 200.0), 30.0)
    prepared = prepare_micrograph(image, pixel_size_a=2.0)
    assert tuple(prepared.image.shape) == (100, 150)
    assert prepared.pixel_size_xy_a == pytest.approx((PICKING_PIXEL_SIZE_A,) * 2)
    values = prepared.image.flatten()
    assert float(values.median()) == pytest.approx(0.0, abs=1e-5)
    mad = float((values - values.median()).abs().median())
    assert 1.4826 * mad == pytest.approx(1.0, rel=1e-3)
    assert float(values.abs().max()) <= CLIP_SIGMA
    # the dark disk stays dark at its downscaled position (centre 300, 200 → 75, 50)
    assert float(prepared.image[50, 75]) < -3.0


@pytest.mark.parametrize(("h", "w"), [(401, 603), (400, 600), (123, 257)])
def test_positions_map_between_original_and_prepared_pixels(h: int, w: int) -> None:
    prepared = prepare_micrograph(torch.randn(h, w), pixel_size_a=2.0)
    hp, wp = prepared.image.shape
    # box centres map onto box centres (conventions §2)
    centre = torch.tensor([[w // 2, h // 2]], dtype=torch.float64)
    assert prepared.to_prepared_px(centre).tolist() == [[wp // 2, hp // 2]]
    points = torch.tensor([[0.0, 0.0], [17.5, 3.25], [w - 1.0, h - 1.0]], dtype=torch.float64)
    back = prepared.to_original_px(prepared.to_prepared_px(points))
    assert torch.allclose(back, points, atol=1e-9)
    # one prepared pixel spans w / wp original pixels
    step = prepared.to_original_px(torch.tensor([[1.0, 1.0], [0.0, 0.0]], dtype=torch.float64))
    assert float(step[0, 0] - step[1, 0]) == pytest.approx(w / wp)


def test_an_image_already_at_the_picking_pixel_size_is_only_normalised() -> None:
    image = _dark_disk_image((64, 80), (40.0, 30.0), 5.0)
    prepared = prepare_micrograph(image, pixel_size_a=8.0)
    assert tuple(prepared.image.shape) == (64, 80)
    assert float(prepared.image[30, 40]) < -3.0


@pytest.mark.parametrize("pixel_size_a", [0.0, -1.0, float("nan"), 0.01, 9.0])
def test_implausible_pixel_sizes_are_refused(pixel_size_a: float) -> None:
    with pytest.raises(InvalidValuesError, match="pixel size"):
        prepare_micrograph(torch.randn(256, 256), pixel_size_a=pixel_size_a)


def test_blank_non_finite_and_tiny_images_are_refused() -> None:
    with pytest.raises(InvalidValuesError, match="blank"):
        prepare_micrograph(torch.full((256, 256), 7.0), pixel_size_a=1.0)
    with pytest.raises(InvalidValuesError, match="blank"):  # cropped: rounding noise only
        prepare_micrograph(torch.full((301, 280), 6802.0), pixel_size_a=4.0)
    bad = torch.randn(256, 256)
    bad[3, 4] = float("nan")
    with pytest.raises(InvalidValuesError, match="NaN"):
        prepare_micrograph(bad, pixel_size_a=1.0)
    with pytest.raises(InvalidValuesError, match="at least 16"):
        prepare_micrograph(torch.randn(100, 100), pixel_size_a=1.0)
    with pytest.raises(InvalidValuesError, match="2-D"):
        prepare_micrograph(torch.randn(2, 64, 64), pixel_size_a=1.0)
