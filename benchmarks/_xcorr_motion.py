"""Baseline for the motion benchmark: classic iterative global alignment by cross-correlation.

The idea of Li et al. (2013, MotionCorr) and Unblur (Grant & Grigorieff 2015): every frame is
cross-correlated with the sum of all the *other* aligned frames, the peak (refined to
sub-pixel precision by a parabola through its neighbours along x and along y) gives that
frame's residual shift, the shifts are updated and the sum rebuilt, for a few iterations.

Frames are band-limited and weighted like our fit (``MotionSettings``: 500–7 Å, B = −500 Å²):
each frame's spectrum is Fourier-cropped to ``oversampling`` × the band limit (so the
correlation maps are small), multiplied by a raised-cosine band-pass and ``exp(B k²/4)``.
The edges of the frames are tapered first so that the static frame border does not pull the
peaks towards zero shift.

Shifts follow docs/conventions.md §4: the result is where the content has moved to, in Å,
relative to frame 0, as a :class:`~cryowarp.preprocess.motion.model.FrameMotion` with one
global temporal node per frame and no local motion.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from cryowarp.core.filters import raised_cosine_band
from cryowarp.core.fourier_grids import frequency_grid
from cryowarp.core.resize import fourier_crop_or_pad
from cryowarp.core.shift import shift_phase_ramp
from cryowarp.preprocess.motion.model import FrameMotion

__all__ = ["xcorr_global_motion"]

ReadFrames = Callable[[int, int], torch.Tensor]  # (start, stop) -> (stop - start, h, w)


def xcorr_global_motion(
    frames: torch.Tensor | ReadFrames,  # (n, h, w) or a reader of frame ranges
    *,
    pixel_size_a: float,
    n_frames: int | None = None,
    min_resolution_a: float = 500.0,
    max_resolution_a: float = 7.0,
    bfactor_a2: float = -500.0,
    n_iterations: int = 6,
    max_shift_a: float | None = None,
    oversampling: float = 2.0,
    frames_per_chunk: int = 4,
    tolerance_px: float = 0.005,
) -> FrameMotion:
    """Global shift of every frame by iterative cross-correlation with the other frames' sum.

    Parameters
    ----------
    frames:
        ``(n, h, w)`` gain-corrected frames, or a callable ``(start, stop) -> (k, h, w)``
        tensor reading frames ``start … stop-1`` (then ``n_frames`` is required); frames are
        read ``frames_per_chunk`` at a time, so a K3 movie never sits in memory at full size.
    pixel_size_a:
        Pixel size of the frames in Å.
    min_resolution_a, max_resolution_a:
        Band used for the correlation, in Å.
    bfactor_a2:
        B-factor (Å², ≤ 0) weighting the spectra by ``exp(B k²/4)``.
    n_iterations:
        Maximum number of align-and-resum rounds.
    max_shift_a:
        Largest residual shift searched in one round, in Å (default: half the field).
    oversampling:
        The correlation grid resolves ``oversampling`` × the band limit (≥ 1).
    tolerance_px:
        Stop when no frame moves by more than this (pixels of the frames).

    Returns
    -------
    FrameMotion
        One global node per frame (Å, conventions §4, frame 0 = 0), local grid 1×1×1 of zeros;
        field size ``(w, h) × pixel_size_a``.
    """
    if pixel_size_a <= 0:
        raise ValueError(f"pixel_size_a must be positive, got {pixel_size_a}")
    if max_resolution_a >= min_resolution_a:
        raise ValueError("max_resolution_a must be finer (smaller) than min_resolution_a")
    if oversampling < 1:
        raise ValueError(f"oversampling must be ≥ 1, got {oversampling}")
    if isinstance(frames, torch.Tensor):
        if frames.ndim != 3:
            raise ValueError(f"frames must be (n, h, w), got shape {tuple(frames.shape)}")
        stack = frames
        n = int(stack.shape[0])

        def read(start: int, stop: int) -> torch.Tensor:
            return stack[start:stop]
    else:
        if n_frames is None:
            raise ValueError("n_frames is required when frames is a reader")
        n, read = int(n_frames), frames
    if n < 2:
        raise ValueError(f"global alignment needs ≥ 2 frames, got {n}")

    spectra, shape, crop_shape = _cropped_spectra(
        read,
        n,
        pixel_size_a=pixel_size_a,
        band_limit_a=max_resolution_a,
        oversampling=oversampling,
        frames_per_chunk=frames_per_chunk,
    )  # (n, my, mx//2+1)
    (h, w), (my, mx) = shape, crop_shape
    scale = torch.tensor([w / mx, h / my], dtype=torch.float64, device=spectra.device)  # px/crop px
    pixel_xy_a = pixel_size_a * scale.float()
    spectra = spectra * _fit_weights(
        crop_shape,
        pixel_xy_a,
        min_resolution_a=min_resolution_a,
        max_resolution_a=max_resolution_a,
        bfactor_a2=bfactor_a2,
    )
    max_shift_crop_px = (
        min(my, mx) / 2.0 if max_shift_a is None else max_shift_a / float(pixel_xy_a.min())
    )
    shifts_px = torch.zeros(n, 2, dtype=torch.float64, device=spectra.device)  # (n, 2) x, y
    for _ in range(n_iterations):
        ramp = shift_phase_ramp(crop_shape, (-shifts_px / scale).float())  # undo each shift
        aligned = spectra * ramp
        others = aligned.sum(dim=0, keepdim=True) - aligned
        correlation = torch.fft.irfftn(others.conj() * aligned, s=crop_shape, dim=(-2, -1))
        residual = _subpixel_peaks(correlation, max_shift_px=max_shift_crop_px) * scale
        shifts_px = shifts_px + residual
        shifts_px = shifts_px - shifts_px.mean(dim=0, keepdim=True)
        if float(residual.abs().max()) < tolerance_px:
            break
    shifts_a = ((shifts_px - shifts_px[:1]) * pixel_size_a).float()  # (n, 2), frame 0 = 0
    return FrameMotion(
        shifts_a.T.contiguous(),
        torch.zeros(2, 1, 1, 1, dtype=shifts_a.dtype, device=shifts_a.device),
        (w * pixel_size_a, h * pixel_size_a),
        n,
    )


def _cropped_spectra(
    read: ReadFrames,
    n: int,
    *,
    pixel_size_a: float,
    band_limit_a: float,
    oversampling: float,
    frames_per_chunk: int,
) -> tuple[torch.Tensor, tuple[int, int], tuple[int, int]]:
    """Edge-tapered, mean-free frames → rfft spectra Fourier-cropped to the band limit."""
    spectra: list[torch.Tensor] = []
    shape: tuple[int, int] | None = None
    crop: tuple[int, int] = (0, 0)
    taper: torch.Tensor | None = None
    for start in range(0, n, frames_per_chunk):
        chunk = read(start, min(n, start + frames_per_chunk)).float()  # (k, h, w)
        if shape is None:
            h, w = int(chunk.shape[-2]), int(chunk.shape[-1])
            shape = (h, w)
            cutoff = min(0.5, oversampling * pixel_size_a / band_limit_a)  # cycles/px
            crop = (_even_size(h, cutoff), _even_size(w, cutoff))
            taper = _edge_taper(shape, device=chunk.device)
        assert taper is not None
        chunk = chunk - chunk.mean(dim=(-2, -1), keepdim=True)
        spectrum = torch.fft.rfftn(chunk * taper, dim=(-2, -1))
        spectra.append(fourier_crop_or_pad(spectrum, shape=shape, new_shape=crop))
    assert shape is not None
    return torch.cat(spectra), shape, crop


def _even_size(n: int, cutoff_cycles_px: float) -> int:
    """Smallest even size ≤ n whose Nyquist holds ``cutoff_cycles_px`` of an axis of size n."""
    return min(n, 2 * math.ceil(cutoff_cycles_px * n))


def _edge_taper(
    shape: tuple[int, int], *, device: torch.device, fraction: float = 0.05
) -> torch.Tensor:  # (h, w)
    """Raised-cosine fall-off to 0 over ``fraction`` of each size at the frame borders."""
    rows = [_taper_1d(n, max(2, int(fraction * n)), device) for n in shape]
    return rows[0][:, None] * rows[1][None, :]


def _taper_1d(n: int, width: int, device: torch.device) -> torch.Tensor:  # (n,)
    i = torch.arange(n, device=device, dtype=torch.float32)
    distance = torch.minimum(i, n - 1 - i)  # pixels from the nearest border
    return 0.5 - 0.5 * torch.cos(torch.pi * (distance / width).clamp(max=1.0))


def _fit_weights(
    crop_shape: tuple[int, int],
    pixel_xy_a: torch.Tensor,  # (2,) Å per pixel of the cropped grid along x, y
    *,
    min_resolution_a: float,
    max_resolution_a: float,
    bfactor_a2: float,
) -> torch.Tensor:  # (my, mx//2+1)
    """Band-pass (raised-cosine edges) × ``exp(B k²/4)`` on the cropped rfft grid (k in Å⁻¹)."""
    k_xy = frequency_grid(crop_shape, device=pixel_xy_a.device) / pixel_xy_a  # cycles/Å
    k = k_xy.square().sum(-1).sqrt()
    high = 1.0 / min_resolution_a
    low = 1.0 / max_resolution_a
    band = raised_cosine_band(k, highpass_cycles_px=high, edge_width_cycles_px=high)
    band = band * raised_cosine_band(k, lowpass_cycles_px=low, edge_width_cycles_px=0.1 * low)
    return band * torch.exp(bfactor_a2 * k.square() / 4)


def _subpixel_peaks(
    correlation: torch.Tensor,  # (n, h, w) periodic correlation maps, zero shift at (0, 0)
    *,
    max_shift_px: float,
) -> torch.Tensor:  # (n, 2) float64 x, y
    """Position of each map's maximum within ``max_shift_px`` of zero, refined by a parabola
    through the peak and its two neighbours along each axis (periodic)."""
    n, h, w = correlation.shape
    device = correlation.device
    fy = torch.fft.fftfreq(h, d=1.0 / h, device=device)  # signed integer offsets
    fx = torch.fft.fftfreq(w, d=1.0 / w, device=device)
    inside = (fy[:, None].square() + fx[None, :].square()) <= max_shift_px**2
    masked = correlation.masked_fill(~inside, -torch.inf)
    flat = masked.reshape(n, -1).argmax(dim=1)
    iy, ix = flat // w, flat % w
    rows = torch.arange(n, device=device)

    def at(dy: int, dx: int) -> torch.Tensor:
        return correlation[rows, (iy + dy) % h, (ix + dx) % w].double()

    centre = at(0, 0)
    offsets = []
    for minus, plus in ((at(0, -1), at(0, 1)), (at(-1, 0), at(1, 0))):
        curvature = minus - 2 * centre + plus
        delta = torch.where(curvature < 0, 0.5 * (minus - plus) / curvature, 0.0)
        offsets.append(delta.clamp(-0.5, 0.5))
    peak_x = fx[ix].double() + offsets[0]
    peak_y = fy[iy].double() + offsets[1]
    return torch.stack([peak_x, peak_y], dim=-1)
