"""The demo phantom is deterministic, centred and band-limited."""

from __future__ import annotations

import torch

from cryowarp.simulate.phantom import blob_phantom


def test_phantom_is_deterministic_and_centred() -> None:
    a = blob_phantom(32, seed=3)
    b = blob_phantom(32, seed=3)
    c = blob_phantom(32, seed=4)
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    assert float(a.max()) == 1.0
    axis = torch.arange(32, dtype=torch.float32)
    z, y, x = torch.meshgrid(axis, axis, axis, indexing="ij")
    mass = a.sum()
    centroid = torch.stack([(x * a).sum(), (y * a).sum(), (z * a).sum()]) / mass
    # blob centres lie within a sphere of radius 8 px about (16, 16, 16)
    assert torch.all((centroid - 16).abs() < 5)
    # nothing outside radius 8 + 4 sigma
    r = ((x - 16) ** 2 + (y - 16) ** 2 + (z - 16) ** 2).sqrt()
    assert float(a[r > 8 + 6].max()) < 1e-3
