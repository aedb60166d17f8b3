"""From a 2-D fit to a :class:`CtfResult`: field-centre defocus U/V/angle, the rescaled 1-D
spectrum of all patches, the fitted ring resolution, the score and the diagnostics for plots.

The 1-D spectrum maps every patch (and direction) to the mean defocus (quality.py) over polar
bins from the start of the fit range up to Nyquist, so the resolution estimate may go beyond
the fit range. Conventions: docs/conventions.md §6.
"""

from __future__ import annotations

import math
from dataclasses import asdict

import torch

from cryowarp.core.ctf import ctf_1d, ctf_2d
from cryowarp.core.fourier_grids import frequency_magnitude
from cryowarp.core.radial import expand_radial_profile
from cryowarp.core.spline_grid import evaluate_cubic_grid
from cryowarp.preprocess.ctf.background import profile_frequencies_per_a
from cryowarp.preprocess.ctf.fit2d import Fit2dResult
from cryowarp.preprocess.ctf.polar import polar_targets
from cryowarp.preprocess.ctf.quality import rescaled_profile, ring_resolution_a, sliding_correlation
from cryowarp.preprocess.ctf.result import CtfDiagnostics, CtfResult
from cryowarp.preprocess.ctf.search1d import Optics, pearson
from cryowarp.preprocess.ctf.settings import CtfSettings
from cryowarp.preprocess.ctf.spectra import PatchPowerSpectra

__all__ = ["MIN_FIT_SCORE", "summarise_fit"]

#: A fit whose correlation over the fit range is below this has found no rings.
MIN_FIT_SCORE = 0.15
_PATCH_CHUNK = 32  # patches normalised at once for the 2-D diagnostic spectrum


def summarise_fit(
    spectra: PatchPowerSpectra,
    optics: Optics,
    settings: CtfSettings,
    fit: Fit2dResult,
    background: torch.Tensor,  # (p, n)
    envelope: torch.Tensor,  # (p, n)
) -> CtfResult:
    """The :class:`CtfResult` of a fit; failed when its score is below ``MIN_FIT_SCORE`` or
    the rings are not resolved at the start of the fit range.

    Parameters
    ----------
    spectra:
        The patch spectra that were fitted.
    fit:
        The 2-D fit.
    background, envelope:
        ``(p, n)`` 1-D background and envelope of each patch from the last round.
    """
    s = spectra.window_size_px
    px = optics.pixel_size_a
    k = profile_frequencies_per_a(s, px, device=background.device)
    fit_range = settings.fit_range_per_a(px)
    centre = torch.tensor([[0.5, 0.5]], dtype=torch.float64, device=fit.grid_um.device)
    mean_defocus = float(evaluate_cubic_grid(fit.grid_um, centre)[0])  # the field centre
    delta = math.hypot(fit.astig_x_um, fit.astig_y_um)
    angle = math.degrees(0.5 * math.atan2(fit.astig_y_um, fit.astig_x_um))

    size = torch.tensor(spectra.image_size_xy_a, dtype=torch.float64, device=k.device)
    bins = polar_targets(
        spectra.spectra,
        background,
        envelope,
        spectra.centres_xy_a.to(torch.float64) / size,
        pixel_size_a=px,
        fit_range_per_a=(fit_range[0], 0.5 / px),
    )
    profile = rescaled_profile(
        bins.normalised,
        bins.k_xy_per_a,
        bins.counts,
        fit.patch_defocus_um,
        optics,
        astig_x_um=fit.astig_x_um,
        astig_y_um=fit.astig_y_um,
        reference_defocus_um=mean_defocus,
        window_size_px=s,
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
    start = fit_range[0] + 0.5 * settings.resolution_window_samples / (s * px)
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
        spectrum_2d=_mean_normalised_spectrum(spectra.spectra, background),
        simulated_2d=expand_radial_profile(weight, shape=(s, s))
        * ctf_2d(params_2d, (s, s)).square(),
        fit_range_per_a=fit_range,
    )
    failed = score < MIN_FIT_SCORE or not math.isfinite(resolution)
    return CtfResult(
        defocus_u_um=mean_defocus + delta,
        defocus_v_um=mean_defocus - delta,
        astigmatism_angle_deg=angle,
        phase_shift_deg=math.degrees(fit.phase_shift_rad),
        resolution_a=resolution,
        fit_score=score,
        failed=failed,
        failure_reason=(
            f"the fitted CTF does not match the Thon rings (score {score:.2f}, rings not "
            "resolved at the start of the fit range)"
            if failed
            else None
        ),
        defocus_grid_um=tuple(tuple(float(v) for v in row) for row in fit.grid_um),
        image_size_xy_a=spectra.image_size_xy_a,
        diagnostics=diagnostics,
        **asdict(optics),
    )


def _mean_normalised_spectrum(
    spectra: torch.Tensor,  # (p, s, s//2+1)
    background: torch.Tensor,  # (p, n)
) -> torch.Tensor:  # (s, s//2+1) float64
    """Mean over patches of ``P/B − 1`` (``B`` at the nearest shell), a few patches at a
    time."""
    s = spectra.shape[-2]
    n = background.shape[-1]
    shell = frequency_magnitude((s, s), device=spectra.device, dtype=torch.float64) * s
    index = torch.round(shell).to(torch.int64).clamp(max=n - 1)  # (s, s//2+1)
    inverse = 1.0 / background.to(spectra.dtype)  # (p, n)
    total = torch.zeros(spectra.shape[-2:], dtype=spectra.dtype, device=spectra.device)
    for start in range(0, spectra.shape[0], _PATCH_CHUNK):
        chunk = slice(start, start + _PATCH_CHUNK)
        total += (spectra[chunk] * inverse[chunk][:, index]).sum(0)
    return total.to(torch.float64) / spectra.shape[0] - 1.0
