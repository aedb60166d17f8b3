"""Procedural phantom volumes: smooth, asymmetric, protein-sized blobs for demos and tests."""

from __future__ import annotations

import torch

__all__ = ["blob_phantom"]


def blob_phantom(
    box_size: int,
    *,
    radius_px: float | None = None,
    n_blobs: int = 40,
    blob_sigma_px: float = 1.5,
    seed: int = 0,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """A sum of Gaussian blobs at random positions inside a sphere about the box centre.

    Parameters
    ----------
    box_size:
        Edge of the cubic box in pixels.
    radius_px:
        Radius of the sphere that holds the blob centres (default ``box_size / 4``).
    n_blobs:
        Number of Gaussian blobs.
    blob_sigma_px:
        Standard deviation of each blob in pixels.
    seed:
        Seed of the random positions and weights (the phantom is deterministic).

    Returns
    -------
    torch.Tensor
        ``(box_size, box_size, box_size)`` float32 volume (z, y, x), zero mean outside the
        particle, maximum 1.  Its centre of the sphere is at index ``box_size // 2``.
    """
    radius = box_size / 4 if radius_px is None else radius_px
    g = torch.Generator().manual_seed(seed)
    # Uniform points in a ball: random direction times radius * u^(1/3).
    direction = torch.randn(n_blobs, 3, generator=g, dtype=torch.float64)
    direction /= direction.norm(dim=-1, keepdim=True)
    r = radius * torch.rand(n_blobs, 1, generator=g, dtype=torch.float64) ** (1 / 3)
    centres_xyz = (direction * r).to(torch.float32) + box_size // 2
    weights = (0.5 + torch.rand(n_blobs, generator=g)).to(torch.float32)
    axis = torch.arange(box_size, dtype=torch.float32, device=device)
    z, y, x = torch.meshgrid(axis, axis, axis, indexing="ij")
    volume = torch.zeros(box_size, box_size, box_size, device=device)
    for (cx, cy, cz), w in zip(centres_xyz.tolist(), weights.tolist(), strict=True):
        d2 = (x - cx) ** 2 + (y - cy) ** 2 + (z - cz) ** 2
        volume += w * torch.exp(-d2 / (2 * blob_sigma_px**2))
    return volume / volume.max()
