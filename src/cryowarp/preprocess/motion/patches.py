"""Patches of a frame series in Fourier space, prepared for the motion fit.

The frames (at the alignment pixel size) are cut into square patches on a regular layout
with a chosen overlap; each patch of each frame loses its mean, is tapered by a raised-cosine
edge, Fourier transformed (rfft, docs/conventions.md §3) and weighted by the band of spatial
frequencies the fit uses (``1/min_resolution_a … 1/max_resolution_a``, soft edges) times
the B-factor envelope ``exp(B k² / 4)``. The fit then only needs phase ramps.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from cryowarp.core.filters import raised_cosine_band
from cryowarp.core.fourier_grids import frequency_magnitude
from cryowarp.core.masks import raised_cosine_edge
from cryowarp.core.resize import fourier_crop_or_pad

__all__ = [
    "PatchSpectra",
    "band_weights",
    "edge_taper",
    "patch_layout",
    "patch_spectra",
    "sparse_patch_indices",
]


@dataclass(frozen=True)
class PatchSpectra:
    """Weighted spectra of every patch of every frame.

    Attributes
    ----------
    spectra:
        ``(p, n, s, s//2 + 1)`` complex, band-limited and B-factor weighted.
    centres_a:
        ``(p, 2)`` patch centres (x, y) in Å from the centre of pixel (0, 0).
    size_px:
        Patch edge ``s`` in alignment pixels.
    pixel_size_a:
        Alignment pixel size in Å.
    offsets_px:
        ``(p, n, 2)`` where each patch of each frame was cut relative to its nominal corner
        (whole pixels, x and y); the content shift left to fit is the shift minus this.
    """

    spectra: torch.Tensor  # (p, n, s, s//2+1)
    centres_a: torch.Tensor  # (p, 2)
    size_px: int
    pixel_size_a: float
    offsets_px: torch.Tensor  # (p, n, 2)

    @property
    def n_patches(self) -> int:
        """Number of patches ``p``."""
        return int(self.spectra.shape[0])

    def subset(self, indices: torch.Tensor) -> PatchSpectra:
        """The patches at ``indices`` only."""
        indices = indices.to(self.spectra.device)
        return PatchSpectra(
            self.spectra[indices],
            self.centres_a[indices],
            self.size_px,
            self.pixel_size_a,
            self.offsets_px[indices],
        )

    def low_pass(self, factor: int) -> PatchSpectra:
        """The same patches with only the lowest ``1/factor`` of the frequencies on each axis:
        a Fourier crop, i.e. patches of ``size/factor`` pixels at ``factor ×`` the pixel size.
        """
        if factor == 1:
            return self
        size = self.size_px // factor
        size -= size % 2
        cropped = fourier_crop_or_pad(
            self.spectra, shape=(self.size_px, self.size_px), new_shape=(size, size)
        )
        scale = self.size_px / size
        return PatchSpectra(
            cropped, self.centres_a, size, self.pixel_size_a * scale, self.offsets_px / scale
        )


def patch_layout(
    frame_shape: tuple[int, int],
    *,
    patch_size_px: int,
    overlap: float,
) -> tuple[int, torch.Tensor]:
    """Patch edge (even, clipped to the frame) and ``(p, 2)`` top-left corners (x, y) in px.

    Patches are spread evenly so that neighbours overlap by at least ``overlap`` and the
    outermost ones touch the frame edges.
    """
    h, w = frame_shape
    size = min(int(patch_size_px), h, w)
    size -= size % 2
    if size < 8:
        raise ValueError(f"patches of {size} px are too small (frame {frame_shape})")
    step = size * (1.0 - overlap)
    starts = []
    for length in (w, h):
        n = 1 if length == size else math.ceil((length - size) / max(step, 1.0)) + 1
        starts.append(torch.linspace(0, length - size, n).round().long())
    ys, xs = torch.meshgrid(starts[1], starts[0], indexing="ij")
    return size, torch.stack([xs.flatten(), ys.flatten()], dim=-1)


def sparse_patch_indices(
    frame_shape: tuple[int, int], *, patch_size_px: int, overlap: float
) -> torch.Tensor:  # (q,)
    """Indices into :func:`patch_layout`'s patches of a subset that barely overlaps: every
    ``round(1 / (1 − overlap))``-th patch along each axis (the last one always kept)."""
    _, corners = patch_layout(frame_shape, patch_size_px=patch_size_px, overlap=overlap)
    stride = max(1, round(1 / (1 - overlap)))
    keep = []
    for axis in (0, 1):
        values = torch.unique(corners[:, axis])
        chosen = values[::stride]
        if chosen[-1] != values[-1]:
            chosen = torch.cat([chosen, values[-1:]])
        keep.append(torch.isin(corners[:, axis], chosen))
    return torch.nonzero(keep[0] & keep[1]).flatten()


def edge_taper(
    shape: tuple[int, int], *, device: torch.device, dtype: torch.dtype = torch.float32
) -> torch.Tensor:  # (h, w)
    """Separable raised-cosine taper: flat centre, cosine fall-off over 1/8 of each edge."""
    axes = []
    for size in shape:
        edge = max(2.0, size / 8)
        i = torch.arange(size, device=device, dtype=dtype)
        distance_outside = (edge - torch.minimum(i + 0.5, size - 0.5 - i)).clamp(min=0)
        axes.append(raised_cosine_edge(distance_outside, edge))
    return axes[0][:, None] * axes[1][None, :]


def band_weights(
    shape: tuple[int, int],
    *,
    pixel_size_a: float,
    min_resolution_a: float,
    max_resolution_a: float,
    bfactor_a2: float,
    device: torch.device,
) -> torch.Tensor:  # (s, s//2+1) float32
    """Soft band ``1/min_resolution_a … 1/max_resolution_a`` times ``exp(B k²/4)`` on the
    rfft grid of ``shape`` (frequencies beyond Nyquist are dropped)."""
    k_px = frequency_magnitude(shape, device=device, dtype=torch.float64)
    band = raised_cosine_band(
        k_px,
        highpass_cycles_px=pixel_size_a / min_resolution_a,
        lowpass_cycles_px=min(pixel_size_a / max_resolution_a, 0.5),
        edge_width_cycles_px=2.0 / min(shape),  # two Fourier pixels of soft edge
    )
    k_a = k_px / pixel_size_a
    envelope = torch.exp(bfactor_a2 * k_a.square() / 4)
    return (band * envelope).float()


def patch_spectra(
    frames: torch.Tensor,  # (n, h, w) at the alignment pixel size
    *,
    pixel_size_a: float,
    patch_size_px: int,
    overlap: float,
    min_resolution_a: float,
    max_resolution_a: float,
    bfactor_a2: float,
    frame_offsets_px: torch.Tensor | None = None,  # (n, 2) whole pixels (x, y)
) -> PatchSpectra:
    """Band-limited, B-factor weighted spectra of the patches of every frame.

    With ``frame_offsets_px`` each frame's patches are cut where its content has moved to
    (the nominal corner plus the frame's offset, clamped to the frame): the windows then
    cover the same specimen area in every frame, which removes the pull of a fixed window
    towards zero shift (about 1.6 % of the drift otherwise). The fit subtracts the offsets
    (:attr:`PatchSpectra.offsets_px`).

    Parameters
    ----------
    frames:
        ``(n, h, w)`` frames at the alignment pixel size.
    pixel_size_a:
        Their pixel size in Å.
    patch_size_px:
        Requested patch edge in (alignment) pixels; clipped to the frame, made even.
    overlap:
        Fraction by which neighbouring patches overlap (at least).
    min_resolution_a, max_resolution_a:
        The band of the fit in Å (frequencies beyond Nyquist are dropped).
    bfactor_a2:
        B-factor (Å², ≤ 0) of the envelope ``exp(B k²/4)``.
    frame_offsets_px:
        ``(n, 2)`` whole-pixel shift (x, y) of every frame's content, e.g. a rounded first
        estimate of the global track; zero by default.

    Returns
    -------
    PatchSpectra
    """
    n, h, w = frames.shape
    size, corners = patch_layout((h, w), patch_size_px=patch_size_px, overlap=overlap)
    device = frames.device
    taper = edge_taper((size, size), device=device, dtype=frames.dtype)
    weights = band_weights(
        (size, size),
        pixel_size_a=pixel_size_a,
        min_resolution_a=min_resolution_a,
        max_resolution_a=max_resolution_a,
        bfactor_a2=bfactor_a2,
        device=device,
    )
    if frame_offsets_px is None:
        frame_offsets_px = torch.zeros(n, 2, dtype=torch.long)
    offsets = frame_offsets_px.round().long().cpu()
    steps = torch.arange(size)
    frame_index = torch.arange(n, device=device)[:, None, None]
    spectra, used = [], []
    for x0, y0 in corners.tolist():
        xs = (x0 + offsets[:, 0]).clamp(0, w - size)  # (n,) corners actually used
        ys = (y0 + offsets[:, 1]).clamp(0, h - size)
        rows = (ys[:, None] + steps).to(device)[:, :, None]  # (n, s, 1)
        cols = (xs[:, None] + steps).to(device)[:, None, :]  # (n, 1, s)
        patch = frames[frame_index, rows, cols]  # (n, s, s)
        patch = patch - (patch * taper).sum((-2, -1), keepdim=True) / taper.sum()
        spectra.append(torch.fft.rfft2(patch * taper) * weights)
        used.append(torch.stack([xs - x0, ys - y0], dim=-1))
    centres_px = corners.to(torch.float64) + (size - 1) / 2
    return PatchSpectra(
        spectra=torch.stack(spectra),
        centres_a=(centres_px * pixel_size_a).to(device),
        size_px=size,
        pixel_size_a=float(pixel_size_a),
        offsets_px=torch.stack(used).to(device=device, dtype=frames.dtype),
    )
