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
    """Best 1-D fit of each profile of a batch ``(...)``.

    Attributes
    ----------
    defocus_um, phase_shift_rad, score:
        ``(...)`` best mean defocus (µm, refined between grid steps), phase shift (rad) and
        its correlation score.
    background, envelope:
        ``(..., n)`` background ``B`` and envelope ``E`` re-estimated from the best fit.
    scores:
        ``(..., m, q)`` scores of every (defocus, phase shift) candidate in the last round.
    """

    defocus_um: torch.Tensor  # (...)
    phase_shift_rad: torch.Tensor  # (...)
    score: torch.Tensor  # (...)
    background: torch.Tensor  # (..., n)
    envelope: torch.Tensor  # (..., n)
    scores: torch.Tensor  # (..., m, q)


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
    profile: torch.Tensor,  # (..., n)
    frequencies_per_a: torch.Tensor,  # (n,)
    optics: Optics,
    *,
    fit_range_per_a: tuple[float, float],
    defocus_range_um: tuple[float, float],
    defocus_step_um: float,
    phase_shifts_rad: torch.Tensor | None = None,  # (q,)
    rounds: int = 3,
) -> Search1dResult:
    """Exhaustive search of mean defocus (and phase shift) on 1-D power spectra.

    Every profile of the batch is searched independently; the scores of all candidates are
    matrix products of the ``CTF²`` table with the profiles.

    Parameters
    ----------
    profile:
        ``(..., n)`` rotationally averaged power spectra (any positive scale).
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
    batch = profile.shape[:-1]
    values = profile.to(torch.float64).reshape(-1, profile.shape[-1])  # (b, n)
    k = frequencies_per_a.to(device=values.device, dtype=torch.float64)
    low, high = defocus_range_um
    count = max(math.floor((high - low) / defocus_step_um + 1e-9) + 1, 2)
    defoci = low + defocus_step_um * torch.arange(count, dtype=k.dtype, device=k.device)
    phases = (
        torch.zeros(1, dtype=k.dtype, device=k.device)
        if phase_shifts_rad is None
        else phase_shifts_rad.to(device=k.device, dtype=k.dtype).reshape(-1)
    )
    mask = (k >= fit_range_per_a[0]) & (k <= fit_range_per_a[1])
    table = ctf_squared_1d(optics, k, defoci, phases).reshape(-1, k.shape[0])  # (m·q, n)

    background = fit_background(values, k, fit_range_per_a)
    normalised = (values - background) / background
    weight = fit_background(normalised.abs(), k, fit_range_per_a).clamp(min=1e-12)
    envelope = torch.zeros_like(values)
    scores = torch.zeros(values.shape[0], table.shape[0], dtype=k.dtype, device=k.device)
    best = torch.zeros(values.shape[0], dtype=torch.int64, device=k.device)
    for _ in range(rounds):
        scores = _correlations(table[:, mask], weight[:, mask], normalised[:, mask])
        best = torch.argmax(torch.nan_to_num(scores, nan=-2.0), dim=-1)
        background, envelope = fit_background_and_envelope(values, table[best], k, fit_range_per_a)
        normalised = (values - background) / background
        weight = envelope / background
    grid_scores = scores.reshape(-1, count, phases.shape[0])
    best_defocus, best_phase = best // phases.shape[0], best % phases.shape[0]
    column = grid_scores[torch.arange(best.shape[0], device=k.device), :, best_phase]  # (b, m)
    defocus = _parabolic_peak(column, best_defocus, defoci)
    return Search1dResult(
        defocus_um=defocus.reshape(batch),
        phase_shift_rad=phases[best_phase].reshape(batch),
        score=scores.gather(-1, best[:, None])[:, 0].reshape(batch),
        background=background.reshape(profile.shape),
        envelope=envelope.reshape(profile.shape),
        scores=grid_scores.reshape(*batch, count, phases.shape[0]),
    )


def _correlations(
    table: torch.Tensor,  # (c, n)
    weight: torch.Tensor,  # (b, n)
    target: torch.Tensor,  # (b, n)
) -> torch.Tensor:  # (b, c)
    """Pearson correlation of ``weight · table[c]`` with ``target`` for every pair, from
    matrix products (no ``(b, c, n)`` tensor)."""
    n = target.shape[-1]
    centred = target - target.mean(-1, keepdim=True)
    numerator = (weight * centred) @ table.T
    sums = weight @ table.T
    squares = weight.square() @ table.square().T
    variance = (squares - sums.square() / n).clamp(min=0)
    norm = (variance * centred.square().sum(-1, keepdim=True)).sqrt().clamp(min=1e-30)
    return numerator / norm


def _parabolic_peak(
    values: torch.Tensor,  # (b, m)
    index: torch.Tensor,  # (b,)
    grid: torch.Tensor,  # (m,)
) -> torch.Tensor:  # (b,)
    """Sub-step position of the maximum of each row of ``values`` on the even ``grid`` near
    ``index`` (the grid point itself at the ends of the grid)."""
    m = values.shape[-1]
    inner = index.clamp(1, m - 2)
    left, centre, right = (values.gather(-1, (inner + d)[:, None])[:, 0] for d in (-1, 0, 1))
    curvature = left - 2 * centre + right
    safe = torch.where(curvature < 0, curvature, -torch.ones_like(curvature))
    offset = torch.where(curvature < 0, 0.5 * (left - right) / safe, torch.zeros_like(safe))
    at_end = (index == 0) | (index == m - 1)
    offset = torch.where(at_end, torch.zeros_like(offset), offset.clamp(-0.5, 0.5))
    step = grid[1] - grid[0]
    return grid[index] + offset * step
