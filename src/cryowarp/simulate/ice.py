"""Amorphous ice as uncorrelated water molecules: its mean inner potential and the molecular
texture of its projected potential (the source of Thon rings in real micrographs).

Model (docs/simulator.md, "Ice"):

* Vitreous ice of density ρ (0.92 g/cm³ for low-density amorphous ice; Dubochet et al.,
  *Q. Rev. Biophys.* 21 (1988) 129) holds ``n = ρ N_A / M_w`` water molecules per Å³
  (M_w = 18.015 g/mol): ``n = 0.03075 Å⁻³`` at 0.92 g/cm³.
* A molecule is one O and two H atoms (independent-atom model, Peng et al. 1996 factors of
  :mod:`cryowarp.simulate.scattering`): integrated potential
  ``U_w = 47.8776 V·Å² × (f_O(0) + 2 f_H(0)) = 145.6 V·Å³`` and form factor
  ``f_w(q) / f_w(0)`` (q in cycles/Å) with ``f_w = f_O + 2 f_H`` (the O–H bonds are not
  resolved: the three atoms are treated as concentric, a fair approximation below ~1 Å⁻¹).
  The mean inner potential is ``n · U_w = 4.48 V`` (independent atoms overestimate measured
  values slightly: bonding moves charge; liquid water measures 4.48 ± 0.19 V, Yesibolati et
  al., *Phys. Rev. Lett.* 124 (2020) 065502; vitreous ice ≈ 3.5–3.6 V by holography).
* The molecules are uncorrelated: the count in a pixel column of area ``p²`` and thickness
  ``t`` is Poisson with mean ``n p² t``, drawn here from a Gaussian of the same mean and
  variance (``n p² t`` is ≥ 10 for any useful pixel and thickness).  The projected potential
  (V·Å) of a pixel has mean ``n t U_w`` and, for point molecules, standard deviation
  ``sqrt(n p² t) · U_w / p²``; its fluctuations are white, and the finite size of the molecule
  multiplies their spectrum by ``f_w(q) / f_w(0)``.
* **Ignored:** the structure factor of water (short-range order), which in real ice suppresses
  the fluctuations at low frequency (``S(0) ≈ 0.06``, the compressibility limit) and adds the
  diffuse ring near 1/3.7 Å.  The texture here is therefore too strong below ~1/5 Å⁻¹, which
  does not move any Thon-ring zero.
"""

from __future__ import annotations

import math

import torch

from cryowarp.core.fourier_grids import frequency_magnitude
from cryowarp.errors import InvalidValuesError
from cryowarp.simulate.scattering import potential_integral_v_a3, scattering_factor_a

__all__ = [
    "VITREOUS_ICE_DENSITY_G_PER_CM3",
    "ice_mean_inner_potential_v",
    "ice_projected_potential_va",
    "ice_texture_std_va",
    "water_form_factor",
    "water_molecules_per_a3",
    "water_potential_integral_v_a3",
]

#: Density of low-density amorphous (vitreous) ice in g/cm³.
VITREOUS_ICE_DENSITY_G_PER_CM3 = 0.92

_AVOGADRO_PER_MOL = 6.02214076e23
_WATER_MOLAR_MASS_G_PER_MOL = 18.015
_WATER_ATOMS = ("O", "H", "H")


def water_molecules_per_a3(density_g_per_cm3: float = VITREOUS_ICE_DENSITY_G_PER_CM3) -> float:
    """Number density ``n`` of water molecules (Å⁻³) at a density in g/cm³ (1 cm³ = 10²⁴ Å³)."""
    return density_g_per_cm3 * _AVOGADRO_PER_MOL / _WATER_MOLAR_MASS_G_PER_MOL * 1e-24


def water_potential_integral_v_a3() -> float:
    """``U_w = ∫ V d³r`` of one water molecule (V·Å³): ``47.8776 V·Å² × (f_O(0) + 2 f_H(0))``."""
    return float(potential_integral_v_a3(_WATER_ATOMS).sum())


def ice_mean_inner_potential_v(density_g_per_cm3: float = VITREOUS_ICE_DENSITY_G_PER_CM3) -> float:
    """Mean inner potential ``n · U_w`` (V) of ice of a density in g/cm³ (4.48 V at 0.92)."""
    return water_molecules_per_a3(density_g_per_cm3) * water_potential_integral_v_a3()


def water_form_factor(q_per_a: torch.Tensor) -> torch.Tensor:
    """``f_w(q) / f_w(0)`` of a water molecule (``f_w = f_O + 2 f_H``) at ``q`` in cycles/Å
    ``(...)``; 1 at ``q = 0``, on ``q_per_a``'s device and dtype."""
    total = torch.stack([scattering_factor_a(e, q_per_a) for e in _WATER_ATOMS]).sum(0)
    zero = sum(float(scattering_factor_a(e, torch.zeros(()))) for e in _WATER_ATOMS)
    return total / zero


def ice_texture_std_va(
    thickness_a: float,
    *,
    pixel_size_a: float,
    density_g_per_cm3: float = VITREOUS_ICE_DENSITY_G_PER_CM3,
) -> float:
    """Standard deviation (V·Å) of the projected potential of one pixel for point molecules:
    ``sqrt(n p² t) · U_w / p²`` (before the form factor)."""
    n = water_molecules_per_a3(density_g_per_cm3)
    return (
        math.sqrt(n * pixel_size_a**2 * thickness_a)
        * water_potential_integral_v_a3()
        / (pixel_size_a**2)
    )


def ice_projected_potential_va(
    thickness_a: torch.Tensor,  # (h, w)
    *,
    pixel_size_a: float,
    generator: torch.Generator | None,
    density_g_per_cm3: float = VITREOUS_ICE_DENSITY_G_PER_CM3,
    mean: bool = True,
    form_factor: bool = True,
) -> torch.Tensor:  # (h, w)
    """Projected potential (V·Å) of an ice layer of local thickness ``thickness_a`` (Å along
    the beam) on a pixel grid of ``pixel_size_a`` (Å).

    Parameters
    ----------
    thickness_a:
        ``(h, w)`` path length through the ice at each pixel (Å, ≥ 0).
    generator:
        CPU generator of the molecular texture; ``None``: no texture (only the mean).
    mean:
        Include the mean ``n t U_w``; ``False`` returns only the zero-mean texture.
    form_factor:
        Multiply the texture's spectrum by ``f_w(q)/f_w(0)``; ``False``: point molecules
        (white, per-pixel standard deviation :func:`ice_texture_std_va`).

    Returns
    -------
    torch.Tensor
        ``(h, w)`` float32 on ``thickness_a``'s device.
    """
    if thickness_a.ndim != 2:
        raise InvalidValuesError(
            None, f"thickness map must be (h, w), got {tuple(thickness_a.shape)}"
        )
    if pixel_size_a <= 0 or density_g_per_cm3 < 0:
        raise InvalidValuesError(
            None,
            f"pixel size {pixel_size_a} Å must be > 0 and density {density_g_per_cm3} g/cm³ ≥ 0",
        )
    thickness = thickness_a.to(torch.float32).clamp(min=0)
    n = water_molecules_per_a3(density_g_per_cm3)
    u_w = water_potential_integral_v_a3()
    potential = thickness * (n * u_w) if mean else torch.zeros_like(thickness)
    if generator is None:
        return potential
    h, w = thickness.shape
    noise = torch.randn((h, w), generator=generator).to(thickness.device)
    if form_factor:
        q = frequency_magnitude((h, w), device=thickness.device) / pixel_size_a
        noise = torch.fft.irfft2(torch.fft.rfft2(noise) * water_form_factor(q), s=(h, w))
    # Poisson molecule count per pixel column, Gaussian with variance n p² t, × U_w / p².
    std = (thickness * (n * pixel_size_a**2)).sqrt() * (u_w / pixel_size_a**2)
    return potential + std * noise
