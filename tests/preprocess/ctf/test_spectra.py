"""Patch power spectra: layout, patch positions, centred ↔ rfft."""

from __future__ import annotations

import math

import torch

from cryowarp.preprocess.ctf.spectra import (
    centred_full_spectrum,
    patch_power_spectra,
    patch_starts_px,
    rfft_spectrum_from_centred,
)


def test_patches_cover_the_image_edge_to_edge() -> None:
    assert patch_starts_px(1000, 256, 0.5) == [0, 124, 248, 372, 496, 620, 744]
    assert patch_starts_px(200, 256, 0.5) == [0]


def test_cosine_peaks_at_its_frequency_and_centres_are_in_angstrom(device: torch.device) -> None:
    y, x = torch.meshgrid(torch.arange(256.0), torch.arange(384.0), indexing="ij")
    image = torch.cos(2 * math.pi * (x * 8 / 128 + y * 3 / 128)).to(device)  # (8, 3) cycles/128 px
    spectra = patch_power_spectra(image, window_size_px=128, overlap=0.5, pixel_size_a=2.0)
    assert spectra.patches_xy == (5, 3)
    assert spectra.spectra.shape == (15, 128, 65)
    peak = int(torch.argmax(spectra.spectra[0]))
    assert divmod(peak, 65) == (3, 8)  # row ky = 3, column kx = 8
    assert torch.allclose(
        spectra.centres_xy_a[0].cpu(), torch.tensor([127.0, 127.0], dtype=torch.float64)
    )


def test_centred_and_rfft_layouts_round_trip(device: torch.device) -> None:
    spectrum = torch.rand(64, 33, device=device, dtype=torch.float64)
    full = centred_full_spectrum(spectrum)
    assert full.shape == (64, 64)
    assert full[32, 32] == spectrum[0, 0]  # DC at s//2
    assert full[32 + 5, 32 - 7] == spectrum[-5, 7]  # P(-k) = P(k)
    assert torch.equal(rfft_spectrum_from_centred(full), spectrum)
