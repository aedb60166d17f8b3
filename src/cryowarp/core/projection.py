"""Projection of a volume into images: Fourier-slice projector and a real-space reference.

The projection of a volume ``V`` at pose ``A`` is ``P(x, y) = ∫ V(Aᵀ (x, y, z)) dz`` and its
spectrum the central slice ``P̂(kx, ky) = V̂(Aᵀ (kx, ky, 0))`` (docs/conventions.md §8).
Images and volumes are centred at index ``N//2`` (§2), spectra are centred rffts (§3).

The Fourier projector is our own code rather than ``torch_fourier_slice``: we need the
projector and the back-projector (``core/backprojection.py``) to share one trilinear
stencil so that they are exact adjoints, with Hermitian handling and gridding correction
defined in our (x, y, z) convention.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from cryowarp.core._centred_coordinates import centred_grid
from cryowarp.core.fourier import irfft_centered, rfft_centered
from cryowarp.core.gridding import central_slice_stencils, gridding_correct, padded_shape
from cryowarp.core.resize import crop_or_pad
from cryowarp.errors import DimensionMismatchError, InvalidValuesError

__all__ = [
    "PreparedVolume",
    "extract_central_slices_rfft",
    "prepare_volume_for_projection",
    "project_fourier",
    "project_real",
    "project_real_space_reference",
]


@dataclass(frozen=True)
class PreparedVolume:
    """A volume ready for Fourier projection.

    Attributes
    ----------
    spectrum:
        ``(D, H, W//2 + 1)`` complex: centred rfft of the gridding-corrected, zero-padded
        volume.
    box_shape:
        ``(d, h, w)``: shape of the original volume; projections are ``(h, w)`` images.
    padded_shape:
        ``(D, H, W)``: shape of the padded volume.
    """

    spectrum: torch.Tensor
    box_shape: tuple[int, int, int]
    padded_shape: tuple[int, int, int]


def prepare_volume_for_projection(
    volume: torch.Tensor,  # (d, h, w)
    *,
    oversampling: float = 2.0,
    gridding_correction: bool = True,
) -> PreparedVolume:
    """Pad ``volume`` by ``oversampling``, divide it by the sinc² gridding kernel and take its
    centred rfft.

    Differentiable with respect to ``volume``; runs on its device.
    """
    _check_volume(volume)
    box = (int(volume.shape[0]), int(volume.shape[1]), int(volume.shape[2]))
    p = padded_shape(box, oversampling)
    padded = (p[0], p[1], p[2])
    if gridding_correction:
        volume = gridding_correct(volume, padded=padded)
    spectrum = rfft_centered(crop_or_pad(volume, padded), ndim=3)
    return PreparedVolume(spectrum=spectrum, box_shape=box, padded_shape=padded)


def extract_central_slices_rfft(
    spectrum: torch.Tensor,  # (D, H, W//2 + 1) complex
    rotations: torch.Tensor,  # (..., 3, 3)
    *,
    volume_shape: tuple[int, int, int],
    image_shape: tuple[int, int],
    max_radius: float = 0.5,
) -> torch.Tensor:
    """Sample central slices ``V̂(Aᵀ (kx, ky, 0))`` of a 3-D rfft by trilinear interpolation.

    Parameters
    ----------
    spectrum:
        ``(D, H, W//2 + 1)`` rfft of a real volume of ``volume_shape`` (real or complex).
    rotations:
        ``(..., 3, 3)`` matrices ``A`` (reference → image, conventions §8).
    volume_shape:
        ``(D, H, W)``, the real-space shape of ``spectrum``.
    image_shape:
        ``(h, w)``: slices are sampled on the rfft grid of an ``h × w`` image, i.e. at
        ``k`` cycles/pixel, which is Fourier voxel ``k · (W, H, D)`` of the volume.
    max_radius:
        Samples beyond this frequency (cycles/pixel) are 0.

    Returns
    -------
    torch.Tensor
        ``(..., h, w//2 + 1)``. Samples with ``k_x < 0`` in the volume are read from the
        Hermitian mirror. This is the exact adjoint of
        :func:`cryowarp.core.backprojection.insert_central_slices_rfft` with
        ``hermitian=False`` (inner product ``Re Σ a · conj(b)``).
    """
    if spectrum.shape != (*volume_shape[:2], volume_shape[2] // 2 + 1):
        raise DimensionMismatchError(
            None,
            f"spectrum of shape {tuple(spectrum.shape)} is not the rfft of a volume of "
            f"shape {volume_shape}",
        )
    batch = rotations.shape[:-2]
    flat_spectrum = spectrum.reshape(-1)
    pieces = []
    for _, stencil in central_slice_stencils(
        rotations,
        dtype=spectrum.real.dtype,
        volume_shape=volume_shape,
        image_shape=image_shape,
        max_radius=max_radius,
    ):
        values = (flat_spectrum[stencil.index] * stencil.weight).sum(dim=-1)
        if values.is_complex():
            values = torch.where(stencil.conjugate, values.conj(), values)
        pieces.append(values)
    slices = torch.cat(pieces) if pieces else flat_spectrum.new_zeros(0)
    return slices.reshape(*batch, image_shape[0], image_shape[1] // 2 + 1)


def project_fourier(
    volume: PreparedVolume,
    rotations: torch.Tensor,  # (..., 3, 3)
    *,
    max_radius: float = 0.5,
) -> torch.Tensor:
    """Centred rfft ``(..., h, w//2 + 1)`` of the projections of a prepared volume.

    The images have the box's ``(h, w)``; transform back with
    :func:`cryowarp.core.fourier.irfft_centered`. Density outside the sphere inscribed in the
    box may project outside the image and wraps around.
    """
    image_shape = (volume.box_shape[1], volume.box_shape[2])
    return extract_central_slices_rfft(
        volume.spectrum,
        rotations,
        volume_shape=volume.padded_shape,
        image_shape=image_shape,
        max_radius=max_radius,
    )


def project_real(
    volume: torch.Tensor,  # (d, h, w)
    rotations: torch.Tensor,  # (..., 3, 3)
    *,
    oversampling: float = 2.0,
    gridding_correction: bool = True,
    max_radius: float = 0.5,
) -> torch.Tensor:
    """Projections ``(..., h, w)`` of ``volume`` at ``rotations`` by the Fourier-slice theorem.

    Line integrals in voxel units (a voxel of value 1 adds 1 to the image); differentiable
    with respect to ``volume``. See :func:`prepare_volume_for_projection` and
    :func:`project_fourier`.
    """
    prepared = prepare_volume_for_projection(
        volume, oversampling=oversampling, gridding_correction=gridding_correction
    )
    spectra = project_fourier(prepared, rotations, max_radius=max_radius)
    return irfft_centered(spectra, shape=(prepared.box_shape[1], prepared.box_shape[2]))


def project_real_space_reference(
    volume: torch.Tensor,  # (d, h, w)
    rotations: torch.Tensor,  # (n, 3, 3)
) -> torch.Tensor:
    """Reference projector: ``Σ_z V(Aᵀ (x, y, z))`` by trilinear sampling in real space.

    Slow and slightly blurring (real-space interpolation); meant for tests of the Fourier
    projector. Returns ``(n, h, w)``; ``z`` runs over ``d`` samples about the centre.
    """
    _check_volume(volume)
    d, h, w = volume.shape
    dtype, device = volume.dtype, volume.device
    r = centred_grid((d, h, w), device=device, dtype=dtype)  # (d, h, w, 3) image frame (x, y, z)
    rotations = rotations.to(dtype)
    r_ref = torch.einsum("nji,dhwj->ndhwi", rotations, r)  # Aᵀ r
    sizes = torch.tensor([w, h, d], device=device, dtype=dtype)
    centres = torch.tensor([w // 2, h // 2, d // 2], device=device, dtype=dtype)
    grid = 2 * (r_ref + centres) / (sizes - 1) - 1  # align_corners=True normalisation
    n = rotations.shape[0]
    sampled = torch.nn.functional.grid_sample(
        volume.expand(n, 1, d, h, w),
        grid,
        mode="bilinear",
        padding_mode="zeros",
        align_corners=True,
    )
    return sampled[:, 0].sum(dim=1)


def _check_volume(volume: torch.Tensor) -> None:
    if volume.ndim != 3:
        raise DimensionMismatchError(
            None, f"expected a volume (d, h, w), got shape {tuple(volume.shape)}"
        )
    if volume.is_complex():
        raise InvalidValuesError(None, "expected a real volume, got a complex tensor")
