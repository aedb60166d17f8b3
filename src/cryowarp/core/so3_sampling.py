"""Near-uniform grids of orientations on SO(3), optionally reduced by point-group symmetry.

A grid at angular step ``s`` combines viewing directions on a spherical Fibonacci lattice
(``round(4π / s²)`` points, ``s`` in radians, each covering a solid angle ``s²``) with
``round(360° / s)`` equally spaced in-plane angles ``psi``.  The number of orientations is
therefore about ``8π² / s³ = (360° / s)³ / π`` (step 15° → 4 400, 10° → 14 850,
7.5° → 35 200), the Haar volume of SO(3) divided by ``s³``.  Every rotation lies within about
``0.75 s`` of a grid orientation.

Directions and poses follow ``docs/conventions.md`` §8: the grid orientation with viewing
direction ``(sin tilt cos rot, sin tilt sin rot, cos tilt)`` and in-plane angle ``psi`` is the
pose ``euler_to_matrix((rot, tilt, psi))``.  With a point group, only one representative per
orbit ``{A · S}`` is kept: those closest to the identity among their symmetry copies (the
Dirichlet domain of the identity, widened by a margin so that the reduced grid still covers
SO(3) modulo symmetry), i.e. slightly more than ``1/order`` of the grid.
"""

from __future__ import annotations

import math

import torch

from cryowarp.core.rotations import euler_to_matrix
from cryowarp.core.symmetry import point_group_operators
from cryowarp.errors import DimensionMismatchError, InvalidValuesError

__all__ = [
    "reduce_to_asymmetric_unit",
    "so3_grid",
    "so3_grid_size",
    "sphere_fibonacci_directions",
]

_GOLDEN_ANGLE_RAD = math.pi * (3 - math.sqrt(5))


def _check_step(angular_step_deg: float) -> None:
    if not (0 < angular_step_deg <= 180) or not math.isfinite(angular_step_deg):
        raise InvalidValuesError(
            None, f"angular step must be in (0, 180] degrees, got {angular_step_deg}"
        )


def _grid_counts(angular_step_deg: float) -> tuple[int, int]:
    step_rad = math.radians(angular_step_deg)
    n_directions = max(1, round(4 * math.pi / step_rad**2))
    n_psi = max(1, round(360.0 / angular_step_deg))
    return n_directions, n_psi


def so3_grid_size(angular_step_deg: float) -> int:
    """Number of orientations of the full :func:`so3_grid` at this step (≈ (360/step)³/π)."""
    _check_step(angular_step_deg)
    n_directions, n_psi = _grid_counts(angular_step_deg)
    return n_directions * n_psi


def sphere_fibonacci_directions(
    n_points: int,
    *,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Near-uniform unit vectors on the sphere (spherical Fibonacci lattice).

    Parameters
    ----------
    n_points:
        Number of directions (≥ 1).
    device, dtype:
        Where and how to return them.

    Returns
    -------
    torch.Tensor
        ``(n_points, 3)`` unit vectors ``(x, y, z)``; point ``i`` has ``z = 1 − (2i + 1)/n``.
    """
    if n_points < 1:
        raise InvalidValuesError(None, f"need at least one direction, got {n_points}")
    i = torch.arange(n_points, dtype=torch.float64)
    z = 1 - (2 * i + 1) / n_points
    azimuth = i * _GOLDEN_ANGLE_RAD
    radius = (1 - z * z).clamp(min=0).sqrt()
    points = torch.stack([radius * azimuth.cos(), radius * azimuth.sin(), z], dim=-1)
    return points.to(device=device, dtype=dtype)


def reduce_to_asymmetric_unit(
    rotations: torch.Tensor,  # (n, 3, 3)
    symmetry: str | torch.Tensor,
    *,
    margin_deg: float = 1e-3,
) -> torch.Tensor:
    """Boolean mask keeping one representative of each symmetry orbit ``{A · S}``.

    Parameters
    ----------
    rotations:
        ``(n, 3, 3)`` poses.
    symmetry:
        A point-group name or its ``(n_ops, 3, 3)`` operators.
    margin_deg:
        Poses within this angle (degrees) of the domain boundary are kept on both sides.
        A margin of about a quarter of the grid step keeps the covering radius of a reduced
        grid (modulo symmetry) that of the full grid.

    Returns
    -------
    torch.Tensor
        ``(n,)`` bool: ``True`` where the angle of ``A`` from the identity exceeds that of
        none of its copies ``A · S`` by more than ``margin_deg`` (the Dirichlet domain of the
        identity, widened by the margin).
    """
    if rotations.ndim != 3 or rotations.shape[-2:] != (3, 3):
        raise DimensionMismatchError(
            None, f"rotations must have shape (n, 3, 3), got {tuple(rotations.shape)}"
        )
    if isinstance(symmetry, str):
        operators = point_group_operators(symmetry, device=rotations.device, dtype=rotations.dtype)
    else:
        operators = symmetry.to(device=rotations.device, dtype=rotations.dtype)
    # trace(A · S) = Σ_ij A_ij S_ji = 1 + 2 cos(angle of A · S from the identity).
    traces = rotations.reshape(-1, 9) @ operators.transpose(-1, -2).reshape(-1, 9).T  # (n, ops)
    own = rotations.diagonal(dim1=-2, dim2=-1).sum(-1)
    own_angle = torch.acos(((own - 1) / 2).clamp(-1, 1))
    best_angle = torch.acos(((traces.amax(dim=-1) - 1) / 2).clamp(-1, 1))
    return own_angle <= best_angle + math.radians(margin_deg)


def so3_grid(
    angular_step_deg: float,
    *,
    symmetry: str | torch.Tensor | None = None,
    boundary_margin_deg: float | None = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Near-uniform orientations covering SO(3) (or its asymmetric unit) at a given step.

    Parameters
    ----------
    angular_step_deg:
        Angular step in degrees (spacing of directions and of in-plane angles).
    symmetry:
        Optionally a point-group name or its operators; then one pose per orbit is kept
        (see :func:`reduce_to_asymmetric_unit`).
    boundary_margin_deg:
        With ``symmetry``: poses this close to the asymmetric unit's boundary are kept on
        both sides, so that the reduced grid covers SO(3) modulo symmetry as well as the full
        grid covers SO(3).  Default a quarter of the step (5-15 % more poses).
    device, dtype:
        Where and how to return the grid.

    Returns
    -------
    torch.Tensor
        ``(n, 3, 3)`` poses; ``n`` = :func:`so3_grid_size` without symmetry, about that
        divided by the group order (plus the boundary margin) with it.  Order:
        direction-major, ``psi`` fastest.
    """
    _check_step(angular_step_deg)
    n_directions, n_psi = _grid_counts(angular_step_deg)
    directions = sphere_fibonacci_directions(n_directions, dtype=torch.float64)
    rot = torch.rad2deg(torch.atan2(directions[:, 1], directions[:, 0]))
    tilt = torch.rad2deg(torch.acos(directions[:, 2].clamp(-1, 1)))
    psi = torch.arange(n_psi, dtype=torch.float64) * (360.0 / n_psi) - 180.0
    euler = torch.stack(
        [
            rot[:, None].expand(n_directions, n_psi),
            tilt[:, None].expand(n_directions, n_psi),
            psi[None, :].expand(n_directions, n_psi),
        ],
        dim=-1,
    ).reshape(-1, 3)
    grid = euler_to_matrix(euler)
    if symmetry is not None:
        margin_deg = angular_step_deg / 4 if boundary_margin_deg is None else boundary_margin_deg
        grid = grid[reduce_to_asymmetric_unit(grid, symmetry, margin_deg=margin_deg)]
    return grid.to(device=device, dtype=dtype)
