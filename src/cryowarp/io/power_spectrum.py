"""Precomputed power spectra (MotionCor2, RELION, CTFFIND diagnostic images) in MRC files.

Other programs write power spectra as images with **zero frequency at the centre** (index
``N//2`` along both axes, conventions §2): a full ``(s, s)`` image, or only the half with the
non-negative x frequencies, ``(s, s//2 + 1)``. cryowarp works on the rfft layout of
docs/conventions.md §3 (DC at index 0, last axis ``0 … N//2``). This module finds which of four
layouts a file uses and converts it:

``"centred_full"``  ``(h, w)``, DC at ``(h//2, w//2)`` (MotionCor2, RELION, CTFFIND);
``"centred_half"``  ``(s, s//2 + 1)``, rows centred (DC at row ``s//2``), column 0 is kx = 0;
``"fft_full"``      ``(h, w)`` in FFT order (DC at ``(0, 0)``);
``"rfft"``          ``(s, s//2 + 1)`` in cryowarp's own rfft layout.

Full versus half is decided by the shape; centred versus FFT order by where the bright
low-frequency samples are (a power spectrum falls off with frequency); pass ``layout=`` when a
spectrum breaks that rule. The power spectrum of a real image is point-symmetric
(``P(k) = P(−k)``), so a full spectrum holds everything twice; ``use_half`` picks the half the
values come from, for diagnostic images that draw a fitted model in the other half.
Values are returned as stored (power, amplitude or log scale alike). The way back to a
centred image is :func:`cryowarp.core.fourier.rfft_to_full` with ``fftshifted=True``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, TypeAlias, get_args

import numpy as np
import torch

from cryowarp.errors import FileFormatError, InvalidValuesError
from cryowarp.io.mrc import read_mrc

__all__ = [
    "PowerSpectrum",
    "SpectrumLayout",
    "centred_to_rfft",
    "detect_spectrum_layout",
    "read_power_spectrum",
]

SpectrumLayout: TypeAlias = Literal["centred_full", "centred_half", "fft_full", "rfft"]
"""How a power spectrum is laid out in an image (see the module docstring)."""

_MIN_SIZE_PX = 16


@dataclass(frozen=True)
class PowerSpectrum:
    """A power spectrum in cryowarp's rfft layout (docs/conventions.md §3).

    Attributes
    ----------
    values:
        ``(..., h, w//2 + 1)`` float32 samples, DC at ``[..., 0, 0]``; leading dims hold the
        sections of a stack.
    shape_px:
        Real-space size ``(h, w)`` of the images the spectrum belongs to (a half spectrum
        ``(s, s//2 + 1)`` is taken to come from an ``(s, s)`` image).
    pixel_size_a:
        Pixel size of those images in Å (the header's, unless given); ``None`` when unknown.
    layout:
        The layout found in (or imposed on) the file.
    path:
        The file, ``None`` for in-memory data.
    """

    values: torch.Tensor  # (..., h, w//2 + 1)
    shape_px: tuple[int, int]
    pixel_size_a: float | None
    layout: SpectrumLayout
    path: Path | None = None


def _is_half(shape: tuple[int, int]) -> bool:
    h, w = shape
    return w == h // 2 + 1 and h != w


def _real_shape(shape: tuple[int, int], layout: SpectrumLayout) -> tuple[int, int]:
    return (shape[0], shape[0]) if layout in ("centred_half", "rfft") else shape


def _check_shape(shape: tuple[int, ...], layout: SpectrumLayout | None, path: Path | None) -> None:
    if len(shape) < 2:
        raise FileFormatError(path, f"a power spectrum needs 2 dimensions, got shape {shape}")
    h, w = shape[-2:]
    if min(h, w) < _MIN_SIZE_PX // 2 or h < _MIN_SIZE_PX:
        raise FileFormatError(
            path, f"power spectrum of shape {(h, w)} is too small (at least {_MIN_SIZE_PX} rows)"
        )
    half = _is_half((h, w))
    if layout is None and not half and h != w:
        raise FileFormatError(
            path,
            f"power spectrum of shape {(h, w)} is neither square (s, s) nor a half (s, s//2 + 1)",
            "pass the layout explicitly for a rectangular full spectrum",
        )
    if layout in ("centred_half", "rfft") and w != h // 2 + 1:
        raise FileFormatError(
            path, f"a half spectrum of {h} rows must have {h // 2 + 1} columns, got {w}"
        )


def _low_frequency_mean(uncentred_rfft: torch.Tensor, real_shape: tuple[int, int]) -> float:
    """Mean of the samples between 1/32 and 1/6 cycles/px, assuming the rfft layout."""
    h, w = real_shape
    fy = torch.fft.fftfreq(h, device=uncentred_rfft.device)[:, None]
    fx = torch.fft.rfftfreq(w, device=uncentred_rfft.device)[None, :]
    radius = (fx.square() + fy.square()).sqrt()
    ring = (radius > 1 / 32) & (radius <= 1 / 6)
    values = uncentred_rfft.reshape(-1, *uncentred_rfft.shape[-2:])
    return float(values[:, ring].double().mean())


def detect_spectrum_layout(
    spectrum: torch.Tensor,  # (..., h, w)
) -> SpectrumLayout:
    """Guess the layout of a power spectrum image (see the module docstring).

    Full or half from the shape (``w == h//2 + 1`` is a half); centred or FFT order from where
    the samples between 1/32 and 1/6 cycles/px are brighter on average — a power spectrum,
    amplitude spectrum or its logarithm falls off with frequency.

    Raises
    ------
    FileFormatError
        The shape is neither square nor a half, or too small.
    """
    _check_shape(tuple(spectrum.shape), None, None)
    shape = (int(spectrum.shape[-2]), int(spectrum.shape[-1]))
    half = _is_half(shape)
    candidates: tuple[SpectrumLayout, SpectrumLayout] = (
        ("centred_half", "rfft") if half else ("centred_full", "fft_full")
    )
    means = [
        _low_frequency_mean(centred_to_rfft(spectrum, layout=c), _real_shape(shape, c))
        for c in candidates
    ]
    return candidates[0] if means[0] >= means[1] else candidates[1]


def centred_to_rfft(
    spectrum: torch.Tensor,  # (..., h, w) in ``layout``
    *,
    layout: SpectrumLayout = "centred_full",
    use_half: Literal["right", "left"] = "right",
) -> torch.Tensor:
    """Convert a power spectrum image to the rfft layout (docs/conventions.md §3).

    Parameters
    ----------
    spectrum:
        ``(..., h, w)`` samples laid out as ``layout`` says.
    layout:
        The input layout (module docstring).
    use_half:
        For full layouts: take the values from the kx ≥ 0 half (``"right"``) or from the
        kx ≤ 0 half through ``P(k) = P(−k)`` (``"left"``). Ignored for half layouts.

    Returns
    -------
    torch.Tensor
        ``(..., h', w'//2 + 1)`` with ``(h', w')`` the real-space shape (``(s, s)`` for half
        layouts); same device and dtype as ``spectrum``.
    """
    if layout in ("rfft", "centred_half"):
        return spectrum.clone() if layout == "rfft" else torch.fft.ifftshift(spectrum, dim=-2)
    full = torch.fft.ifftshift(spectrum, dim=(-2, -1)) if layout == "centred_full" else spectrum
    if use_half == "left":  # P(k) = P(-k): index i -> (-i) mod n along both axes
        full = torch.roll(torch.flip(full, dims=(-2, -1)), shifts=(1, 1), dims=(-2, -1))
    return full[..., : spectrum.shape[-1] // 2 + 1].clone()


def read_power_spectrum(
    path: str | os.PathLike[str],
    *,
    pixel_size_a: float | None = None,
    layout: SpectrumLayout | Literal["auto"] = "auto",
    use_half: Literal["right", "left"] = "right",
) -> PowerSpectrum:
    """Read a power spectrum image or stack from an MRC file, in the rfft layout.

    Parameters
    ----------
    path:
        MRC file with one spectrum ``(h, w)`` or a stack ``(n, h, w)``.
    pixel_size_a:
        Pixel size (Å) of the images the spectrum was computed from; by default the header's
        (which some programs set to the image pixel size and others leave at 0 or 1).
    layout:
        ``"auto"`` (:func:`detect_spectrum_layout`) or the layout of the file.
    use_half:
        Which half of a full spectrum holds the data (:func:`centred_to_rfft`).

    Raises
    ------
    MissingFileError, FileFormatError, TruncatedFileError
        The file is missing, not an MRC file, or of a shape that is no power spectrum.
    InvalidValuesError
        NaN or infinite samples, or a non-positive ``pixel_size_a``.
    """
    if layout != "auto" and layout not in get_args(SpectrumLayout):
        raise ValueError(f"unknown layout {layout!r}; one of {get_args(SpectrumLayout)}")
    data, header = read_mrc(Path(path))
    file = header.path
    _check_shape(data.shape, None if layout == "auto" else layout, file)
    values = np.asarray(data, dtype=np.float32)
    if not np.isfinite(values).all():
        bad = int((~np.isfinite(values)).sum())
        raise InvalidValuesError(file, f"{bad} NaN or infinite samples in the power spectrum")
    if pixel_size_a is not None and not pixel_size_a > 0:
        raise InvalidValuesError(file, f"pixel size must be positive, got {pixel_size_a} Å")
    tensor = torch.from_numpy(values)
    found: SpectrumLayout = detect_spectrum_layout(tensor) if layout == "auto" else layout
    shape = (int(values.shape[-2]), int(values.shape[-1]))
    return PowerSpectrum(
        values=centred_to_rfft(tensor, layout=found, use_half=use_half),
        shape_px=_real_shape(shape, found),
        pixel_size_a=pixel_size_a if pixel_size_a is not None else header.pixel_size_a,
        layout=found,
        path=file,
    )
