"""Electron scattering factors of neutral atoms and the element data the simulator needs.

Scattering factors are the five-Gaussian elastic parameterisation of

    L.-M. Peng, G. Ren, S. L. Dudarev & M. J. Whelan (1996), "Robust parameterization of
    elastic and absorptive electron atomic scattering factors", Acta Cryst. A52, 257–276,
    Table 1 (neutral atoms, fit range 0 ≤ s ≤ 2 Å⁻¹),

reprinted in International Tables for Crystallography Vol. C, Table 4.3.2.2:

    f_e(s) = Σᵢ aᵢ exp(−bᵢ s²)    (Å),  s = sin θ / λ = q / 2 (Å⁻¹),

where ``q = 2 sin θ / λ`` is the spatial frequency in cycles/Å (conventions §3).  The
parameters are the non-relativistic (rest-mass) factors; the potential does not depend on the
beam energy (the energy enters only through the interaction constant σ of the phase).
(Potassium's a₂ is +1.4031; some copies of the table carry a spurious minus sign, which
makes f_e grow with s and disagrees with the Mott–Bethe formula.)

The potential of an atom and its scattering factor are a Fourier pair
(Kirkland, *Advanced Computing in Electron Microscopy*, 2nd ed., eq. 5.8):

    V(r) = (h² / (2π m₀ e)) ∫ f_e(q) exp(2πi q·r) d³q,

so ``∫ V d³r = (h² / (2π m₀ e)) · f_e(0)`` with ``h² / (2π m₀ e) = 47.8776 V·Å²``
(CODATA 2018, rest mass m₀), and each Gaussian term is
``(h²/(2π m₀ e)) aᵢ (4π/bᵢ)^{3/2} exp(−4π² r² / bᵢ)``: a 3-D Gaussian of variance
``bᵢ / (8π²)`` Å² per axis.  An isotropic B-factor multiplies f_e by ``exp(−B s²)``, i.e.
replaces every ``bᵢ`` by ``bᵢ + B``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from cryowarp.errors import InvalidValuesError

__all__ = [
    "POTENTIAL_PREFACTOR_V_A2",
    "atomic_mass_da",
    "normalize_element",
    "peng_parameters",
    "potential_integral_v_a3",
    "scattering_factor_a",
    "supported_elements",
]

_PLANCK_J_S = 6.62607015e-34
_ELECTRON_MASS_KG = 9.1093837015e-31
_ELEMENTARY_CHARGE_C = 1.602176634e-19

#: ``h² / (2π m₀ e)`` in V·Å² (rest mass): potential integral per Å of scattering factor.
POTENTIAL_PREFACTOR_V_A2 = (
    _PLANCK_J_S**2 / (2 * math.pi * _ELECTRON_MASS_KG * _ELEMENTARY_CHARGE_C) * 1e20
)

# Peng et al. (1996) Table 1, elastic, 0 ≤ s ≤ 2 Å⁻¹: (a1..a5 in Å, b1..b5 in Å²).
_PENG_1996: dict[str, tuple[tuple[float, ...], tuple[float, ...]]] = {
    "H": ((0.0349, 0.1201, 0.1970, 0.0573, 0.1195), (0.5347, 3.5867, 12.3471, 18.9525, 38.6269)),
    "C": ((0.0893, 0.2563, 0.7570, 1.0487, 0.3575), (0.2465, 1.7100, 6.4094, 18.6113, 50.2523)),
    "N": ((0.1022, 0.3219, 0.7982, 0.8197, 0.1715), (0.2451, 1.7481, 6.1925, 17.3894, 48.1431)),
    "O": ((0.0974, 0.2921, 0.6910, 0.6990, 0.2039), (0.2067, 1.3815, 4.6943, 12.7105, 32.4726)),
    "F": ((0.1083, 0.3175, 0.6487, 0.5846, 0.1421), (0.2057, 1.3439, 4.2788, 11.3932, 28.7881)),
    "Na": ((0.2142, 0.6853, 0.7692, 1.6589, 1.4482), (0.3334, 2.3446, 10.0830, 48.3037, 138.2700)),
    "Mg": ((0.2314, 0.6866, 0.9677, 2.1882, 1.1339), (0.3278, 2.2720, 10.9241, 39.2898, 101.9748)),
    "Al": ((0.2390, 0.6573, 1.2011, 2.5586, 1.2312), (0.3138, 2.1063, 10.4163, 34.4552, 98.5344)),
    "Si": ((0.2519, 0.6372, 1.3795, 2.5082, 1.0500), (0.3075, 2.0174, 9.6746, 29.3744, 80.4732)),
    "P": ((0.2548, 0.6106, 1.4541, 2.3204, 0.8477), (0.2908, 1.8740, 8.5176, 24.3434, 63.2996)),
    "S": ((0.2497, 0.5628, 1.3899, 2.1865, 0.7715), (0.2681, 1.6711, 7.0267, 19.5377, 50.3888)),
    "Cl": ((0.2443, 0.5397, 1.3919, 2.0197, 0.6621), (0.2468, 1.5242, 6.1537, 16.6687, 42.3086)),
    "K": ((0.4115, 1.4031, 2.2784, 2.6742, 2.2162), (0.3703, 3.3874, 13.1029, 68.9592, 194.4329)),
    "Ca": ((0.4054, 1.3880, 2.1602, 3.7532, 2.2063), (0.3499, 3.0991, 11.9608, 53.9353, 142.3892)),
    "Mn": ((0.3796, 1.2094, 1.7815, 2.5420, 1.5937), (0.2699, 2.0455, 7.4726, 31.0604, 91.5622)),
    "Fe": ((0.3946, 1.2725, 1.7031, 2.3140, 1.4795), (0.2717, 2.0443, 7.6007, 29.9714, 86.2265)),
    "Co": ((0.4118, 1.3161, 1.6493, 2.1930, 1.2830), (0.2742, 2.0372, 7.7205, 29.9680, 84.9383)),
    "Ni": ((0.3860, 1.1765, 1.5451, 2.0730, 1.3814), (0.2478, 1.7660, 6.3107, 25.2204, 74.3146)),
    "Cu": ((0.4314, 1.3208, 1.5236, 1.4671, 0.8562), (0.2694, 1.9223, 7.3474, 28.9892, 90.6246)),
    "Zn": ((0.4288, 1.2646, 1.4472, 1.8294, 1.0934), (0.2593, 1.7998, 6.7500, 25.5860, 73.5284)),
    "Se": ((0.4477, 1.1678, 1.5843, 2.8087, 1.1956), (0.2405, 1.5442, 6.3231, 19.4610, 52.0233)),
    "Br": ((0.4798, 1.1948, 1.8695, 2.6953, 0.8203), (0.2504, 1.5963, 6.9653, 19.8492, 50.3233)),
    "Pt": ((0.9148, 1.8096, 3.2134, 3.2953, 1.5754), (0.2263, 1.3813, 5.3243, 17.5987, 60.0171)),
    "Au": ((0.9674, 1.8916, 3.3993, 3.0524, 1.2607), (0.2358, 1.4712, 5.6758, 18.7119, 61.5286)),
}

# Standard atomic weights (IUPAC, conventional values), Da.
_MASS_DA: dict[str, float] = {
    "H": 1.008, "C": 12.011, "N": 14.007, "O": 15.999, "F": 18.998, "Na": 22.990,
    "Mg": 24.305, "Al": 26.982, "Si": 28.085, "P": 30.974, "S": 32.06, "Cl": 35.45,
    "K": 39.098, "Ca": 40.078, "Mn": 54.938, "Fe": 55.845, "Co": 58.933, "Ni": 58.693,
    "Cu": 63.546, "Zn": 65.38, "Se": 78.971, "Br": 79.904, "Pt": 195.08, "Au": 196.97,
}  # fmt: skip

_ALIASES = {"D": "H", "T": "H"}  # deuterium and tritium scatter as hydrogen


def supported_elements() -> tuple[str, ...]:
    """Element symbols with tabulated scattering factors (capitalised: ``"C"``, ``"Fe"``)."""
    return tuple(_PENG_1996)


def normalize_element(symbol: str) -> str:
    """``"FE"``/``"fe"``/``" Fe"`` → ``"Fe"``; ``"D"`` → ``"H"``.

    Raises
    ------
    InvalidValuesError
        The element has no tabulated scattering factor.
    """
    name = symbol.strip().capitalize()
    name = _ALIASES.get(name, name)
    if name not in _PENG_1996:
        raise InvalidValuesError(
            None,
            f"no electron scattering factor for element {symbol!r}",
            f"supported: {', '.join(_PENG_1996)}",
        )
    return name


def peng_parameters(
    elements: Sequence[str],
    *,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float64,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Peng et al. (1996) parameters ``a`` (Å) and ``b`` (Å²), each ``(n, 5)``, per element."""
    table = {e: _PENG_1996[normalize_element(e)] for e in set(elements)}
    a = torch.tensor([table[e][0] for e in elements], dtype=dtype, device=device).reshape(-1, 5)
    b = torch.tensor([table[e][1] for e in elements], dtype=dtype, device=device).reshape(-1, 5)
    return a, b


def scattering_factor_a(element: str, q_per_a: torch.Tensor) -> torch.Tensor:
    """Elastic electron scattering factor ``f_e`` (Å) of a neutral atom.

    Parameters
    ----------
    element:
        Element symbol (any case).
    q_per_a:
        ``(...)`` spatial frequency ``q = 2 sin θ / λ`` in cycles/Å (= 2 s of Peng et al.).

    Returns
    -------
    torch.Tensor
        ``(...)`` ``Σ aᵢ exp(−bᵢ q² / 4)`` in Å, on ``q_per_a``'s device and dtype.
    """
    q = q_per_a if q_per_a.is_floating_point() else q_per_a.to(torch.get_default_dtype())
    a, b = peng_parameters([element], device=q.device, dtype=q.dtype)
    return (a[0] * torch.exp(-b[0] * (q[..., None] ** 2) / 4)).sum(-1)


def potential_integral_v_a3(elements: Sequence[str]) -> torch.Tensor:
    """``∫ V d³r`` of each atom, ``(h²/(2π m₀ e)) f_e(0)``, in V·Å³: ``(n,)`` float64."""
    a, _ = peng_parameters(elements)
    return POTENTIAL_PREFACTOR_V_A2 * a.sum(-1)


def atomic_mass_da(elements: Sequence[str]) -> torch.Tensor:
    """Standard atomic weights (Da) of the elements: ``(n,)`` float64."""
    table = {e: _MASS_DA[normalize_element(e)] for e in set(elements)}
    return torch.tensor([table[e] for e in elements], dtype=torch.float64)
