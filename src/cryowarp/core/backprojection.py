"""Back-projection: insertion of 2-D central slices into a 3-D spectrum, and reconstruction.

Slices are centred rffts ``(..., h, w//2 + 1)`` of images; they are inserted at
``Aᵀ (kx, ky, 0)`` (docs/conventions.md §8) into the centred rfft ``(D, H, W//2 + 1)`` of a
volume padded to ``(D, H, W)``, with the trilinear weights of the projector
(:mod:`cryowarp.core.gridding`). A reconstruction divides the accumulated data by the
accumulated weights, transforms back, crops the padding and applies the sinc² gridding
post-correction.
"""

from __future__ import annotations

import torch

from cryowarp.core.fourier import irfft_centered, negate_frequencies, rfft_centered
from cryowarp.core.gridding import central_slice_stencils, gridding_correct, padded_shape
from cryowarp.core.resize import crop_or_pad
from cryowarp.errors import DimensionMismatchError

__all__ = [
    "Reconstructor",
    "backproject_real",
    "insert_central_slices_rfft",
    "reconstruct_from_accumulators",
    "symmetrize_hermitian_planes",
]


def insert_central_slices_rfft(
    slices: torch.Tensor,  # (..., h, w//2 + 1) complex or real
    rotations: torch.Tensor,  # (..., 3, 3)
    *,
    volume_shape: tuple[int, int, int],
    image_shape: tuple[int, int],
    max_radius: float = 0.5,
    hermitian: bool = True,
) -> torch.Tensor:
    """Sum central slices into a 3-D half-spectrum with trilinear weights.

    Parameters
    ----------
    slices:
        ``(..., h, w//2 + 1)``: rfft-layout samples on the frequency grid of ``h × w`` images
        (cycles/pixel). Complex image spectra (e.g. ``CTF · F``) or real weights (e.g.
        ``CTF²``, ones). A slice sample at ``k`` lands at Fourier voxel ``Aᵀk · (W, H, D)``;
        samples at ``k_x < 0`` in the volume go, conjugated, to the Hermitian mirror.
    rotations:
        ``(..., 3, 3)`` matrices ``A`` (reference → image), batch shape of ``slices``.
    volume_shape:
        ``(D, H, W)``: real-space shape of the (padded) volume.
    image_shape:
        ``(h, w)``: real-space shape of the images.
    max_radius:
        Slice samples beyond this frequency (cycles/pixel) are ignored.
    hermitian:
        ``True`` (for reconstructions and 3-D CTFs): each slice counts as the full,
        Hermitian-symmetric spectrum of a real image — the ``k_x = 0`` (and Nyquist) image
        columns, which hold both members of their Hermitian pairs, are halved, and the
        ``k_x = 0`` (and Nyquist) planes of the volume are made Hermitian-symmetric.
        ``False``: the exact adjoint of
        :func:`cryowarp.core.projection.extract_central_slices_rfft` for the inner product
        ``Re Σ a · conj(b)`` over the stored samples.

    Returns
    -------
    torch.Tensor
        ``(D, H, W//2 + 1)``, dtype of ``slices``.

    Notes
    -----
    The 3-D CTF of a sub-tomogram is obtained by inserting the per-tilt 2-D CTFs
    ``(n_tilts, h, w//2 + 1)`` (real; ``CTF`` or ``CTF²`` as needed) at the tilts' rotations
    with ``hermitian=True``, and dividing by an insertion of ones (the sampling weight) where
    a normalised CTF is wanted.
    """
    (volume,) = _insert(
        [slices],
        rotations,
        volume_shape=volume_shape,
        image_shape=image_shape,
        max_radius=max_radius,
        hermitian=hermitian,
    )
    return volume


def _insert(
    stacks: list[torch.Tensor],  # each (..., h, w//2 + 1)
    rotations: torch.Tensor,  # (..., 3, 3)
    *,
    volume_shape: tuple[int, int, int],
    image_shape: tuple[int, int],
    max_radius: float,
    hermitian: bool,
) -> list[torch.Tensor]:
    """:func:`insert_central_slices_rfft` of several stacks sharing one stencil."""
    expected = (image_shape[0], image_shape[1] // 2 + 1)
    for slices in stacks:
        if rotations.shape[:-2] != slices.shape[:-2] or slices.shape[-2:] != expected:
            raise DimensionMismatchError(
                None,
                f"slices of shape {tuple(slices.shape)} do not match rotations of shape "
                f"{tuple(rotations.shape)} and images of shape {image_shape}",
            )
    d, h, w = volume_shape
    flats = []
    for slices in stacks:
        flat = slices.reshape(-1, *expected)
        if hermitian:
            flat = flat * _edge_column_factor(image_shape, flat)
        flats.append(flat.reshape(flat.shape[0], -1))
    outs = [s.new_zeros(d * h * (w // 2 + 1)) for s in stacks]
    for views, stencil in central_slice_stencils(
        rotations,
        dtype=stacks[0].real.dtype,
        volume_shape=volume_shape,
        image_shape=image_shape,
        max_radius=max_radius,
    ):
        index = stencil.index.reshape(-1)
        for i, flat in enumerate(flats):
            values = flat[views].reshape(-1)
            if values.is_complex():
                values = torch.where(stencil.conjugate, values.conj(), values)
            contributions = (values[:, None] * stencil.weight).reshape(-1)
            outs[i] = outs[i].index_add(0, index, contributions)
    volumes = [out.reshape(d, h, w // 2 + 1) for out in outs]
    if hermitian:
        volumes = [symmetrize_hermitian_planes(v, volume_shape) for v in volumes]
    return volumes


def symmetrize_hermitian_planes(
    spectrum: torch.Tensor,  # (D, H, W//2 + 1)
    volume_shape: tuple[int, int, int],
) -> torch.Tensor:
    """Add to each sample of the ``k_x = 0`` plane (and of the Nyquist plane when ``W`` is
    even) the conjugate of its Hermitian mirror ``(−k_y, −k_z)``.

    These planes hold both members of each Hermitian pair; after insertion with mirroring,
    each member holds only the contributions from its side.
    """
    planes = [0] + ([volume_shape[2] // 2] if volume_shape[2] % 2 == 0 else [])
    out = spectrum.clone()
    for x in planes:
        plane = spectrum[..., x]
        out[..., x] = plane + negate_frequencies(plane, dims=(-2, -1)).conj()
    return out


def reconstruct_from_accumulators(
    data: torch.Tensor,  # (D, H, W//2 + 1) complex
    weight: torch.Tensor,  # (D, H, W//2 + 1) real
    *,
    box_shape: tuple[int, int, int],
    padded: tuple[int, int, int],
    snr: float | None = None,
    min_weight: float = 1e-3,
    gridding_correction: bool = True,
) -> torch.Tensor:
    """Volume ``box_shape`` from accumulated data and weights.

    Parameters
    ----------
    data, weight:
        Accumulators filled by :func:`insert_central_slices_rfft` (``hermitian=True``).
    box_shape, padded:
        Shapes of the output box and of the padded volume of the accumulators.
    snr:
        ``None``: ``data / max(weight, ε)`` with ``ε = min_weight · mean(weight > 0)``.
        A number: the Wiener-like ``data / (weight + 1/snr)``.
    gridding_correction:
        Divide the result by the sinc² kernel of trilinear insertion.

    Returns
    -------
    torch.Tensor
        ``box_shape`` real volume, centred (docs/conventions.md §2).
    """
    if snr is None:
        positive = weight[weight > 0]
        floor = min_weight * positive.mean() if positive.numel() else weight.new_ones(())
        spectrum = data / torch.clamp(weight, min=floor)
    else:
        if snr <= 0:
            raise ValueError(f"snr must be positive, got {snr}")
        spectrum = data / (weight + 1.0 / snr)
    volume = crop_or_pad(irfft_centered(spectrum, shape=padded), box_shape)
    return gridding_correct(volume, padded=padded) if gridding_correction else volume


def backproject_real(
    images: torch.Tensor,  # (..., h, w)
    rotations: torch.Tensor,  # (..., 3, 3)
    *,
    box_shape: tuple[int, int, int],
    oversampling: float = 2.0,
    gridding_correction: bool = True,
    max_radius: float = 0.5,
) -> torch.Tensor:
    """Unweighted back-projection ``(d, h, w)`` of real images; the exact adjoint of
    :func:`cryowarp.core.projection.project_real` with the same options.

    No density compensation: low frequencies dominate (use :class:`Reconstructor` for a
    reconstruction).
    """
    image_shape = (int(images.shape[-2]), int(images.shape[-1]))
    p = padded_shape(box_shape, oversampling)
    padded = (p[0], p[1], p[2])
    spectra = rfft_centered(images, ndim=2)
    inserted = insert_central_slices_rfft(
        spectra,
        rotations,
        volume_shape=padded,
        image_shape=image_shape,
        max_radius=max_radius,
    )
    scale = (padded[0] * padded[1] * padded[2]) / (image_shape[0] * image_shape[1])
    volume = crop_or_pad(irfft_centered(inserted, shape=padded), box_shape) * scale
    return gridding_correct(volume, padded=padded) if gridding_correction else volume


class Reconstructor:
    """Accumulates image spectra and weights, then reconstructs a volume.

    Parameters
    ----------
    box_shape:
        ``(d, h, w)`` of the volume; images are ``(h, w)``.
    oversampling:
        Padding factor of the Fourier accumulators (2 as in RELION).
    device, dtype:
        Where the accumulators live; ``dtype`` is the real dtype.
    max_radius:
        Frequencies beyond this (cycles/pixel) are not accumulated.
    """

    def __init__(
        self,
        box_shape: tuple[int, int, int],
        *,
        oversampling: float = 2.0,
        device: torch.device | str | None = None,
        dtype: torch.dtype = torch.float32,
        max_radius: float = 0.5,
    ) -> None:
        p = padded_shape(box_shape, oversampling)
        self.box_shape = box_shape
        self.padded_shape = (p[0], p[1], p[2])
        self.max_radius = max_radius
        half = (p[0], p[1], p[2] // 2 + 1)
        complex_dtype = torch.complex128 if dtype == torch.float64 else torch.complex64
        self.data = torch.zeros(half, dtype=complex_dtype, device=device)
        self.weight = torch.zeros(half, dtype=dtype, device=device)

    @property
    def padded_image_shape(self) -> tuple[int, int]:
        """``(H, W)``: the padded image box on whose rfft grid slices are inserted."""
        return (self.padded_shape[1], self.padded_shape[2])

    def insert(
        self,
        slices: torch.Tensor,  # (n, H, W//2 + 1) complex
        rotations: torch.Tensor,  # (n, 3, 3)
        *,
        weights: torch.Tensor | None = None,  # (n, H, W//2 + 1) real
    ) -> None:
        """Add centred spectra of images zero-padded to :attr:`padded_image_shape` (e.g.
        ``CTF · F``) and their weights (e.g. ``CTF²``; ones when ``None``) at ``rotations``."""
        if weights is None:
            weights = torch.ones(slices.shape, dtype=self.weight.dtype, device=slices.device)
        data, weight = _insert(
            [slices.to(self.data.dtype), weights.to(self.weight.dtype)],
            rotations,
            volume_shape=self.padded_shape,
            image_shape=self.padded_image_shape,
            max_radius=self.max_radius,
            hermitian=True,
        )
        self.data += data
        self.weight += weight

    def insert_images(
        self,
        images: torch.Tensor,  # (n, h, w)
        rotations: torch.Tensor,  # (n, 3, 3)
        *,
        ctf: torch.Tensor | None = None,  # (n, H, W//2 + 1)
    ) -> None:
        """Add real images ``(h, w)`` of the box: they are zero-padded to
        :attr:`padded_image_shape` (so that their spectra are sampled as finely as the
        accumulators), then data ``CTF · F`` and weights ``CTF²`` are inserted. ``ctf`` is
        evaluated on the padded grid (``CTF = 1`` when ``None``)."""
        spectra = rfft_centered(crop_or_pad(images, self.padded_image_shape), ndim=2)
        if ctf is None:
            self.insert(spectra, rotations)
        else:
            self.insert(spectra * ctf, rotations, weights=ctf.square())

    def reconstruct(
        self,
        *,
        snr: float | None = None,
        min_weight: float = 1e-3,
        gridding_correction: bool = True,
    ) -> torch.Tensor:
        """The reconstructed volume ``box_shape``; see :func:`reconstruct_from_accumulators`."""
        return reconstruct_from_accumulators(
            self.data,
            self.weight,
            box_shape=self.box_shape,
            padded=self.padded_shape,
            snr=snr,
            min_weight=min_weight,
            gridding_correction=gridding_correction,
        )


def _edge_column_factor(image_shape: tuple[int, int], like: torch.Tensor) -> torch.Tensor:
    """``(w//2 + 1,)``: ½ on the rfft columns that hold both members of Hermitian pairs."""
    w = image_shape[1]
    factor = torch.ones(w // 2 + 1, dtype=like.real.dtype, device=like.device)
    factor[0] = 0.5
    if w % 2 == 0:
        factor[-1] = 0.5
    return factor
