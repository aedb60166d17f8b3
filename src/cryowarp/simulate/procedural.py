"""Procedural species: random "protein-like" particles of a given mass and point group.

For training and testing pickers on species no model exists for; deterministic for a seed.
The absolute scale (0.81 Da/Å³, ≈ 7.9 V inside protein) is that of
:mod:`cryowarp.simulate.species`.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from scipy import ndimage

from cryowarp.core._centred_coordinates import centred_grid
from cryowarp.core.rotations import random_rotations
from cryowarp.core.symmetry import point_group_operators
from cryowarp.errors import InvalidValuesError
from cryowarp.simulate.species import (
    PROTEIN_DENSITY_DA_PER_A3,
    Species,
    protein_potential_per_kda_v_a3,
)

__all__ = ["procedural_species"]


def _gaussian_blur(volume: torch.Tensor, sigma_px: float) -> torch.Tensor:
    """Separable Gaussian blur of a ``(N, N, N)`` volume (zero outside, sum preserved)."""
    radius = max(1, math.ceil(3 * sigma_px))
    x = torch.arange(-radius, radius + 1, dtype=volume.dtype, device=volume.device)
    kernel = torch.exp(-(x**2) / (2 * sigma_px**2))
    kernel = kernel / kernel.sum()
    out = volume
    for dim in range(3):
        moved = out.movedim(dim, -1)
        flat = moved.reshape(-1, 1, moved.shape[-1])
        flat = F.conv1d(F.pad(flat, (radius, radius)), kernel.reshape(1, 1, -1))
        out = flat.reshape(moved.shape).movedim(-1, dim)
    return out


def _blob_field(
    axis: torch.Tensor,  # (n,) increasing coordinates, relative units, shared by x, y and z
    centres: torch.Tensor,  # (k, 3) x y z
    frames: torch.Tensor,  # (k, 3, 3) columns = blob axes
    semi_axes: torch.Tensor,  # (k, 3)
) -> torch.Tensor:
    """``(n, n, n)`` (z, y, x) sum of blobs ``Σ exp(−½ (x − c)ᵀ R D⁻² Rᵀ (x − c))``.

    Each blob is evaluated within 4 of its longest semi-axes of its centre (beyond, its value
    is below 3.4·10⁻⁴ of its peak).
    """
    n = axis.shape[0]
    field = torch.zeros(n, n, n, dtype=axis.dtype, device=axis.device)
    metric = frames @ torch.diag_embed(semi_axes**-2) @ frames.transpose(-1, -2)  # (k, 3, 3)
    reach = 4 * semi_axes.amax(-1)
    for c, m, r in zip(centres, metric, reach, strict=True):
        lo = torch.searchsorted(axis, c - r)
        hi = torch.searchsorted(axis, c + r, right=True)
        if bool((hi <= lo).any()):
            continue
        dx, dy, dz = (axis[int(lo[i]) : int(hi[i])] - c[i] for i in range(3))
        d = (dx[None, None, :], dy[None, :, None], dz[:, None, None])
        q = sum(m[i, j] * d[i] * d[j] * (1 if i == j else 2) for i in range(3) for j in range(i, 3))
        field[int(lo[2]) : int(hi[2]), int(lo[1]) : int(hi[1]), int(lo[0]) : int(hi[0])] += (
            torch.exp(-0.5 * torch.as_tensor(q))
        )
    return field


def _random_layout(
    g: torch.Generator,
    operators: torch.Tensor,  # (n_ops, 3, 3)
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, float]:
    """Random blobs of an asymmetric unit copied by the group (relative units), and the
    0.5-level set of their sum on a coarse 48³ grid.

    Returns centres ``(k, 3)``, frames ``(k, 3, 3)``, semi-axes ``(k, 3)``, the coarse mask
    ``(48, 48, 48)``, its grid ``(48, 48, 48, 3)`` and cell size.
    """
    f64 = torch.float64
    n_ops = len(operators)

    def uniform(lo: float, hi: float, *shape: int) -> torch.Tensor:
        return lo + (hi - lo) * torch.rand(*shape, generator=g, dtype=f64)

    max_blobs = 4 if n_ops <= 4 else (3 if n_ops <= 12 else 2)
    n_blobs = int(torch.randint(1, max_blobs + 1, (1,), generator=g))
    elongation = uniform(0.0, 1.5, 1)  # per species: 0 = round blobs, 1.5 = rods/plates
    spread = uniform(0.3, 2.0, 1)  # per species: compact to extended arrangements
    semi_axes = torch.exp(elongation * uniform(-1.0, 1.0, n_blobs, 3)) * uniform(
        0.4, 1.0, n_blobs, 1
    )
    direction = torch.randn(n_blobs, 3, generator=g, dtype=f64)
    direction = direction / direction.norm(dim=-1, keepdim=True)
    offset = direction * spread * uniform(0.0 if n_ops == 1 else 0.4, 1.0, n_blobs, 1)
    frames = random_rotations(n_blobs, generator=g, dtype=f64)
    centres = torch.einsum("oij,bj->obi", operators, offset).reshape(-1, 3)
    # Centre the particle: the mean of the copies lies on the symmetry axes, so removing it
    # keeps the symmetry (and centres C1 particles on their blobs).
    blob_volume = semi_axes.prod(-1).repeat(n_ops)
    centres = centres - (centres * blob_volume[:, None]).sum(0) / blob_volume.sum()
    all_frames = (operators[:, None] @ frames[None]).reshape(-1, 3, 3)
    all_axes = semi_axes.repeat(n_ops, 1)

    extent = float((centres.norm(dim=-1) + 3 * all_axes.amax(-1)).max())
    axis = torch.linspace(-extent, extent, 48, dtype=f64)
    grid = torch.stack(torch.meshgrid(axis, axis, axis, indexing="ij")[::-1], dim=-1)
    inside = _blob_field(axis, centres, all_frames, all_axes) > 0.5
    return centres, all_frames, all_axes, inside, grid, float(axis[1] - axis[0])


def procedural_species(
    *,
    mass_kda: float,
    symmetry: str = "C1",
    seed: int,
    pixel_size_a: float,
    name: str | None = None,
) -> Species:
    """A random protein-like particle of a given mass and point group.

    The asymmetric unit is 1–4 anisotropic Gaussian blobs (random semi-axes, orientation and
    offset from the symmetry axes; redrawn until the particle is one connected body); the
    point group copies them, and the union is the level set of their sum that encloses
    ``mass_kda / 0.81 Da/Å³`` (exact voxel count).  The mask's edge is softened by a Gaussian
    blur (σ = 1.5 Å, at least 1 voxel), a symmetric interior texture (plane waves of 8–25 Å
    period, at most 4 px, copied by the group, ±25 %) is added, and the map is scaled to the
    protein potential of that mass (:func:`protein_potential_per_kda_v_a3`, with hydrogens:
    ≈ 7.9 V mean inside).  Deterministic for a seed; symmetric under ``symmetry`` about voxel
    ``N//2``; the box is the object's extent plus a margin.

    Parameters
    ----------
    mass_kda:
        Mass in kDa (tested from 60 kDa to 2 MDa).
    symmetry:
        RELION point group (``C1``, ``Cn``, ``Dn``, ``T``, ``O``, ``I``...).
    seed:
        Seed of every random choice.
    pixel_size_a:
        Voxel edge in Å.
    """
    if not mass_kda > 0 or not pixel_size_a > 0:
        raise InvalidValuesError(None, f"mass {mass_kda} kDa and pixel size must be positive")
    f64 = torch.float64
    g = torch.Generator().manual_seed(seed)
    operators = point_group_operators(symmetry, dtype=f64)  # (n_ops, 3, 3)
    n_ops = len(operators)
    volume_a3 = mass_kda * 1000.0 / PROTEIN_DENSITY_DA_PER_A3

    for _ in range(20):  # redraw until the particle is one connected body
        centres, frames, semi_axes, inside, grid, cell = _random_layout(g, operators)
        if int(ndimage.label(inside.numpy())[1]) == 1:
            break
    scale_a = (volume_a3 / (int(inside.sum()) * cell**3)) ** (1 / 3)
    radius_rel = float(grid[inside].norm(dim=-1).max()) + 2 * cell
    margin_a = 6.0 + 3 * 1.5
    box = 2 * math.ceil((radius_rel * scale_a + margin_a) / pixel_size_a)

    # Fine pass: exact voxel count, soft edge, texture, absolute scale.
    points_a = centred_grid((box,) * 3, dtype=f64) * pixel_size_a  # (N, N, N, 3) x y z
    axis_a = (torch.arange(box, dtype=f64) - box // 2) * pixel_size_a
    field = _blob_field(axis_a / scale_a, centres, frames, semi_axes)
    n_voxels = max(1, round(volume_a3 / pixel_size_a**3))
    level = torch.topk(field.flatten(), n_voxels).values[-1]
    mask = (field >= level).to(f64)
    soft = _gaussian_blur(mask, max(1.5 / pixel_size_a, 1.0))

    n_waves = max(2, math.ceil(96 / n_ops))
    k_max = min(1 / 8.0, 0.25 / pixel_size_a)
    k_dir = torch.randn(n_waves, 3, generator=g, dtype=f64)
    k_len = 1 / 25.0 + (k_max - 1 / 25.0) * torch.rand(n_waves, 1, generator=g, dtype=f64)
    k_vec = k_dir / k_dir.norm(dim=-1, keepdim=True) * k_len
    phases = 2 * math.pi * torch.rand(n_waves, generator=g, dtype=f64)
    waves = torch.einsum("oij,wj->owi", operators, k_vec).reshape(-1, 3)  # S k
    where = soft > 1e-3
    pts = points_a[where]  # (m, 3)
    texture = torch.cos(2 * math.pi * pts @ waves.T + phases.repeat(n_ops)).sum(-1)
    texture = (texture - texture.mean()) / texture.std().clamp(min=1e-12)
    potential = soft.clone()
    potential[where] = soft[where] * (1 + 0.25 * texture).clamp(min=0.0)
    target = mass_kda * protein_potential_per_kda_v_a3()  # V·Å³
    potential = potential * (target / (float(potential.sum()) * pixel_size_a**3))
    return Species(
        name=name or f"procedural_{symmetry.upper()}_{mass_kda:g}kDa_seed{seed}",
        potential_v=potential.to(torch.float32).contiguous(),
        pixel_size_a=float(pixel_size_a),
        symmetry=symmetry,
        mass_kda=float(mass_kda),
        source=f"procedural_species(mass_kda={mass_kda}, symmetry={symmetry!r}, seed={seed})",
    )
