"""Two half-set reconstructions by CTF-weighted Fourier back-projection, with symmetry.

Each particle image is centred by its origin (docs/conventions.md §4: shifted by
``+origin / pixel size``), zero-padded to the accumulator's image box, transformed, corrected
for odd aberrations (multiplied by ``exp(−iχ_odd)``, §6), and inserted at its pose ``A``
(§8) and at every symmetry-equivalent pose ``A·S`` (§10) into the accumulators of its half-set.
How the data are inserted depends on what the images already hold (RELION optics flags):

- plain images hold ``CTF·F``: insert ``CTF · image`` with weight ``CTF²``;
- ``rlnCtfDataAreCtfPremultiplied = 1``: images hold ``CTF²·F``; insert ``image``, weight
  ``CTF²``;
- ``rlnCtfDataArePhaseFlipped = 1``: images hold ``|CTF|·F``; insert ``|CTF| · image``,
  weight ``CTF²``;

so that in every case the data accumulate ``CTF² · F`` against the weight ``CTF²``. The CTF
includes ``rlnCtfScalefactor`` and RELION's ``rlnCtfBfactor`` envelope ``exp(−B k²/4)``
(:meth:`~cryowarp.core.ctf_params.CTFParams.from_relion`). :func:`finish_half_maps` then
reconstructs the half-maps (``data / weight``) and the full map from the sum of both halves'
accumulators (Wiener-regularised, :mod:`.wiener`), and measures their FSC (:mod:`.result`).
"""

from __future__ import annotations

import os
from dataclasses import fields

import torch

from cryowarp.core.backprojection import Reconstructor, reconstruct_from_accumulators
from cryowarp.core.ctf import ctf_2d, odd_phase_factor_2d
from cryowarp.core.ctf_params import CTFParams
from cryowarp.core.fourier import rfft_centered
from cryowarp.core.fsc import fsc, fsc_resolution_a
from cryowarp.core.resize import crop_or_pad
from cryowarp.core.shift import shift_image
from cryowarp.core.symmetry import point_group_operators
from cryowarp.errors import DimensionMismatchError, InvalidValuesError
from cryowarp.refine.reconstruction.result import (
    ReconstructionResult,
    fsc_mask,
    load_reference,
    masked_fsc,
    resolution_or_none,
)
from cryowarp.refine.reconstruction.settings import ReconstructionSettings
from cryowarp.refine.reconstruction.wiener import reconstruct_wiener, ssnr_from_fsc

__all__ = [
    "HalfMapAccumulator",
    "ctf_weighted_slices",
    "finish_half_maps",
    "reconstruct_half_maps",
]


def ctf_weighted_slices(
    images: torch.Tensor,  # (n, h, w), centred
    ctf: CTFParams,
    padded_image_shape: tuple[int, int],
    *,
    data_premultiplied: bool = False,
    data_phase_flipped: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Data ``(n, H, W//2 + 1)`` complex and weights ``(n, H, W//2 + 1)`` real to insert for
    images zero-padded to ``padded_image_shape = (H, W)``; see the module docstring."""
    if data_premultiplied and data_phase_flipped:
        raise InvalidValuesError(None, "images cannot be both CTF-premultiplied and phase-flipped")
    spectra = rfft_centered(crop_or_pad(images, padded_image_shape), ndim=2)
    shape = spectra.shape
    c = ctf_2d(ctf, padded_image_shape).to(spectra.real.dtype).expand(shape)
    if ctf.beam_tilt_mrad is not None or ctf.odd_zernike is not None:
        spectra = spectra * odd_phase_factor_2d(ctf, padded_image_shape).to(spectra.dtype).conj()
    if data_premultiplied:
        data = spectra
    elif data_phase_flipped:
        data = spectra * c.abs()
    else:
        data = spectra * c
    return data, c.square()


class HalfMapAccumulator:
    """Fourier accumulators of two half-sets (:class:`~cryowarp.core.backprojection.Reconstructor`).

    Parameters
    ----------
    box_size:
        Edge of the cubic box in pixels; images are ``(box_size, box_size)``.
    symmetry:
        Point group (RELION name); every image is inserted at all its equivalent poses.
    oversampling:
        Padding factor of the accumulators.
    device, dtype:
        Where the accumulators live and their real dtype.
    """

    def __init__(
        self,
        box_size: int,
        *,
        symmetry: str = "C1",
        oversampling: float = 2.0,
        device: torch.device | str | None = None,
        dtype: torch.dtype = torch.float32,
    ) -> None:
        self.box_size = box_size
        self.symmetry = symmetry
        shape = (box_size, box_size, box_size)
        self.halves = tuple(
            Reconstructor(shape, oversampling=oversampling, device=device, dtype=dtype)
            for _ in range(2)
        )
        self.operators = point_group_operators(symmetry, device=device, dtype=dtype)
        self.n_particles = [0, 0]

    @property
    def padded_image_shape(self) -> tuple[int, int]:
        return self.halves[0].padded_image_shape

    def insert(
        self,
        images: torch.Tensor,  # (n, h, w)
        rotations: torch.Tensor,  # (n, 3, 3)
        ctf: CTFParams,  # batch shape (n,) or ()
        subsets: torch.Tensor,  # (n,) 1 or 2
        *,
        origins_a: torch.Tensor | None = None,  # (n, 2) RELION origins (x, y) in Å
        data_premultiplied: bool = False,
        data_phase_flipped: bool = False,
    ) -> None:
        """Insert a batch of particle images into the accumulators of their half-sets."""
        n = int(images.shape[0])
        if images.shape[1:] != (self.box_size, self.box_size):
            raise DimensionMismatchError(
                None, f"images of shape {tuple(images.shape[1:])}, box is {self.box_size}"
            )
        if rotations.shape != (n, 3, 3) or subsets.shape != (n,):
            raise DimensionMismatchError(
                None,
                f"{n} images need rotations (n, 3, 3) and subsets (n,), got "
                f"{tuple(rotations.shape)} and {tuple(subsets.shape)}",
            )
        dtype = self.halves[0].weight.dtype
        images = images.to(device=self.operators.device, dtype=dtype)
        if origins_a is not None:
            pixel = ctf.pixel_size_a.expand(ctf.batch_shape).to(images.device, dtype)
            shift_px = origins_a.to(images.device, dtype) / pixel.reshape(-1, 1)
            images = shift_image(images, shift_px)
        data, weight = ctf_weighted_slices(
            images,
            ctf.to(images.device),
            self.padded_image_shape,
            data_premultiplied=data_premultiplied,
            data_phase_flipped=data_phase_flipped,
        )
        rotations = rotations.to(device=images.device, dtype=dtype)
        subsets = subsets.to(images.device)
        for half, reconstructor in enumerate(self.halves, start=1):
            keep = subsets == half
            count = int(keep.sum())
            if count == 0:
                continue
            for operator in self.operators:
                reconstructor.insert(data[keep], rotations[keep] @ operator, weights=weight[keep])
            self.n_particles[half - 1] += count


def finish_half_maps(
    accumulator: HalfMapAccumulator,
    *,
    pixel_size_a: float,
    settings: ReconstructionSettings,
    half_set_source: str,
    subsets: torch.Tensor,  # (n_rows,)
    reference: torch.Tensor | str | os.PathLike[str] | None = None,
    skipped: tuple[str, ...] = (),
) -> ReconstructionResult:
    """Reconstruct, regularise and measure the maps of filled accumulators.

    The half-maps are unregularised (``data / weight``), so that the FSC between the written
    half-maps is the reported one. With ``settings.regularisation == "wiener"`` their FSC
    (masked when a mask diameter is set) sets the Wiener filter of the full map
    (:mod:`.wiener`); otherwise the full map is ``data / weight`` as well.
    """
    for half, count in enumerate(accumulator.n_particles, start=1):
        if count == 0:
            raise InvalidValuesError(None, f"half-set {half} holds no particle image")
    box = accumulator.box_size
    box_shape = (box, box, box)
    first, second = accumulator.halves
    padded = first.padded_shape
    device = first.weight.device
    mask = fsc_mask(
        box, pixel_size_a, settings.mask_diameter_a,
        soft_edge_px=settings.mask_soft_edge_px, device=device,
    )  # fmt: skip
    half1, half2 = first.reconstruct(), second.reconstruct()
    curve_unmasked = fsc(half1, half2)
    curve_masked = None if mask is None else masked_fsc(half1, half2, mask)
    data = first.data + second.data
    weight = first.weight + second.weight
    ssnr = None
    if settings.regularisation == "wiener":
        curve = curve_unmasked if curve_masked is None else curve_masked
        ssnr = ssnr_from_fsc(curve, full_map=True, tau2_fudge=settings.tau2_fudge)
        full = reconstruct_wiener(data, weight, ssnr, box_shape=box_shape, padded=padded)
    else:
        full = reconstruct_from_accumulators(data, weight, box_shape=box_shape, padded=padded)
    curve_reference = None
    if reference is not None:
        volume = load_reference(
            reference, box_shape=box_shape, pixel_size_a=pixel_size_a, device=device
        )
        curve_reference = masked_fsc(full, volume, mask)
    return ReconstructionResult(
        half1=half1,
        half2=half2,
        full=full,
        pixel_size_a=pixel_size_a,
        symmetry=accumulator.symmetry,
        n_particles=(accumulator.n_particles[0], accumulator.n_particles[1]),
        fsc=curve_unmasked,
        resolution_a=fsc_resolution_a(curve_unmasked, box, pixel_size_a, threshold=0.143),
        fsc_masked=curve_masked,
        resolution_masked_a=resolution_or_none(curve_masked, box, pixel_size_a, 0.143),
        ssnr=ssnr,
        fsc_reference=curve_reference,
        reference_resolution_0143_a=resolution_or_none(curve_reference, box, pixel_size_a, 0.143),
        reference_resolution_05_a=resolution_or_none(curve_reference, box, pixel_size_a, 0.5),
        half_set_source=half_set_source,
        subsets=subsets.detach().cpu().to(torch.int64),
        regularisation=settings.regularisation,
        skipped=skipped,
    )


def reconstruct_half_maps(
    images: torch.Tensor,  # (n, h, w)
    rotations: torch.Tensor,  # (n, 3, 3)
    ctf_params: CTFParams,  # batch shape (n,) or ()
    subsets: torch.Tensor,  # (n,) 1 or 2
    *,
    symmetry: str | None = None,
    settings: ReconstructionSettings | None = None,
    origins_a: torch.Tensor | None = None,  # (n, 2)
    data_premultiplied: bool = False,
    data_phase_flipped: bool = False,
    reference: torch.Tensor | str | os.PathLike[str] | None = None,
) -> ReconstructionResult:
    """Half-maps, full map and FSC from images in memory (the tensor-level entry point).

    Parameters
    ----------
    images:
        ``(n, N, N)`` particle images (protein white: ``+CTF × projection``, §6 and §15).
    rotations:
        ``(n, 3, 3)`` poses ``A`` (reference → image, docs/conventions.md §8).
    ctf_params:
        CTF of every image (one pixel size for all).
    subsets:
        ``(n,)`` half-set of every image, 1 or 2.
    symmetry:
        Point group; overrides ``settings.symmetry`` when given.
    settings:
        :class:`ReconstructionSettings` (defaults when ``None``); images are inserted
        ``settings.batch_size`` at a time.
    origins_a:
        ``(n, 2)`` RELION origins (x, y) in Å (§4); none: the particles are centred.
    data_premultiplied, data_phase_flipped:
        What the images hold (module docstring).
    reference:
        Optional reference map (tensor or MRC path) for an FSC against it.
    """
    settings = settings or ReconstructionSettings()
    if symmetry is not None:
        settings = ReconstructionSettings(**{**settings.model_dump(), "symmetry": symmetry})
    n = int(images.shape[0])
    pixel = ctf_params.pixel_size_a
    if not bool((pixel == pixel.flatten()[0]).all()):
        raise InvalidValuesError(None, "all images must share one pixel size")
    subsets = subsets.to(torch.int64)
    if not bool(((subsets == 1) | (subsets == 2)).all()):
        raise InvalidValuesError(None, "subsets must be 1 or 2")
    accumulator = HalfMapAccumulator(
        int(images.shape[-1]),
        symmetry=settings.symmetry,
        oversampling=settings.oversampling,
        device=images.device,
    )
    for start in range(0, n, settings.batch_size):
        rows = torch.arange(start, min(n, start + settings.batch_size), device=images.device)
        accumulator.insert(
            images[rows],
            rotations[rows],
            _select_ctf(ctf_params, rows, n),
            subsets[rows],
            origins_a=None if origins_a is None else origins_a[rows],
            data_premultiplied=data_premultiplied,
            data_phase_flipped=data_phase_flipped,
        )
    return finish_half_maps(
        accumulator,
        pixel_size_a=float(pixel.flatten()[0]),
        settings=settings,
        half_set_source="given",
        subsets=subsets,
        reference=reference,
    )


def _select_ctf(params: CTFParams, rows: torch.Tensor, n: int) -> CTFParams:
    """The CTF parameters of ``rows`` of a batch of ``n`` (scalars broadcast to ``(n,)``)."""
    values: dict[str, torch.Tensor | None] = {}
    trailing = {"mag_matrix": 2, "beam_tilt_mrad": 1, "odd_zernike": 1, "even_zernike": 1}
    for field in fields(params):
        value = getattr(params, field.name)
        if value is None:
            values[field.name] = None
            continue
        tail = tuple(value.shape[value.ndim - trailing.get(field.name, 0) :])
        values[field.name] = value.expand(n, *tail)[rows.to(value.device)]
    return CTFParams(**values)  # type: ignore[arg-type]
