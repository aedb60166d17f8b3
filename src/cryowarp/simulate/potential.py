"""Coulomb potential maps (volts) of atomic models from Peng et al. (1996) scattering factors.

Each atom contributes ``(h²/(2π m₀ e)) Σᵢ occ · aᵢ (4π/βᵢ)^{3/2} exp(−4π² r²/βᵢ)`` with
``βᵢ = bᵢ + B_atom + B_extra`` (see :mod:`cryowarp.simulate.scattering`): five 3-D Gaussians
of variance ``βᵢ / (8π²)`` Å² per axis.  Each Gaussian is **integrated exactly over every
voxel** (products of error-function differences along x, y and z), and the map holds the
**voxel average** of the potential in volts.  So the sum of the map times the voxel volume is
the analytic ``∫ V d³r`` of the model for any pixel size (no aliasing of sharp atoms at coarse
sampling), up to the ``4σ`` truncation of each Gaussian (< 2·10⁻⁴ of its weight, per axis 6·10⁻⁵).

The box is centred as in conventions §2: the position ``centre_a`` (Å, x y z; by default the
model's centre of mass) lies at the centre of voxel ``(N//2, N//2, N//2)``; voxel
``(k, j, i)`` is centred at ``centre_a + ((i, j, k) − N//2) · pixel_size_a``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from cryowarp.errors import InvalidValuesError
from cryowarp.simulate.scattering import (
    POTENTIAL_PREFACTOR_V_A2,
    atomic_mass_da,
    peng_parameters,
)

__all__ = ["atomic_potential_v", "centre_of_mass_a", "fitting_box_size_px"]

_TRUNCATION_SIGMAS = 4.0


def centre_of_mass_a(
    xyz_a: torch.Tensor,  # (n, 3)
    elements: Sequence[str],
    *,
    occupancy: torch.Tensor | None = None,  # (n,)
) -> torch.Tensor:
    """Mass-weighted centre ``(3,)`` (x, y, z) in Å of atoms with standard atomic weights."""
    mass = atomic_mass_da(elements).to(device=xyz_a.device, dtype=torch.float64)
    if occupancy is not None:
        mass = mass * occupancy.to(mass)
    xyz = xyz_a.to(torch.float64)
    return (xyz * mass[:, None]).sum(0) / mass.sum()


def fitting_box_size_px(
    xyz_a: torch.Tensor,  # (n, 3)
    centre_a: torch.Tensor,  # (3,)
    *,
    pixel_size_a: float,
    padding_a: float = 10.0,
) -> int:
    """Smallest even box edge (px) holding every atom plus ``padding_a`` Å about the centre."""
    extent_a = (xyz_a.to(torch.float64) - centre_a.to(xyz_a.device, torch.float64)).abs().max()
    return 2 * math.ceil((float(extent_a) + padding_a) / pixel_size_a + 0.5)


def _voxel_fractions(
    offset_px: torch.Tensor,  # (m, 1, 1) atom position − first voxel centre, px
    sigma_px: torch.Tensor,  # (m, 5, 1)
    width: int,
) -> torch.Tensor:
    """``(m, 5, width)``: fraction of each 1-D Gaussian falling in each of ``width`` voxels."""
    edges = torch.arange(width + 1, device=offset_px.device, dtype=offset_px.dtype) - 0.5
    cdf = torch.erf((edges - offset_px) / (math.sqrt(2.0) * sigma_px))  # (m, 5, width + 1)
    return 0.5 * (cdf[..., 1:] - cdf[..., :-1])


def atomic_potential_v(
    xyz_a: torch.Tensor,  # (n, 3)
    elements: Sequence[str],
    *,
    pixel_size_a: float,
    box_size_px: int,
    centre_a: torch.Tensor | Sequence[float] | None = None,
    bfactor_a2: torch.Tensor | None = None,  # (n,)
    occupancy: torch.Tensor | None = None,  # (n,)
    extra_bfactor_a2: float = 0.0,
    chunk_atoms: int = 4096,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Voxel-averaged Coulomb potential of atoms in a cubic box.

    Parameters
    ----------
    xyz_a:
        ``(n, 3)`` atom positions (x, y, z) in Å; the map is made on this tensor's device.
    elements:
        ``n`` element symbols, any case (see
        :func:`~cryowarp.simulate.scattering.supported_elements`).
    pixel_size_a:
        Voxel edge in Å.
    box_size_px:
        Edge ``N`` of the cubic box.
    centre_a:
        ``(3,)`` position (Å) placed at voxel ``N//2``; default the centre of mass.
    bfactor_a2:
        ``(n,)`` per-atom isotropic B-factors in Å² (default 0).
    occupancy:
        ``(n,)`` weights of the atoms (default 1).
    extra_bfactor_a2:
        B-factor (Å²) added to every atom; ``bᵢ + B`` must stay positive.
    chunk_atoms:
        Atoms handled per vectorised step (memory ∝ chunk · window³).
    dtype:
        Output dtype (accumulation is float64).

    Returns
    -------
    torch.Tensor
        ``(N, N, N)`` (z, y, x) potential in volts, each voxel the average over its volume.

    Raises
    ------
    InvalidValuesError
        Unknown element, shapes that disagree, non-finite coordinates or a non-positive
        Gaussian width.
    """
    n = xyz_a.shape[0]
    if xyz_a.ndim != 2 or xyz_a.shape[1] != 3 or len(elements) != n:
        raise InvalidValuesError(
            None, f"need (n, 3) positions and n elements, got {tuple(xyz_a.shape)}, {len(elements)}"
        )
    if pixel_size_a <= 0 or box_size_px < 1:
        raise InvalidValuesError(
            None, f"pixel size {pixel_size_a} Å and box {box_size_px} px must be positive"
        )
    device = xyz_a.device
    f64 = torch.float64
    xyz = xyz_a.to(f64)
    if not bool(torch.isfinite(xyz).all()):
        raise InvalidValuesError(None, "atom coordinates contain NaN or Inf")
    if centre_a is None:
        centre = centre_of_mass_a(xyz, elements, occupancy=occupancy)
    else:
        centre = torch.as_tensor(centre_a, dtype=f64, device=device).reshape(3)
    a, b = peng_parameters(elements, device=device, dtype=f64)  # (n, 5)
    bfactor = torch.zeros(n, dtype=f64, device=device) if bfactor_a2 is None else bfactor_a2
    beta = b + bfactor.to(device=device, dtype=f64)[:, None] + extra_bfactor_a2  # (n, 5)
    if n and float(beta.min()) <= 0:
        raise InvalidValuesError(
            None, f"Gaussian width b + B ≤ 0 (min {float(beta.min()):.3g} Å²): B too negative"
        )
    weight = POTENTIAL_PREFACTOR_V_A2 * a / pixel_size_a**3  # (n, 5) V·Å³ per voxel volume
    if occupancy is not None:
        weight = weight * occupancy.to(device=device, dtype=f64)[:, None]
    sigma_px = torch.sqrt(beta / (8 * math.pi**2)) / pixel_size_a  # (n, 5)
    position_px = (xyz - centre) / pixel_size_a + box_size_px // 2  # (n, 3) x y z

    volume = torch.zeros(box_size_px**3, dtype=f64, device=device)
    order = torch.argsort(sigma_px.amax(-1))  # similar windows in one chunk
    for start in range(0, n, chunk_atoms):
        idx = order[start : start + chunk_atoms]
        half = math.ceil(_TRUNCATION_SIGMAS * float(sigma_px[idx].max()))
        width = 2 * half + 1
        first = torch.round(position_px[idx]).to(torch.long) - half  # (m, 3) first voxel
        # position relative to the first voxel centre; the window itself in float32
        offset = (position_px[idx] - first).to(torch.float32)  # (m, 3)
        s = sigma_px[idx][..., None].to(torch.float32)  # (m, 5, 1)
        fx, fy, fz = (_voxel_fractions(offset[:, k, None, None], s, width) for k in range(3))
        fzy = (
            weight[idx].to(torch.float32)[:, :, None, None] * fz[..., :, None] * fy[..., None, :]
        ).reshape(len(idx), 5, width * width)
        block = torch.bmm(fzy.transpose(1, 2), fx)  # (m, z·y, x)
        steps = torch.arange(width, device=device)
        iz, iy, ix = (first[:, k, None] + steps for k in (2, 1, 0))  # (m, width) each
        flat = (
            iz[:, :, None, None] * box_size_px**2
            + iy[:, None, :, None] * box_size_px
            + ix[:, None, None, :]
        ).reshape(-1)
        values = block.reshape(-1).to(f64)
        if int(first.min()) < 0 or int(first.max()) + width > box_size_px:
            inside = (
                ((iz >= 0) & (iz < box_size_px))[:, :, None, None]
                & ((iy >= 0) & (iy < box_size_px))[:, None, :, None]
                & ((ix >= 0) & (ix < box_size_px))[:, None, None, :]
            ).reshape(-1)
            flat, values = flat[inside], values[inside]
        volume.index_add_(0, flat, values)
    return volume.reshape(box_size_px, box_size_px, box_size_px).to(dtype)
