"""High-contrast artefacts of real micrographs: ethane drops, a carbon edge, aggregates.

Each artefact is a body of known thickness ``t(x, y)`` (Å) of a material with a mean inner
potential ``V`` (volts) above the surrounding ice and an inelastic mean free path ``λ`` (Å):
it adds the projected potential ``V · t`` (V·Å) and removes the fraction ``1 − exp(−t / λ)`` of
the electrons (scattered inelastically or out of the aperture; the amplitude loss that makes
these features dark in energy-filtered images). The model values (300 kV, approximate) are
module constants:

* **Ethane drops** (frozen ethane contamination on the ice surface): roundish flat lenses,
  thickness ``H √(1 − (ρ / r(θ))²)`` with ``r(θ)`` a circle perturbed by 2- and 3-fold
  harmonics, centre heights 300–1000 Å, ``V ≈ 3.5 V`` (like vitreous ice), ``λ ≈ 3500 Å``.
* **Carbon edge** (the support film at the rim of a hole): a film of 100–300 Å (10–30 nm) on
  one side of a straight or slightly curved edge (the inside of a circle of radius at least
  five field diagonals), covering less than half of the field, with a one-pixel ramp;
  amorphous carbon ``V = 9 V`` (mean inner potential of amorphous carbon, 8–10 V),
  ``λ ≈ 1800 Å``.
* **Aggregates** (clumped, denatured protein): 3–8 overlapping lumps, each 150–400 Å thick at
  its centre, ``V ≈ 3 V`` above ice, ``λ ≈ 3500 Å``.

In-plane sizes are fractions of the field (drops 6–12 % of the shorter side in radius, at most
0.5 µm; lumps 1.5–3.5 %, at most 150 Å; never below 3 and 2 px) so that artefacts stay visible
at every preset; thicknesses are physical. Artefacts
do not touch each other (at least 3 px apart) and lie outside the carbon, so each is one
connected component of the mask; aggregates lie wholly inside the field. Positions are in
pixels with the centre of pixel (0, 0) at (0, 0), ordered (x, y) (docs/conventions.md §1).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

__all__ = [
    "AGGREGATE_POTENTIAL_V",
    "CARBON_POTENTIAL_V",
    "ETHANE_POTENTIAL_V",
    "Artefacts",
    "random_artefacts",
]

ETHANE_POTENTIAL_V = 3.5
CARBON_POTENTIAL_V = 9.0
AGGREGATE_POTENTIAL_V = 3.0
_ETHANE_MEAN_FREE_PATH_A = 3500.0
_CARBON_MEAN_FREE_PATH_A = 1800.0
_AGGREGATE_MEAN_FREE_PATH_A = 3500.0
_MAX_DROP_RADIUS_A = 5000.0
_MAX_LUMP_RADIUS_A = 150.0
_GAP_PX = 3.0  # minimum distance between the outlines of two artefacts
_MAX_ATTEMPTS = 500  # random positions tried per artefact before giving up


@dataclass(frozen=True)
class Artefacts:
    """Artefacts of one field of view.

    Attributes
    ----------
    projected_potential_va:
        ``(h, w)`` extra projected potential in V·Å.
    amplitude_loss:
        ``(h, w)`` fraction (0 … 1) of electrons removed by the artefacts.
    mask:
        ``(h, w)`` bool, True where any artefact is (BoxNet's artefact class).
    """

    projected_potential_va: torch.Tensor  # (h, w)
    amplitude_loss: torch.Tensor  # (h, w)
    mask: torch.Tensor  # (h, w) bool


@dataclass(frozen=True)
class _Footprint:
    x_px: float
    y_px: float
    radius_px: float


def random_artefacts(
    shape: tuple[int, int],
    *,
    pixel_size_a: float,
    generator: torch.Generator,
    n_drops: int = 1,
    carbon_edge: bool = False,
    n_aggregates: int = 1,
    dtype: torch.dtype = torch.float32,
) -> Artefacts:
    """Random ethane drops, carbon edge and aggregates, deterministic given ``generator``.

    Parameters
    ----------
    shape:
        ``(h, w)`` of the field in pixels.
    pixel_size_a:
        Pixel size in Å; thicknesses are physical, in-plane sizes fractions of the field with
        physical upper limits (module docstring).
    generator:
        Source of randomness; tensors are created on its device.
    n_drops, carbon_edge, n_aggregates:
        What to put in the field; zeros and ``False`` give an empty field.

    Returns
    -------
    Artefacts
        The projected potential, amplitude loss and mask.

    Raises
    ------
    ValueError
        The artefacts do not fit in the field without touching.
    """
    h, w = (int(n) for n in shape)
    if h < 1 or w < 1 or pixel_size_a <= 0 or n_drops < 0 or n_aggregates < 0:
        raise ValueError(
            f"need a positive shape and pixel size and non-negative counts; got shape {shape}, "
            f"pixel_size_a {pixel_size_a}, n_drops {n_drops}, n_aggregates {n_aggregates}"
        )
    device = generator.device
    rng = _Uniform(generator)
    ethane = torch.zeros((h, w), dtype=torch.float64, device=device)
    aggregate = torch.zeros_like(ethane)
    carbon = torch.zeros_like(ethane)
    carbon_distance = None
    placed: list[_Footprint] = []
    shorter = min(h, w)

    if carbon_edge:
        carbon_distance = _carbon_signed_distance((h, w), rng, device)
        carbon = rng(100.0, 300.0) * (carbon_distance + 0.5).clamp(0.0, 1.0)

    for _ in range(n_drops):
        radius_px = max(3.0, min(rng(0.06, 0.12) * shorter, _MAX_DROP_RADIUS_A / pixel_size_a))
        harmonics = [(k, rng(0.0, 0.12), rng(0.0, 2 * math.pi)) for k in (2, 3)]
        bound = radius_px * (1 + sum(a for _, a, _ in harmonics))
        height_a = rng(300.0, 1000.0)
        spot = _place(bound, (h, w), rng, placed, carbon_distance, inside=False)
        _draw_drop(ethane, spot, radius_px, harmonics, height_a)

    for _ in range(n_aggregates):
        lumps = _aggregate_lumps(rng, shorter, max_radius_px=_MAX_LUMP_RADIUS_A / pixel_size_a)
        bound = max(math.hypot(x, y) + r for x, y, r, _ in lumps)
        spot = _place(bound, (h, w), rng, placed, carbon_distance, inside=True)
        for x, y, r, height_a in lumps:
            _draw_lump(aggregate, spot.x_px + x, spot.y_px + y, r, height_a)

    potential = (
        ETHANE_POTENTIAL_V * ethane
        + CARBON_POTENTIAL_V * carbon
        + AGGREGATE_POTENTIAL_V * aggregate
    )
    optical_depth = (
        ethane / _ETHANE_MEAN_FREE_PATH_A
        + carbon / _CARBON_MEAN_FREE_PATH_A
        + aggregate / _AGGREGATE_MEAN_FREE_PATH_A
    )
    return Artefacts(
        projected_potential_va=potential.to(dtype),
        amplitude_loss=(-torch.expm1(-optical_depth)).to(dtype),
        mask=(ethane + carbon + aggregate) > 0,
    )


class _Uniform:
    """Scalar uniform draws from one generator, in call order."""

    def __init__(self, generator: torch.Generator) -> None:
        self.generator = generator

    def __call__(self, low: float, high: float) -> float:
        u = float(torch.rand((), generator=self.generator, device=self.generator.device))
        return low + (high - low) * u

    def integer(self, low: int, high: int) -> int:  # inclusive bounds
        return min(high, low + int(self(0.0, 1.0) * (high - low + 1)))


def _carbon_signed_distance(
    shape: tuple[int, int], rng: _Uniform, device: torch.device
) -> torch.Tensor:  # (h, w) px, positive inside the carbon
    """Signed distance (px) to the edge of a carbon film covering less than half the field.

    The film is the inside of a circle of radius ``R`` (curvature ``κ = 1/R`` at most a fifth
    of an inverse field diagonal, 0 = straight) whose edge passes through ``p`` with inward
    normal ``n``; for ``v = x − p`` the distance ``R − |x − c|`` is evaluated in the form
    ``(2 n·v − κ|v|²) / (1 + |κ v − n|)``, which stays exact as ``κ → 0``.
    """
    h, w = shape
    angle = rng(0.0, 2 * math.pi)
    nx, ny = math.cos(angle), math.sin(angle)
    half_extent = 0.5 * (abs(nx) * (w - 1) + abs(ny) * (h - 1))
    offset = rng(0.2, 0.6) * half_extent
    px, py = (w - 1) / 2 + nx * offset, (h - 1) / 2 + ny * offset
    curvature = rng(0.0, 1.0) / (5 * math.hypot(h, w))
    y, x = torch.meshgrid(
        torch.arange(h, dtype=torch.float64, device=device),
        torch.arange(w, dtype=torch.float64, device=device),
        indexing="ij",
    )
    vx, vy = x - px, y - py
    along = nx * vx + ny * vy
    return (2 * along - curvature * (vx * vx + vy * vy)) / (
        1 + torch.hypot(curvature * vx - nx, curvature * vy - ny)
    )


def _place(
    bound_px: float,
    shape: tuple[int, int],
    rng: _Uniform,
    placed: list[_Footprint],
    carbon_distance: torch.Tensor | None,
    *,
    inside: bool,
) -> _Footprint:
    """A random centre whose disk of ``bound_px`` keeps clear of the others and the carbon."""
    h, w = shape
    margin = bound_px if inside else 0.0
    attempts = _MAX_ATTEMPTS if 2 * margin <= min(h, w) - 1 else 0
    for _ in range(attempts):
        x, y = rng(margin, w - 1 - margin), rng(margin, h - 1 - margin)
        clear = all(
            math.hypot(x - f.x_px, y - f.y_px) > bound_px + f.radius_px + _GAP_PX for f in placed
        )
        if clear and carbon_distance is not None:
            nearest = carbon_distance[round(y), round(x)]
            clear = float(nearest) < -(bound_px + _GAP_PX + 1.0)
        if clear:
            spot = _Footprint(x, y, bound_px)
            placed.append(spot)
            return spot
    raise ValueError(
        f"cannot place another artefact of radius {bound_px:.1f} px in a {h} x {w} field "
        "without touching the others; ask for fewer artefacts or a larger field"
    )


def _window(
    x_px: float, y_px: float, radius_px: float, like: torch.Tensor
) -> tuple[slice, slice, torch.Tensor, torch.Tensor] | None:
    """Bounding box of a disk clipped to the field, with its pixel offsets from the centre."""
    h, w = like.shape
    x0, x1 = max(0, math.floor(x_px - radius_px)), min(w, math.ceil(x_px + radius_px) + 1)
    y0, y1 = max(0, math.floor(y_px - radius_px)), min(h, math.ceil(y_px + radius_px) + 1)
    if x0 >= x1 or y0 >= y1:
        return None
    dy, dx = torch.meshgrid(
        torch.arange(y0, y1, dtype=like.dtype, device=like.device) - y_px,
        torch.arange(x0, x1, dtype=like.dtype, device=like.device) - x_px,
        indexing="ij",
    )
    return slice(y0, y1), slice(x0, x1), dx, dy


def _draw_drop(
    thickness_a: torch.Tensor,  # (h, w), updated in place
    spot: _Footprint,
    radius_px: float,
    harmonics: list[tuple[int, float, float]],
    height_a: float,
) -> None:
    window = _window(spot.x_px, spot.y_px, spot.radius_px, thickness_a)
    if window is None:
        return
    rows, cols, dx, dy = window
    theta = torch.atan2(dy, dx)
    outline = radius_px * (1 + sum(a * torch.cos(k * (theta - phase)) for k, a, phase in harmonics))
    rho2 = (dx * dx + dy * dy) / (outline * outline)
    lens = height_a * (1 - rho2).clamp(min=0).sqrt()
    thickness_a[rows, cols] = torch.maximum(thickness_a[rows, cols], lens)


def _aggregate_lumps(
    rng: _Uniform, shorter_px: int, *, max_radius_px: float
) -> list[tuple[float, float, float, float]]:
    """Lumps ``(x, y, radius, height)`` (px, px, px, Å) about (0, 0), each overlapping another."""
    lumps: list[tuple[float, float, float, float]] = []
    for _ in range(rng.integer(3, 8)):
        radius = max(2.0, min(rng(0.015, 0.035) * shorter_px, max_radius_px))
        height_a = rng(150.0, 400.0)
        if not lumps:
            lumps.append((0.0, 0.0, radius, height_a))
            continue
        px, py, pr, _ = lumps[rng.integer(0, len(lumps) - 1)]
        angle = rng(0.0, 2 * math.pi)
        distance = rng(0.3, 0.7) * (pr + radius)
        lumps.append(
            (px + distance * math.cos(angle), py + distance * math.sin(angle), radius, height_a)
        )
    return lumps


def _draw_lump(
    thickness_a: torch.Tensor,  # (h, w), updated in place
    x_px: float,
    y_px: float,
    radius_px: float,
    height_a: float,
) -> None:
    window = _window(x_px, y_px, radius_px, thickness_a)
    if window is None:
        return
    rows, cols, dx, dy = window
    rho2 = (dx * dx + dy * dy) / (radius_px * radius_px)
    lump = height_a * (1 - rho2).clamp(min=0).sqrt()
    thickness_a[rows, cols] = torch.maximum(thickness_a[rows, cols], lump)
