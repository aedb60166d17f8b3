"""Particle positions and poses from cryoSPARC ``.cs`` files.

**Poses.** ``alignments3D/pose`` is a rotation vector ``v`` (axis × angle, radians) whose
matrix ``R = exp([v]ₓ)`` (Rodrigues, right-handed, active) is the transpose of RELION's ``A``
(docs/conventions.md §8): ``A = Rᵀ``. Two independent converters agree on this: cryoDRGN
(``parse_pose_csparc`` transposes ``expmap(pose)`` into the matrix that its RELION parser
builds from Euler angles) and pyem's ``csparc2star.py`` (whose ``expmap``, contributed by
cryoSPARC's author in pyem PR #5, returns ``Rᵀ`` and is decomposed into RELION Euler angles
with RELION's own matrix convention). Equivalently ``R = scipy.spatial.transform.Rotation.
from_euler("ZYZ", [rot, tilt, psi])``. ``alignments3D/shift`` (pixels of the particle image,
at ``alignments3D/psize_A`` if present, else ``blob/psize_A``) equals RELION's origin
(both sources copy it unchanged), so ``origins_a = shift · pixel size``.

**Flipped micrographs.** Particles picked on cryoSPARC Patch Motion micrographs, which are
upside down relative to the averages of MotionCor2, RELION and cryowarp
(:mod:`cryowarp.io.cryosparc`), are mirrored in y when placed on cryowarp's averages. The
mirror ``(x, y) → (x, −y)`` of a projection is the projection at the pose
``diag(1, −1, −1) · A`` (a 180° turn about x; the sum along z does not see z → −z), and the
origin's y changes sign.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import numpy.typing as npt
import torch

from cryowarp.core.rotations import euler_to_matrix, matrix_to_euler, matrix_to_quaternion
from cryowarp.errors import InvalidValuesError, MissingColumnError
from cryowarp.io.cryosparc import LOCATION_FIELDS, CsTable, location_px, read_cs
from cryowarp.preprocess.export._coordinates_names import group_by_micrograph, micrograph_key
from cryowarp.preprocess.export.particle_set import ParticleSet

__all__ = ["cs_pose_to_euler", "euler_to_cs_pose", "read_cryosparc_coordinates"]

_FLIP_Y = torch.tensor([1.0, -1.0, -1.0], dtype=torch.float64)


def read_cryosparc_coordinates(
    file: Path, *, pixel_size_a: float | None, flipped_micrographs: bool = False
) -> list[ParticleSet]:
    """Particles of a ``.cs`` file grouped by ``location/micrograph_path`` (module docstring;
    :func:`~cryowarp.preprocess.export.coordinates.read_coordinates` documents the options)."""
    table = read_cs(file)
    table.require(*LOCATION_FIELDS)
    pixel = _micrograph_pixel_size_a(table, pixel_size_a)
    positions_a = location_px(table, y_up=not flipped_micrographs) * pixel[:, None]
    if not np.all(np.isfinite(positions_a)):
        raise InvalidValuesError(file, "NaN or Inf in the particle locations")
    euler = None
    origins = None
    if "alignments3D/pose" in table:
        matrices = _pose_matrices(table)
        if flipped_micrographs:
            matrices = _FLIP_Y[:, None] * matrices
        euler = matrix_to_euler(matrices).numpy()
    if "alignments3D/shift" in table:
        origins = _origins_a(table)
        if flipped_micrographs:
            origins[:, 1] = -origins[:, 1]
    names = [micrograph_key(p, cryosparc=True) for p in table.texts(LOCATION_FIELDS[0])]
    return group_by_micrograph(
        names, positions_a, euler_deg=euler, origins_a=origins, source=str(file)
    )


def cs_pose_to_euler(pose_rad: torch.Tensor) -> torch.Tensor:
    """RELION Euler angles ``(…, 3)`` (degrees) of cryoSPARC rotation vectors ``(…, 3)``."""
    return matrix_to_euler(_rodrigues(pose_rad).transpose(-1, -2))


def euler_to_cs_pose(euler_deg: torch.Tensor) -> torch.Tensor:
    """cryoSPARC rotation vectors ``(…, 3)`` (radians, angle in [0, π]) of RELION Euler angles
    ``(…, 3)``; the inverse of :func:`cs_pose_to_euler`."""
    q = matrix_to_quaternion(euler_to_matrix(euler_deg).transpose(-1, -2))  # (w, x, y, z), w ≥ 0
    vector = q[..., 1:]
    norm = vector.norm(dim=-1, keepdim=True)
    angle = 2 * torch.atan2(norm, q[..., :1])
    scale = torch.where(norm > 0, angle / norm.clamp_min(torch.finfo(q.dtype).tiny), 2.0)
    return vector * scale


def _rodrigues(v: torch.Tensor) -> torch.Tensor:  # (..., 3) -> (..., 3, 3)
    v = v if v.is_floating_point() else v.to(torch.float64)
    theta = v.norm(dim=-1)[..., None, None]
    zero = torch.zeros_like(v[..., 0])
    x, y, z = v.unbind(-1)
    k = torch.stack(
        [
            torch.stack([zero, -z, y], -1),
            torch.stack([z, zero, -x], -1),
            torch.stack([-y, x, zero], -1),
        ],
        dim=-2,
    )
    small = theta < 1e-8
    safe = torch.where(small, torch.ones_like(theta), theta)
    a = torch.where(small, 1.0 - theta**2 / 6, torch.sin(safe) / safe)
    b = torch.where(small, 0.5 - theta**2 / 24, (1 - torch.cos(safe)) / safe**2)
    eye = torch.eye(3, dtype=v.dtype, device=v.device)
    return eye + a * k + b * (k @ k)


def _pose_matrices(table: CsTable) -> torch.Tensor:  # (n, 3, 3) A matrices
    pose = table.numbers("alignments3D/pose")
    if pose.ndim != 2 or pose.shape[1] != 3 or not np.all(np.isfinite(pose)):
        raise InvalidValuesError(table.source, "alignments3D/pose must be 3 finite numbers per row")
    return _rodrigues(torch.from_numpy(pose)).transpose(-1, -2)


def _origins_a(table: CsTable) -> npt.NDArray[np.float64]:  # (n, 2)
    shift = table.numbers("alignments3D/shift")
    name = "alignments3D/psize_A" if "alignments3D/psize_A" in table else "blob/psize_A"
    if name not in table:
        raise MissingColumnError(
            table.source, "alignments3D/shift without a pixel size (blob/psize_A)"
        )
    origins: npt.NDArray[np.float64] = shift[:, :2] * table.numbers(name)[:, None]
    return origins


def _micrograph_pixel_size_a(
    table: CsTable, pixel_size_a: float | None
) -> npt.NDArray[np.float64]:  # (n,)
    if "location/micrograph_psize_A" in table:
        pixel = table.numbers("location/micrograph_psize_A")
    elif pixel_size_a is not None:
        pixel = np.full(len(table), float(pixel_size_a))
    else:
        raise MissingColumnError(
            table.source,
            "no location/micrograph_psize_A field",
            "pass pixel_size_a, the pixel size (Å) of the micrographs cryoSPARC picked on",
        )
    if not np.all(np.isfinite(pixel)) or np.any(pixel <= 0):
        raise InvalidValuesError(table.source, "micrograph pixel size must be positive")
    return pixel
