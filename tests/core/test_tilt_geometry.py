"""Tilt handedness (conventions §9): a positive tilt about +Y makes +X more underfocused."""

from __future__ import annotations

import torch

from cryowarp.core.rotations import axis_angle_to_matrix
from cryowarp.core.tilt_geometry import defocus_at_positions_um, tilt_rotation_matrix


def test_positive_tilt_about_y_increases_underfocus_on_plus_x(device: torch.device) -> None:
    rotation = tilt_rotation_matrix(30.0, tilt_axis_angle_deg=90.0, device=device)
    points = torch.tensor([[1000.0, 0, 0], [-1000.0, 0, 0], [0, 1000.0, 0]], device=device)
    defocus = defocus_at_positions_um(points, defocus_um=2.0, rotation=rotation)
    # 1000 Å along +x rises by -1000 sin(30°) Å -> 0.05 µm more underfocus
    assert torch.allclose(defocus, torch.tensor([2.05, 1.95, 2.0], device=device), atol=1e-6)


def test_tilt_matrix_is_the_active_rotation_about_the_axis() -> None:
    for axis_deg in (0.0, 37.0, 90.0, 175.0):
        a = torch.deg2rad(torch.tensor(axis_deg))
        axis = torch.stack([torch.cos(a), torch.sin(a), torch.tensor(0.0)])
        for tilt in (-60.0, 12.5, 45.0):
            ours = tilt_rotation_matrix(tilt, tilt_axis_angle_deg=axis_deg)
            assert torch.allclose(ours, axis_angle_to_matrix(axis, tilt), atol=1e-6)


def test_particle_height_reduces_underfocus() -> None:
    """Untilted: a particle 200 Å above the focal plane (towards the source) is 0.02 µm
    less underfocused."""
    defocus = defocus_at_positions_um(torch.tensor([[5.0, 7.0, 200.0]]), defocus_um=1.5)
    assert torch.allclose(defocus, torch.tensor([1.48]))
