"""Higher-order aberrations: Zernike terms, beam tilt and anisotropic magnification.

Zernike indexing, polynomials and units follow RELION 3.1+ (``rlnOddZernike``,
``rlnEvenZernike``): the polynomials are *not* normalised to a unit disc, they are evaluated
directly at the spatial frequency in Å⁻¹, and the coefficients are phases in radians.
How the phases enter the CTF is stated in docs/conventions.md §6 and docs/ctf.md.
"""

from __future__ import annotations

import math

import torch

__all__ = [
    "apply_magnification",
    "beam_tilt_phase_rad",
    "beam_tilt_to_odd_zernike",
    "even_zernike_index_to_nm",
    "even_zernike_phase_rad",
    "magnification_matrix_from_warp",
    "odd_zernike_index_to_nm",
    "odd_zernike_phase_rad",
    "zernike_cartesian",
    "zernike_radial",
]


def odd_zernike_index_to_nm(index: int) -> tuple[int, int]:
    """Radial and azimuthal order ``(n, m)`` of entry ``index`` of ``rlnOddZernike``.

    The order is ``(1,-1), (1,1), (3,-3), (3,-1), (3,1), (3,3), (5,-5), …``.
    """
    if index < 0:
        raise ValueError(f"Zernike index must be non-negative, got {index}")
    k = (math.isqrt(1 + 4 * index) - 1) // 2
    n = 2 * k + 1
    return n, 2 * (index - k * k - k) - n


def even_zernike_index_to_nm(index: int) -> tuple[int, int]:
    """Radial and azimuthal order ``(n, m)`` of entry ``index`` of ``rlnEvenZernike``.

    The order is ``(0,0), (2,-2), (2,0), (2,2), (4,-4), (4,-2), (4,0), (4,2), (4,4), …``.
    """
    if index < 0:
        raise ValueError(f"Zernike index must be non-negative, got {index}")
    k = math.isqrt(index)
    return 2 * k, 2 * (index - k * k - k)


def _radial_terms(n: int, m: int) -> list[tuple[float, int]]:
    """``R_n^m(ρ) = Σ coefficient · ρ^power`` as ``[(coefficient, power), …]``; ``m ≥ 0``."""
    if m > n:
        raise ValueError(f"Zernike radial polynomial needs |m| <= n, got n={n}, m={m}")
    if (n - m) % 2:
        return []
    terms = []
    for s in range((n - m) // 2 + 1):
        denominator = (
            math.factorial(s) * math.factorial((n + m) // 2 - s) * math.factorial((n - m) // 2 - s)
        )
        terms.append(((-1) ** s * math.factorial(n - s) / denominator, n - 2 * s))
    return terms


def zernike_radial(n: int, m: int, rho: torch.Tensor) -> torch.Tensor:
    """Radial Zernike polynomial ``R_n^|m|(rho)`` (zero when ``n − |m|`` is odd)."""
    out = torch.zeros_like(rho)
    for coefficient, power in _radial_terms(n, abs(m)):
        out = out + coefficient * rho**power
    return out


def zernike_cartesian(n: int, m: int, k_xy: torch.Tensor) -> torch.Tensor:
    """Zernike polynomial ``Z_n^m`` at Cartesian points.

    ``Z_n^m = R_n^m(ρ) cos(mφ)`` for ``m ≥ 0`` and ``R_n^|m|(ρ) sin(|m|φ)`` for ``m < 0``, with
    ``φ`` the angle from +x towards +y (RELION's ``Zernike::Z_cart``).

    Parameters
    ----------
    k_xy:
        ``(..., 2)`` points (x, y), e.g. spatial frequencies in Å⁻¹.

    Returns
    -------
    torch.Tensor
        ``(...)``.
    """
    x, y = k_xy[..., 0], k_xy[..., 1]
    rho2 = x * x + y * y
    # ρ^(n−2s) · cos/sin(|m|φ) is a polynomial in x, y; build it from the complex power
    # (x + iy)^|m| = ρ^|m| e^{i|m|φ} so that nothing is singular at the origin.
    mm = abs(m)
    re, im = torch.ones_like(x), torch.zeros_like(x)
    for _ in range(mm):
        re, im = re * x - im * y, re * y + im * x
    angular = re if m >= 0 else im
    # R_n^|m|(ρ) / ρ^|m| is a polynomial in ρ²; times ρ^|m|·(cos, sin)(|m|φ) = angular.
    radial = torch.zeros_like(x)
    for coefficient, power in _radial_terms(n, mm):
        radial = radial + coefficient * rho2 ** ((power - mm) // 2)
    return radial * angular


def _zernike_phase(coefficients: torch.Tensor, k_xy: torch.Tensor, *, odd: bool) -> torch.Tensor:
    to_nm = odd_zernike_index_to_nm if odd else even_zernike_index_to_nm
    phase = torch.zeros_like(k_xy[..., 0])
    for i in range(coefficients.shape[-1]):
        n, m = to_nm(i)
        phase = phase + coefficients[..., i] * zernike_cartesian(n, m, k_xy)
    return phase


def odd_zernike_phase_rad(coefficients: torch.Tensor, k_xy_per_a: torch.Tensor) -> torch.Tensor:
    """``Σ_i c_i Z_i(k)`` over the odd (antisymmetric) Zernike terms of ``rlnOddZernike``.

    Parameters
    ----------
    coefficients:
        ``(..., n_odd)`` coefficients in radians; leading dims broadcast with ``k_xy_per_a``.
    k_xy_per_a:
        ``(..., 2)`` spatial frequencies in Å⁻¹.

    Returns
    -------
    torch.Tensor
        ``(...)`` phase in radians.
    """
    return _zernike_phase(coefficients, k_xy_per_a, odd=True)


def even_zernike_phase_rad(coefficients: torch.Tensor, k_xy_per_a: torch.Tensor) -> torch.Tensor:
    """``Σ_i c_i Z_i(k)`` over the even (symmetric) Zernike terms of ``rlnEvenZernike``.

    Shapes and units as in :func:`odd_zernike_phase_rad`.
    """
    return _zernike_phase(coefficients, k_xy_per_a, odd=False)


def beam_tilt_phase_rad(
    k_xy_per_a: torch.Tensor,  # (..., 2)
    beam_tilt_mrad: torch.Tensor,  # (..., 2)
    cs_mm: torch.Tensor | float,
    wavelength_a: torch.Tensor | float,
) -> torch.Tensor:
    """Odd phase caused by beam tilt, in RELION's sign: ``−2π Cs λ² |k|² (k · t)``.

    Parameters
    ----------
    k_xy_per_a:
        ``(..., 2)`` spatial frequencies in Å⁻¹.
    beam_tilt_mrad:
        ``(..., 2)`` tilt ``(rlnBeamTiltX, rlnBeamTiltY)`` in mrad.
    cs_mm, wavelength_a:
        Spherical aberration (mm) and electron wavelength (Å), broadcastable to ``(...)``.

    Returns
    -------
    torch.Tensor
        ``(...)`` phase in radians; equal to the odd Zernike phase of
        :func:`beam_tilt_to_odd_zernike` (RELION stores beam tilt that way).
    """
    k2 = k_xy_per_a.square().sum(-1)
    k_dot_t = (k_xy_per_a * beam_tilt_mrad).sum(-1) * 1e-3
    return -2.0 * math.pi * (cs_mm * 1e7) * wavelength_a**2 * k2 * k_dot_t


def beam_tilt_to_odd_zernike(
    beam_tilt_mrad: torch.Tensor,  # (..., 2)
    cs_mm: torch.Tensor | float,
    wavelength_a: torch.Tensor | float,
) -> torch.Tensor:
    """The 6 odd Zernike coefficients (radians) whose phase equals the beam-tilt phase.

    Returns
    -------
    torch.Tensor
        ``(..., 6)`` in ``rlnOddZernike`` order; add them to existing coefficients.
    """
    scale = 2.0 * math.pi * (cs_mm * 1e7) * wavelength_a**2 * 1e-3
    z3 = -torch.as_tensor(scale, dtype=beam_tilt_mrad.dtype, device=beam_tilt_mrad.device)
    z3 = z3[..., None] * beam_tilt_mrad / 3.0  # (..., 2): Z_3^1, Z_3^-1 coefficients
    zero = torch.zeros_like(z3[..., 0])
    # Z_3^±1 = (3ρ² − 2) ρ·(cos, sin)φ; the −2ρ part is cancelled with Z_1^±1.
    return torch.stack([2 * z3[..., 1], 2 * z3[..., 0], zero, z3[..., 1], z3[..., 0], zero], dim=-1)


def apply_magnification(k_xy: torch.Tensor, mag_matrix: torch.Tensor) -> torch.Tensor:
    """True frequency ``M k`` of a nominal frequency ``k`` (RELION ``rlnMagMat``).

    Parameters
    ----------
    k_xy:
        ``(..., 2)`` nominal frequencies (x, y).
    mag_matrix:
        ``(..., 2, 2)`` matrix ``[[M00, M01], [M10, M11]]``, broadcastable to ``k_xy``.

    Returns
    -------
    torch.Tensor
        ``(..., 2)``.
    """
    return (mag_matrix @ k_xy[..., None])[..., 0]


def magnification_matrix_from_warp(
    pixel_size_a: torch.Tensor | float,
    pixel_size_delta_a: torch.Tensor | float,
    pixel_size_angle_deg: torch.Tensor | float,
) -> torch.Tensor:
    """Anisotropic-magnification matrix ``M`` from Warp's ``PixelSize``/``PixelSizeDelta``/
    ``PixelSizeAngle``.

    The pixel size along the direction at ``PixelSizeAngle`` (from +x towards +y) is
    ``PixelSize + PixelSizeDelta/2`` and ``PixelSize − PixelSizeDelta/2`` perpendicular to it
    (the same half-difference convention as Warp's ``DefocusDelta``).  A frequency computed
    with the nominal ``PixelSize`` is scaled by ``PixelSize / p_direction`` along each axis:
    ``M = R diag(p/p₊, p/p₋) Rᵀ``.  This is derived from the definition and not yet checked
    against a Warp output.

    Returns
    -------
    torch.Tensor
        ``(..., 2, 2)``.
    """
    p = torch.as_tensor(pixel_size_a)
    delta = torch.as_tensor(pixel_size_delta_a, dtype=p.dtype, device=p.device)
    angle = torch.deg2rad(torch.as_tensor(pixel_size_angle_deg, dtype=p.dtype, device=p.device))
    s_major = p / (p + delta / 2)
    s_minor = p / (p - delta / 2)
    c, s = torch.cos(angle), torch.sin(angle)
    m00 = s_major * c * c + s_minor * s * s
    m11 = s_major * s * s + s_minor * c * c
    m01 = (s_major - s_minor) * c * s
    return torch.stack([torch.stack([m00, m01], -1), torch.stack([m01, m11], -1)], -2)
