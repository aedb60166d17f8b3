"""Tilted-specimen geometry: the stage tilt as a rotation and the defocus it implies
(docs/conventions.md §9)."""

from __future__ import annotations

import math

import torch

__all__ = ["defocus_at_positions_um", "tilt_rotation_matrix"]


def tilt_rotation_matrix(
    tilt_angle_deg: torch.Tensor | float,
    *,
    tilt_axis_angle_deg: float = 90.0,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Active, right-handed rotation by the tilt angle about the in-plane tilt axis.

    Parameters
    ----------
    tilt_angle_deg:
        ``(...)`` stage tilt in degrees.
    tilt_axis_angle_deg:
        Direction of the tilt axis in the image plane, measured from +x towards +y
        (90° = the +y axis).

    Returns
    -------
    torch.Tensor
        ``(..., 3, 3)`` matrices acting on column vectors (x, y, z) of the untilted sample,
        giving their positions in the tilted frame.
    """
    tilt = torch.as_tensor(tilt_angle_deg, device=device, dtype=dtype)
    a = math.radians(tilt_axis_angle_deg)
    ux, uy = math.cos(a), math.sin(a)
    t = torch.deg2rad(tilt)
    c, s = torch.cos(t), torch.sin(t)
    one_c = 1 - c
    zero = torch.zeros_like(t)
    # Rodrigues' formula for the unit axis (ux, uy, 0).
    rows = [
        [c + ux * ux * one_c, ux * uy * one_c, uy * s],
        [uy * ux * one_c, c + uy * uy * one_c, -ux * s],
        [-uy * s, ux * s, c + zero],
    ]
    return torch.stack([torch.stack(r, dim=-1) for r in rows], dim=-2)


def defocus_at_positions_um(
    positions_xyz_a: torch.Tensor,  # (..., 3)
    *,
    defocus_um: torch.Tensor | float,
    rotation: torch.Tensor | None = None,  # (..., 3, 3)
) -> torch.Tensor:
    """Defocus (µm, underfocus positive) of specimen points after an optional tilt.

    ``defocus_um`` is the defocus of the tilt-axis/eucentric point (the origin). A point at
    height ``z`` (Å, +z towards the electron source) after the rotation is ``z × 10⁻⁴`` µm
    *less* underfocused, so a positive tilt about +y makes the +x side more underfocused
    (Warp's convention).

    Returns
    -------
    torch.Tensor
        ``(...)`` defocus in µm.
    """
    r = positions_xyz_a
    if rotation is not None:
        r = (rotation @ r.unsqueeze(-1)).squeeze(-1)
    return defocus_um - r[..., 2] * 1e-4
