"""CTF estimation of a micrograph, a movie or a precomputed power spectrum (Warp's procedure).

The entry points check the input, make the power spectra of overlapping patches (spectra.py)
and hand them to the procedure (procedure.py: 1-D search, 2-D fit of a spatial defocus model,
quality). Bad input gives a :class:`CtfResult` flagged as failed, never an exception.
Conventions: docs/conventions.md §6.
"""

from __future__ import annotations

import math
from dataclasses import asdict

import torch

from cryowarp.preprocess.ctf.procedure import fit_patch_spectra
from cryowarp.preprocess.ctf.result import CtfResult
from cryowarp.preprocess.ctf.search1d import Optics
from cryowarp.preprocess.ctf.settings import CtfSettings
from cryowarp.preprocess.ctf.spectra import (
    PatchPowerSpectra,
    patch_power_spectra,
    rfft_spectrum_from_centred,
)

__all__ = ["estimate_ctf", "estimate_ctf_from_spectrum"]

_MIN_SIZE_PX = 64


def estimate_ctf(
    image_or_frames: torch.Tensor,  # (h, w) or (n, h, w)
    *,
    pixel_size_a: float,
    voltage_kv: float = 300.0,
    cs_mm: float = 2.7,
    amplitude_contrast: float = 0.07,
    settings: CtfSettings | None = None,
) -> CtfResult:
    """Estimate the CTF of a micrograph ``(h, w)`` or of a movie's frames ``(n, h, w)``.

    Parameters
    ----------
    image_or_frames:
        Gain-corrected micrograph or frames (any intensity scale).
    pixel_size_a, voltage_kv, cs_mm, amplitude_contrast:
        Optics (Å, kV, mm, fraction).
    settings:
        :class:`CtfSettings` (default: Warp-like defaults).

    Returns
    -------
    CtfResult
        Defocus U/V/angle (µm, deg; conventions §6), phase shift, the spatial defocus grid,
        resolution of the fitted rings (Å) and score; ``failed=True`` with a reason for
        unusable input.
    """
    settings = settings or CtfSettings()
    optics = Optics(pixel_size_a, voltage_kv, cs_mm, amplitude_contrast)
    problem = _check_image(image_or_frames)
    size_a = (
        (image_or_frames.shape[-1] * pixel_size_a, image_or_frames.shape[-2] * pixel_size_a)
        if image_or_frames.ndim >= 2
        else (math.nan, math.nan)
    )
    if problem is None:
        problem = _check_range(settings, pixel_size_a)
    if problem is not None:
        return _failure(problem, optics, size_a)
    data = image_or_frames
    if not data.is_floating_point():
        data = data.to(torch.float32)
    if data.ndim == 3 and settings.spectrum_source == "average":
        data = data.sum(0)
    spectra = patch_power_spectra(
        data,
        window_size_px=settings.window_size_px,
        overlap=settings.patch_overlap,
        pixel_size_a=pixel_size_a,
    )
    return fit_patch_spectra(spectra, optics, settings, spatial=True)


def estimate_ctf_from_spectrum(
    spectrum: torch.Tensor,  # (s, s//2+1) rfft or (s, s) centred
    *,
    pixel_size_a: float,
    voltage_kv: float = 300.0,
    cs_mm: float = 2.7,
    amplitude_contrast: float = 0.07,
    settings: CtfSettings | None = None,
) -> CtfResult:
    """Estimate the CTF from a precomputed power spectrum (no spatial model).

    Parameters
    ----------
    spectrum:
        Power spectrum of an ``s × s`` box: rfft layout ``(s, s//2+1)`` (docs/conventions.md
        §3), or the full spectrum ``(s, s)`` with zero frequency at ``(s//2, s//2)`` as
        MotionCor2 and RELION write it.
    pixel_size_a, voltage_kv, cs_mm, amplitude_contrast, settings:
        As :func:`estimate_ctf`.
    """
    settings = settings or CtfSettings()
    optics = Optics(pixel_size_a, voltage_kv, cs_mm, amplitude_contrast)
    if spectrum.ndim != 2 or spectrum.shape[0] < _MIN_SIZE_PX:
        return _failure(
            f"a power spectrum must be 2-D and at least {_MIN_SIZE_PX} px, got "
            f"{tuple(spectrum.shape)}",
            optics,
            (math.nan, math.nan),
        )
    s = spectrum.shape[0]
    size_a = (s * pixel_size_a, s * pixel_size_a)
    if spectrum.shape[1] == s:
        spectrum = rfft_spectrum_from_centred(spectrum)
    elif spectrum.shape[1] != s // 2 + 1 or s % 2:
        return _failure(
            f"a power spectrum must be (s, s//2+1) or (s, s) with even s, got "
            f"{tuple(spectrum.shape)}",
            optics,
            size_a,
        )
    problem = _check_image(spectrum) or _check_range(settings, pixel_size_a)
    if problem is None and bool((spectrum < 0).any()):
        problem = "the power spectrum has negative values (is it an amplitude or log image?)"
    if problem is not None:
        return _failure(problem, optics, size_a)
    spectra = PatchPowerSpectra(
        spectra=spectrum.to(torch.float64)[None],
        centres_xy_a=torch.tensor(
            [[size_a[0] / 2, size_a[1] / 2]], dtype=torch.float64, device=spectrum.device
        ),
        window_size_px=s,
        pixel_size_a=pixel_size_a,
        image_size_xy_a=size_a,
        patches_xy=(1, 1),
    )
    return fit_patch_spectra(spectra, optics, settings, spatial=False)


# -- input checks ----------------------------------------------------------------------


def _check_range(settings: CtfSettings, pixel_size_a: float) -> str | None:
    low, high = settings.fit_range_per_a(pixel_size_a)
    if high <= 1.2 * low:
        return (
            f"the fit range {settings.min_resolution_a}–{settings.max_resolution_a} Å is empty "
            f"at a pixel size of {pixel_size_a} Å (Nyquist {2 * pixel_size_a} Å)"
        )
    return None


def _check_image(data: torch.Tensor) -> str | None:
    if data.ndim not in (2, 3):
        return f"expected an image (h, w) or frames (n, h, w), got shape {tuple(data.shape)}"
    if data.numel() == 0 or min(data.shape[-2:]) < _MIN_SIZE_PX:
        return f"the image {tuple(data.shape)} is smaller than {_MIN_SIZE_PX} × {_MIN_SIZE_PX} px"
    if not bool(torch.isfinite(data).all()):
        return "the data contain NaN or infinite values"
    if float(data.to(torch.float64).std()) == 0.0:
        return "the image is constant (empty)"
    return None


def _failure(reason: str, optics: Optics, size_a: tuple[float, float]) -> CtfResult:
    return CtfResult.failure(reason, image_size_xy_a=size_a, **asdict(optics))
