"""Evaluation of the contrast transfer function.

Formula, signs, units and the RELION/Warp mapping: docs/conventions.md §6 and docs/ctf.md.
Parameters are a :class:`~cryowarp.core.ctf_params.CTFParams` (re-exported here) of batch
shape ``B``; evaluating on a grid of shape ``G`` returns ``(*B, *G)``.  Gradients flow to every
tensor parameter.
"""

from __future__ import annotations

import math

import torch

from cryowarp.core.aberrations import (
    apply_magnification,
    beam_tilt_phase_rad,
    even_zernike_phase_rad,
    odd_zernike_phase_rad,
)
from cryowarp.core.ctf_params import CTFParams
from cryowarp.core.fourier_grids import frequency_grid
from cryowarp.errors import InvalidValuesError

__all__ = [
    "CTFParams",
    "ctf_1d",
    "ctf_2d",
    "ctf_at_frequencies",
    "ctf_zero_frequencies_a",
    "odd_phase_factor",
    "odd_phase_factor_2d",
    "polar_frequency_coordinates",
]


# -- polar coordinates -----------------------------------------------------------------


def polar_frequency_coordinates(k_xy: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Squared magnitude and angle of frequency vectors.

    Parameters
    ----------
    k_xy:
        ``(..., 2)`` frequencies (any unit).

    Returns
    -------
    (torch.Tensor, torch.Tensor)
        ``|k|²`` (unit²) and the angle from +x towards +y in radians, each ``(...)``.
    """
    return k_xy.square().sum(-1), torch.atan2(k_xy[..., 1], k_xy[..., 0])


# -- evaluation ------------------------------------------------------------------------


def ctf_at_frequencies(
    params: CTFParams,
    k_xy_per_a: torch.Tensor,
    *,
    frequencies_batched: bool = False,
    ignore_first_peak: bool = False,
) -> torch.Tensor:
    """The real CTF at arbitrary spatial frequencies.

    Includes defocus, astigmatism, Cs, amplitude contrast, phase shift, even Zernike terms,
    the B-factor envelope and the scale (docs/conventions.md §6).  Odd aberrations are in
    :func:`odd_phase_factor`.

    Parameters
    ----------
    params:
        Parameters of batch shape ``B``.
    k_xy_per_a:
        ``(*G, 2)`` or ``(*G, 3)`` frequencies in Å⁻¹, in the nominal (detector) frame; a 3-D
        vector is evaluated at its projection ``(kx, ky)`` onto the image plane.  With
        ``frequencies_batched=True`` the shape is ``(*B, *G, 2|3)``: one set per batch entry.
    ignore_first_peak:
        Set the oscillating factor to 1 where ``|χ| < π/2`` (up to the first peak), as
        RELION's "ignore CTFs until first peak" and Warp's ``ignorefirstpeak``.

    Returns
    -------
    torch.Tensor
        ``(*B, *G)``.
    """
    k, expand = _broadcast_frequencies(params, k_xy_per_a, frequencies_batched)
    k_true = _true_frequencies(params, k, expand)
    chi = _even_phase(params, k_true, expand)
    oscillation = torch.sin(chi)
    if ignore_first_peak:
        oscillation = torch.where(chi.abs() < math.pi / 2, torch.ones_like(chi), oscillation)
    k2 = k_true.square().sum(-1)
    envelope = torch.exp(expand(params.bfactor_a2) * k2 / 4.0)
    return expand(params.scale) * envelope * oscillation


def odd_phase_factor(
    params: CTFParams, k_xy_per_a: torch.Tensor, *, frequencies_batched: bool = False
) -> torch.Tensor:
    """``exp(i χ_odd(k))`` from beam tilt and odd Zernike terms.

    The model of an image is ``CTF · exp(i χ_odd) · F[projection]`` (RELION's phase
    correction).  Shapes as in :func:`ctf_at_frequencies`; returns a complex ``(*B, *G)``
    tensor (all ones when the parameters carry no odd aberrations).
    """
    k, expand = _broadcast_frequencies(params, k_xy_per_a, frequencies_batched)
    k_true = _true_frequencies(params, k, expand)
    phase = torch.zeros_like(k_true[..., 0])
    if params.beam_tilt_mrad is not None:
        tilt = expand(params.beam_tilt_mrad, trailing=1)
        phase = phase + beam_tilt_phase_rad(
            k_true, tilt, expand(params.cs_mm), expand(params.wavelength_a)
        )
    if params.odd_zernike is not None:
        phase = phase + odd_zernike_phase_rad(expand(params.odd_zernike, trailing=1), k_true)
    return torch.polar(torch.ones_like(phase), phase)


def ctf_2d(
    params: CTFParams,
    shape: tuple[int, int],
    *,
    rfft: bool = True,
    fftshifted: bool = False,
    ignore_first_peak: bool = False,
) -> torch.Tensor:
    """The CTF of images of real-space ``shape = (h, w)``.

    Parameters
    ----------
    rfft, fftshifted:
        Layout of the returned spectrum (docs/conventions.md §3), with the Nyquist sample
        of an even axis at **+½** cycles/pixel as in Warp and RELION
        (:func:`~cryowarp.core.fourier_grids.frequency_grid` with ``nyquist_positive=True``).

    Returns
    -------
    torch.Tensor
        ``(*B, h, w//2 + 1)`` (rfft) or ``(*B, h, w)``; on the device of ``params``.
    """
    return ctf_at_frequencies(
        params,
        _grid_per_a(params, shape, rfft=rfft, fftshifted=fftshifted),
        frequencies_batched=True,
        ignore_first_peak=ignore_first_peak,
    )


def odd_phase_factor_2d(
    params: CTFParams, shape: tuple[int, int], *, rfft: bool = True, fftshifted: bool = False
) -> torch.Tensor:
    """:func:`odd_phase_factor` on the Fourier grid of images of ``shape``; ``(*B, h, w')``."""
    return odd_phase_factor(
        params,
        _grid_per_a(params, shape, rfft=rfft, fftshifted=fftshifted),
        frequencies_batched=True,
    )


def ctf_1d(
    params: CTFParams,
    frequencies: torch.Tensor | int,
    *,
    angle_deg: float = 0.0,
    ignore_first_peak: bool = False,
) -> torch.Tensor:
    """The CTF along one direction.

    Parameters
    ----------
    frequencies:
        ``(n,)`` radial frequencies in Å⁻¹, or an int ``n`` for ``n`` samples from 0 to
        Nyquist (``1/(2·pixel_size_a)``, per batch entry) inclusive.
    angle_deg:
        Direction (from +x towards +y) along which astigmatic defocus is taken.

    Returns
    -------
    torch.Tensor
        ``(*B, n)``.
    """
    phi = math.radians(angle_deg)
    dtype = params.defocus_um.dtype
    if isinstance(frequencies, int):
        fraction = torch.linspace(0.0, 0.5, frequencies, device=params.device, dtype=dtype)
        radial = fraction / params.pixel_size_a.expand(params.batch_shape)[..., None]
        batched = True
    else:
        radial, batched = frequencies.to(device=params.device), False
    direction = torch.tensor([math.cos(phi), math.sin(phi)], device=params.device, dtype=dtype)
    k = radial[..., None] * direction
    return ctf_at_frequencies(
        params, k, frequencies_batched=batched, ignore_first_peak=ignore_first_peak
    )


def ctf_zero_frequencies_a(params: CTFParams, n_zeros: int) -> torch.Tensor:
    """Analytic frequencies (Å⁻¹) of the first ``n_zeros`` CTF zeros, ignoring astigmatism
    and Zernike terms (mean defocus only).

    Solves ``π λ Δz k² − (π/2) Cs λ³ k⁴ + φ = nπ`` for the smallest ``k > 0`` of each
    successive ``n``, where ``φ`` is the phase shift plus the amplitude-contrast phase.

    Returns
    -------
    torch.Tensor
        ``(*B, n_zeros)``; NaN where ``χ`` never reaches that multiple of π.
    """
    lam = params.wavelength_a
    a = math.pi * lam * params.defocus_um * 1e4
    b = 0.5 * math.pi * params.cs_mm * 1e7 * lam**3
    phi = params.phase_shift_rad + _amplitude_phase(params.amplitude_contrast)
    a, b, phi = (t.expand(params.batch_shape)[..., None] for t in (a, b, phi))
    first = torch.floor(phi / math.pi) + 1  # smallest n with nπ > φ(0)
    n = first + torch.arange(n_zeros, device=params.device, dtype=a.dtype)
    c = phi - n * math.pi  # −b u² + a u + c = 0 with u = k²
    disc = a * a + 4 * b * c
    safe_b = torch.where(b > 0, b, torch.ones_like(b))
    u = torch.where(b > 0, (a - torch.sqrt(disc)) / (2 * safe_b), -c / a)
    return torch.sqrt(u)


# -- private helpers -------------------------------------------------------------------


class _Expand:
    """Reshape a parameter of batch shape ``B`` (plus ``trailing`` dims) for a grid of
    ``n_grid`` dims: ``(*B, *[1]*n_grid, *trailing)``."""

    def __init__(self, batch_shape: torch.Size, n_grid: int) -> None:
        self.batch_shape = batch_shape
        self.n_grid = n_grid

    def __call__(self, value: torch.Tensor, *, trailing: int = 0) -> torch.Tensor:
        tail = value.shape[value.ndim - trailing :] if trailing else torch.Size()
        value = value.expand((*self.batch_shape, *tail))
        return value.reshape((*self.batch_shape, *([1] * self.n_grid), *tail))


def _broadcast_frequencies(
    params: CTFParams, k: torch.Tensor, batched: bool
) -> tuple[torch.Tensor, _Expand]:
    if k.shape[-1] not in (2, 3):
        raise InvalidValuesError(
            None, f"frequency vectors must have 2 or 3 components, got shape {tuple(k.shape)}"
        )
    k = k[..., :2].to(device=params.device)
    batch = params.batch_shape
    if batched:
        if tuple(k.shape[: len(batch)]) != tuple(batch):
            raise InvalidValuesError(
                None,
                f"batched frequencies {tuple(k.shape)} do not start with the parameters' "
                f"batch shape {tuple(batch)}",
            )
        n_grid = k.ndim - 1 - len(batch)
    else:
        n_grid = k.ndim - 1
        k = k.reshape(*([1] * len(batch)), *k.shape)
    return k, _Expand(batch, n_grid)


def _true_frequencies(params: CTFParams, k: torch.Tensor, expand: _Expand) -> torch.Tensor:
    if params.mag_matrix is None:
        return k
    return apply_magnification(k, expand(params.mag_matrix, trailing=2))


def _amplitude_phase(amplitude_contrast: torch.Tensor) -> torch.Tensor:
    return torch.atan(amplitude_contrast / torch.sqrt(1 - amplitude_contrast.square()))


def _even_phase(params: CTFParams, k_true: torch.Tensor, expand: _Expand) -> torch.Tensor:
    """χ(k) without odd terms, in radians, ``(*B, *G)``, at true frequencies (Å⁻¹)."""
    kx, ky = k_true[..., 0], k_true[..., 1]
    k2 = kx * kx + ky * ky
    lam = expand(params.wavelength_a)
    # Δz(φ)·k² = Δz̄ k² + δcos2θ (kx² − ky²) + δsin2θ (2 kx ky): smooth at k = 0 and δ = 0.
    defocus_k2_a = (
        expand(params.defocus_um) * k2
        + expand(params.astig_x_um) * (kx * kx - ky * ky)
        + expand(params.astig_y_um) * (2 * kx * ky)
    ) * 1e4
    chi = (
        math.pi * lam * defocus_k2_a
        - 0.5 * math.pi * expand(params.cs_mm) * 1e7 * lam**3 * k2 * k2
        + expand(params.phase_shift_rad)
        + expand(_amplitude_phase(params.amplitude_contrast))
    )
    if params.even_zernike is not None:
        # RELION adds the even Zernike phase to γ = −χ.
        chi = chi - even_zernike_phase_rad(expand(params.even_zernike, trailing=1), k_true)
    return chi


def _grid_per_a(
    params: CTFParams, shape: tuple[int, int], *, rfft: bool, fftshifted: bool
) -> torch.Tensor:
    """``(*B, *fourier_shape, 2)`` frequencies in Å⁻¹."""
    if len(shape) != 2:
        raise InvalidValuesError(None, f"ctf_2d needs an image shape (h, w), got {shape}")
    grid = frequency_grid(
        shape,
        rfft=rfft,
        fftshifted=fftshifted,
        nyquist_positive=True,  # as Warp and RELION (docs/ctf.md, "Findings")
        device=params.device,
        dtype=params.defocus_um.dtype,
    )
    pixel = params.pixel_size_a.expand(params.batch_shape)
    return grid / pixel.reshape(*pixel.shape, 1, 1, 1)
