"""Point-group symmetry: operators, symmetrised volumes, symmetry-expanded poses.

Conventions: ``docs/conventions.md`` §8 and §10.  Groups use RELION's names and
orientations; each is generated from RELION's generator axes and closed under
multiplication (exact algebraic axis values, closure to machine precision):

======  ==================================================================  =====
name    generators (active rotations about axes ``(x, y, z)``)               order
======  ==================================================================  =====
``Cn``  n-fold about z                                                       n
``Dn``  n-fold about z, 2-fold about x                                       2n
``T``   3-fold about z, 2-fold about ``(0, √(2/3), 1/√3)``                    12
``O``   4-fold about z, 3-fold about ``(1, 1, 1)/√3``                        24
``I2``  2-fold about z, 5-fold about ``(1, 0, φ)``, 3-fold about             60
        ``(0, 1, φ²)`` (Crowther 222: 2-folds on x, y and z); ``I`` = ``I2``
``I1``  2-fold about x, 5-fold about ``(φ, 0, −1)``, 3-fold about            60
        ``(φ², 1, 0)`` (Heymann 2005 standard: ``I2`` turned 90° about z)
``I3``  ``I2`` turned by −31.72° about y: 5-fold on z, a 2-fold at           60
        ``(−sin θ, 0, cos θ)``, ``θ = atan(1/φ)``
``I4``  ``I2`` turned by +31.72° about y: 2-fold at ``(sin θ, 0, cos θ)``    60
======  ==================================================================  =====

with ``φ = (1 + √5)/2``.  Operators are returned identity first, as rotation matrices
``(n_ops, 3, 3)`` acting on column vectors ``(x, y, z)``.  A particle pose ``A`` (reference →
particle, conventions §8) of a symmetric reference is equivalent to every ``A · S``.
"""

from __future__ import annotations

import math
import re

import torch
import torch.nn.functional as F

from cryowarp.core._centred_coordinates import centred_grid
from cryowarp.core.rotations import angular_distance_deg, axis_angle_to_matrix
from cryowarp.errors import DimensionMismatchError, InvalidValuesError

__all__ = [
    "expand_by_symmetry",
    "point_group_operators",
    "point_group_order",
    "symmetric_angular_distance_deg",
    "symmetrize_volume",
]

_NAME = re.compile(r"^\s*([CD])(\d+)\s*$|^\s*(T|O|I[1-4]?)\s*$", re.IGNORECASE)
_PHI = (1 + math.sqrt(5)) / 2


def _parse(name: str) -> tuple[str, int]:
    match = _NAME.match(name)
    if match is None:
        raise InvalidValuesError(
            None,
            f"unknown point group {name!r}",
            "use C<n>, D<n>, T, O, I or I1-I4 (RELION names, e.g. 'C1', 'D7', 'I2')",
        )
    if match.group(1) is not None:
        n = int(match.group(2))
        if n < 1:
            raise InvalidValuesError(None, f"point group {name!r} needs an order n ≥ 1")
        return match.group(1).upper(), n
    family = match.group(3).upper()
    return ("I2" if family == "I" else family), 0


def point_group_order(name: str) -> int:
    """Number of operators of the point group ``name`` (``C7`` → 7, ``D2`` → 4, ``I`` → 60)."""
    family, n = _parse(name)
    return {"C": n, "D": 2 * n, "T": 12, "O": 24}.get(family, 60)


def _generators(family: str, n: int) -> list[tuple[tuple[float, float, float], int]]:
    """RELION's generator axes and folds for a family, as ``[(axis, fold), ...]``."""
    z, x = (0.0, 0.0, 1.0), (1.0, 0.0, 0.0)
    if family == "C":
        return [(z, n)]
    if family == "D":
        return [(z, n), (x, 2)]
    if family == "T":
        return [(z, 3), ((0.0, math.sqrt(2 / 3), math.sqrt(1 / 3)), 2)]
    if family == "O":
        return [(z, 4), ((1.0, 1.0, 1.0), 3)]
    if family == "I1":
        return [(x, 2), ((_PHI, 0.0, -1.0), 5), ((_PHI**2, 1.0, 0.0), 3)]
    return [(z, 2), ((1.0, 0.0, _PHI), 5), ((0.0, 1.0, _PHI**2), 3)]  # I2 (and I3, I4)


def _is_new(candidates: torch.Tensor, known: torch.Tensor) -> torch.Tensor:
    """``(m,)`` bool: which of ``candidates`` ``(m, 3, 3)`` differ from every ``known``."""
    diff = (candidates.reshape(-1, 1, 9) - known.reshape(1, -1, 9)).abs().amax(dim=-1)
    return diff.amin(dim=-1) > 1e-9


def _close_group(generators: list[torch.Tensor], order: int) -> torch.Tensor:
    """All products of ``generators`` (each ``(3, 3)``, float64), identity first."""
    gens = torch.stack(generators)
    elements = torch.eye(3, dtype=torch.float64)[None]
    while True:
        candidates = (elements[:, None] @ gens[None]).reshape(-1, 3, 3)
        fresh = candidates[_is_new(candidates, elements)]
        if len(fresh) == 0:
            break
        same = (fresh.reshape(-1, 1, 9) - fresh.reshape(1, -1, 9)).abs().amax(dim=-1) <= 1e-9
        first_copy = same.to(torch.uint8).argmax(dim=1)  # index of the first equal candidate
        unique = first_copy == torch.arange(len(fresh))
        elements = torch.cat([elements, fresh[unique]])
    if len(elements) != order:  # a generator table error, never a user error
        raise RuntimeError(f"point group closed with {len(elements)} elements, expected {order}")
    return elements


def point_group_operators(
    name: str,
    *,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Rotation matrices of a point group in RELION's orientation.

    Parameters
    ----------
    name:
        ``"C<n>"``, ``"D<n>"``, ``"T"``, ``"O"``, ``"I"`` (= ``"I2"``), ``"I1"`` … ``"I4"``;
        case-insensitive.
    device, dtype:
        Where and how to return the operators.

    Returns
    -------
    torch.Tensor
        ``(order, 3, 3)`` rotation matrices, identity first.

    Raises
    ------
    InvalidValuesError
        For an unknown group name.
    """
    family, n = _parse(name)
    generators = [
        axis_angle_to_matrix(torch.tensor(axis, dtype=torch.float64), 360.0 / fold)
        for axis, fold in _generators(family, n)
    ]
    operators = _close_group(generators, point_group_order(name))
    if family in ("I3", "I4"):
        theta_deg = math.degrees(math.atan(1 / _PHI))  # takes I2's 5-fold (1, 0, φ) onto z
        sign = -1.0 if family == "I3" else 1.0
        frame = axis_angle_to_matrix(
            torch.tensor([0.0, 1.0, 0.0], dtype=torch.float64), sign * theta_deg
        )
        operators = frame @ operators @ frame.T
        operators[0] = torch.eye(3, dtype=torch.float64)  # exactly, not to rounding
    return operators.to(device=device, dtype=dtype)


def _as_operators(symmetry: str | torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    if isinstance(symmetry, str):
        return point_group_operators(symmetry, device=like.device, dtype=like.dtype)
    if symmetry.ndim != 3 or symmetry.shape[-2:] != (3, 3):
        raise DimensionMismatchError(
            None, f"symmetry operators must have shape (n_ops, 3, 3), got {tuple(symmetry.shape)}"
        )
    return symmetry.to(device=like.device, dtype=like.dtype)


def expand_by_symmetry(rotations: torch.Tensor, symmetry: str | torch.Tensor) -> torch.Tensor:
    """All poses equivalent to each particle pose under a point group (symmetry expansion).

    Parameters
    ----------
    rotations:
        ``(..., 3, 3)`` particle poses ``A`` (reference → particle, conventions §8).
    symmetry:
        A point-group name or its ``(n_ops, 3, 3)`` operators.

    Returns
    -------
    torch.Tensor
        ``(..., n_ops, 3, 3)`` the poses ``A · S`` for every operator ``S`` (identity first,
        so ``[..., 0, :, :]`` is the input).
    """
    if rotations.ndim < 2 or rotations.shape[-2:] != (3, 3):
        raise DimensionMismatchError(
            None, f"rotations must have shape (..., 3, 3), got {tuple(rotations.shape)}"
        )
    operators = _as_operators(symmetry, rotations)
    return rotations[..., None, :, :] @ operators


def symmetric_angular_distance_deg(
    a: torch.Tensor, b: torch.Tensor, symmetry: str | torch.Tensor
) -> torch.Tensor:
    """Smallest angle between pose ``a`` and any pose equivalent to ``b``, in degrees.

    Parameters
    ----------
    a, b:
        ``(..., 3, 3)`` poses (broadcast against each other).
    symmetry:
        A point-group name or its ``(n_ops, 3, 3)`` operators.

    Returns
    -------
    torch.Tensor
        ``(...)`` ``min_S angle(aᵀ · b · S)`` in ``[0, 180]`` degrees.
    """
    expanded = expand_by_symmetry(b, symmetry)  # (..., n_ops, 3, 3)
    return angular_distance_deg(a[..., None, :, :], expanded).amin(dim=-1)


def symmetrize_volume(volume: torch.Tensor, symmetry: str | torch.Tensor) -> torch.Tensor:
    """Average of a volume over the rotations of a point group about the box centre.

    Parameters
    ----------
    volume:
        ``(..., d, h, w)`` real volumes; rotations act about voxel ``(w//2, h//2, d//2)``
        (conventions §2).
    symmetry:
        A point-group name or its ``(n_ops, 3, 3)`` operators.

    Returns
    -------
    torch.Tensor
        ``(..., d, h, w)`` ``mean_S V(S · r)`` with trilinear interpolation; samples outside
        the box count as zero.
    """
    if volume.ndim < 3:
        raise DimensionMismatchError(
            None, f"volume must have shape (..., d, h, w), got {tuple(volume.shape)}"
        )
    vol = volume if volume.is_floating_point() else volume.to(torch.get_default_dtype())
    operators = _as_operators(symmetry, vol)
    d, h, w = vol.shape[-3:]
    batch = vol.reshape(-1, 1, d, h, w)
    centred = centred_grid((d, h, w), device=vol.device, dtype=vol.dtype)
    out = torch.zeros_like(batch)
    for operator in operators:
        out = out + _sample_rotated(batch, centred, operator)
    return (out / len(operators)).reshape(vol.shape)


def _sample_rotated(
    volume: torch.Tensor,  # (b, 1, d, h, w)
    centred: torch.Tensor,  # (d, h, w, 3) coordinates (x, y, z) about the centre
    rotation: torch.Tensor,  # (3, 3)
) -> torch.Tensor:
    """``V(R · r)`` on the voxel grid, trilinear, zero outside the box."""
    b, _, d, h, w = volume.shape
    sizes = torch.tensor([w, h, d], dtype=volume.dtype, device=volume.device)  # (x, y, z)
    source = centred @ rotation.T + torch.div(sizes, 2, rounding_mode="floor")  # voxel indices
    # grid_sample with align_corners=True maps -1 / +1 to the centres of the first / last voxel.
    grid = 2 * source / (sizes - 1).clamp(min=1) - 1
    grid = grid.expand(b, d, h, w, 3)
    return F.grid_sample(volume, grid, mode="bilinear", padding_mode="zeros", align_corners=True)
