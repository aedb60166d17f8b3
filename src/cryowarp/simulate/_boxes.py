"""Particles rendered in boxes: how far the CTF spreads their signal, and adding the boxes
into an image.  Shared by the frame-series and tilt-series renderers."""

from __future__ import annotations

import torch

from cryowarp.core.electron import electron_wavelength_a

__all__ = ["ctf_delocalisation_a", "paste_boxes"]


def ctf_delocalisation_a(
    defocus_a: float, *, pixel_size_a: float, voltage_kv: float, cs_mm: float
) -> float:
    """Distance (Å) by which the CTF moves signal at Nyquist: ``λ Δz k + Cs λ³ k³`` with
    ``k = 1 / (2 · pixel_size_a)`` (the gradient of the aberration phase over 2π).

    A particle box padded by this on each side holds the particle's CTF-modulated image.
    """
    k = 0.5 / pixel_size_a
    wavelength = electron_wavelength_a(voltage_kv)
    return wavelength * defocus_a * k + cs_mm * 1e7 * wavelength**3 * k**3


def paste_boxes(
    image: torch.Tensor,  # (h, w), modified in place
    boxes: torch.Tensor,  # (n, b, b)
    centres_px: torch.Tensor,  # (n, 2) whole pixels (x, y) where box index b//2 lands
) -> None:
    """Add ``boxes`` into ``image``, clipped at its edges, one box after the other (the
    same sums in the same order on every device)."""
    h, w = image.shape
    b = boxes.shape[-1]
    corners = (centres_px - b // 2).to(torch.int64).tolist()
    for box, (x0, y0) in zip(boxes, corners, strict=True):
        xa, ya = max(x0, 0), max(y0, 0)
        xb, yb = min(x0 + b, w), min(y0 + b, h)
        if xa < xb and ya < yb:
            image[ya:yb, xa:xb] += box[ya - y0 : yb - y0, xa - x0 : xb - x0]
