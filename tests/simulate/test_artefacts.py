"""High-contrast artefacts (ethane drops, carbon edge, aggregates) and their masks."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import ndimage

from cryowarp.simulate.artefacts import (
    CARBON_POTENTIAL_V,
    ETHANE_POTENTIAL_V,
    Artefacts,
    random_artefacts,
)

SHAPE = (256, 320)
EIGHT_CONNECTED = np.ones((3, 3), dtype=bool)


def _artefacts(seed: int, device: torch.device | str = "cpu", **counts: object) -> Artefacts:
    generator = torch.Generator(device=device).manual_seed(seed)
    return random_artefacts(SHAPE, pixel_size_a=1.2, generator=generator, **counts)  # type: ignore[arg-type]


def _components(mask: torch.Tensor) -> tuple[np.ndarray, int]:
    labels, n = ndimage.label(mask.cpu().numpy(), structure=EIGHT_CONNECTED)
    return labels, int(n)


def test_mask_covers_the_artefacts(device: torch.device) -> None:
    art = _artefacts(0, device, n_drops=2, carbon_edge=True, n_aggregates=2)
    assert art.mask.shape == SHAPE
    assert art.mask.device.type == device.type
    inside, outside = art.mask, ~art.mask
    assert 0.02 < float(inside.float().mean()) < 0.6
    assert float(art.projected_potential_va[outside].abs().max()) == 0.0
    assert float(art.amplitude_loss[outside].abs().max()) == 0.0
    assert float(art.projected_potential_va[inside].mean()) > 500.0  # V·Å, ≫ a protein's
    assert float(art.amplitude_loss[inside].min()) > 0.0
    assert float(art.amplitude_loss.max()) < 1.0


@pytest.mark.parametrize(
    ("n_drops", "carbon_edge", "n_aggregates"),
    [(1, False, 0), (0, True, 0), (0, False, 3), (3, True, 2)],
)
def test_component_counts_are_as_requested(
    n_drops: int, carbon_edge: bool, n_aggregates: int
) -> None:
    for seed in range(4):
        art = _artefacts(seed, n_drops=n_drops, carbon_edge=carbon_edge, n_aggregates=n_aggregates)
        labels, n = _components(art.mask)
        assert n == n_drops + int(carbon_edge) + n_aggregates, seed
        peaks = ndimage.maximum(art.projected_potential_va.numpy(), labels, range(1, n + 1))
        assert min(peaks) > 400.0, seed  # every artefact is strong: ≥ 3 V × 150 Å


def test_nothing_when_all_counts_are_zero() -> None:
    art = _artefacts(1, n_drops=0, carbon_edge=False, n_aggregates=0)
    assert not bool(art.mask.any())
    assert float(art.projected_potential_va.abs().max()) == 0.0
    assert float(art.amplitude_loss.abs().max()) == 0.0


def test_carbon_is_a_film_of_constant_thickness_on_less_than_half_the_field() -> None:
    for seed in range(4):
        art = _artefacts(seed, n_drops=0, carbon_edge=True, n_aggregates=0)
        mask = art.mask.numpy()
        assert 0.03 < mask.mean() < 0.5, seed
        interior = ndimage.binary_erosion(mask, iterations=2)
        film = art.projected_potential_va.numpy()[interior]
        thickness_a = film / CARBON_POTENTIAL_V
        assert 100.0 <= thickness_a.min() <= thickness_a.max() <= 300.0, seed
        assert np.ptp(thickness_a) < 1e-3 * thickness_a.mean(), seed


def test_amplitude_loss_follows_the_thickness_of_a_drop() -> None:
    art = _artefacts(2, n_drops=2, n_aggregates=0)
    thickness_a = art.projected_potential_va.double() / ETHANE_POTENTIAL_V
    assert 300.0 * 0.99 < float(thickness_a.max()) < 1000.0
    # Beer-Lambert with the ethane mean free path: loss = 1 - exp(-t / λ), λ the same everywhere.
    inside = art.mask & (thickness_a > 50)
    free_path_a = -thickness_a[inside] / torch.log1p(-art.amplitude_loss.double()[inside])
    assert float(free_path_a.std() / free_path_a.mean()) < 1e-3
    assert 1000.0 < float(free_path_a.mean()) < 10000.0


def test_same_generator_state_gives_the_same_artefacts(device: torch.device) -> None:
    counts = {"n_drops": 2, "carbon_edge": True, "n_aggregates": 1}
    a, b, c = (
        _artefacts(3, device, **counts),
        _artefacts(3, device, **counts),
        _artefacts(4, device, **counts),
    )
    assert torch.equal(a.projected_potential_va, b.projected_potential_va)
    assert torch.equal(a.mask, b.mask)
    assert not torch.equal(a.mask, c.mask)


def test_too_many_artefacts_for_the_field_is_an_error() -> None:
    with pytest.raises(ValueError, match="cannot place"):
        random_artefacts(
            (32, 32), pixel_size_a=1.0, generator=torch.Generator().manual_seed(0), n_drops=40
        )
