"""CTF estimation of a micrograph, a movie or a precomputed power spectrum (Warp's procedure).

1. Power spectra of overlapping patches (spectra.py); 2. a 1-D rotational average with a
3-node spline background, searched exhaustively for the defocus (and phase shift), background
and envelope re-estimated from the best fit (background.py, search1d.py); 3. a 2-D fit of all
patches with a spatial defocus grid, global astigmatism and optional phase shift (fit2d.py);
4. the resolution of the fitted Thon rings and a score (quality.py). Bad input gives a
:class:`CtfResult` flagged as failed, never an exception. Conventions: docs/conventions.md §6.
"""

from __future__ import annotations

import math

import torch

from cryowarp.core.ctf import ctf_1d, ctf_2d
from cryowarp.core.radial import expand_radial_profile
from cryowarp.preprocess.ctf.background import (
    fit_background_and_envelope,
    profile_frequencies_per_a,
    rotational_profile,
)
from cryowarp.preprocess.ctf.fit2d import (
    Fit2dResult,
    astigmatism_start,
    fit_patches_2d,
    patch_targets,
)
from cryowarp.preprocess.ctf.quality import rescaled_profile, ring_resolution_a, sliding_correlation
from cryowarp.preprocess.ctf.result import CtfDiagnostics, CtfResult
from cryowarp.preprocess.ctf.search1d import Optics, Search1dResult, pearson, search_defocus_1d
from cryowarp.preprocess.ctf.settings import CtfSettings
from cryowarp.preprocess.ctf.spectra import (
    PatchPowerSpectra,
    patch_power_spectra,
    rfft_spectrum_from_centred,
)

__all__ = ["estimate_ctf", "estimate_ctf_from_spectrum"]

_MIN_SIZE_PX = 64
#: A 2-D fit whose correlation over the fit range is below this has found no rings.
_MIN_FIT_SCORE = 0.15


def _ring_evidence_threshold(n_samples: int) -> float:
    """Lowest 1-D search score that counts as Thon rings: ``6/√n`` for ``n`` samples in the
    fit range (pure noise reaches about ``4.5/√n`` after the background, envelope and defocus
    adapt to it; measured on Poisson noise), within [0.3, 0.9]."""
    return min(0.9, max(0.3, 6.0 / math.sqrt(max(n_samples, 1))))


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
    data = image_or_frames.to(torch.float64)
    if data.ndim == 3 and settings.spectrum_source == "average":
        data = data.sum(0)
    spectra = patch_power_spectra(
        data,
        window_size_px=settings.window_size_px,
        overlap=settings.patch_overlap,
        pixel_size_a=pixel_size_a,
    )
    return _estimate(spectra, optics, settings, spatial=True)


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
    return _estimate(spectra, optics, settings, spatial=False)


# -- the procedure ---------------------------------------------------------------------


def _estimate(
    spectra: PatchPowerSpectra, optics: Optics, settings: CtfSettings, *, spatial: bool
) -> CtfResult:
    s = spectra.window_size_px
    k = profile_frequencies_per_a(s, optics.pixel_size_a, device=spectra.spectra.device)
    fit_range = _fit_range_per_a(settings, optics.pixel_size_a)
    profiles = rotational_profile(spectra.spectra)  # (p, n)
    phases = None
    if settings.fit_phase_shift:
        phases = torch.deg2rad(
            torch.arange(
                settings.phase_shift_min_deg,
                settings.phase_shift_max_deg + 1e-9,
                settings.phase_shift_step_deg,
                dtype=torch.float64,
            )
        )
    search = search_defocus_1d(
        profiles.mean(0),
        k,
        optics,
        fit_range_per_a=fit_range,
        defocus_range_um=(settings.defocus_min_um, settings.defocus_max_um),
        defocus_step_um=settings.defocus_step_um,
        phase_shifts_rad=phases,
    )
    n_samples = int(((k >= fit_range[0]) & (k <= fit_range[1])).sum())
    if not math.isfinite(search.score) or search.score < _ring_evidence_threshold(n_samples):
        return _failure(
            f"no Thon rings found between {1 / fit_range[0]:.1f} and {1 / fit_range[1]:.1f} Å "
            f"for defocus {settings.defocus_min_um}–{settings.defocus_max_um} µm "
            f"(best 1-D correlation {search.score:.2f})",
            optics,
            spectra.image_size_xy_a,
        )
    size = torch.tensor(spectra.image_size_xy_a, dtype=torch.float64, device=k.device)
    coords = spectra.centres_xy_a / size
    grid_dims = _grid_dims(settings, spectra.patches_xy, spatial=spatial)
    plane = spatial and settings.spatial_grid == "plane" and max(spectra.patches_xy) > 1
    fit: Fit2dResult | None = None
    defocus, phase, astig = search.defocus_um, search.phase_shift_rad, (0.0, 0.0)
    patch_defocus = torch.full((profiles.shape[0],), defocus, dtype=torch.float64, device=k.device)
    starts = _patch_starts(profiles, k, optics, search, settings, fit_range) if spatial else None
    for round_index in range(2):
        ctf2 = _patch_ctf_squared(optics, patch_defocus, astig, phase, s)
        background, envelope = fit_background_and_envelope(profiles, ctf2, k, fit_range)
        targets = patch_targets(
            spectra.spectra,
            background,
            envelope,
            coords,
            pixel_size_a=optics.pixel_size_a,
            fit_range_per_a=fit_range,
        )
        if round_index == 0 and settings.fit_astigmatism:
            mean, *start = astigmatism_start(
                targets, optics, defocus_um=defocus, phase_shift_rad=phase
            )
            astig = (start[0], start[1])
            if starts is None:
                defocus = mean
            else:
                starts = starts + (mean - defocus)
        fit = fit_patches_2d(
            targets,
            optics,
            defocus_um=defocus,
            phase_shift_rad=phase,
            grid_dims=None if plane else grid_dims,
            fit_astigmatism=settings.fit_astigmatism,
            fit_phase_shift=settings.fit_phase_shift,
            max_iterations=settings.max_iterations,
            astig_init_um=astig,
            patch_defocus_start_um=starts if round_index == 0 else patch_defocus,
        )
        defocus = float(fit.grid_um.mean())
        patch_defocus, phase = fit.patch_defocus_um, fit.phase_shift_rad
        astig = (fit.astig_x_um, fit.astig_y_um)
    assert fit is not None
    return _result(spectra, optics, settings, fit, background, envelope, k, fit_range)


def _result(
    spectra: PatchPowerSpectra,
    optics: Optics,
    settings: CtfSettings,
    fit: Fit2dResult,
    background: torch.Tensor,  # (p, n)
    envelope: torch.Tensor,  # (p, n)
    k: torch.Tensor,  # (n,)
    fit_range: tuple[float, float],
) -> CtfResult:
    s = spectra.window_size_px
    normalised = spectra.spectra / expand_radial_profile(background, shape=(s, s)) - 1.0
    provisional = CtfResult(
        defocus_u_um=math.nan,
        defocus_v_um=math.nan,
        astigmatism_angle_deg=math.nan,
        phase_shift_deg=math.degrees(fit.phase_shift_rad),
        defocus_grid_um=tuple(tuple(float(v) for v in row) for row in fit.grid_um),
        image_size_xy_a=spectra.image_size_xy_a,
        resolution_a=math.nan,
        fit_score=math.nan,
        pixel_size_a=optics.pixel_size_a,
        voltage_kv=optics.voltage_kv,
        cs_mm=optics.cs_mm,
        amplitude_contrast=optics.amplitude_contrast,
    )
    centre = torch.tensor([[v / 2 for v in spectra.image_size_xy_a]], dtype=torch.float64)
    mean_defocus = float(provisional.defocus_at(centre)[0])
    delta = math.hypot(fit.astig_x_um, fit.astig_y_um)
    angle = math.degrees(0.5 * math.atan2(fit.astig_y_um, fit.astig_x_um))
    profile = rescaled_profile(
        normalised,
        fit.patch_defocus_um,
        optics,
        astig_x_um=fit.astig_x_um,
        astig_y_um=fit.astig_y_um,
        reference_defocus_um=mean_defocus,
    )
    params = optics.params(
        torch.tensor(mean_defocus, dtype=torch.float64), phase_shift_rad=fit.phase_shift_rad
    )
    weight = (envelope / background).mean(0)
    simulated = weight * ctf_1d(params, k).square()
    mask = (k >= fit_range[0]) & (k <= fit_range[1])
    score = float(pearson(simulated, profile, mask))
    correlation = sliding_correlation(profile, simulated, window=settings.resolution_window_samples)
    # The first window lying wholly inside the fit range.
    start = fit_range[0] + 0.5 * settings.resolution_window_samples / (s * optics.pixel_size_a)
    resolution = ring_resolution_a(
        correlation, k, start_per_a=start, threshold=settings.resolution_threshold
    )
    params_2d = optics.params(
        torch.tensor(mean_defocus, dtype=torch.float64),
        phase_shift_rad=fit.phase_shift_rad,
        astig_x_um=fit.astig_x_um,
        astig_y_um=fit.astig_y_um,
    )
    diagnostics = CtfDiagnostics(
        frequencies_per_a=k,
        spectrum_1d=profile,
        simulated_1d=simulated,
        background_1d=background.mean(0),
        envelope_1d=envelope.mean(0),
        correlation_1d=correlation,
        spectrum_2d=normalised.mean(0),
        simulated_2d=expand_radial_profile(weight, shape=(s, s))
        * ctf_2d(params_2d, (s, s)).square(),
        fit_range_per_a=fit_range,
    )
    failed = score < _MIN_FIT_SCORE or not math.isfinite(resolution)
    return CtfResult(
        defocus_u_um=mean_defocus + delta,
        defocus_v_um=mean_defocus - delta,
        astigmatism_angle_deg=angle,
        phase_shift_deg=math.degrees(fit.phase_shift_rad),
        defocus_grid_um=provisional.defocus_grid_um,
        image_size_xy_a=spectra.image_size_xy_a,
        resolution_a=resolution,
        fit_score=score,
        failed=failed,
        failure_reason=(
            f"the fitted CTF does not match the Thon rings (score {score:.2f}, rings not "
            "resolved at the start of the fit range)"
            if failed
            else None
        ),
        diagnostics=diagnostics,
        pixel_size_a=optics.pixel_size_a,
        voltage_kv=optics.voltage_kv,
        cs_mm=optics.cs_mm,
        amplitude_contrast=optics.amplitude_contrast,
    )


# -- helpers ---------------------------------------------------------------------------


def _patch_ctf_squared(
    optics: Optics, defocus_um: torch.Tensor, astig: tuple[float, float], phase: float, s: int
) -> torch.Tensor:  # (p, n)
    """Rotational average of each patch's 2-D ``CTF²`` (astigmatism blurs the 1-D rings)."""
    params = optics.params(
        defocus_um, phase_shift_rad=phase, astig_x_um=astig[0], astig_y_um=astig[1]
    )
    return rotational_profile(ctf_2d(params, (s, s)).square())


def _patch_starts(
    profiles: torch.Tensor,  # (p, n)
    k: torch.Tensor,  # (n,)
    optics: Optics,
    search: Search1dResult,
    settings: CtfSettings,
    fit_range: tuple[float, float],
) -> torch.Tensor | None:  # (p,)
    """Defocus of every patch from its own 1-D search within ±0.5 µm of the global one."""
    if profiles.shape[0] < 2:
        return None
    low = max(settings.defocus_min_um, search.defocus_um - 0.5)
    high = min(settings.defocus_max_um, search.defocus_um + 0.5)
    phases = torch.tensor([search.phase_shift_rad], dtype=torch.float64)
    values = [
        search_defocus_1d(
            profile,
            k,
            optics,
            fit_range_per_a=fit_range,
            defocus_range_um=(low, high),
            defocus_step_um=settings.defocus_step_um,
            phase_shifts_rad=phases,
            rounds=2,
        ).defocus_um
        for profile in profiles
    ]
    return torch.tensor(values, dtype=torch.float64, device=profiles.device)


def _grid_dims(
    settings: CtfSettings, patches_xy: tuple[int, int], *, spatial: bool
) -> tuple[int, int]:
    """Requested grid nodes, clipped to the number of patches along each axis."""
    if not spatial or isinstance(settings.spatial_grid, str):
        return (1, 1)
    return (
        min(settings.spatial_grid[0], patches_xy[0]),
        min(settings.spatial_grid[1], patches_xy[1]),
    )


def _fit_range_per_a(settings: CtfSettings, pixel_size_a: float) -> tuple[float, float]:
    nyquist = 0.5 / pixel_size_a
    return 1.0 / settings.min_resolution_a, min(1.0 / settings.max_resolution_a, 0.98 * nyquist)


def _check_range(settings: CtfSettings, pixel_size_a: float) -> str | None:
    low, high = _fit_range_per_a(settings, pixel_size_a)
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
    return CtfResult.failure(
        reason,
        image_size_xy_a=size_a,
        pixel_size_a=optics.pixel_size_a,
        voltage_kv=optics.voltage_kv,
        cs_mm=optics.cs_mm,
        amplitude_contrast=optics.amplitude_contrast,
    )
