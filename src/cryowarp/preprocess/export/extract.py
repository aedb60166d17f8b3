"""Particle extraction from the raw frames with the fitted motion, or from averages.

From frames (docs/relion_export.md, "Extraction"): in frame ``t`` the content of a particle
at ``x`` (Å, frame-0 geometry) lies at ``x + s(x, t)`` (docs/conventions.md §4). Each frame's
box is cut around the nearest pixel of that point, its sub-pixel rest removed by a Fourier
phase ramp, weighted per frequency by Warp's exposure weights (conventions §7, normalised over
the frames that are summed) and added. The whole particle moves rigidly with the motion at its
centre, so its CTF stays analytic. Odd (1, 3, 5…) and even (0, 2, 4…) frames are also summed
apart, each with its own normalisation. The sum is Fourier-cropped to the output pixel size.

From an average: the same cut, shift and Fourier crop of one image.

Boxes are centred at index ``N // 2`` (conventions §2); pixels beyond the micrograph edge
repeat the nearest edge pixel. :func:`finish_particles` then applies the CTF correction,
crops to the final box, inverts the contrast and normalises against the background.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from cryowarp.core.ctf import CTFParams, ctf_2d
from cryowarp.core.dose import dose_weights
from cryowarp.core.fourier import irfft_centered, rfft_centered
from cryowarp.core.masks import spherical_mask
from cryowarp.core.resize import crop_or_pad, fourier_crop_or_pad
from cryowarp.core.shift import shift_phase_ramp
from cryowarp.errors import DimensionMismatchError, InvalidValuesError
from cryowarp.preprocess.export.settings import CtfCorrection
from cryowarp.preprocess.motion.frames import LoadedMovie
from cryowarp.preprocess.motion.model import MotionField

__all__ = [
    "BoxGeometry",
    "ExtractedBoxes",
    "box_geometry",
    "cut_boxes",
    "extract_from_frames",
    "extract_from_images",
    "finish_particles",
]


@dataclass(frozen=True)
class BoxGeometry:
    """Box sizes of one extraction.

    Attributes
    ----------
    box_size_px:
        Final box edge (output pixels).
    padded_box_px:
        Edge of the box worked on before the final crop (output pixels; ``2 ×`` the box when a
        CTF correction is applied, so that the CTF's delocalisation is not wrapped).
    read_box_px:
        Edge of the padded box cut from the input (input pixels).
    input_pixel_size_a, pixel_size_a:
        Pixel size (Å) of the input and of the output (``input × read / padded``).
    """

    box_size_px: int
    padded_box_px: int
    read_box_px: int
    input_pixel_size_a: float
    pixel_size_a: float


def box_geometry(
    box_size_px: int,
    *,
    input_pixel_size_a: float,
    pixel_size_a: float | None = None,
    padding: int = 1,
) -> BoxGeometry:
    """The boxes that give ``box_size_px`` output pixels of about ``pixel_size_a`` Å.

    The box read from the input is the even size nearest ``box × pixel / input pixel``; the
    output pixel size is then exactly ``input pixel × read / box``. ``pixel_size_a=None``
    keeps the input pixel size. Raises :class:`InvalidValuesError` for an output pixel finer
    than the input's (no upsampling) or an odd box.
    """
    if box_size_px < 2 or box_size_px % 2:
        raise InvalidValuesError(None, f"the box size must be even, got {box_size_px}")
    target = input_pixel_size_a if pixel_size_a is None else float(pixel_size_a)
    if target < input_pixel_size_a * (1 - 1e-6):
        raise InvalidValuesError(
            None,
            f"output pixel size {target:g} Å is finer than the input's "
            f"{input_pixel_size_a:g} Å; extraction does not upsample",
        )
    read = max(box_size_px, 2 * round(box_size_px * target / input_pixel_size_a / 2))
    return BoxGeometry(
        box_size_px=box_size_px,
        padded_box_px=box_size_px * padding,
        read_box_px=read * padding,
        input_pixel_size_a=float(input_pixel_size_a),
        pixel_size_a=float(input_pixel_size_a) * read / box_size_px,
    )


@dataclass(frozen=True)
class ExtractedBoxes:
    """Padded particle boxes at the output pixel size, before :func:`finish_particles`.

    ``full``, ``odd``, ``even`` are ``(n, P, P)`` with ``P = geometry.padded_box_px``
    (``odd``/``even`` ``None`` when not asked for).
    """

    full: torch.Tensor
    odd: torch.Tensor | None
    even: torch.Tensor | None
    geometry: BoxGeometry


def cut_boxes(
    image: torch.Tensor,  # (h, w)
    centres_px: torch.Tensor,  # (n, 2) integer (x, y)
    box_px: int,
) -> torch.Tensor:  # (n, box, box)
    """Boxes of ``box_px`` whose index ``box // 2`` is the pixel ``centres_px`` (x, y);
    pixels outside the image repeat the nearest edge pixel."""
    h, w = image.shape[-2:]
    offsets = torch.arange(box_px, device=image.device) - box_px // 2
    centres = centres_px.to(device=image.device, dtype=torch.long)
    ys = (centres[:, 1, None] + offsets).clamp_(0, h - 1)  # (n, box)
    xs = (centres[:, 0, None] + offsets).clamp_(0, w - 1)
    return image[ys[:, :, None], xs[:, None, :]]


class _SpectrumSums:
    """Weighted sums of box spectra for the full, odd and even frame sets."""

    def __init__(self, n: int, read_box: int, *, halves: bool, device: torch.device) -> None:
        shape = (n, read_box, read_box // 2 + 1)
        count = 3 if halves else 1
        self.data = torch.zeros((count, *shape), dtype=torch.complex64, device=device)
        self.weight = torch.zeros((count, read_box, read_box // 2 + 1), device=device)
        self.halves = halves

    def add(self, spectra: torch.Tensor, weight: torch.Tensor | float, frame: int) -> None:
        targets = [0, 1 if frame % 2 else 2] if self.halves else [0]
        weighted = spectra * weight
        for index in targets:
            self.data[index] += weighted
            self.weight[index] += weight

    def results(self) -> list[torch.Tensor]:
        tiny = torch.finfo(self.weight.dtype).tiny
        return [d / w.clamp_min(tiny) for d, w in zip(self.data, self.weight, strict=True)]


def _check_positions(positions_a: torch.Tensor) -> None:
    if positions_a.ndim != 2 or positions_a.shape[-1] != 2:
        raise DimensionMismatchError(
            None, f"positions must be (n, 2) (x, y) in Å, got {tuple(positions_a.shape)}"
        )


def _to_output(
    spectra: torch.Tensor,  # (n, R, R//2+1) centred spectra of read boxes
    geometry: BoxGeometry,
) -> torch.Tensor:  # (n, P, P)
    read, padded = geometry.read_box_px, geometry.padded_box_px
    cropped = fourier_crop_or_pad(spectra, shape=(read, read), new_shape=(padded, padded))
    boxes = irfft_centered(cropped, shape=(padded, padded))
    return boxes * (padded * padded) / (read * read)  # keep the mean of the input


def extract_from_frames(
    movie: LoadedMovie,
    motion: MotionField,
    positions_a: torch.Tensor,  # (n, 2) (x, y) Å, frame-0 geometry
    *,
    box_size_px: int,
    pixel_size_a: float | None = None,
    padding: int = 1,
    dose_weighting: bool = True,
    odd_even: bool = True,
    device: torch.device | str = "cpu",
) -> ExtractedBoxes:
    """Particles summed from the gain-corrected frames, following the motion (module doc).

    Parameters
    ----------
    movie:
        The movie (frames are read chunk by chunk; :meth:`LoadedMovie.corrected_frames`).
    motion:
        Shift (Å) of the content at positions and frames (a fitted
        :class:`~cryowarp.preprocess.motion.model.FrameMotion`, or the simulator's truth).
    positions_a:
        Particle centres in Å from the centre of pixel (0, 0), frame-0 geometry.
    box_size_px, pixel_size_a, padding:
        See :func:`box_geometry` (``pixel_size_a=None``: the raw pixel size).
    dose_weighting:
        Warp's exposure weights (conventions §7, dose at the middle of each frame); else a
        plain mean of the frames.
    odd_even:
        Also return the sums of odd and of even frames.

    Returns
    -------
    ExtractedBoxes
        ``(n, P, P)`` boxes in the units of a frame mean (counts per pixel per frame × gain,
        rescaled to keep the mean).
    """
    _check_positions(positions_a)
    if motion.n_frames != movie.n_frames:
        raise DimensionMismatchError(
            movie.path, f"the motion has {motion.n_frames} frames, the movie {movie.n_frames}"
        )
    dev = torch.device(device)
    geometry = box_geometry(
        box_size_px,
        input_pixel_size_a=movie.pixel_size_a,
        pixel_size_a=pixel_size_a,
        padding=padding,
    )
    read = geometry.read_box_px
    raw_px = movie.pixel_size_a
    n = positions_a.shape[0]
    positions = positions_a.to(torch.float64)
    frames_index = torch.arange(movie.n_frames, dtype=torch.float64)
    where_px = (positions[:, None, :] + motion.shifts_at(positions, frames_index).cpu()) / raw_px
    centres = torch.round(where_px)  # (n, T, 2)
    rests = (where_px - centres).to(torch.float32).to(dev)  # content sits at centre + rest
    if dose_weighting:
        weights = dose_weights(
            movie.accumulated_dose_e_per_a2().to(dev, torch.float32),
            (read, read),
            pixel_size_a=raw_px,
            normalize=False,
        )  # (T, R, R//2+1)
    sums = _SpectrumSums(n, read, halves=odd_even and movie.n_frames > 1, device=dev)
    step = movie.frames_per_chunk()
    for start in range(0, movie.n_frames, step):
        stop = min(start + step, movie.n_frames)
        chunk = movie.corrected_frames(start, stop, device=dev)
        for offset in range(stop - start):
            t = start + offset
            boxes = cut_boxes(chunk[offset], centres[:, t], read)
            spectra = rfft_centered(boxes, ndim=2) * shift_phase_ramp((read, read), -rests[:, t])
            sums.add(spectra, weights[t] if dose_weighting else 1.0, t)
    outputs = [_to_output(s, geometry) for s in sums.results()]
    if len(outputs) == 1:
        return ExtractedBoxes(outputs[0], None, None, geometry)
    return ExtractedBoxes(outputs[0], outputs[1], outputs[2], geometry)


def extract_from_images(
    images: Sequence[torch.Tensor],  # each (h, w): the average, then optionally odd, even
    positions_a: torch.Tensor,  # (n, 2)
    *,
    image_pixel_size_a: float,
    box_size_px: int,
    pixel_size_a: float | None = None,
    padding: int = 1,
) -> list[torch.Tensor]:  # each (n, P, P)
    """Particles cut from whole images (motion-corrected averages) at positions in Å."""
    _check_positions(positions_a)
    geometry = box_geometry(
        box_size_px,
        input_pixel_size_a=image_pixel_size_a,
        pixel_size_a=pixel_size_a,
        padding=padding,
    )
    read = geometry.read_box_px
    where_px = positions_a.to(torch.float64) / image_pixel_size_a
    centres = torch.round(where_px)
    ramp = shift_phase_ramp((read, read), -(where_px - centres).to(torch.float32))
    out: list[torch.Tensor] = []
    for image in images:  # the same boxes and sub-pixel shifts in every image
        boxes = cut_boxes(image.to(torch.float32), centres, read)
        spectra = rfft_centered(boxes, ndim=2) * ramp.to(image.device)
        out.append(_to_output(spectra, geometry))
    return out


def finish_particles(
    boxes: torch.Tensor,  # (n, P, P) padded boxes at the output pixel size
    *,
    box_size_px: int,
    ctf: CTFParams | None = None,
    ctf_correction: CtfCorrection = "none",
    invert_contrast: bool = True,
    normalize: bool = True,
    background_radius_px: float | None = None,
) -> torch.Tensor:  # (n, box, box) float32
    """CTF correction, final crop, contrast inversion and background normalisation.

    Parameters
    ----------
    ctf:
        Per-particle CTF (batch shape ``(n,)``, output pixel size); needed for a correction.
    ctf_correction:
        ``"phase_flip"`` multiplies each spectrum by ``sign(CTF)``, ``"premultiply"`` by
        ``CTF``, both on the padded box.
    background_radius_px:
        Pixels farther than this from the box centre ``N // 2`` form the background whose
        mean is subtracted and whose standard deviation divides (default: 75 % of half the
        box, RELION's default).
    """
    if ctf_correction != "none":
        if ctf is None:
            raise InvalidValuesError(None, f"ctf_correction={ctf_correction!r} needs the CTF")
        size = boxes.shape[-1]
        values = ctf_2d(ctf, (size, size)).to(boxes.device, boxes.dtype)  # (n, P, P//2+1)
        factor = torch.sign(values) if ctf_correction == "phase_flip" else values
        boxes = irfft_centered(rfft_centered(boxes, ndim=2) * factor, shape=(size, size))
    out = crop_or_pad(boxes, (box_size_px, box_size_px)).to(torch.float32)
    if invert_contrast:
        out = -out
    if normalize:
        radius = 0.75 * box_size_px / 2 if background_radius_px is None else background_radius_px
        if radius >= math.sqrt(2) * box_size_px / 2 - 1:
            raise InvalidValuesError(
                None,
                f"no background outside a radius of {radius:g} px in a {box_size_px}-px box; "
                "use a larger box or a smaller particle diameter",
            )
        inside = spherical_mask((box_size_px, box_size_px), radius, device=out.device) > 0.5
        background = out[:, ~inside]  # (n, m)
        mean = background.mean(dim=-1)
        std = background.std(dim=-1).clamp_min(torch.finfo(out.dtype).tiny)
        out = (out - mean[:, None, None]) / std[:, None, None]
    return out
