"""A robust starting point for the motion fit: whole-frame cross-correlation.

Each frame is cross-correlated with the sum of all the others (band-limited, B-factor
weighted, edges tapered); the peak, refined by a parabola through its neighbours, gives the
frame's global shift. Four rounds, each against the sum aligned by the previous one. The
L-BFGS fit starts from this track, so that large drift does not trap it in a side minimum of
the correlation.
"""

from __future__ import annotations

import torch

from cryowarp.core.shift import shift_phase_ramp
from cryowarp.preprocess.motion.patches import band_weights, edge_taper

__all__ = ["initial_global_track_a"]


def _parabolic_offset(
    minus: torch.Tensor, centre: torch.Tensor, plus: torch.Tensor
) -> torch.Tensor:
    denominator = minus - 2 * centre + plus
    safe = torch.where(denominator.abs() > 1e-12, denominator, torch.ones_like(denominator))
    offset = torch.where(denominator.abs() > 1e-12, 0.5 * (minus - plus) / safe, 0 * centre)
    return offset.clamp(-0.5, 0.5)


def _peaks_px(cc: torch.Tensor) -> torch.Tensor:  # (n, h, w) -> (n, 2) (x, y), signed
    n, h, w = cc.shape
    flat = cc.reshape(n, -1).argmax(dim=1)
    iy, ix = flat // w, flat % w
    rows = torch.arange(n, device=cc.device)
    dx = _parabolic_offset(cc[rows, iy, (ix - 1) % w], cc[rows, iy, ix], cc[rows, iy, (ix + 1) % w])
    dy = _parabolic_offset(cc[rows, (iy - 1) % h, ix], cc[rows, iy, ix], cc[rows, (iy + 1) % h, ix])
    x = torch.where(ix > w // 2, ix - w, ix).to(cc.dtype) + dx
    y = torch.where(iy > h // 2, iy - h, iy).to(cc.dtype) + dy
    return torch.stack([x, y], dim=-1)


def initial_global_track_a(
    frames: torch.Tensor,  # (n, h, w) at the alignment pixel size
    *,
    pixel_size_a: float,
    min_resolution_a: float,
    max_resolution_a: float,
    bfactor_a2: float,
    rounds: int = 4,
) -> torch.Tensor:  # (n, 2) Å, relative to frame 0
    """Global shift (Å, where the content moved to, conventions §4) of every frame."""
    n, h, w = frames.shape
    taper = edge_taper((h, w), device=frames.device, dtype=frames.dtype)
    centred = frames - (frames * taper).sum((-2, -1), keepdim=True) / taper.sum()
    weights = band_weights(
        (h, w),
        pixel_size_a=pixel_size_a,
        min_resolution_a=min_resolution_a,
        max_resolution_a=max_resolution_a,
        bfactor_a2=bfactor_a2,
        device=frames.device,
    )
    spectra = torch.fft.rfft2(centred * taper) * weights  # (n, h, w//2+1)
    shifts_px = torch.zeros(n, 2, dtype=frames.dtype, device=frames.device)
    for _ in range(rounds):
        aligned = spectra * shift_phase_ramp((h, w), -shifts_px)
        total = aligned.sum(0, keepdim=True)
        others = total - aligned  # (n, h, w//2+1), each frame's reference
        # Correlate the unaligned frame with its aligned reference: the peak is the shift.
        cc = torch.fft.irfft2(spectra * others.conj(), s=(h, w))
        shifts_px = _peaks_px(cc)
    return (shifts_px - shifts_px[:1]) * pixel_size_a
