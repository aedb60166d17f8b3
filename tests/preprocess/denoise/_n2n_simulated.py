"""Simulated odd/even pairs with a known clean image, for the Noise2Noise tests."""

from __future__ import annotations

import torch


def smooth_image(shape: tuple[int, int], *, sigma_px: float, seed: int) -> torch.Tensor:
    """Gaussian-filtered white noise with zero mean and unit standard deviation, ``(h, w)``."""
    generator = torch.Generator().manual_seed(seed)
    noise = torch.randn(shape, generator=generator, dtype=torch.float64)
    fy = torch.fft.fftfreq(shape[0], dtype=torch.float64)[:, None]
    fx = torch.fft.rfftfreq(shape[1], dtype=torch.float64)[None, :]
    envelope = torch.exp(-2 * (torch.pi * sigma_px) ** 2 * (fy**2 + fx**2))
    image = torch.fft.irfft2(torch.fft.rfft2(noise) * envelope, s=shape)
    return ((image - image.mean()) / image.std()).to(torch.float32)


def noisy_pair(
    clean: torch.Tensor, *, counts: float, contrast: float, seed: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Odd and even halves: independent Poisson counts of ``counts · (1 + contrast · clean)``."""
    generator = torch.Generator().manual_seed(seed)
    rate = (counts * (1 + contrast * clean)).clamp_min(0).to(torch.float64)
    odd = torch.poisson(rate, generator=generator).to(torch.float32)
    even = torch.poisson(rate, generator=generator).to(torch.float32)
    return odd, even


def correlation(a: torch.Tensor, b: torch.Tensor) -> float:
    """Pearson correlation of two images."""
    a = a.double().flatten() - a.double().mean()
    b = b.double().flatten() - b.double().mean()
    return float((a @ b) / (a.norm() * b.norm()))
