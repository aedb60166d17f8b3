"""Rotations: RELION's ZYZ Euler convention (conventions §8), quaternions, distances."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import example, given
from hypothesis import strategies as st
from scipy.spatial.transform import Rotation

from cryowarp.core.rotations import (
    angular_distance_deg,
    axis_angle_to_matrix,
    euler_to_matrix,
    matrix_to_euler,
    matrix_to_quaternion,
    quaternion_to_matrix,
    random_rotations,
)
from cryowarp.errors import DimensionMismatchError

angles = st.floats(-180, 180, allow_nan=False)
tilts = st.floats(0, 180, allow_nan=False)
quaternions = st.tuples(*[st.floats(-1, 1, allow_nan=False)] * 4).filter(
    lambda q: sum(c * c for c in q) > 1e-3
)


def _passive_rz(angle_deg: float) -> np.ndarray:
    """Rotation of the coordinate system about z (Heymann et al. 2005), written out by hand."""
    c, s = math.cos(math.radians(angle_deg)), math.sin(math.radians(angle_deg))
    return np.array([[c, s, 0.0], [-s, c, 0.0], [0.0, 0.0, 1.0]])


def _passive_ry(angle_deg: float) -> np.ndarray:
    c, s = math.cos(math.radians(angle_deg)), math.sin(math.radians(angle_deg))
    return np.array([[c, 0.0, -s], [0.0, 1.0, 0.0], [s, 0.0, c]])


def _euler(rot: float, tilt: float, psi: float) -> torch.Tensor:
    return torch.tensor([rot, tilt, psi], dtype=torch.float64)


@given(angles, tilts, angles)
@example(30.0, 0.0, 20.0)
@example(30.0, 180.0, 20.0)
@example(-100.0, 1e-9, 40.0)
@example(0.0, 179.9999999, -45.0)
def test_euler_matrix_euler_round_trip(rot: float, tilt: float, psi: float) -> None:
    a = euler_to_matrix(_euler(rot, tilt, psi))
    back = matrix_to_euler(a)
    assert torch.allclose(euler_to_matrix(back), a, atol=1e-12)
    assert 0 <= back[1] <= 180
    assert -180 < back[0] <= 180
    assert -180 < back[2] <= 180


@given(angles, tilts, angles)
def test_matrices_are_orthonormal_with_det_one(rot: float, tilt: float, psi: float) -> None:
    a = euler_to_matrix(_euler(rot, tilt, psi))
    assert torch.allclose(a @ a.T, torch.eye(3, dtype=torch.float64), atol=1e-12)
    assert torch.linalg.det(a).item() == pytest.approx(1.0, abs=1e-12)


@given(angles, tilts, angles)
def test_euler_matrix_is_heymann_passive_zyz_product(rot: float, tilt: float, psi: float) -> None:
    """A = Rz(psi) · Ry(tilt) · Rz(rot) with passive rotations (Heymann et al. 2005)."""
    expected = _passive_rz(psi) @ _passive_ry(tilt) @ _passive_rz(rot)
    np.testing.assert_allclose(
        euler_to_matrix(_euler(rot, tilt, psi)).numpy(), expected, atol=1e-12
    )


@given(angles, tilts, angles)
def test_euler_matrix_is_transposed_scipy_intrinsic_zyz(
    rot: float, tilt: float, psi: float
) -> None:
    """A = scipy Rotation.from_euler("ZYZ", (rot, tilt, psi)).as_matrix().T."""
    scipy_active = Rotation.from_euler("ZYZ", [rot, tilt, psi], degrees=True).as_matrix()
    np.testing.assert_allclose(
        euler_to_matrix(_euler(rot, tilt, psi)).numpy(), scipy_active.T, atol=1e-12
    )


def test_euler_special_cases_worked_by_hand() -> None:
    """rot = 90° (or psi = 90°) alone turns the coordinate system by +90° about z: the
    reference +x axis appears along image −y.  tilt = 90° alone: reference +x appears along
    image +z, reference +z along image −x; the viewing direction is the third row of A."""
    rot90 = euler_to_matrix(_euler(90, 0, 0))
    expected_z90 = torch.tensor([[0.0, 1, 0], [-1, 0, 0], [0, 0, 1]], dtype=torch.float64)
    assert torch.allclose(rot90, expected_z90, atol=1e-15)
    assert torch.allclose(euler_to_matrix(_euler(0, 0, 90)), expected_z90, atol=1e-15)
    tilt90 = euler_to_matrix(_euler(0, 90, 0))
    expected_y90 = torch.tensor([[0.0, 0, -1], [0, 1, 0], [1, 0, 0]], dtype=torch.float64)
    assert torch.allclose(tilt90, expected_y90, atol=1e-15)
    x, z = (
        torch.tensor([1.0, 0, 0], dtype=torch.float64),
        torch.tensor([0.0, 0, 1], dtype=torch.float64),
    )
    assert torch.allclose(tilt90 @ x, z, atol=1e-15)
    assert torch.allclose(tilt90 @ z, -x, atol=1e-15)
    # A golden general case, worked with cos/sin of 10°, 20°, 30°.
    ca, sa = math.cos(math.radians(10)), math.sin(math.radians(10))
    cb, sb = math.cos(math.radians(20)), math.sin(math.radians(20))
    cg, sg = math.cos(math.radians(30)), math.sin(math.radians(30))
    golden = [
        [cg * cb * ca - sg * sa, cg * cb * sa + sg * ca, -cg * sb],
        [-sg * cb * ca - cg * sa, -sg * cb * sa + cg * ca, sg * sb],
        [sb * ca, sb * sa, cb],
    ]
    assert torch.allclose(
        euler_to_matrix(_euler(10, 20, 30)), torch.tensor(golden, dtype=torch.float64), atol=1e-15
    )


def test_viewing_direction_is_third_row() -> None:
    """The reference direction projected along the beam (image z) is Aᵀ ẑ = (sin t cos r,
    sin t sin r, cos t): (rot, tilt) are the spherical angles of the viewing direction."""
    rot, tilt = 40.0, 70.0
    a = euler_to_matrix(_euler(rot, tilt, 123.0))
    r, t = math.radians(rot), math.radians(tilt)
    direction = torch.tensor(
        [math.sin(t) * math.cos(r), math.sin(t) * math.sin(r), math.cos(t)], dtype=torch.float64
    )
    assert torch.allclose(a @ direction, torch.tensor([0.0, 0, 1], dtype=torch.float64), atol=1e-12)


def test_gimbal_lock_puts_the_in_plane_angle_in_psi() -> None:
    at_zero = matrix_to_euler(euler_to_matrix(_euler(30, 0, 20)))
    assert torch.allclose(at_zero, _euler(0, 0, 50), atol=1e-9)
    at_180 = matrix_to_euler(euler_to_matrix(_euler(30, 180, 20)))
    assert torch.allclose(at_180, _euler(0, 180, -10), atol=1e-9)


@given(quaternions)
def test_quaternion_matrix_round_trip(q: tuple[float, float, float, float]) -> None:
    quaternion = torch.tensor(q, dtype=torch.float64)
    quaternion = quaternion / quaternion.norm()
    matrix = quaternion_to_matrix(quaternion)
    assert torch.allclose(matrix @ matrix.T, torch.eye(3, dtype=torch.float64), atol=1e-12)
    back = matrix_to_quaternion(matrix)
    assert back[0] >= 0
    sign = 1.0 if quaternion[0] > 0 else -1.0
    if abs(quaternion[0]) > 1e-6:
        assert torch.allclose(back, sign * quaternion, atol=1e-9)
    assert torch.allclose(quaternion_to_matrix(back), matrix, atol=1e-12)


@given(angles, tilts, angles)
def test_matrix_quaternion_matrix_round_trip(rot: float, tilt: float, psi: float) -> None:
    a = euler_to_matrix(_euler(rot, tilt, psi))
    q = matrix_to_quaternion(a)
    assert q[0] >= 0
    assert q.norm().item() == pytest.approx(1.0, abs=1e-12)
    assert torch.allclose(quaternion_to_matrix(q), a, atol=1e-12)


def test_quaternion_is_the_same_map_as_the_matrix() -> None:
    """R v equals q v q* (Hamilton product), with scipy's scalar-last order as a cross-check."""
    q = torch.tensor([0.8, 0.1, -0.5, 0.3], dtype=torch.float64)
    q = q / q.norm()
    expected = Rotation.from_quat(q[[1, 2, 3, 0]].numpy()).as_matrix()
    np.testing.assert_allclose(quaternion_to_matrix(q).numpy(), expected, atol=1e-12)


def test_axis_angle_is_active_and_right_handed() -> None:
    z = torch.tensor([0.0, 0, 3], dtype=torch.float64)
    r = axis_angle_to_matrix(z, 90.0)
    assert torch.allclose(
        r @ torch.tensor([1.0, 0, 0], dtype=torch.float64),
        torch.tensor([0.0, 1, 0], dtype=torch.float64),
        atol=1e-15,
    )
    # RELION's rot (passive) is the inverse of the active rotation by the same angle.
    assert torch.allclose(euler_to_matrix(_euler(37, 0, 0)), axis_angle_to_matrix(z, -37.0))
    batch = axis_angle_to_matrix(z, torch.tensor([0.0, 90.0, 180.0], dtype=torch.float64))
    assert batch.shape == (3, 3, 3)
    assert torch.allclose(batch[2], torch.diag(torch.tensor([-1.0, -1, 1], dtype=torch.float64)))


@given(
    st.tuples(*[st.floats(-1, 1, allow_nan=False)] * 3).filter(
        lambda v: sum(c * c for c in v) > 0.01
    ),
    st.floats(1e-5, 179.9, allow_nan=False),
    angles,
    tilts,
    angles,
)
def test_angular_distance_recovers_the_rotation_angle(
    axis: tuple[float, float, float], angle: float, rot: float, tilt: float, psi: float
) -> None:
    a = euler_to_matrix(_euler(rot, tilt, psi))
    u = torch.tensor(axis, dtype=torch.float64)
    b = a @ axis_angle_to_matrix(u, angle)
    assert angular_distance_deg(a, b).item() == pytest.approx(angle, rel=1e-7, abs=1e-9)
    assert angular_distance_deg(b, a).item() == pytest.approx(angle, rel=1e-7, abs=1e-9)
    # bi-invariant: the same rotation applied on the left keeps the distance
    c = axis_angle_to_matrix(u.flip(0), 33.0)
    assert angular_distance_deg(c @ a, c @ b).item() == pytest.approx(angle, rel=1e-6, abs=1e-7)


def test_random_rotations_are_seeded_and_haar_uniform(device: torch.device) -> None:
    first = random_rotations(20000, generator=torch.Generator().manual_seed(5), device=device)
    again = random_rotations(20000, generator=torch.Generator().manual_seed(5), device=device)
    assert first.device.type == device.type
    assert torch.equal(first, again)
    eye = torch.eye(3, device=device)
    assert torch.allclose(first @ first.transpose(-1, -2), eye.expand(20000, 3, 3), atol=1e-5)
    assert torch.allclose(torch.linalg.det(first), torch.ones(20000, device=device), atol=1e-5)
    # Haar moments: E[R] = 0, E[R_ij²] = 1/3; rotation angle θ has density (1 − cos θ)/π,
    # so E[θ] = π/2 + 2/π (in rad).
    assert first.mean(0).abs().max() < 0.02
    assert torch.allclose(
        first.square().mean(0), torch.full((3, 3), 1 / 3, device=device), atol=0.01
    )
    theta = torch.deg2rad(angular_distance_deg(eye, first))
    assert theta.mean().item() == pytest.approx(math.pi / 2 + 2 / math.pi, abs=0.02)


def test_euler_to_matrix_is_differentiable(device: torch.device) -> None:
    euler = torch.tensor(
        [[12.0, 50.0, -70.0], [100.0, 3.0, 8.0]],
        dtype=torch.float64,
        device=device,
        requires_grad=True,
    )
    assert torch.autograd.gradcheck(euler_to_matrix, (euler,))
    matrix = euler_to_matrix(euler)
    assert matrix.device.type == device.type
    assert matrix.shape == (2, 3, 3)


def test_batched_shapes_and_float32(device: torch.device) -> None:
    euler = torch.rand(4, 5, 3, device=device) * torch.tensor([360.0, 180, 360], device=device)
    a = euler_to_matrix(euler)
    assert a.shape == (4, 5, 3, 3)
    assert a.dtype == torch.float32
    assert torch.allclose(euler_to_matrix(matrix_to_euler(a)), a, atol=2e-5)
    assert matrix_to_quaternion(a).shape == (4, 5, 4)


def test_bad_shapes_raise_typed_errors() -> None:
    with pytest.raises(DimensionMismatchError, match="euler_deg"):
        euler_to_matrix(torch.zeros(4, 2))
    with pytest.raises(DimensionMismatchError, match="matrix"):
        matrix_to_euler(torch.zeros(3, 4))
    with pytest.raises(DimensionMismatchError, match="quaternion"):
        quaternion_to_matrix(torch.zeros(3))
