"""Real-space deformation: direction, constant fields equal Fourier shifts, smooth fields."""

from __future__ import annotations

import torch

from cryowarp.core.deform import deform_image, field_node_positions_px
from cryowarp.core.shift import shift_image


def _smooth_image(n: int, generator: torch.Generator) -> torch.Tensor:
    noise = torch.randn(n, n, generator=generator, dtype=torch.float64)
    k = torch.fft.fftfreq(n, dtype=torch.float64)
    spectrum = torch.fft.fft2(noise) * torch.exp(-((k[:, None] ** 2 + k[None] ** 2) * 800))
    return torch.fft.ifft2(spectrum).real


def test_constant_field_matches_a_fourier_shift(device: str) -> None:
    image = _smooth_image(64, torch.Generator().manual_seed(0)).to(device)
    inner = (slice(8, -8), slice(8, -8))  # away from the clamped border
    errors = []
    for values in ([2.0, -3.0], [2.3, -1.6]):
        shift = torch.tensor(values, dtype=torch.float64, device=device)
        deformed = deform_image(image, shift.expand(3, 3, 2))
        reference = shift_image(image, shift)
        errors.append(float((deformed[inner] - reference[inner]).abs().max() / image.abs().max()))
    assert errors[0] < 1e-12  # whole pixels: exact
    assert errors[1] < 1e-2  # sub-pixel: bicubic convolution error (0.4 % for this spectrum)


def test_a_delta_moves_by_the_local_displacement(device: str) -> None:
    # A blob at (20, 40) under a field whose displacement there is (+3, −2): it lands at (23, 38).
    n = 64
    ys, xs = torch.meshgrid(torch.arange(n), torch.arange(n), indexing="ij")
    blob = torch.exp(-((xs - 20.0) ** 2 + (ys - 40.0) ** 2) / 8).double().to(device)
    nodes = field_node_positions_px((n, n), (5, 5), dtype=torch.float64, device=device)
    field = torch.stack([3 + 0 * nodes[..., 0], -2 + 0.01 * nodes[..., 0]], dim=-1)
    out = deform_image(blob, field)
    weights = out.clamp(min=0)
    cx = float((weights * xs.to(device)).sum() / weights.sum())
    cy = float((weights * ys.to(device)).sum() / weights.sum())
    assert abs(cx - 23.0) < 0.05
    assert abs(cy - (40.0 - 2 + 0.01 * 23.0)) < 0.1
