"""Power spectra of overlapping patches of a micrograph or of a movie's frames.

Spectra are in the rfft layout of docs/conventions.md §3 (DC at index 0, not centred);
:func:`centred_full_spectrum` gives the display layout (DC at ``s // 2``). Patch centres are in Å
from the centre of pixel (0, 0) (§1, §4).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from cryowarp.core.fourier import full_to_rfft, rfft_to_full
from cryowarp.errors import DimensionMismatchError

__all__ = [
    "PatchPowerSpectra",
    "centred_full_spectrum",
    "patch_power_spectra",
    "patch_starts_px",
    "rfft_spectrum_from_centred",
]


_CHUNK_ELEMENTS = 1 << 24  # pixels of patches transformed at once (64 MB in float32)


@dataclass(frozen=True, eq=False)
class PatchPowerSpectra:
    """Power spectra of the patches of one micrograph.

    Attributes
    ----------
    spectra:
        ``(p, s, s//2 + 1)`` mean power per patch (rfft layout), summed over frames.
    centres_xy_a:
        ``(p, 2)`` patch centres (x, y) in Å from the centre of pixel (0, 0).
    window_size_px:
        Patch side ``s`` in pixels.
    pixel_size_a:
        Pixel size in Å.
    image_size_xy_a:
        Field of view ``(width, height)`` in Å.
    patches_xy:
        Number of patches along (x, y).
    """

    spectra: torch.Tensor  # (p, s, s//2+1)
    centres_xy_a: torch.Tensor  # (p, 2)
    window_size_px: int
    pixel_size_a: float
    image_size_xy_a: tuple[float, float]
    patches_xy: tuple[int, int]


def patch_starts_px(length_px: int, window_px: int, overlap: float) -> list[int]:
    """First pixel of each patch along an axis of ``length_px``: patches of ``window_px`` with
    at least the given ``overlap`` (fraction), spread evenly from edge to edge."""
    if window_px >= length_px:
        return [0]
    step = window_px * (1.0 - overlap)
    count = math.ceil((length_px - window_px) / max(step, 1.0)) + 1
    span = length_px - window_px
    return [round(i * span / (count - 1)) for i in range(count)]


def patch_power_spectra(
    image_or_frames: torch.Tensor,  # (h, w) or (n, h, w)
    *,
    window_size_px: int,
    overlap: float,
    pixel_size_a: float,
) -> PatchPowerSpectra:
    """Power spectra of overlapping square patches.

    Each patch has its mean and linear ramp removed and a raised-cosine edge (``s/16`` px)
    applied before ``|rfft|²``; spectra of frames are summed over the frames (immune to
    motion between frames). The window is clipped to the largest even size that fits.
    Computed in float32 (float64 input stays float64), a row of patches of a chunk of frames
    at a time.

    Parameters
    ----------
    image_or_frames:
        A micrograph ``(h, w)`` or frames ``(n, h, w)``.
    window_size_px:
        Patch side in pixels (even).
    overlap:
        Overlap of neighbouring patches (fraction, ``0 ≤ overlap < 1``).
    pixel_size_a:
        Pixel size in Å.

    Returns
    -------
    PatchPowerSpectra
        Spectra ``(p, s, s//2+1)`` in (counts·px)², patches ordered y-major (x fastest).
    """
    frames = image_or_frames if image_or_frames.ndim == 3 else image_or_frames[None]
    if frames.ndim != 3:
        raise DimensionMismatchError(
            None,
            f"expected an image (h, w) or frames (n, h, w), got {tuple(image_or_frames.shape)}",
        )
    dtype = torch.float64 if frames.dtype == torch.float64 else torch.float32
    device = frames.device
    h, w = frames.shape[-2:]
    s = min(window_size_px, h - h % 2, w - w % 2)
    xs, ys = patch_starts_px(w, s, overlap), patch_starts_px(h, s, overlap)
    taper = _taper(s, device=device, dtype=dtype)
    ramp = _ramp_basis(s, device=device, dtype=dtype)
    columns = (torch.tensor(xs, device=device)[:, None] + torch.arange(s, device=device)).flatten()
    per_chunk = max(1, _CHUNK_ELEMENTS // (len(xs) * s * s))
    rows = []
    for y0 in ys:
        power = torch.zeros(len(xs), s, s // 2 + 1, dtype=dtype, device=device)
        for f0 in range(0, frames.shape[0], per_chunk):
            strip = frames[f0 : f0 + per_chunk, y0 : y0 + s].to(dtype)  # (f, s, w)
            patches = strip[..., columns].reshape(-1, s, len(xs), s).transpose(1, 2)
            patches = _remove_plane(patches.reshape(-1, s, s), ramp) * taper  # (f·px, s, s)
            spectra = torch.fft.rfft2(patches).abs().square()
            power += spectra.reshape(-1, len(xs), s, s // 2 + 1).sum(0)
        rows.append(power)
    centres = [
        ((x0 + s / 2 - 0.5) * pixel_size_a, (y0 + s / 2 - 0.5) * pixel_size_a)
        for y0 in ys
        for x0 in xs
    ]
    return PatchPowerSpectra(
        spectra=torch.cat(rows),
        centres_xy_a=torch.tensor(centres, dtype=torch.float64, device=device),
        window_size_px=s,
        pixel_size_a=pixel_size_a,
        image_size_xy_a=(w * pixel_size_a, h * pixel_size_a),
        patches_xy=(len(xs), len(ys)),
    )


def centred_full_spectrum(spectrum: torch.Tensor) -> torch.Tensor:
    """``(..., s, s//2+1)`` rfft power spectrum → ``(..., s, s)`` with DC at ``(s//2, s//2)``
    (the layout MotionCor2 and RELION write)."""
    s = spectrum.shape[-2]
    return rfft_to_full(spectrum, shape=(s, s), fftshifted=True)


def rfft_spectrum_from_centred(spectrum: torch.Tensor) -> torch.Tensor:
    """``(..., s, s)`` centred power spectrum (DC at ``s//2``) → ``(..., s, s//2+1)`` rfft
    layout; inverse of :func:`centred_full_spectrum`."""
    if spectrum.shape[-1] != spectrum.shape[-2]:
        raise DimensionMismatchError(
            None, f"a centred power spectrum must be square, got {tuple(spectrum.shape)}"
        )
    return full_to_rfft(spectrum, ndim=2, fftshifted=True)


def _taper(s: int, *, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """``(s, s)`` separable raised-cosine edge of width ``s/16``."""
    edge = max(s // 16, 1)
    i = torch.arange(s, device=device, dtype=dtype)
    distance = torch.minimum(i, s - 1 - i)
    profile = torch.where(
        distance < edge, 0.5 * (1 - torch.cos(math.pi * (distance + 0.5) / edge)), 1.0
    )
    return profile[:, None] * profile[None, :]


def _ramp_basis(s: int, *, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """``(3, s*s)`` orthonormal basis of constant, x-ramp and y-ramp."""
    c = torch.linspace(-1.0, 1.0, s, device=device, dtype=dtype)
    y, x = torch.meshgrid(c, c, indexing="ij")
    basis = torch.stack([torch.ones_like(x), x, y]).reshape(3, -1)
    normalised: torch.Tensor = basis / basis.norm(dim=-1, keepdim=True)  # orthogonal already
    return normalised


def _remove_plane(patch: torch.Tensor, basis: torch.Tensor) -> torch.Tensor:
    """Subtract the least-squares plane from each ``(n, s, s)`` patch."""
    flat = patch.reshape(patch.shape[0], -1)
    flat = flat - (flat @ basis.T) @ basis
    return flat.reshape(patch.shape)
