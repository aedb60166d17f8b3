"""Exhaustive 1-D search of the defocus (and phase shift) on a rotationally averaged spectrum.

Score: the normalised (Pearson) correlation, over the fit range, of the background-subtracted
and background-normalised power spectrum ``(P − B)/B`` with the model ``(E/B)·CTF²``
(``CTF²``, i.e. ``|CTF|²``, because the power spectrum carries ``E·CTF²`` above the background).
After the best candidate is found, background and envelope are re-estimated from it
(:func:`~cryowarp.preprocess.ctf.background.fit_background_and_envelope`) and the search is
repeated; the optimum is refined by a parabola through the best grid point and its neighbours.
CTF conventions: docs/conventions.md §6.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from cryowarp.core.ctf import ctf_1d
from cryowarp.core.ctf_params import CTFParams
from cryowarp.preprocess.ctf.background import fit_background, fit_background_and_envelope

__all__ = ["Optics", "Search1dResult", "ctf_squared_1d", "pearson", "search_defocus_1d"]


@dataclass(frozen=True)
class Optics:
    """Imaging constants: pixel size (Å), voltage (kV), Cs (mm), amplitude contrast."""

    pixel_size_a: float
    voltage_kv: float
    cs_mm: float
    amplitude_contrast: float

    def params(
        self,
        defocus_um: torch.Tensor,
        *,
        phase_shift_rad: torch.Tensor | float = 0.0,
        astig_x_um: torch.Tensor | float = 0.0,
        astig_y_um: torch.Tensor | float = 0.0,
    ) -> CTFParams:
        """:class:`CTFParams` with these optics, in the dtype/device of ``defocus_um``."""
        return CTFParams.create(
            pixel_size_a=self.pixel_size_a,
            voltage_kv=self.voltage_kv,
            cs_mm=self.cs_mm,
            amplitude_contrast=self.amplitude_contrast,
            defocus_um=defocus_um,
            phase_shift_rad=phase_shift_rad,
            astig_x_um=astig_x_um,
            astig_y_um=astig_y_um,
            device=defocus_um.device,
            dtype=defocus_um.dtype,
        )


@dataclass(frozen=True, eq=False)
class Search1dResult:
    """Best 1-D fit.

    Attributes
    ----------
    defocus_um, phase_shift_rad, score:
        Best mean defocus (µm), phase shift (rad) and its correlation score.
    background, envelope:
        ``(n,)`` background ``B`` and envelope ``E`` re-estimated from the best fit.
    scores:
        ``(m, q)`` scores of every (defocus, phase shift) candidate in the last round.
    """

    defocus_um: float
    phase_shift_rad: float
    score: float
    background: torch.Tensor  # (n,)
    envelope: torch.Tensor  # (n,)
    scores: torch.Tensor  # (m, q)


def pearson(a: torch.Tensor, b: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Normalised correlation of ``a`` and ``b`` (broadcast, ``(..., n)``) over ``mask`` (n,)."""
    a = a[..., mask]
    b = b[..., mask]
    a = a - a.mean(-1, keepdim=True)
    b = b - b.mean(-1, keepdim=True)
    norm = (a.square().sum(-1) * b.square().sum(-1)).sqrt().clamp(min=1e-30)
    result: torch.Tensor = (a * b).sum(-1) / norm
    return result


def ctf_squared_1d(
    optics: Optics,
    frequencies_per_a: torch.Tensor,  # (n,)
    defocus_um: torch.Tensor,  # (m,)
    phase_shift_rad: torch.Tensor,  # (q,)
) -> torch.Tensor:  # (m, q, n)
    """``CTF²`` of every (defocus, phase shift) pair at radial frequencies (Å⁻¹)."""
    params = optics.params(defocus_um[:, None], phase_shift_rad=phase_shift_rad[None, :])
    return ctf_1d(params, frequencies_per_a).square()


def search_defocus_1d(
    profile: torch.Tensor,  # (n,)
    frequencies_per_a: torch.Tensor,  # (n,)
    optics: Optics,
    *,
    fit_range_per_a: tuple[float, float],
    defocus_range_um: tuple[float, float],
    defocus_step_um: float,
    phase_shifts_rad: torch.Tensor | None = None,  # (q,)
    rounds: int = 3,
) -> Search1dResult:
    """Exhaustive search of mean defocus (and phase shift) on a 1-D power spectrum.

    Parameters
    ----------
    profile:
        Rotationally averaged power spectrum (any positive scale).
    frequencies_per_a:
        Frequencies of the samples in Å⁻¹.
    optics:
        Imaging constants.
    fit_range_per_a:
        ``(low, high)`` frequencies (Å⁻¹) the score uses.
    defocus_range_um, defocus_step_um:
        Candidates ``low, low + step, …, high`` in µm.
    phase_shifts_rad:
        Candidate phase shifts in radians (default: only 0).
    rounds:
        Search → background/envelope re-estimation rounds.
    """
    profile = profile.to(torch.float64)
    k = frequencies_per_a.to(device=profile.device, dtype=torch.float64)
    low, high = defocus_range_um
    count = max(math.floor((high - low) / defocus_step_um + 1e-9) + 1, 2)
    defoci = torch.linspace(low, low + (count - 1) * defocus_step_um, count, dtype=k.dtype)
    defoci = defoci.to(k.device)
    phases = (
        torch.zeros(1, dtype=k.dtype, device=k.device)
        if phase_shifts_rad is None
        else phase_shifts_rad.to(device=k.device, dtype=k.dtype)
    )
    mask = (k >= fit_range_per_a[0]) & (k <= fit_range_per_a[1])
    ctf2 = ctf_squared_1d(optics, k, defoci, phases)  # (m, q, n)

    background = fit_background(profile, k, fit_range_per_a)
    normalised = (profile - background) / background
    weight = fit_background(normalised.abs(), k, fit_range_per_a).clamp(min=1e-12)
    best = (0, 0)
    scores = torch.zeros(ctf2.shape[:2], dtype=k.dtype, device=k.device)
    envelope = torch.zeros_like(profile)
    for _ in range(rounds):
        scores = pearson(weight * ctf2, normalised, mask)
        flat_index = int(torch.argmax(torch.nan_to_num(scores, nan=-2.0)))
        best = (flat_index // scores.shape[1], flat_index % scores.shape[1])
        background, envelope = fit_background_and_envelope(profile, ctf2[best], k, fit_range_per_a)
        normalised = (profile - background) / background
        weight = envelope / background
    defocus = _parabolic_peak(scores[:, best[1]], best[0], defoci)
    return Search1dResult(
        defocus_um=defocus,
        phase_shift_rad=float(phases[best[1]]),
        score=float(scores[best]),
        background=background,
        envelope=envelope,
        scores=scores,
    )


def _parabolic_peak(values: torch.Tensor, index: int, grid: torch.Tensor) -> float:
    """Sub-step position of the maximum of ``values`` on the even ``grid`` near ``index``."""
    if index == 0 or index == len(values) - 1:
        return float(grid[index])
    left, centre, right = (float(v) for v in values[index - 1 : index + 2])
    curvature = left - 2 * centre + right
    offset = 0.0 if curvature >= 0 else 0.5 * (left - right) / curvature
    step = float(grid[1] - grid[0])
    return float(grid[index]) + max(-0.5, min(0.5, offset)) * step
