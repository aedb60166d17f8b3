"""``CTF²`` at fixed frequencies for many defoci at once, the inner loop of the fits.

The phase is that of :mod:`cryowarp.core.ctf` (docs/conventions.md §6) restricted to what CTF
estimation fits: ``χ = π λ (Δz̄ k² + a_x (kx² − ky²) + a_y 2 kx ky) − (π/2) Cs λ³ k⁴ + φ_pp +
arcsin A`` (no B-factor, magnification or Zernike terms). The frequency terms are computed once
per set of frequencies, so a batch of models costs a few element-wise operations; gradients
flow to the defocus, astigmatism and phase shift.
"""

from __future__ import annotations

import math

import torch

from cryowarp.core.electron import electron_wavelength_a
from cryowarp.preprocess.ctf.search1d import Optics

__all__ = ["CtfSquaredModel"]


class CtfSquaredModel:
    """``CTF²`` of the optics at frequencies ``k_xy_per_a`` ``(*G, 2)`` (Å⁻¹).

    Parameters
    ----------
    k_xy_per_a:
        Frequencies; the model is evaluated in their dtype and on their device.
    optics:
        Imaging constants.
    """

    def __init__(self, k_xy_per_a: torch.Tensor, optics: Optics) -> None:
        k = k_xy_per_a.to(torch.float64)
        kx, ky = k[..., 0], k[..., 1]
        k2 = kx * kx + ky * ky
        wavelength_a = electron_wavelength_a(optics.voltage_kv)
        scale = math.pi * wavelength_a * 1e4  # rad per (µm · Å⁻²)
        spherical = 0.5 * math.pi * optics.cs_mm * 1e7 * wavelength_a**3
        amplitude = math.asin(optics.amplitude_contrast)
        dtype = k_xy_per_a.dtype
        self.k2 = (scale * k2).to(dtype)  # rad per µm of defocus
        self.cos2 = (scale * (kx * kx - ky * ky)).to(dtype)
        self.sin2 = (scale * 2 * kx * ky).to(dtype)
        self.constant = (amplitude - spherical * k2 * k2).to(dtype)

    def __call__(
        self,
        defocus_um: torch.Tensor,  # (..., p)
        astig_x_um: torch.Tensor | float = 0.0,  # broadcast to (..., 1)
        astig_y_um: torch.Tensor | float = 0.0,
        phase_shift_rad: torch.Tensor | float = 0.0,
    ) -> torch.Tensor:  # (..., p, *G)
        """``CTF²`` for every defocus (µm); astigmatism ``(δ cos 2θ, δ sin 2θ)`` (µm) and phase
        shift (rad) broadcast against ``defocus_um``'s batch."""
        extra = (1,) * self.k2.ndim
        defocus = defocus_um.reshape(*defocus_um.shape, *extra)
        chi = defocus * self.k2 + self.constant
        chi = chi + _expand(astig_x_um, defocus_um, extra) * self.cos2
        chi = chi + _expand(astig_y_um, defocus_um, extra) * self.sin2
        chi = chi + _expand(phase_shift_rad, defocus_um, extra)
        return torch.sin(chi).square()


def _expand(
    value: torch.Tensor | float, like: torch.Tensor, extra: tuple[int, ...]
) -> torch.Tensor | float:
    """A scalar stays a scalar; a tensor ``(...)`` or ``(..., 1)`` gains the grid dims."""
    if isinstance(value, torch.Tensor):
        return value.reshape(*value.shape, *extra).to(like.dtype)
    return value
