"""Warp's CTF deconvolution filter for looking at micrographs (docs/deconvolution.md).

A Wiener-like filter built from the item's CTF and a model of the spectral signal-to-noise
ratio (Tegunov's ``tom_deconv``, used by Warp for its deconvolved averages and, with other
parameters, for the inputs of its denoiser; IsoNet uses the same filter):

    SSNR(k) = 10^(3·strength) · exp(−200·falloff·k) · H(k)
    H(k)    = 1 − cos(π · min(1, k · highpass_a))      (H = 1 when the high-pass is off)
    W(k)    = CTF(k) · SSNR(k) / (CTF(k)² · SSNR(k) + 1)  = CTF / (CTF² + 1/SSNR)

with ``k = |k|`` in Å⁻¹.  Warp writes the fall-off as ``exp(−r·falloff·100/pixel_size)`` with
``r`` the frequency as a fraction of Nyquist; since ``r = 2·pixel_size·k`` this is
``exp(−200·falloff·k)``, independent of the pixel size.  Warp's high-pass edge is given as a
resolution (``HighPassNyquist = 2·pixel_size/highpass_a``: 100 Å for its deconvolved averages,
500 Å for its denoiser inputs), so ``highpass_a`` here is in Å as well.  Note that ``H`` rises
from 0 to **2** (not 1) above the edge, as in Warp, so the SSNR at ``k = 0⁺`` beyond the edge
is ``2·10^(3·strength)``.  ``W`` is written in the second form above so that ``SSNR = 0``
(at ``k = 0`` with the high-pass on) gives ``W = 0`` without dividing by zero.

**Sign.** The CTF is positive at low frequency (docs/conventions.md §6), so ``W`` keeps the
sign of low frequencies and flips those under negative CTF lobes back: the deconvolved image
shows protein with the **same sign as the raw micrograph at low resolution — dark** for raw
cryo-EM data (and for :mod:`cryowarp.simulate`, whose raw image is ``1 − 2·CTF ⊗ φ``).
With the high-pass on, the mean of the image is removed (``W(0) = 0``).

Sources: D. Tegunov, ``tom_deconv.m`` (github.com/dtegunov/tom_deconv; parameters documented
there: "deconvstrength … 1.0 is SNR = 1000 at zero frequency, 0.67 is SNR = 100", "snrfalloff
… values like 1.0 or 1.2 seem reasonable"); Warp's movie export (``DeconvolutionStrength``,
``DeconvolutionFalloff``, high-pass at 100 Å); Liu et al., *Nat. Commun.* 13 (2022) 6482
(IsoNet). Frequencies and grids: conventions §3.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Protocol, runtime_checkable

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field

from cryowarp.core.ctf import ctf_2d
from cryowarp.core.ctf_params import CTFParams
from cryowarp.core.fourier_grids import frequency_grid
from cryowarp.errors import DimensionMismatchError, InvalidValuesError

__all__ = [
    "DENOISER_INPUT_DECONVOLUTION",
    "DeconvolutionSettings",
    "SupportsCtfParams",
    "deconvolution_filter",
    "deconvolution_ssnr",
    "deconvolve",
]


class DeconvolutionSettings(BaseModel):
    """Parameters of the deconvolution filter (formula in the module docstring)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    strength: float = Field(
        default=1.0,
        ge=0.0,
        le=5.0,
        description="Deconvolution strength, an exponential scale of the SSNR: the SSNR at "
        "zero frequency is 10^(3·strength) (1.0 → 1000, 0.67 → 100); higher values boost "
        "the low frequencies more (unitless).",
    )
    falloff: float = Field(
        default=1.0,
        ge=0.0,
        description="How fast the SSNR falls with frequency, exp(−200·falloff·k) with k in "
        "Å⁻¹ (1.0: by e every 0.005 Å⁻¹; Warp's 'falloff'); higher values damp high "
        "frequencies more (unitless).",
    )
    highpass_a: float | None = Field(
        default=100.0,
        ge=0.0,
        description="Resolution in Å of the raised-cosine high-pass edge: frequencies below "
        "1/highpass_a Å⁻¹ are attenuated, the mean removed (Warp: 100 Å); 0 or None: off.",
    )

    @property
    def highpass_on(self) -> bool:
        """Whether the high-pass term is applied."""
        return self.highpass_a is not None and self.highpass_a > 0


#: Warp's settings for the inputs of its Noise2Noise denoiser ("pre-deconvolved" odd/even
#: averages): gentler than the display defaults, the high-pass edge at 500 Å.
DENOISER_INPUT_DECONVOLUTION = DeconvolutionSettings(strength=0.85, falloff=0.25, highpass_a=500.0)


@runtime_checkable
class SupportsCtfParams(Protocol):
    """Anything that gives :class:`CTFParams`, e.g.
    :class:`~cryowarp.preprocess.ctf.result.CtfResult` (its field-centre estimate)."""

    def ctf_params(self) -> CTFParams: ...


def deconvolution_ssnr(
    k_per_a: torch.Tensor,  # (...)
    *,
    settings: DeconvolutionSettings,
) -> torch.Tensor:
    """The modelled spectral SNR at frequencies ``k_per_a`` (Å⁻¹); same shape and device."""
    ssnr = math.pow(10.0, 3.0 * settings.strength) * torch.exp(-200.0 * settings.falloff * k_per_a)
    if settings.highpass_on:
        assert settings.highpass_a is not None
        edge = torch.clamp(k_per_a * settings.highpass_a, max=1.0)
        ssnr = ssnr * (1.0 - torch.cos(math.pi * edge))
    return ssnr


def deconvolution_filter(
    shape: tuple[int, int],
    *,
    pixel_size_a: float,
    ctf: CTFParams | SupportsCtfParams,
    settings: DeconvolutionSettings | None = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Warp's deconvolution filter for images of real-space ``shape = (h, w)``.

    Parameters
    ----------
    shape:
        ``(h, w)`` of the images to filter.
    pixel_size_a:
        Their pixel size in Å; replaces the pixel size stored with ``ctf`` (the CTF of an
        item applies to its images at any binning).
    ctf:
        The item's CTF, batch shape ``()``: defocus, astigmatism, phase shift (phase-plate
        data), optics (:class:`CTFParams` or a ``CtfResult``).
    settings:
        Strength, fall-off and high-pass (defaults: :class:`DeconvolutionSettings`).
    device, dtype:
        Of the returned filter (default: the CTF's device).

    Returns
    -------
    torch.Tensor
        ``(h, w//2 + 1)`` real filter in the rfft layout (conventions §3; the Nyquist row of
        an even ``h`` at +½, as the CTF).
    """
    settings = settings or DeconvolutionSettings()
    params = _ctf_at_pixel_size(ctf, pixel_size_a)
    if params.batch_shape != torch.Size():
        raise DimensionMismatchError(
            None, f"one CTF per image is needed, got batch shape {tuple(params.batch_shape)}"
        )
    if device is not None:
        params = params.to(device)
    ctf_values = ctf_2d(params, shape)  # (h, w//2+1), float64 from CtfResult
    grid = frequency_grid(
        shape, nyquist_positive=True, device=ctf_values.device, dtype=ctf_values.dtype
    )
    k_per_a = grid.square().sum(-1).sqrt() / pixel_size_a
    ssnr = deconvolution_ssnr(k_per_a, settings=settings)
    wiener = ctf_values * ssnr / (ctf_values.square() * ssnr + 1.0)
    return wiener.to(dtype)


def deconvolve(
    image: torch.Tensor,  # (..., h, w)
    *,
    pixel_size_a: float,
    ctf: CTFParams | SupportsCtfParams,
    settings: DeconvolutionSettings | None = None,
    mirror_pad: bool = True,
) -> torch.Tensor:
    """Deconvolve micrographs with Warp's filter (:func:`deconvolution_filter`).

    Parameters
    ----------
    image:
        ``(h, w)`` micrograph (or ``(..., h, w)`` images sharing one CTF), real.
    pixel_size_a:
        Pixel size of ``image`` in Å.
    ctf:
        The item's CTF (:class:`CTFParams` of batch shape ``()`` or a ``CtfResult``).
    settings:
        Filter parameters (defaults: :class:`DeconvolutionSettings`).
    mirror_pad:
        Filter a mirror-extended copy (half the size added on every side) so that the
        delocalised CTF kernel does not wrap around the edges; ``False`` filters the
        periodic image as it is.

    Returns
    -------
    torch.Tensor
        ``(..., h, w)`` on the device and in the dtype of ``image``; protein keeps the sign it
        has in the raw image (dark for cryo-EM data, module docstring).
    """
    if image.dim() < 2 or min(image.shape[-2:]) < 2:
        raise DimensionMismatchError(
            None, f"deconvolve needs images (..., h, w) of at least 2×2, got {tuple(image.shape)}"
        )
    if not image.is_floating_point():
        image = image.float()
    if not bool(torch.isfinite(image).all()):
        raise InvalidValuesError(None, "the image to deconvolve contains NaN or Inf")
    h, w = image.shape[-2:]
    pad_y, pad_x = (h // 2, w // 2) if mirror_pad else (0, 0)
    work = _mirror_pad(image, pad_y, pad_x) if mirror_pad else image
    shape = (h + 2 * pad_y, w + 2 * pad_x)
    wiener = deconvolution_filter(
        shape,
        pixel_size_a=pixel_size_a,
        ctf=ctf,
        settings=settings,
        device=image.device,
        dtype=image.dtype,
    )
    spectrum = torch.fft.rfft2(work)
    filtered: torch.Tensor = torch.fft.irfft2(spectrum * wiener, s=shape)
    return filtered[..., pad_y : pad_y + h, pad_x : pad_x + w].contiguous()


# -- private helpers -------------------------------------------------------------------


def _ctf_at_pixel_size(ctf: CTFParams | SupportsCtfParams, pixel_size_a: float) -> CTFParams:
    if not pixel_size_a > 0 or not math.isfinite(pixel_size_a):
        raise InvalidValuesError(None, f"pixel size must be positive, got {pixel_size_a} Å")
    params = ctf if isinstance(ctf, CTFParams) else ctf.ctf_params()
    pixel = torch.as_tensor(
        pixel_size_a, dtype=params.defocus_um.dtype, device=params.defocus_um.device
    )
    return dataclasses.replace(params, pixel_size_a=pixel)


def _mirror_pad(image: torch.Tensor, pad_y: int, pad_x: int) -> torch.Tensor:
    """``(..., h + 2·pad_y, w + 2·pad_x)`` mirror extension (edge pixels not repeated)."""
    lead = image.shape[:-2]
    flat = image.reshape(-1, 1, *image.shape[-2:])
    padded = F.pad(flat, (pad_x, pad_x, pad_y, pad_y), mode="reflect")
    return padded.reshape(*lead, *padded.shape[-2:])
