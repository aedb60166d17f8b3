"""Rotations: RELION ZYZ Euler angles, rotation matrices and quaternions.

Conventions: ``docs/conventions.md`` §8.  In short, for Euler angles ``(rot, tilt, psi)`` in
degrees (RELION's ``rlnAngleRot``, ``rlnAngleTilt``, ``rlnAnglePsi``; Heymann, Chagoyen &
Belnap 2005, *J. Struct. Biol.* 151:196), the matrix ``A`` returned by :func:`euler_to_matrix`
is RELION's ``Euler_angles2matrix`` and Warp's ``Matrix3.Euler``::

    A = Rz(psi) · Ry(tilt) · Rz(rot)      with the *passive* (coordinate-system) rotations

    Rz(a) = [[ cos a,  sin a, 0],          Ry(b) = [[cos b, 0, -sin b],
             [-sin a,  cos a, 0],                   [    0, 1,      0],
             [     0,      0, 1]]                   [sin b, 0,  cos b]]

so that, writing ``ca = cos rot, sa = sin rot, cb = cos tilt, sb = sin tilt,
cg = cos psi, sg = sin psi``::

    A = [[ cg·cb·ca − sg·sa,   cg·cb·sa + sg·ca,  −cg·sb],
         [−sg·cb·ca − cg·sa,  −sg·cb·sa + cg·ca,   sg·sb],
         [            sb·ca,              sb·sa,      cb]]

``A`` acts on column vectors ``(x, y, z)`` and maps reference coordinates to particle
(image) coordinates, ``r_image = A · r_ref``.  The reference direction that ends up along
the beam (image ``z``) is the third row of ``A``,
``(sin tilt cos rot, sin tilt sin rot, cos tilt)``.  In scipy's terms,
``A = Rotation.from_euler("ZYZ", [rot, tilt, psi], degrees=True).as_matrix().T``
(intrinsic, active ``Z-Y-Z``, then transposed).

Quaternions are ``(w, x, y, z)`` with ``w ≥ 0`` and represent the same linear map as the
matrix: ``R v = q v q*``.  :func:`axis_angle_to_matrix` builds the *active*, right-handed
rotation about an axis, so ``euler_to_matrix((rot, 0, 0)) == axis_angle_to_matrix(z, -rot)``.
"""

from __future__ import annotations

import torch

from cryowarp.errors import DimensionMismatchError

__all__ = [
    "angular_distance_deg",
    "axis_angle_to_matrix",
    "euler_to_matrix",
    "matrix_to_euler",
    "matrix_to_quaternion",
    "quaternion_to_matrix",
    "random_rotations",
]

# Below this many machine epsilons of sin(tilt), rot is undetermined (gimbal lock) and set to 0.
_GIMBAL_EPS = 10.0


def _floating(x: torch.Tensor) -> torch.Tensor:
    return x if x.is_floating_point() else x.to(torch.get_default_dtype())


def _check_last_dims(x: torch.Tensor, dims: tuple[int, ...], name: str) -> None:
    if x.ndim < len(dims) or tuple(x.shape[-len(dims) :]) != dims:
        raise DimensionMismatchError(
            None, f"{name} must have shape (..., {', '.join(map(str, dims))}), got {tuple(x.shape)}"
        )


def euler_to_matrix(euler_deg: torch.Tensor) -> torch.Tensor:
    """Rotation matrices from RELION ZYZ Euler angles.

    Parameters
    ----------
    euler_deg:
        ``(..., 3)`` angles ``(rot, tilt, psi)`` in degrees.

    Returns
    -------
    torch.Tensor
        ``(..., 3, 3)`` matrices ``A`` mapping reference to particle coordinates (conventions
        §8; the explicit formula is in this module's docstring).  Differentiable.
    """
    _check_last_dims(euler_deg, (3,), "euler_deg")
    angles = torch.deg2rad(_floating(euler_deg))
    ca, cb, cg = angles.cos().unbind(-1)
    sa, sb, sg = angles.sin().unbind(-1)
    rows = [
        torch.stack([cg * cb * ca - sg * sa, cg * cb * sa + sg * ca, -cg * sb], dim=-1),
        torch.stack([-sg * cb * ca - cg * sa, -sg * cb * sa + cg * ca, sg * sb], dim=-1),
        torch.stack([sb * ca, sb * sa, cb], dim=-1),
    ]
    return torch.stack(rows, dim=-2)


def matrix_to_euler(matrix: torch.Tensor) -> torch.Tensor:
    """RELION ZYZ Euler angles of rotation matrices (inverse of :func:`euler_to_matrix`).

    Parameters
    ----------
    matrix:
        ``(..., 3, 3)`` rotation matrices.

    Returns
    -------
    torch.Tensor
        ``(..., 3)`` angles ``(rot, tilt, psi)`` in degrees, with ``tilt`` in ``[0, 180]`` and
        ``rot``, ``psi`` in ``(-180, 180]``.  At gimbal lock (``tilt`` = 0 or 180°, where only
        ``psi ± rot`` is defined) ``rot`` is 0 and ``psi`` carries the in-plane angle.
    """
    _check_last_dims(matrix, (3, 3), "matrix")
    a = _floating(matrix)
    sin_tilt = torch.hypot(a[..., 2, 0], a[..., 2, 1])
    tilt = torch.atan2(sin_tilt, a[..., 2, 2])
    locked = sin_tilt < _GIMBAL_EPS * torch.finfo(a.dtype).eps
    rot = torch.where(locked, torch.zeros_like(tilt), torch.atan2(a[..., 2, 1], a[..., 2, 0]))
    # A · Rz(rot)ᵀ = Rz(psi) · Ry(tilt), whose middle column is (sin psi, cos psi, 0) for any
    # tilt: psi stays exact at and near gimbal lock.
    c, s = rot.cos(), rot.sin()
    sin_psi = c * a[..., 0, 1] - s * a[..., 0, 0]
    cos_psi = c * a[..., 1, 1] - s * a[..., 1, 0]
    psi = torch.atan2(sin_psi, cos_psi)
    euler = torch.rad2deg(torch.stack([rot, tilt, psi], dim=-1))
    # atan2 gives −180° for a sine of −0 or a tiny negative value: fold into (−180, 180].
    return torch.where(euler <= -180.0, euler + 360.0, euler)


def quaternion_to_matrix(quaternion: torch.Tensor) -> torch.Tensor:
    """Rotation matrices of quaternions ``(w, x, y, z)`` (normalised first).

    Parameters
    ----------
    quaternion:
        ``(..., 4)`` quaternions, any non-zero norm.

    Returns
    -------
    torch.Tensor
        ``(..., 3, 3)`` the matrix ``R`` with ``R v = q v q*``.
    """
    _check_last_dims(quaternion, (4,), "quaternion")
    q = _floating(quaternion)
    q = q / q.norm(dim=-1, keepdim=True)
    w, x, y, z = q.unbind(-1)
    rows = [
        torch.stack([1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)], dim=-1),
        torch.stack([2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)], dim=-1),
        torch.stack([2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)], dim=-1),
    ]
    return torch.stack(rows, dim=-2)


def matrix_to_quaternion(matrix: torch.Tensor) -> torch.Tensor:
    """Unit quaternions ``(w, x, y, z)``, ``w ≥ 0``, of rotation matrices.

    Parameters
    ----------
    matrix:
        ``(..., 3, 3)`` rotation matrices.

    Returns
    -------
    torch.Tensor
        ``(..., 4)`` unit quaternions with ``w ≥ 0`` (inverse of :func:`quaternion_to_matrix`).
    """
    _check_last_dims(matrix, (3, 3), "matrix")
    m = _floating(matrix)
    m00, m11, m22 = m[..., 0, 0], m[..., 1, 1], m[..., 2, 2]
    # Four estimates, each scaled by one component (4w, 4x, 4y, 4z); use the best conditioned.
    candidates = torch.stack(
        [
            torch.stack(
                [
                    1 + m00 + m11 + m22,
                    m[..., 2, 1] - m[..., 1, 2],
                    m[..., 0, 2] - m[..., 2, 0],
                    m[..., 1, 0] - m[..., 0, 1],
                ],
                dim=-1,
            ),
            torch.stack(
                [
                    m[..., 2, 1] - m[..., 1, 2],
                    1 + m00 - m11 - m22,
                    m[..., 0, 1] + m[..., 1, 0],
                    m[..., 0, 2] + m[..., 2, 0],
                ],
                dim=-1,
            ),
            torch.stack(
                [
                    m[..., 0, 2] - m[..., 2, 0],
                    m[..., 0, 1] + m[..., 1, 0],
                    1 - m00 + m11 - m22,
                    m[..., 1, 2] + m[..., 2, 1],
                ],
                dim=-1,
            ),
            torch.stack(
                [
                    m[..., 1, 0] - m[..., 0, 1],
                    m[..., 0, 2] + m[..., 2, 0],
                    m[..., 1, 2] + m[..., 2, 1],
                    1 - m00 - m11 + m22,
                ],
                dim=-1,
            ),
        ],
        dim=-2,
    )  # (..., 4, 4): row i is 4·q_i·q
    diagonal = candidates.diagonal(dim1=-2, dim2=-1)  # (..., 4): 4·q_i²
    best = diagonal.argmax(dim=-1, keepdim=True)  # (..., 1)
    q = torch.take_along_dim(candidates, best[..., None].expand(*best.shape, 4), dim=-2)[..., 0, :]
    q = q / q.norm(dim=-1, keepdim=True)
    return torch.where(q[..., :1] < 0, -q, q)


def axis_angle_to_matrix(axis: torch.Tensor, angle_deg: torch.Tensor | float) -> torch.Tensor:
    """Active right-handed rotation by ``angle_deg`` about ``axis`` (Rodrigues' formula).

    Parameters
    ----------
    axis:
        ``(..., 3)`` rotation axes ``(x, y, z)``; normalised here.
    angle_deg:
        ``(...)`` or scalar angle in degrees; positive is counter-clockwise when the axis
        points at the viewer.

    Returns
    -------
    torch.Tensor
        ``(..., 3, 3)`` rotation matrices.
    """
    _check_last_dims(axis, (3,), "axis")
    u = _floating(axis)
    u = u / u.norm(dim=-1, keepdim=True)
    angle = torch.deg2rad(torch.as_tensor(angle_deg, dtype=u.dtype, device=u.device))
    half = angle / 2
    vector = half.sin()[..., None] * u  # broadcasts angle (...) against axis (..., 3)
    scalar = half.cos()[..., None].expand(*vector.shape[:-1], 1)
    quaternion = torch.cat([scalar, vector], dim=-1)
    return quaternion_to_matrix(quaternion)


def angular_distance_deg(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Angle of the rotation ``aᵀ b`` (the geodesic distance on SO(3)), in degrees.

    Parameters
    ----------
    a, b:
        ``(..., 3, 3)`` rotation matrices (broadcast against each other).

    Returns
    -------
    torch.Tensor
        ``(...)`` angles in ``[0, 180]`` degrees, accurate also for tiny angles.
    """
    _check_last_dims(a, (3, 3), "a")
    _check_last_dims(b, (3, 3), "b")
    r = _floating(a).transpose(-1, -2) @ _floating(b)
    cos_term = (r.diagonal(dim1=-2, dim2=-1).sum(-1) - 1) / 2
    axis = torch.stack(
        [r[..., 2, 1] - r[..., 1, 2], r[..., 0, 2] - r[..., 2, 0], r[..., 1, 0] - r[..., 0, 1]],
        dim=-1,
    )
    sin_term = axis.norm(dim=-1) / 2
    return torch.rad2deg(torch.atan2(sin_term, cos_term))


def random_rotations(
    n: int,
    *,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Rotations drawn uniformly (Haar measure) from SO(3).

    Parameters
    ----------
    n:
        Number of rotations.
    generator:
        Seeded random generator, for reproducible draws (on any device; the result is moved
        to ``device``).
    device, dtype:
        Where and how to return the matrices (default: the generator's device, or CPU).

    Returns
    -------
    torch.Tensor
        ``(n, 3, 3)`` rotation matrices.
    """
    draw_device = generator.device if generator is not None else device
    # A normalised 4-D Gaussian is uniform on S³, i.e. a uniform unit quaternion.
    q = torch.randn(n, 4, generator=generator, device=draw_device, dtype=torch.float64)
    out_device = device if device is not None else q.device
    return quaternion_to_matrix(q).to(device=out_device, dtype=dtype)
