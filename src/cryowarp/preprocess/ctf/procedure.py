"""Warp's CTF procedure on a set of patch power spectra: 1-D search, then 2-D fit.

1. The rotational average of all patches, with a 3-node spline background, is searched
   exhaustively for the defocus (and phase shift); background and envelope are re-estimated
   from the best fit (background.py, search1d.py). Too low a score is a failed result.
2. Each patch is searched again near that defocus (one batched search): the start of the
   spatial model.
3. Twice: background and envelope of every patch from the current model, polar bins of the
   fit range (polar.py), a coarse astigmatism search (first time), then the L-BFGS fit of the
   spatial defocus model, global astigmatism and optional phase shift (fit2d.py). The grid
   has at most about half the patches per axis (:func:`max_grid_nodes`).
4. A constant defocus is fitted to the same targets; the spatial model is kept only when it
   raises the mean patch correlation by ``_MIN_GAIN_PER_PARAMETER`` or more per extra
   parameter (on flat samples it otherwise invents tilts from noise).
5. Quality and result (summary.py). Conventions: docs/conventions.md §6.
"""

from __future__ import annotations

import math
from dataclasses import asdict

import torch

from cryowarp.preprocess.ctf.background import (
    fit_background_and_envelope,
    profile_frequencies_per_a,
    rotational_profile,
)
from cryowarp.preprocess.ctf.fit2d import Fit2dResult, astigmatism_start, fit_patches_2d
from cryowarp.preprocess.ctf.model import CtfSquaredModel
from cryowarp.preprocess.ctf.polar import POLAR_ANGLES, PatchTargets, polar_targets
from cryowarp.preprocess.ctf.result import CtfResult
from cryowarp.preprocess.ctf.search1d import Optics, search_defocus_1d
from cryowarp.preprocess.ctf.settings import CtfSettings
from cryowarp.preprocess.ctf.spectra import PatchPowerSpectra
from cryowarp.preprocess.ctf.summary import summarise_fit

__all__ = ["fit_patch_spectra", "max_grid_nodes", "ring_evidence_threshold"]

#: Half-width (µm) of the per-patch defocus search about the global 1-D estimate.
_PATCH_SEARCH_UM = 0.5
#: Least gain of the mean patch correlation, per parameter beyond a constant, for which a
#: spatial defocus model is kept over a constant defocus. Measured (benchmarks/ctf.py): flat
#: samples gain 0.00014–0.00027 per parameter (1024² with a 2 × 2 grid, K3 with 3 × 3 and
#: 5 × 5), a 20° tilt on 1024² 0.00043, a 40° tilt 0.0048.
_MIN_GAIN_PER_PARAMETER = 0.0005


def ring_evidence_threshold(n_samples: int) -> float:
    """Lowest 1-D search score that counts as Thon rings: ``6/√n`` for ``n`` samples in the
    fit range (pure noise reaches about ``4.5/√n`` after the background, envelope and defocus
    adapt to it; measured on Poisson noise), within [0.3, 0.9]."""
    return min(0.9, max(0.3, 6.0 / math.sqrt(max(n_samples, 1))))


def fit_patch_spectra(
    spectra: PatchPowerSpectra, optics: Optics, settings: CtfSettings, *, spatial: bool
) -> CtfResult:
    """Estimate the CTF from patch power spectra (module docstring).

    Parameters
    ----------
    spectra:
        Power spectra of the patches of one micrograph (or one precomputed spectrum).
    optics:
        Imaging constants.
    settings:
        Search range, fit range and model.
    spatial:
        Fit a spatial defocus model over the patches (``False``: one constant defocus).

    Returns
    -------
    CtfResult
        The fit, or a result flagged as failed when the 1-D search finds no rings.
    """
    s = spectra.window_size_px
    device = spectra.spectra.device
    k = profile_frequencies_per_a(s, optics.pixel_size_a, device=device)
    fit_range = settings.fit_range_per_a(optics.pixel_size_a)
    profiles = rotational_profile(spectra.spectra).to(torch.float64)  # (p, n)
    search = search_defocus_1d(
        profiles.mean(0),
        k,
        optics,
        fit_range_per_a=fit_range,
        defocus_range_um=(settings.defocus_min_um, settings.defocus_max_um),
        defocus_step_um=settings.defocus_step_um,
        phase_shifts_rad=_phase_candidates_rad(settings),
    )
    score = float(search.score)
    n_samples = int(((k >= fit_range[0]) & (k <= fit_range[1])).sum())
    if not math.isfinite(score) or score < ring_evidence_threshold(n_samples):
        return CtfResult.failure(
            f"no Thon rings found between {1 / fit_range[0]:.1f} and {1 / fit_range[1]:.1f} Å "
            f"for defocus {settings.defocus_min_um}–{settings.defocus_max_um} µm "
            f"(best 1-D correlation {score:.2f})",
            image_size_xy_a=spectra.image_size_xy_a,
            **asdict(optics),
        )
    size = torch.tensor(spectra.image_size_xy_a, dtype=torch.float64, device=device)
    coords = spectra.centres_xy_a.to(torch.float64) / size
    grid_dims = _grid_dims(settings, spectra.patches_xy, spatial=spatial)
    plane = spatial and settings.spatial_grid == "plane" and max(spectra.patches_xy) > 1
    phase, astig = float(search.phase_shift_rad), (0.0, 0.0)
    patch_defocus = torch.full_like(profiles[:, 0], float(search.defocus_um))
    if spatial and profiles.shape[0] > 1:
        patch_defocus = _patch_defocus_um(profiles, k, optics, search.defocus_um, phase, settings)
    fit: Fit2dResult | None = None
    for round_index in range(2):
        ctf2 = _patch_ctf_squared(optics, patch_defocus, astig, phase, k)
        background, envelope = fit_background_and_envelope(profiles, ctf2, k, fit_range)
        targets = polar_targets(
            spectra.spectra,
            background,
            envelope,
            coords,
            pixel_size_a=optics.pixel_size_a,
            fit_range_per_a=fit_range,
        )
        if round_index == 0 and settings.fit_astigmatism:
            shift, *start = astigmatism_start(
                targets, optics, defocus_um=patch_defocus, phase_shift_rad=phase
            )
            astig = (start[0], start[1])
            patch_defocus = patch_defocus + shift
        fit = fit_patches_2d(
            targets,
            optics,
            defocus_um=float(patch_defocus.mean()),
            phase_shift_rad=phase,
            grid_dims=None if plane else grid_dims,
            fit_astigmatism=settings.fit_astigmatism,
            fit_phase_shift=settings.fit_phase_shift,
            max_iterations=settings.max_iterations,
            astig_init_um=astig,
            patch_defocus_start_um=patch_defocus,
        )
        patch_defocus, phase = fit.patch_defocus_um, fit.phase_shift_rad
        astig = (fit.astig_x_um, fit.astig_y_um)
    assert fit is not None
    extra_parameters = 2 if plane else grid_dims[0] * grid_dims[1] - 1
    if extra_parameters > 0:
        fit = _significant_model(fit, targets, optics, settings, extra_parameters)
    return summarise_fit(spectra, optics, settings, fit, background, envelope)


def _significant_model(
    spatial: Fit2dResult,
    targets: PatchTargets,
    optics: Optics,
    settings: CtfSettings,
    extra_parameters: int,
) -> Fit2dResult:
    """The spatial fit, or the constant-defocus fit of the same targets when the spatial model,
    with ``extra_parameters`` more than a constant, raises the mean patch correlation by less
    than ``_MIN_GAIN_PER_PARAMETER`` per extra parameter (it then fits noise, not a tilt)."""
    constant = fit_patches_2d(
        targets,
        optics,
        defocus_um=float(spatial.patch_defocus_um.mean()),
        phase_shift_rad=spatial.phase_shift_rad,
        grid_dims=(1, 1),
        fit_astigmatism=settings.fit_astigmatism,
        fit_phase_shift=settings.fit_phase_shift,
        max_iterations=settings.max_iterations,
        astig_init_um=(spatial.astig_x_um, spatial.astig_y_um),
    )
    gain = spatial.score - constant.score
    return spatial if gain >= _MIN_GAIN_PER_PARAMETER * extra_parameters else constant


def _phase_candidates_rad(settings: CtfSettings) -> torch.Tensor | None:  # (q,)
    if not settings.fit_phase_shift:
        return None
    degrees = torch.arange(
        settings.phase_shift_min_deg,
        settings.phase_shift_max_deg + 1e-9,
        settings.phase_shift_step_deg,
        dtype=torch.float64,
    )
    return torch.deg2rad(degrees)


def _patch_defocus_um(
    profiles: torch.Tensor,  # (p, n)
    k: torch.Tensor,  # (n,)
    optics: Optics,
    defocus_um: torch.Tensor,
    phase_shift_rad: float,
    settings: CtfSettings,
) -> torch.Tensor:  # (p,)
    """Defocus of every patch from its own 1-D search near the global one (one batch)."""
    centre = float(defocus_um)
    low = max(settings.defocus_min_um, centre - _PATCH_SEARCH_UM)
    high = min(settings.defocus_max_um, centre + _PATCH_SEARCH_UM)
    phases = torch.tensor([phase_shift_rad], dtype=torch.float64)
    return search_defocus_1d(
        profiles,
        k,
        optics,
        fit_range_per_a=settings.fit_range_per_a(optics.pixel_size_a),
        defocus_range_um=(low, high),
        defocus_step_um=settings.defocus_step_um,
        phase_shifts_rad=phases,
        rounds=2,
    ).defocus_um


def _patch_ctf_squared(
    optics: Optics,
    defocus_um: torch.Tensor,  # (p,)
    astig: tuple[float, float],
    phase_shift_rad: float,
    k: torch.Tensor,  # (n,)
) -> torch.Tensor:  # (p, n)
    """Rotational average of each patch's ``CTF²`` over the shells of the 1-D profile (shell
    ``i`` holds radii ``i ± ½`` px, sampled at 4 radii weighted by radius, and
    ``POLAR_ANGLES / 2`` directions): astigmatism and the shell width blur the rings of the
    measured profile alike."""
    dtype, device = torch.float64, k.device
    n_angles = POLAR_ANGLES // 2
    angles = (torch.arange(n_angles, dtype=dtype, device=device) + 0.5) * (math.pi / n_angles)
    directions = torch.stack([angles.cos(), angles.sin()], dim=-1)  # (a, 2)
    step = float(k[1] - k[0])
    offsets = torch.tensor([-0.375, -0.125, 0.125, 0.375], dtype=dtype, device=device)
    radii = (k.to(dtype)[:, None] + offsets * step).clamp(min=0)  # (n, 4)
    model = CtfSquaredModel(radii[:, :, None, None] * directions, optics)  # grid (n, 4, a)
    values = model(defocus_um.to(dtype), astig[0], astig[1], phase_shift_rad).mean(-1)
    weights = radii + 1e-12 * step
    return (values * weights).sum(-1) / weights.sum(-1)  # (p, n)


def _grid_dims(
    settings: CtfSettings, patches_xy: tuple[int, int], *, spatial: bool
) -> tuple[int, int]:
    """Requested grid nodes, at most :func:`max_grid_nodes` of the patches along each axis."""
    if not spatial or isinstance(settings.spatial_grid, str):
        return (1, 1)
    return (
        min(settings.spatial_grid[0], max_grid_nodes(patches_xy[0])),
        min(settings.spatial_grid[1], max_grid_nodes(patches_xy[1])),
    )


def max_grid_nodes(n_patches: int) -> int:
    """Most spatial-grid nodes along an axis with ``n_patches`` patches: about half of them,
    at least 2 (a natural spline through 2 nodes is a straight line, so a plane is still
    represented exactly), never more than the patches. One node per patch fits the noise of
    every patch: on flat samples it invents tilts of 4–11° (benchmarks/ctf.py)."""
    return min(n_patches, max(2, n_patches // 2))
