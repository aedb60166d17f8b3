"""Exposure (dose) weighting of frames, as Warp does it (docs/conventions.md §7)."""

from __future__ import annotations

import torch

from cryowarp.core.fourier_grids import frequency_magnitude

__all__ = ["DOSE_BFACTOR_A2_PER_E_PER_A2", "dose_bfactors_a2", "dose_weights"]

#: Warp's radiation-damage model: a B-factor of −4 Å² per e⁻/Å² of accumulated exposure.
DOSE_BFACTOR_A2_PER_E_PER_A2 = -4.0


def dose_bfactors_a2(accumulated_dose_e_per_a2: torch.Tensor) -> torch.Tensor:
    """B-factor (Å², negative attenuates) of each frame: ``−4 × accumulated dose``.

    ``accumulated_dose_e_per_a2``: ``(..., n_frames)`` dose (e⁻/Å²) that each frame has
    received, as the caller defines it (motion correction uses the dose at the middle of the
    frame).
    """
    return DOSE_BFACTOR_A2_PER_E_PER_A2 * accumulated_dose_e_per_a2


def dose_weights(
    accumulated_dose_e_per_a2: torch.Tensor,  # (..., n_frames)
    shape: tuple[int, int],
    *,
    pixel_size_a: float,
    normalize: bool = True,
) -> torch.Tensor:
    """Per-frame Fourier weights ``exp(B k²/4)`` with ``B = −4 D`` (conventions §7).

    Parameters
    ----------
    accumulated_dose_e_per_a2:
        ``(..., n_frames)`` accumulated dose of each frame (e⁻/Å²).
    shape:
        Real-space image shape ``(h, w)``; weights are on its rfft grid (conventions §3).
    pixel_size_a:
        Pixel size (Å) of the frames.
    normalize:
        Divide by the sum over frames so that, at every frequency, the weights sum to 1.

    Returns
    -------
    torch.Tensor
        ``(..., n_frames, h, w//2 + 1)`` on the device of the dose tensor.
    """
    dose = accumulated_dose_e_per_a2
    k2 = (frequency_magnitude(shape, device=dose.device, dtype=dose.dtype) / pixel_size_a) ** 2
    b = dose_bfactors_a2(dose)[..., None, None]
    log_w = b * k2 / 4
    if normalize:
        return torch.softmax(log_w, dim=-3)
    return torch.exp(log_w)
