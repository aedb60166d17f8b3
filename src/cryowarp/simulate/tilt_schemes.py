"""Tilt schemes: the nominal tilt angles in acquisition order.

- **Dose-symmetric** (Hagen, Wan & Briggs 2017, J. Struct. Biol. 197:191): start at the
  start angle (usually 0°), then tilt alternately to either side in groups, so that the
  low tilts, which carry the high-resolution information, receive the least dose.  With
  groups of ``g`` tilts the start angle counts as a member of the first group:
  ``0, +s | −s, −2s | +2s, +3s | −3s, −4s | …`` for ``g = 2`` (the order of EMPIAR-10164's
  TS_01, acquired by SerialEM), ``0, +s | −s | +2s | −2s | …`` for ``g = 1``.  When one side
  is exhausted the other side continues in order.
- **Bidirectional**: from the start angle towards one end of the range, then back to the
  start angle minus one step and on to the other end.

Angles are ``start + k · step`` for integers ``k`` within ``[min, max]`` (degrees).
"""

from __future__ import annotations

import math
from typing import Literal

from cryowarp.errors import InvalidValuesError

__all__ = ["TiltScheme", "bidirectional_angles_deg", "dose_symmetric_angles_deg", "tilt_angles_deg"]

TiltScheme = Literal["dose_symmetric", "bidirectional"]


def _sides(
    min_angle_deg: float, max_angle_deg: float, step_deg: float, start_angle_deg: float
) -> tuple[list[float], list[float]]:
    """Angles above and below the start, each ordered away from the start."""
    if not step_deg > 0:
        raise InvalidValuesError(None, f"tilt step must be positive, got {step_deg}°")
    if not min_angle_deg <= start_angle_deg <= max_angle_deg:
        raise InvalidValuesError(
            None,
            f"start angle {start_angle_deg}° is outside the tilt range "
            f"[{min_angle_deg}°, {max_angle_deg}°]",
        )
    tolerance = 1e-6 * step_deg
    n_up = math.floor((max_angle_deg - start_angle_deg + tolerance) / step_deg)
    n_down = math.floor((start_angle_deg - min_angle_deg + tolerance) / step_deg)
    up = [start_angle_deg + k * step_deg for k in range(1, n_up + 1)]
    down = [start_angle_deg - k * step_deg for k in range(1, n_down + 1)]
    return up, down


def dose_symmetric_angles_deg(
    *,
    min_angle_deg: float,
    max_angle_deg: float,
    step_deg: float,
    start_angle_deg: float = 0.0,
    group_size: int = 2,
    first_direction: Literal[1, -1] = 1,
) -> list[float]:
    """Nominal angles (degrees) of a dose-symmetric tilt series in acquisition order.

    Parameters
    ----------
    min_angle_deg, max_angle_deg, step_deg:
        Tilt range and increment.
    start_angle_deg:
        First tilt (0° for flat specimens; the lamella pre-tilt for FIB lamellae).
    group_size:
        Tilts per group on one side (Hagen's scheme: 2; the start angle belongs to the first
        group).
    first_direction:
        ``+1``: the first group goes to positive angles; ``−1``: to negative angles.
    """
    if group_size < 1:
        raise InvalidValuesError(None, f"group size must be at least 1, got {group_size}")
    up, down = _sides(min_angle_deg, max_angle_deg, step_deg, start_angle_deg)
    start_angle_deg = float(start_angle_deg)
    sides = {1: up, -1: down}
    used = {1: 0, -1: 0}
    order = [start_angle_deg]
    side: int = first_direction
    size = max(group_size - 1, 1)
    while used[1] < len(up) or used[-1] < len(down):
        if used[side] >= len(sides[side]):
            side = -side
            size = len(sides[side])  # the other side is exhausted: finish this one
        take = sides[side][used[side] : used[side] + size]
        order += take
        used[side] += len(take)
        side, size = -side, group_size
    return order


def bidirectional_angles_deg(
    *,
    min_angle_deg: float,
    max_angle_deg: float,
    step_deg: float,
    start_angle_deg: float = 0.0,
    first_direction: Literal[1, -1] = 1,
) -> list[float]:
    """Nominal angles (degrees) of a bidirectional tilt series in acquisition order: from
    the start angle towards ``first_direction`` to the end of the range, then from
    ``start − first_direction · step`` to the other end."""
    up, down = _sides(min_angle_deg, max_angle_deg, step_deg, start_angle_deg)
    start_angle_deg = float(start_angle_deg)
    first, second = (up, down) if first_direction == 1 else (down, up)
    return [start_angle_deg, *first, *second]


def tilt_angles_deg(
    scheme: TiltScheme,
    *,
    min_angle_deg: float,
    max_angle_deg: float,
    step_deg: float,
    start_angle_deg: float = 0.0,
    group_size: int = 2,
    first_direction: Literal[1, -1] = 1,
) -> list[float]:
    """Nominal angles of ``scheme`` (``"dose_symmetric"`` or ``"bidirectional"``) in
    acquisition order; ``group_size`` only applies to the dose-symmetric scheme."""
    if scheme == "dose_symmetric":
        return dose_symmetric_angles_deg(
            min_angle_deg=min_angle_deg,
            max_angle_deg=max_angle_deg,
            step_deg=step_deg,
            start_angle_deg=start_angle_deg,
            group_size=group_size,
            first_direction=first_direction,
        )
    if scheme == "bidirectional":
        return bidirectional_angles_deg(
            min_angle_deg=min_angle_deg,
            max_angle_deg=max_angle_deg,
            step_deg=step_deg,
            start_angle_deg=start_angle_deg,
            first_direction=first_direction,
        )
    raise InvalidValuesError(None, f"unknown tilt scheme {scheme!r}")
