"""Point groups in RELION's orientations (conventions §10), symmetrised maps, expanded poses."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from cryowarp.core.rotations import (
    angular_distance_deg,
    axis_angle_to_matrix,
    euler_to_matrix,
    random_rotations,
)
from cryowarp.core.symmetry import (
    expand_by_symmetry,
    point_group_operators,
    point_group_order,
    symmetric_angular_distance_deg,
    symmetrize_volume,
)
from cryowarp.errors import InvalidValuesError

PHI = (1 + math.sqrt(5)) / 2
ORDERS = {"C1": 1, "c7": 7, "C12": 12, "D1": 2, "D2": 4, "d5": 10, "T": 12, "O": 24, "I": 60}
ORDERS |= {"I1": 60, "I2": 60, "I3": 60, "I4": 60}


def _membership_error(candidates: torch.Tensor, group: torch.Tensor) -> float:
    """Largest distance (max abs entry) of any candidate matrix to its nearest group element."""
    diff = candidates.reshape(-1, 1, 9) - group.reshape(1, -1, 9)
    return diff.abs().amax(-1).amin(-1).max().item()


def _has_axis(group: torch.Tensor, axis: tuple[float, float, float], fold: int) -> bool:
    r = axis_angle_to_matrix(torch.tensor(axis, dtype=torch.float64), 360.0 / fold)
    return _membership_error(r[None], group) < 1e-9


@pytest.mark.parametrize(("name", "order"), ORDERS.items())
def test_groups_have_their_order_closure_identity_and_inverses(name: str, order: int) -> None:
    ops = point_group_operators(name, dtype=torch.float64)
    assert ops.shape == (order, 3, 3)
    assert point_group_order(name) == order
    assert torch.equal(ops[0], torch.eye(3, dtype=torch.float64))
    eye = torch.eye(3, dtype=torch.float64).expand(order, 3, 3)
    assert torch.allclose(ops @ ops.transpose(-1, -2), eye, atol=1e-12)
    assert torch.allclose(torch.linalg.det(ops), torch.ones(order, dtype=torch.float64))
    products = ops[:, None] @ ops[None, :]
    assert _membership_error(products, ops) < 1e-12
    assert _membership_error(ops.transpose(-1, -2), ops) < 1e-12
    # all distinct
    pairwise = (ops.reshape(-1, 1, 9) - ops.reshape(1, -1, 9)).abs().amax(-1)
    assert (pairwise + 10 * torch.eye(order, dtype=torch.float64)).min() > 1e-3


@given(st.sampled_from("CD"), st.integers(1, 24))
def test_cyclic_and_dihedral_groups_close_for_any_order(family: str, n: int) -> None:
    ops = point_group_operators(f"{family}{n}", dtype=torch.float64)
    assert len(ops) == (n if family == "C" else 2 * n)
    assert _membership_error(ops[:, None] @ ops[None, :], ops) < 1e-12
    assert _has_axis(ops, (0, 0, 1), n)
    if family == "D":
        assert _has_axis(ops, (1, 0, 0), 2)  # RELION: D's 2-fold along x


def test_axes_are_where_relion_puts_them() -> None:
    d2 = point_group_operators("D2", dtype=torch.float64)
    assert all(_has_axis(d2, a, 2) for a in [(1, 0, 0), (0, 1, 0), (0, 0, 1)])
    i2 = point_group_operators("I", dtype=torch.float64)
    assert torch.equal(i2, point_group_operators("I2", dtype=torch.float64))
    # I2 (Crowther 222): 2-folds on x, y, z; a 5-fold at (1, 0, φ) in xz; a 3-fold (0, 1, φ²).
    assert all(_has_axis(i2, a, 2) for a in [(1, 0, 0), (0, 1, 0), (0, 0, 1)])
    assert _has_axis(i2, (1, 0, PHI), 5)
    assert _has_axis(i2, (0, 1, PHI**2), 3)
    assert not _has_axis(i2, (PHI, 0, 1), 5)
    # I1 (Heymann 2005 standard): also 2-folds on x, y, z, with the 5-folds turned 90° about z.
    i1 = point_group_operators("I1", dtype=torch.float64)
    assert all(_has_axis(i1, a, 2) for a in [(1, 0, 0), (0, 1, 0), (0, 0, 1)])
    assert _has_axis(i1, (PHI, 0, -1), 5)
    assert not _has_axis(i1, (1, 0, PHI), 5)
    quarter_turn = axis_angle_to_matrix(torch.tensor([0.0, 0, 1], dtype=torch.float64), 90.0)
    assert _membership_error(quarter_turn @ i2 @ quarter_turn.T, i1) < 1e-12
    # I3 / I4: a 5-fold along z / a 2-fold along z turned by ±atan(1/φ) about y.
    assert _has_axis(point_group_operators("I3", dtype=torch.float64), (0, 0, 1), 5)
    theta = math.atan(1 / PHI)
    i4 = point_group_operators("I4", dtype=torch.float64)
    assert _has_axis(i4, (math.sin(theta), 0, math.cos(theta)), 2)
    # T: 3-fold along z; O: 4-folds along x, y, z and 3-folds along body diagonals.
    t = point_group_operators("T", dtype=torch.float64)
    assert _has_axis(t, (0, 0, 1), 3)
    assert _has_axis(t, (0, math.sqrt(2 / 3), math.sqrt(1 / 3)), 2)
    o = point_group_operators("O", dtype=torch.float64)
    assert all(_has_axis(o, a, 4) for a in [(1, 0, 0), (0, 1, 0), (0, 0, 1)])
    assert _has_axis(o, (1, -1, 1), 3)


@pytest.mark.parametrize("name", ["X3", "C0", "", "D", "I5", "C-2", "Cn"])
def test_unknown_group_names_raise(name: str) -> None:
    with pytest.raises(InvalidValuesError, match="point group"):
        point_group_operators(name)


def _point_volume(size: int, offsets: list[tuple[int, int, int]]) -> torch.Tensor:
    volume = torch.zeros(size, size, size, dtype=torch.float64)
    c = size // 2
    for x, y, z in offsets:
        volume[c + z, c + y, c + x] = 1.0
    return volume


@pytest.mark.parametrize("size", [16, 17])
def test_symmetrize_rotates_about_the_box_centre_in_xyz(size: int) -> None:
    """C4 about z spreads a voxel at x = +5 over (0, 5), (−5, 0), (0, −5); D2 sends (x, y, z)
    to (x, −y, −z), (−x, y, −z), (−x, −y, z) — exact on the grid, so no interpolation."""
    c4 = symmetrize_volume(_point_volume(size, [(5, 0, 2)]), "C4")
    expected = _point_volume(size, [(5, 0, 2), (0, 5, 2), (-5, 0, 2), (0, -5, 2)]) / 4
    assert torch.allclose(c4, expected, atol=1e-12)
    d2 = symmetrize_volume(_point_volume(size, [(3, 2, 1)]), "D2")
    expected = _point_volume(size, [(3, 2, 1), (3, -2, -1), (-3, 2, -1), (-3, -2, 1)]) / 4
    assert torch.allclose(d2, expected, atol=1e-12)


def _smooth_blobs(size: int, n_blobs: int, sigma_px: float, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    centres = (torch.rand(n_blobs, 3, generator=g, dtype=torch.float64) - 0.5) * size * 0.5
    axes = torch.arange(size, dtype=torch.float64) - size // 2
    zz, yy, xx = torch.meshgrid(axes, axes, axes, indexing="ij")
    r = torch.stack([xx, yy, zz], dim=-1)  # (x, y, z)
    d2 = ((r[..., None, :] - centres) ** 2).sum(-1)
    return torch.exp(-d2 / (2 * sigma_px**2)).sum(-1)


@pytest.mark.parametrize("name", ["C5", "D3", "T", "O", "I"])
def test_symmetrized_volume_is_invariant_under_every_operator(name: str) -> None:
    volume = _smooth_blobs(32, 2, 2.5, seed=2)
    symmetric = symmetrize_volume(volume, name)
    ops = point_group_operators(name, dtype=torch.float64)
    errors = []
    for op in ops[1 :: max(1, len(ops) // 12)]:  # up to a dozen operators, for time
        resampled = symmetrize_volume(symmetric, op[None])  # a single operator: V(S r)
        errors.append(((resampled - symmetric).norm() / symmetric.norm()).item())
    assert max(errors) < 0.025  # trilinear interpolation error only
    # ... but a rotation outside the group changes the map well beyond that error
    off = axis_angle_to_matrix(torch.tensor([0.3, -0.2, 1.0], dtype=torch.float64), 20.0)
    moved = symmetrize_volume(symmetric, off[None])
    assert ((moved - symmetric).norm() / symmetric.norm()).item() > 3 * max(errors)


def test_symmetrize_is_batched_and_keeps_the_device(device: torch.device) -> None:
    volumes = torch.randn(2, 3, 12, 12, 12, device=device)
    out = symmetrize_volume(volumes, "C2")
    assert out.shape == volumes.shape
    assert out.device.type == device.type
    single = symmetrize_volume(volumes[1, 2], "C2")
    assert torch.allclose(out[1, 2], single, atol=1e-6)


def test_expanded_poses_project_a_symmetric_object_identically(device: torch.device) -> None:
    """The orbit P = {S p} of a point is what a G-symmetric reference looks like; every
    expanded pose A·S maps it onto the same point set as A (conventions §10)."""
    ops = point_group_operators("D3", device=device, dtype=torch.float64)
    p = torch.tensor([0.7, -0.2, 0.4], device=device, dtype=torch.float64)
    orbit = ops @ p  # (6, 3)
    a = euler_to_matrix(torch.tensor([25.0, 60.0, -110.0], device=device, dtype=torch.float64))
    expanded = expand_by_symmetry(a[None], ops)  # (1, 6, 3, 3)
    assert expanded.shape == (1, 6, 3, 3)
    assert torch.allclose(expanded[0, 0], a)
    reference_image = a @ orbit.T  # (3, 6)
    for pose in expanded[0]:
        image = pose @ orbit.T
        match = (image[:, :, None] - reference_image[:, None, :]).abs().amax(0).amin(-1)
        assert match.max() < 1e-12


ICOSAHEDRAL = point_group_operators("I", dtype=torch.float64)


@given(st.floats(0.0, 40.0), st.integers(0, 59))
def test_symmetric_angular_distance_ignores_the_symmetry_copy(angle: float, k: int) -> None:
    ops = ICOSAHEDRAL
    a = random_rotations(1, generator=torch.Generator().manual_seed(k), dtype=torch.float64)[0]
    nudge = axis_angle_to_matrix(torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64), angle)
    b = a @ nudge @ ops[k]
    # angle < 40° is below half the smallest distance between I copies (72°/2 = 36° + margin
    # from the 2-folds: 90°), so the nearest copy is the nudged one.
    distance = symmetric_angular_distance_deg(a, b, ops)
    assert distance.item() == pytest.approx(angle, abs=1e-6)
    assert angular_distance_deg(a, b).item() >= distance.item() - 1e-9
