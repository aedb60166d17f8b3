"""Synthetic power spectra with a known CTF: ``P = B(k) + E(k)·CTF²`` times averaging noise."""

from __future__ import annotations

import math

import torch

from cryowarp.core.ctf import ctf_2d
from cryowarp.core.ctf_params import CTFParams
from cryowarp.core.fourier_grids import frequency_magnitude


def background_envelope(k_per_a: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """A falling background and a weaker, faster falling envelope (arbitrary units)."""
    background = 1.0 + 1.5 / (1 + (k_per_a / 0.1) ** 2)
    envelope = 0.6 * torch.exp(-((k_per_a / 0.25) ** 2))
    return background, envelope


def synthetic_spectra(
    params: CTFParams,
    size_px: int,
    *,
    n_averaged: int = 50,
    ring_limit_per_a: float | None = None,
    seed: int = 0,
) -> torch.Tensor:
    """``(*B, s, s//2+1)`` power spectra of batch ``params``; the noise is that of the mean of
    ``n_averaged`` exponentially distributed periodogram samples; rings are cut off (envelope
    zero) above ``ring_limit_per_a`` when given."""
    k = (
        frequency_magnitude((size_px, size_px), dtype=torch.float64, device=params.device)
        / params.pixel_size_a.reshape(-1)[0]
    )
    background, envelope = background_envelope(k)
    if ring_limit_per_a is not None:
        envelope = envelope * (k <= ring_limit_per_a)
    expected = background + envelope * ctf_2d(params, (size_px, size_px)).square()
    generator = torch.Generator(device="cpu").manual_seed(seed)
    noise = torch.zeros(expected.shape, dtype=torch.float64)
    for _ in range(n_averaged):
        noise += -torch.log(torch.rand(expected.shape, generator=generator, dtype=torch.float64))
    return expected * (noise / n_averaged).to(expected.device)


def optics_params(
    *,
    pixel_size_a: float,
    defocus_um: torch.Tensor | float,
    astig_um: float = 0.0,
    angle_deg: float = 0.0,
    phase_shift_deg: float = 0.0,
    device: torch.device | str = "cpu",
) -> CTFParams:
    two_theta = math.radians(2 * angle_deg)
    return CTFParams.create(
        pixel_size_a=pixel_size_a,
        defocus_um=torch.as_tensor(defocus_um, dtype=torch.float64, device=device),
        astig_x_um=astig_um * math.cos(two_theta),
        astig_y_um=astig_um * math.sin(two_theta),
        phase_shift_rad=math.radians(phase_shift_deg),
        device=device,
        dtype=torch.float64,
    )
