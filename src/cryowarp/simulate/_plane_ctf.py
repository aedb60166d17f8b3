"""The CTF of a (possibly tilted) sample plane applied to a whole-field phase image: every
point gets the defocus of the ice mid-plane where it lies.

The defocus of a tilted plane varies linearly over the field, ``δ(x, y)``.  The field is cut
into overlapping strips of equal defocus (tiles along the tilt axis) by a partition of unity
``φ = Σⱼ Lⱼ φ`` with ``Lⱼ = max(0, 1 − |δ(x, y) − δⱼ| / h)`` (hats on defocus nodes ``δⱼ``
spaced ``h`` apart); each strip is filtered with the CTF of its node over the whole field (one
batched FFT per strip, wrapped periodically like a whole-frame FFT) and the results are added
(in Fourier space).  A signal thus gets the defocus of where it comes from (its height in the
ice), linearly interpolated between nodes.  The node spacing keeps the aberration phase
difference between neighbours at Nyquist ``π λ h k_Nyq² ≤ 0.5 rad`` (interpolation error
≤ 3 % of the CTF amplitude there, less at lower frequency), with at most ``_MAX_NODES``
nodes.  Without sample tilt there is one node: a single whole-field FFT.

The zero-frequency sample (the mean phase, mostly the ice's mean inner potential) is a phase
of the whole wave, which no phase plate can make visible: it is multiplied by the amplitude
contrast ``A`` alone (the CTF at ``k = 0`` without phase plate, the mean darkening that stands
in for inelastic loss, docs/simulator.md), whatever the phase shift.  With a 90° phase plate
``CTF(0) ≈ 1`` would otherwise darken the image by ``2 φ_ice`` (≈ 1.8 for 300 Å of ice), far
below zero intensity.
"""

from __future__ import annotations

import math
from dataclasses import replace

import torch

from cryowarp.core.ctf import ctf_2d
from cryowarp.core.electron import electron_wavelength_a
from cryowarp.core.fourier_grids import frequency_magnitude
from cryowarp.simulate.sample_ctf import SampleCTF

__all__ = ["apply_sample_ctf"]

_NODE_PHASE_RAD = 0.5  # π λ h k_Nyq² between neighbouring defocus nodes
_MAX_NODES = 64
_BATCH_ELEMENTS = 1 << 23  # pixels of strips transformed at once


def _defocus_map_um(ctf: SampleCTF, shape: tuple[int, int]) -> tuple[torch.Tensor, float]:
    """``(h, w)`` float32 mean defocus (µm) of the ice mid-plane at each pixel (planar), as
    the offset from the lowest value in the field, and that lowest value."""
    h, w = shape
    px = ctf.pixel_size_a
    points = torch.tensor([[0.0, 0.0], [px, 0.0], [0.0, px]], dtype=torch.float64)
    d0, dx, dy = ctf.defocus_at(points).tolist()
    y = torch.arange(h, dtype=torch.float64)[:, None]
    x = torch.arange(w, dtype=torch.float64)[None, :]
    defocus = (dx - d0) * x + (dy - d0) * y
    low = float(defocus.min())
    return (defocus - low).to(torch.float32), d0 + low


def apply_sample_ctf(
    image: torch.Tensor,  # (h, w)
    ctf: SampleCTF,
) -> torch.Tensor:  # (h, w)
    """``F⁻¹[CTF_δ(x,y) · F[image]]`` with the defocus of the mid-plane at each point of the
    input (see the module docstring); on ``image``'s device."""
    h, w = image.shape
    spectrum = _filtered_spectrum(image, ctf)
    spectrum[0, 0] = image.sum() * ctf.amplitude_contrast  # the mean: see the module docstring
    return torch.fft.irfft2(spectrum, s=(h, w))


def _filtered_spectrum(
    image: torch.Tensor,  # (h, w)
    ctf: SampleCTF,
) -> torch.Tensor:  # (h, w//2+1) complex
    """``F[image]`` times the CTF of the mid-plane at each point (strips, module docstring)."""
    h, w = image.shape
    device = image.device
    if ctf.sample_tilt_deg == 0:
        return torch.fft.rfft2(image) * ctf_2d(ctf.ctf_params(), (h, w)).to(device)
    relative, low = _defocus_map_um(ctf, (h, w))  # µm from the lowest defocus `low`
    relative = relative.to(device)
    span = float(relative.max())
    k_nyquist = 0.5 / ctf.pixel_size_a
    wavelength_a = electron_wavelength_a(ctf.voltage_kv)
    step_um = 1e-4 * _NODE_PHASE_RAD / (math.pi * wavelength_a * k_nyquist**2)
    n_intervals = min(math.ceil(span / step_um), _MAX_NODES - 1)
    if n_intervals == 0:
        return torch.fft.rfft2(image) * ctf_2d(ctf.ctf_params(low), (h, w)).to(device)
    step_um = span / n_intervals
    offsets = step_um * torch.arange(n_intervals + 1, dtype=torch.float32)
    base, quadrature, k2 = (t.to(device) for t in _ctf_basis(ctf, low, (h, w)))
    spectrum = torch.zeros(h, w // 2 + 1, dtype=torch.complex64, device=device)
    batch = max(1, _BATCH_ELEMENTS // (h * w))
    for start in range(0, len(offsets), batch):
        chunk = offsets[start : start + batch].to(device)
        weights = (1 - (relative - chunk[:, None, None]).abs() / step_um).clamp_(min=0)
        strips = torch.fft.rfft2(weights.mul_(image))
        phase = (math.pi * wavelength_a * 1e4) * chunk[:, None, None] * k2
        strips *= base * torch.cos(phase) + quadrature * torch.sin(phase)
        spectrum += strips.sum(0)
    return spectrum


def _ctf_basis(
    ctf: SampleCTF, defocus_um: float, shape: tuple[int, int]
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The CTF at ``defocus_um``, its quadrature (phase shift + 90°) and ``k²`` (Å⁻²), each
    ``(h, w//2+1)``: ``CTF(defocus + δ) = C cos(π λ δ k²) + Q sin(π λ δ k²)`` (δ in Å) since a
    change of mean defocus adds ``π λ δ k²`` to the aberration phase."""
    base = ctf_2d(ctf.ctf_params(defocus_um), shape)
    shifted = replace(ctf, phase_shift_deg=ctf.phase_shift_deg + 90.0)
    quadrature = ctf_2d(shifted.ctf_params(defocus_um), shape)
    k2 = (frequency_magnitude(shape) / ctf.pixel_size_a).square()
    return base, quadrature, k2
