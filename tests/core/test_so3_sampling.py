"""SO(3) grids: size ≈ (360/step)³/π, covering radius below the step, near-uniformity."""

from __future__ import annotations

import math

import pytest
import torch

from cryowarp.core.rotations import euler_to_matrix, matrix_to_euler, random_rotations
from cryowarp.core.so3_sampling import (
    reduce_to_asymmetric_unit,
    so3_grid,
    so3_grid_size,
    sphere_fibonacci_directions,
)
from cryowarp.core.symmetry import expand_by_symmetry, point_group_operators
from cryowarp.errors import InvalidValuesError


def _nearest_angle_deg(queries: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
    """Angle from each query to its nearest grid rotation, ``(n_queries,)`` degrees."""
    # trace(qᵀ g) = Σ q_ij g_ij = 1 + 2 cos(angle)
    best = (queries.reshape(-1, 9) @ grid.reshape(-1, 9).T).amax(dim=-1)
    return torch.rad2deg(torch.acos(((best - 1) / 2).clamp(-1, 1)))


@pytest.mark.parametrize("step_deg", [30.0, 15.0, 10.0, 7.5])
def test_grid_size_is_haar_volume_over_step_cubed(step_deg: float) -> None:
    expected = (360 / step_deg) ** 3 / math.pi  # 8π² / step³ (step in rad)
    assert so3_grid_size(step_deg) == pytest.approx(expected, rel=0.02)
    if step_deg >= 10:
        assert len(so3_grid(step_deg)) == so3_grid_size(step_deg)


@pytest.mark.parametrize("step_deg", [20.0, 10.0])
def test_every_rotation_is_within_one_step_of_the_grid(step_deg: float) -> None:
    grid = so3_grid(step_deg, dtype=torch.float64)
    queries = random_rotations(
        2000, generator=torch.Generator().manual_seed(11), dtype=torch.float64
    )
    distance = _nearest_angle_deg(queries, grid)
    # measured: max 0.77-0.79 step, mean 0.48 step
    assert distance.max() <= 0.85 * step_deg
    assert distance.mean() == pytest.approx(0.48 * step_deg, rel=0.1)


def test_grid_is_near_uniform() -> None:
    """Nearest-neighbour distances are nearly equal (CV < 5 %), and the Haar moments hold:
    E[R] = 0 and E[R_ij²] = 1/3 for a uniform distribution on SO(3)."""
    step = 12.0
    grid = so3_grid(step, dtype=torch.float64)
    flat = grid.reshape(-1, 9)
    traces = flat @ flat.T
    traces.fill_diagonal_(-3.0)
    nearest = torch.rad2deg(torch.acos(((traces.amax(-1) - 1) / 2).clamp(-1, 1)))
    assert (nearest.std() / nearest.mean()).item() < 0.05
    assert nearest.min() > 0.5 * step
    assert grid.mean(0).abs().max() < 1e-3
    assert torch.allclose(
        grid.square().mean(0), torch.full((3, 3), 1 / 3, dtype=torch.float64), atol=1e-3
    )


def test_fibonacci_directions_are_unit_and_balanced(device: torch.device) -> None:
    points = sphere_fibonacci_directions(500, device=device, dtype=torch.float64)
    assert points.shape == (500, 3)
    assert points.device.type == device.type
    assert torch.allclose(points.norm(dim=-1), torch.ones(500, device=device, dtype=torch.float64))
    assert points.mean(0).abs().max() < 5e-3
    # equal-area: the fraction in a polar cap of height h is h/2
    assert (points[:, 2] > 0.5).double().mean().item() == pytest.approx(0.25, abs=0.01)


def test_grid_directions_follow_the_euler_convention() -> None:
    """Grid pose = euler_to_matrix((rot, tilt, psi)) with (rot, tilt) the spherical angles of
    its viewing direction (third row, conventions §8)."""
    grid = so3_grid(30.0, dtype=torch.float64)
    euler = matrix_to_euler(grid)
    assert torch.allclose(euler_to_matrix(euler), grid, atol=1e-12)
    directions = grid[:, 2, :]
    n_psi = round(360 / 30)
    fibonacci = sphere_fibonacci_directions(len(grid) // n_psi, dtype=torch.float64)
    assert torch.allclose(directions[::n_psi], fibonacci, atol=1e-12)


@pytest.mark.parametrize("symmetry", ["C4", "D7", "T", "O", "I"])
def test_symmetry_reduced_grid_covers_so3_modulo_symmetry(symmetry: str) -> None:
    step = 12.0
    ops = point_group_operators(symmetry, dtype=torch.float64)
    full = so3_grid(step, dtype=torch.float64)
    reduced = so3_grid(step, symmetry=symmetry, dtype=torch.float64)
    # one representative per orbit, plus a boundary margin of a quarter step (≤ 25 % more)
    assert len(full) / len(ops) * 0.97 <= len(reduced) <= len(full) / len(ops) * 1.25
    exact = so3_grid(step, symmetry=symmetry, boundary_margin_deg=0.0, dtype=torch.float64)
    assert len(exact) == pytest.approx(len(full) / len(ops), rel=0.03)
    queries = random_rotations(
        1000, generator=torch.Generator().manual_seed(5), dtype=torch.float64
    )
    copies = expand_by_symmetry(reduced, ops).reshape(-1, 3, 3)  # all A·S
    assert _nearest_angle_deg(queries, copies).max() <= 0.95 * step


def test_asymmetric_unit_keeps_one_pose_per_orbit() -> None:
    ops = point_group_operators("D3", dtype=torch.float64)
    poses = random_rotations(50, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    orbits = expand_by_symmetry(poses, ops)  # (50, 6, 3, 3)
    keep = reduce_to_asymmetric_unit(orbits.reshape(-1, 3, 3), ops, margin_deg=0.0)
    assert torch.equal(keep.reshape(50, 6).sum(-1), torch.ones(50, dtype=torch.long))


def test_grid_lands_on_the_requested_device(device: torch.device) -> None:
    grid = so3_grid(30.0, symmetry="C2", device=device)
    assert grid.device.type == device.type
    assert grid.dtype == torch.float32


@pytest.mark.parametrize("step", [0.0, -5.0, 200.0, float("nan")])
def test_bad_steps_raise(step: float) -> None:
    with pytest.raises(InvalidValuesError, match="angular step"):
        so3_grid(step)
