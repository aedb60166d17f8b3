"""Motion direction (conventions §4): a frame whose content moved by +s is aligned by −s."""

from __future__ import annotations

import torch

from cryowarp.core.shift import shift_image


def test_aligning_applies_the_negative_of_the_motion(device: torch.device) -> None:
    axis = torch.arange(32, dtype=torch.float32, device=device)
    y, x = torch.meshgrid(axis, axis, indexing="ij")
    reference = torch.exp(-((x - 12.0) ** 2 + (y - 17.0) ** 2) / 8.0)
    motion_px = torch.tensor([1.75, -2.5], device=device)  # (x, y): content moved there
    frame = shift_image(reference, motion_px)
    # the blob now sits at (12 + 1.75, 17 - 2.5)
    mass = frame.sum()
    centroid = torch.stack([(x * frame).sum(), (y * frame).sum()]) / mass
    assert torch.allclose(centroid, torch.tensor([13.75, 14.5], device=device), atol=1e-3)
    aligned = shift_image(frame, -motion_px)
    assert torch.allclose(aligned, reference, atol=1e-4)
