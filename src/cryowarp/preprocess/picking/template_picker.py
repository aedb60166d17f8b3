"""2-D template picking: normalised cross-correlation with CTF-modulated projections.

A baseline in the manner of RELION's reference-based autopick and gautomatch
(docs/picking_baselines.md). It needs a reference of the species being picked — a 3-D map
(:func:`templates_from_map` projects it at near-uniform orientations) or 2-D references —
so it is an **upper-bound** baseline when given the true map, as the picking benchmark does.

1. **Downsample.** The micrograph is Fourier-cropped and normalised by
   :func:`~cryowarp.preprocess.picking.prepare.prepare_micrograph` to a working pixel size of
   ``diameter_a / 16`` (never finer than the input), then low-passed with a Gaussian
   (``lowpass_a``, 20 Å by default, as RELION's autopick); templates are Fourier-rescaled to
   the working pixel size.
2. **Templates.** Each template (a projection, protein positive) is padded to twice its box,
   multiplied by the CTF of the micrograph at the working pixel size (``core.ctf``; defocus
   and astigmatism given, docs/conventions.md §6) and **negated**, since protein is dark in
   raw micrographs (§15). It is cut to a circle of radius ``0.6 × diameter_a`` (the
   particle and its first CTF fringe), made zero-mean inside it and scaled to unit norm.
3. **Correlation.** For each template ``t`` and position ``x``, the Pearson correlation of
   ``t`` with the micrograph under the circle centred at ``x``:
   ``(I ⋆ t)(x) / sqrt(N · var_x)``, with the local variance ``var_x`` from FFT sums of
   ``I`` and ``I²`` under the circle (Roseman's fast local correlation, 2003); the
   micrograph is reflect-padded so that borders do not wrap. The correlation map is the
   largest correlation over the templates (between −1 and 1).
4. **Score.** The correlation map standardised over the micrograph with its median and
   robust standard deviation (1.4826 × MAD) — which makes it independent of the number of
   pixels in the circle and of correlated noise — minus
   :data:`TEMPLATE_BASE_THRESHOLD_SIGMA` (4.5 σ: on micrographs of pure shot noise, 512² at
   4 Å, the highest local maximum reaches 3.2–4.3 σ), so the default threshold is 0, as for
   the LoG picker.
5. **Peaks.** Local maxima at least ``min_distance_a`` (default ``diameter_a``) apart,
   greedily in order of score, with score above ``threshold``
   (:func:`~cryowarp.preprocess.picking.log_picker.find_peaks`).

Positions are returned in Å from the centre of pixel (0, 0) of the input micrograph
(docs/conventions.md §1).
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from cryowarp.core.ctf import CTFParams, ctf_2d
from cryowarp.core.fourier import irfft_centered, rfft_centered
from cryowarp.core.masks import spherical_mask
from cryowarp.core.projection import project_real
from cryowarp.core.resize import crop_or_pad, rescale, rescaled_shape
from cryowarp.core.so3_sampling import so3_grid
from cryowarp.errors import DimensionMismatchError, InvalidValuesError
from cryowarp.preprocess.picking.log_picker import BaselinePicks, find_peaks, robust_standardise
from cryowarp.preprocess.picking.prepare import prepare_micrograph

__all__ = [
    "DEFAULT_LOWPASS_A",
    "TEMPLATE_BASE_THRESHOLD_SIGMA",
    "TEMPLATE_PIXELS_PER_DIAMETER",
    "ctf_templates",
    "pick_templates",
    "templates_from_map",
]

TEMPLATE_PIXELS_PER_DIAMETER = 16.0
"""The working pixel size is ``diameter_a /`` this (never finer than the input)."""

DEFAULT_LOWPASS_A = 20.0
"""Default resolution (Å) of the Gaussian low-pass applied to the micrograph (as RELION's
reference-based autopick, ``--lowpass 20``)."""

TEMPLATE_BASE_THRESHOLD_SIGMA = 4.5
"""Scores are standardised correlations minus this (module docstring, step 4)."""

_MASK_RADIUS_PER_DIAMETER = 0.6
_CHUNK = 32  # templates per batched FFT


def templates_from_map(
    volume: torch.Tensor,  # (d, h, w)
    *,
    pixel_size_a: float,
    angular_step_deg: float = 30.0,
    symmetry: str | None = None,
    output_pixel_size_a: float | None = None,
) -> tuple[torch.Tensor, float]:
    """Projections of a map at a near-uniform grid of orientations (``core.so3_sampling``).

    The map (protein positive, centred at ``N//2``, cubic box) is first Fourier-rescaled to
    ``output_pixel_size_a`` when given (never below its own pixel size, which keeps the
    projection cheap); projections are line integrals in voxel units
    (``core.projection.project_real``). With ``symmetry`` only one orientation per
    symmetry orbit is kept. Returns ``(templates (k, n, n), pixel size in Å)``; the
    in-plane angles are part of the grid, so ``k ≈ (360/step)³ / π`` (step 30° → ~550).
    """
    if volume.dim() != 3 or len(set(volume.shape)) != 1:
        raise DimensionMismatchError(
            None, f"a reference map must be a cubic volume, got {tuple(volume.shape)}"
        )
    box = int(volume.shape[0])
    pixel_a = float(pixel_size_a)
    if output_pixel_size_a is not None and output_pixel_size_a > pixel_a:
        (new_box,) = rescaled_shape(
            (box,), pixel_size_a=pixel_a, new_pixel_size_a=output_pixel_size_a
        )
        new_box = max(new_box, 8)
        volume = rescale(volume.to(torch.float32), (new_box,) * 3)
        pixel_a = pixel_a * box / new_box
    rotations = so3_grid(
        angular_step_deg, symmetry=symmetry, device=volume.device, dtype=torch.float32
    )
    projections = project_real(volume.to(torch.float32), rotations)
    return projections, pixel_a


def ctf_templates(
    templates: torch.Tensor,  # (k, n, n) protein positive
    *,
    template_pixel_size_a: float,
    working_pixel_size_a: float,
    diameter_a: float,
    ctf: CTFParams | None,
) -> torch.Tensor:  # (k, b, b)
    """Templates as they appear in the raw micrograph at the working pixel size, zero-mean
    and unit-norm inside the correlation circle, zero outside (module docstring, step 2).

    ``ctf`` must be at ``working_pixel_size_a``; ``None`` skips the CTF (references that
    already look like the micrograph's particles apart from the contrast sign).
    """
    if templates.dim() != 3 or templates.shape[-1] != templates.shape[-2]:
        raise DimensionMismatchError(
            None, f"templates must be (k, n, n), got {tuple(templates.shape)}"
        )
    n = int(templates.shape[-1])
    (m,) = rescaled_shape(
        (n,), pixel_size_a=template_pixel_size_a, new_pixel_size_a=working_pixel_size_a
    )
    small = rescale(templates.to(torch.float32), (m, m)) if m != n else templates.float()
    radius_px = _MASK_RADIUS_PER_DIAMETER * diameter_a / working_pixel_size_a
    box = 2 * math.ceil(radius_px + 1)
    big = 2 * max(box, m)
    padded = crop_or_pad(small, (big, big))
    if ctf is not None:
        spectrum = rfft_centered(padded, ndim=2) * ctf_2d(ctf, (big, big)).to(padded.device)
        padded = irfft_centered(spectrum, shape=(big, big))
    out = -crop_or_pad(padded, (box, box))
    mask = spherical_mask((box, box), radius_px, device=out.device, dtype=out.dtype)
    inside = mask > 0.5
    out = torch.where(inside, out - out[:, inside].mean(dim=1)[:, None, None], 0.0)
    norm = out.flatten(1).norm(dim=1).clamp_min(1e-12)
    normalised: torch.Tensor = out / norm[:, None, None]
    return normalised


def _rolled(
    boxes: torch.Tensor,  # (k, b, b)
    shape: tuple[int, int],
) -> torch.Tensor:  # (k, H, W): box centre b//2 moved to index (0, 0)
    b = int(boxes.shape[-1])
    out = boxes.new_zeros((boxes.shape[0], *shape))
    out[:, :b, :b] = boxes
    return torch.roll(out, shifts=(-(b // 2), -(b // 2)), dims=(-2, -1))


def pick_templates(
    image: torch.Tensor,  # (H, W)
    *,
    pixel_size_a: float,
    templates: torch.Tensor,  # (k, n, n)
    template_pixel_size_a: float,
    diameter_a: float,
    defocus_um: float,
    astigmatism_um: float = 0.0,
    astigmatism_angle_deg: float = 0.0,
    voltage_kv: float = 300.0,
    cs_mm: float = 2.7,
    amplitude_contrast: float = 0.07,
    phase_shift_deg: float = 0.0,
    apply_ctf: bool = True,
    lowpass_a: float | None = DEFAULT_LOWPASS_A,
    threshold: float = 0.0,
    min_distance_a: float | None = None,
    working_pixel_size_a: float | None = None,
) -> BaselinePicks:
    """Pick particles by correlation with 2-D templates (module docstring).

    Parameters
    ----------
    image:
        ``(H, W)`` raw-contrast micrograph (protein dark).
    pixel_size_a:
        Its pixel size (Å).
    templates:
        ``(k, n, n)`` references with protein **positive** (projections of a map:
        :func:`templates_from_map`), centred at ``n//2``, at ``template_pixel_size_a`` Å/px.
    diameter_a:
        Particle diameter (Å): sets the working pixel size, the correlation circle and the
        default minimum distance.
    defocus_um, astigmatism_um, astigmatism_angle_deg, voltage_kv, cs_mm,
    amplitude_contrast, phase_shift_deg:
        The micrograph's CTF: mean defocus (µm, positive underfocus), ``(U − V)/2`` (µm),
        the angle of U (degrees), and the usual optics (docs/conventions.md §6).
    apply_ctf:
        Multiply the templates by the CTF (default); ``False`` for references that already
        carry it.
    lowpass_a:
        Low-pass the working micrograph with ``exp(−2 (k · lowpass_a)²)`` (``k`` in Å⁻¹;
        e⁻² at ``1/lowpass_a``) before correlating, which keeps the shot noise and ice
        texture beyond the particle's low-resolution signal out of the correlation; ``None``:
        no filter.
    threshold:
        Keep picks whose score (robust standard deviations of the correlation map above
        :data:`TEMPLATE_BASE_THRESHOLD_SIGMA`) exceeds this; ``-inf`` keeps every local
        maximum (for precision-recall curves).
    min_distance_a:
        Minimum distance between picks (Å); default ``diameter_a``.
    working_pixel_size_a:
        Override the working pixel size (Å); default ``max(pixel_size_a, diameter_a / 16)``.

    Raises
    ------
    InvalidValuesError
        A diameter that is not positive or exceeds the micrograph; bad templates; blank or
        non-finite images and bad pixel sizes (from ``prepare_micrograph``).
    """
    if not (math.isfinite(diameter_a) and diameter_a > 0):
        raise InvalidValuesError(None, f"particle diameter must be positive, got {diameter_a}")
    field_a = min(int(n) for n in image.shape[-2:]) * pixel_size_a
    if diameter_a > field_a:
        raise InvalidValuesError(
            None,
            f"the particle diameter {diameter_a} Å exceeds the micrograph's shorter side "
            f"({field_a:.0f} Å)",
        )
    if templates.numel() == 0 or not bool(torch.isfinite(templates).all()):
        raise InvalidValuesError(None, "templates are empty or hold NaN/infinite values")
    working = working_pixel_size_a or max(pixel_size_a, diameter_a / TEMPLATE_PIXELS_PER_DIAMETER)
    prepared = prepare_micrograph(image, pixel_size_a=pixel_size_a, picking_pixel_size_a=working)
    pixel_a = float(np.mean(prepared.pixel_size_xy_a))
    ctf = None
    if apply_ctf:
        angle = math.radians(2 * astigmatism_angle_deg)
        ctf = CTFParams.create(
            pixel_size_a=pixel_a,
            defocus_um=defocus_um,
            astig_x_um=astigmatism_um * math.cos(angle),
            astig_y_um=astigmatism_um * math.sin(angle),
            voltage_kv=voltage_kv,
            cs_mm=cs_mm,
            amplitude_contrast=amplitude_contrast,
            phase_shift_rad=math.radians(phase_shift_deg),
            dtype=torch.float32,
        )
    device = image.device
    boxes = ctf_templates(
        templates.to(device),
        template_pixel_size_a=template_pixel_size_a,
        working_pixel_size_a=pixel_a,
        diameter_a=diameter_a,
        ctf=ctf,
    )
    micrograph = prepared.image.to(device)
    if lowpass_a is not None:
        micrograph = _lowpass(micrograph, lowpass_a / pixel_a)
    correlation = _best_correlation(micrograph, boxes, diameter_a / pixel_a)
    score = robust_standardise(correlation) - TEMPLATE_BASE_THRESHOLD_SIGMA
    min_distance = diameter_a if min_distance_a is None else min_distance_a
    positions_px, scores = find_peaks(
        score, min_distance_px=min_distance / pixel_a, threshold=threshold
    )
    return BaselinePicks(
        positions_a=prepared.to_original_px(positions_px) * pixel_size_a,
        scores=scores,
        diameters_a=torch.full((len(scores),), float(diameter_a), dtype=torch.float64),
        working_pixel_size_a=pixel_a,
    )


def _lowpass(image: torch.Tensor, resolution_px: float) -> torch.Tensor:  # (h, w)
    h, w = (int(n) for n in image.shape)
    ky = torch.fft.fftfreq(h, device=image.device)[:, None]
    kx = torch.fft.rfftfreq(w, device=image.device)[None, :]
    gain = torch.exp(-2 * (ky.square() + kx.square()) * resolution_px**2)
    filtered: torch.Tensor = torch.fft.irfft2(torch.fft.rfft2(image.float()) * gain, s=(h, w))
    return filtered


def _best_correlation(
    image: torch.Tensor,  # (h, w) prepared
    boxes: torch.Tensor,  # (k, b, b) zero-mean unit-norm in the circle
    diameter_px: float,
) -> torch.Tensor:  # (h, w) largest correlation over the templates
    h, w = (int(n) for n in image.shape)
    b = int(boxes.shape[-1])
    pad = min(b // 2 + 1, h - 1, w - 1)
    padded = F.pad(image[None, None].float(), (pad, pad, pad, pad), mode="reflect")[0, 0]
    shape = (int(padded.shape[0]), int(padded.shape[1]))
    radius_px = _MASK_RADIUS_PER_DIAMETER * diameter_px
    mask = (spherical_mask((b, b), radius_px, device=image.device) > 0.5).float()
    n_inside = float(mask.sum())
    spectrum = torch.fft.rfft2(padded)
    mask_spectrum = torch.fft.rfft2(_rolled(mask[None], shape)[0]).conj()
    local_sum = torch.fft.irfft2(spectrum * mask_spectrum, s=shape)
    local_sq = torch.fft.irfft2(torch.fft.rfft2(padded.square()) * mask_spectrum, s=shape)
    variance = (local_sq / n_inside - (local_sum / n_inside).square()).clamp_min(1e-6)
    denominator = (variance * n_inside).sqrt()
    best = torch.full(shape, -math.inf, device=image.device)
    for start in range(0, boxes.shape[0], _CHUNK):
        chunk = torch.fft.rfft2(_rolled(boxes[start : start + _CHUNK], shape)).conj()
        correlation = torch.fft.irfft2(spectrum[None] * chunk, s=shape)
        best = torch.maximum(best, correlation.amax(dim=0))
    result: torch.Tensor = (best / denominator)[pad : pad + h, pad : pad + w]
    return result
