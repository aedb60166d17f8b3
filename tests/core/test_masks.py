"""Masks: raised-cosine edges, centre at N//2, shaped masks from maps."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from cryowarp.core.masks import (
    box_mask,
    cylindrical_mask,
    raised_cosine_edge,
    shaped_mask,
    spherical_mask,
)
from cryowarp.errors import DimensionMismatchError, InvalidValuesError


@given(st.floats(1.0, 20.0), st.floats(0.5, 10.0))
def test_raised_cosine_profile(radius: float, width: float) -> None:
    r = torch.linspace(0, 40, 4001, dtype=torch.float64)
    profile = raised_cosine_edge(r - radius, width)
    assert torch.all(profile[r <= radius] == 1)
    assert torch.all(profile[r >= radius + width] == 0)
    assert torch.all(profile.diff() <= 0)  # monotone
    half = raised_cosine_edge(torch.tensor(width / 2, dtype=torch.float64), width)
    assert half.item() == pytest.approx(0.5, abs=1e-12)
    quarter = raised_cosine_edge(torch.tensor(width / 4, dtype=torch.float64), width)
    assert quarter.item() == pytest.approx(0.5 * (1 + math.cos(math.pi / 4)), abs=1e-12)


@pytest.mark.parametrize("shape", [(32, 32), (33, 33), (20, 22, 24), (19, 21, 23)])
def test_spherical_mask_values_and_centre(shape: tuple[int, ...], device: torch.device) -> None:
    radius, width = 5.0, 4.0
    mask = spherical_mask(shape, radius, soft_edge_px=width, device=device, dtype=torch.float64)
    assert mask.shape == shape
    assert mask.device.type == device.type
    centre = tuple(n // 2 for n in shape)
    assert mask[centre] == 1
    # along +x from the centre: 1 up to r = 5, 0.5 at r = 7, 0 from r = 9 on
    line = mask[centre[:-1]][centre[-1] :]
    assert torch.all(line[:6] == 1)
    assert line[7].item() == pytest.approx(0.5, abs=1e-12)
    assert torch.all(line[9:] == 0)
    assert torch.all(line.diff() <= 0)
    # symmetric about N//2: the voxel at −r equals the one at +r
    minus = mask[centre[:-1]][centre[-1] - 7]
    assert minus.item() == pytest.approx(0.5, abs=1e-12)
    # the mask's centre of mass is N//2 on every axis (even and odd N)
    for axis, n in enumerate(shape):
        coords = torch.arange(n, dtype=torch.float64, device=device)
        others = [a for a in range(len(shape)) if a != axis]
        marginal = mask.sum(dim=others)
        assert (marginal * coords).sum() / marginal.sum() == pytest.approx(n // 2, abs=1e-9)


def test_hard_spherical_mask_volume() -> None:
    mask = spherical_mask((64, 64, 64), 20.0)
    assert set(mask.unique().tolist()) == {0.0, 1.0}
    assert mask.sum().item() == pytest.approx(4 / 3 * math.pi * 20**3, rel=0.01)


def test_cylindrical_mask_is_along_z(device: torch.device) -> None:
    shape = (20, 24, 24)
    mask = cylindrical_mask(shape, 6.0, soft_edge_px=2.0, device=device)
    assert mask.shape == shape
    assert torch.allclose(mask, mask[:1].expand(shape))  # the same in every z slice
    assert mask[0, 12, 12 + 7].item() == pytest.approx(0.5, abs=1e-6)  # x = r + w/2
    assert mask[0, 12 + 7, 12].item() == pytest.approx(0.5, abs=1e-6)  # y = r + w/2
    capped = cylindrical_mask(shape, 6.0, length_px=8.0, soft_edge_px=2.0, device=device)
    assert capped[10, 12, 12] == 1
    assert capped[10 + 4, 12, 12] == 1  # |z| = length/2
    assert capped[10 + 5, 12, 12].item() == pytest.approx(0.5, abs=1e-6)
    assert capped[10 - 6, 12, 12] == 0
    with pytest.raises(DimensionMismatchError):
        cylindrical_mask((24, 24), 6.0)


def test_box_mask_half_widths_in_xyz_order() -> None:
    mask = box_mask((21, 31, 41), (10.0, 5.0, 2.0), soft_edge_px=2.0, dtype=torch.float64)
    cz, cy, cx = 10, 15, 20
    assert mask[cz, cy, cx] == 1
    assert mask[cz, cy, cx + 10] == 1  # x half-width 10
    assert mask[cz, cy, cx + 11].item() == pytest.approx(0.5, abs=1e-12)
    assert mask[cz, cy + 6, cx].item() == pytest.approx(0.5, abs=1e-12)  # y half-width 5
    assert mask[cz - 3, cy, cx].item() == pytest.approx(0.5, abs=1e-12)  # z half-width 2
    assert mask[cz, cy, cx + 12] == 0
    assert torch.all(mask[cz, cy, cx:].diff() <= 0)
    square = box_mask((8, 8), 2.0)
    assert square.sum().item() == 25  # |x - 4| <= 2 and |y - 4| <= 2
    with pytest.raises(DimensionMismatchError, match="half-widths"):
        box_mask((8, 8, 8), (1.0, 2.0))


def _blob_map(size: int) -> torch.Tensor:
    """A map with an ellipsoid of density 1 and weak noise below 0.05 elsewhere."""
    axes = torch.arange(size, dtype=torch.float64) - size // 2
    zz, yy, xx = torch.meshgrid(axes, axes, axes, indexing="ij")
    inside = (xx / 8) ** 2 + (yy / 5) ** 2 + (zz / 6) ** 2 <= 1
    noise = 0.05 * torch.rand(size, size, size, generator=torch.Generator().manual_seed(0))
    return torch.where(inside, 1.0, noise.double())


def test_shaped_mask_contains_the_map_and_has_the_requested_edge(device: torch.device) -> None:
    volume = _blob_map(40).to(device)
    extend, width = 3.0, 4.0
    mask = shaped_mask(volume, 0.5, extend_px=extend, soft_edge_px=width)
    assert mask.shape == volume.shape
    assert mask.device.type == device.type
    above = volume >= 0.5
    assert torch.all(mask[above] == 1)
    # distance of every voxel to the thresholded region, by brute force
    idx = torch.nonzero(torch.ones_like(volume, dtype=torch.bool)).double()
    pts = torch.nonzero(above).double()
    distance = torch.cdist(idx, pts).amin(-1).reshape(volume.shape)
    assert torch.all(mask[distance <= extend] == 1)
    assert torch.all(mask[distance >= extend + width] == 0)
    edge = (distance > extend) & (distance < extend + width)
    expected = 0.5 * (1 + torch.cos(math.pi * (distance[edge] - extend) / width))
    assert torch.allclose(mask[edge], expected.to(mask.dtype), atol=1e-6)
    # where the soft edge reaches 0.5: distance extend + width/2
    halfway = (distance - (extend + width / 2)).abs() < 1e-9
    assert halfway.any()
    assert torch.allclose(mask[halfway], torch.full_like(mask[halfway], 0.5), atol=1e-6)


def test_shaped_mask_rejects_empty_and_bad_maps() -> None:
    volume = torch.zeros(8, 8, 8)
    with pytest.raises(InvalidValuesError, match="threshold"):
        shaped_mask(volume, 1.0)
    volume[0, 0, 0] = float("nan")
    with pytest.raises(InvalidValuesError, match="NaN"):
        shaped_mask(volume, -1.0)
    with pytest.raises(InvalidValuesError, match="soft edge"):
        spherical_mask((8, 8), 2.0, soft_edge_px=-1.0)
