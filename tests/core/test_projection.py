"""Fourier-slice projection and gridding: physics and conventions (docs/conventions.md §2, §8)."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from scipy.spatial.transform import Rotation

from cryowarp.core.gridding import gridding_correct, padded_shape, trilinear_gridding_kernel
from cryowarp.core.projection import (
    extract_central_slices_rfft,
    prepare_volume_for_projection,
    project_fourier,
    project_real,
    project_real_space_reference,
)
from cryowarp.core.resize import crop_or_pad
from cryowarp.errors import DimensionMismatchError


def _random_rotations(n: int, seed: int, device: torch.device) -> torch.Tensor:
    matrices = Rotation.random(n, random_state=seed).as_matrix()
    return torch.tensor(matrices, dtype=torch.float64, device=device)


def _centred_coordinates(n: int, device: torch.device) -> torch.Tensor:
    """(n, n, n, 3) voxel coordinates (x, y, z) relative to the box centre n//2."""
    ax = torch.arange(n, dtype=torch.float64, device=device) - n // 2
    z, y, x = torch.meshgrid(ax, ax, ax, indexing="ij")
    return torch.stack([x, y, z], dim=-1)


def _gaussian(n: int, centre: torch.Tensor, sigma: float) -> torch.Tensor:
    r = _centred_coordinates(n, centre.device)
    return torch.exp(-((r - centre) ** 2).sum(-1) / (2 * sigma**2))


def _ncc(a: torch.Tensor, b: torch.Tensor) -> float:
    a = a - a.mean()
    b = b - b.mean()
    return float((a * b).sum() / (a.norm() * b.norm()))


@pytest.mark.parametrize("n", [24, 25])
def test_point_at_box_centre_projects_to_image_centre(device: torch.device, n: int) -> None:
    volume = torch.zeros(n, n, n, device=device)
    volume[n // 2, n // 2, n // 2] = 1.0
    images = project_real(volume, _random_rotations(100, seed=3, device=device))
    flat_argmax = images.reshape(100, -1).argmax(dim=-1)
    assert torch.all(flat_argmax // n == n // 2)
    assert torch.all(flat_argmax % n == n // 2)
    # The projection of a unit voxel carries unit mass.
    assert torch.allclose(images.sum((-2, -1)), torch.ones(100, device=device), atol=1e-4)


def test_off_centre_point_projects_to_rotated_position(device: torch.device) -> None:
    """A Gaussian at r projects to a Gaussian at (A r)_xy (r_image = A r_ref, §8)."""
    n, sigma = 32, 1.5
    centre = torch.tensor([5.0, -3.0, 7.0], dtype=torch.float64, device=device)
    rotations = _random_rotations(50, seed=1, device=device)
    images = project_real(_gaussian(n, centre, sigma), rotations)

    expected = (rotations @ centre)[:, :2]  # (50, 2) x, y
    ax = torch.arange(n, dtype=torch.float64, device=device) - n // 2
    yy, xx = torch.meshgrid(ax, ax, indexing="ij")
    dx = xx - expected[:, 0, None, None]
    dy = yy - expected[:, 1, None, None]
    analytic = math.sqrt(2 * math.pi) * sigma * torch.exp(-(dx**2 + dy**2) / (2 * sigma**2))
    assert float((images - analytic).abs().max()) < 0.04 * float(analytic.max())

    # Peak position (centroid of a 5x5 window about the maximum) within 0.3 px of A r.
    index = images.reshape(50, -1).argmax(dim=-1)
    py, px = index // n, index % n
    offsets = torch.arange(-2, 3, device=device)
    rows = (py[:, None] + offsets)[:, :, None].expand(-1, 5, 5)
    cols = (px[:, None] + offsets)[:, None, :].expand(-1, 5, 5)
    window = images[torch.arange(50, device=device)[:, None, None], rows, cols]
    cy = (window * (rows - n // 2)).sum((1, 2)) / window.sum((1, 2))
    cx = (window * (cols - n // 2)).sum((1, 2)) / window.sum((1, 2))
    found = torch.stack([cx, cy], dim=-1)
    assert float((found - expected).abs().max()) < 0.3
    # ... and not at (Aᵀ r)_xy, where the opposite convention would put it.
    wrong = (rotations.transpose(-1, -2) @ centre)[:, :2]
    far = (wrong - expected).norm(dim=-1) > 3
    assert torch.all((found - wrong)[far].norm(dim=-1) > 2)


def test_axis_aligned_projections_are_exact_sums(device: torch.device) -> None:
    """On-grid slices need no interpolation: identity sums along z; a +90° rotation about x
    (A = R_x(90°), r_image = A r_ref) gives image(x, y) = Σ_y' V(x, y', −y)."""
    n = 16
    volume = torch.zeros(n, n, n, dtype=torch.float64, device=device)
    volume[1:, 1:, 1:] = torch.rand(n - 1, n - 1, n - 1, dtype=torch.float64, device=device)
    identity = torch.eye(3, dtype=torch.float64, device=device)
    rx90 = torch.tensor([[1, 0, 0], [0, 0, -1], [0, 1, 0]], dtype=torch.float64, device=device)
    images = project_real(
        volume, torch.stack([identity, rx90]), gridding_correction=False, max_radius=1.0
    )
    torch.testing.assert_close(images[0], volume.sum(0))
    summed_over_y = volume.sum(1)  # (z, x)
    expected = torch.zeros_like(summed_over_y)
    expected[1:] = summed_over_y.flip(0)[:-1]  # image row y ↔ z index n//2 − (y − n//2)
    torch.testing.assert_close(images[1], expected)


def test_fourier_projector_matches_real_space_line_integrals(device: torch.device) -> None:
    n = 32
    generator = torch.Generator().manual_seed(4)
    centres = (torch.randn(12, 3, generator=generator, dtype=torch.float64) * 4).to(device)
    volume = sum(_gaussian(n, c, 2.0) for c in centres)
    assert isinstance(volume, torch.Tensor)
    rotations = _random_rotations(10, seed=2, device=device)
    fourier = project_real(volume.float(), rotations)
    reference = project_real_space_reference(volume.float(), rotations)
    assert fourier.shape == reference.shape == (10, n, n)
    assert _ncc(fourier, reference) > 0.999
    assert all(_ncc(f, r) > 0.99 for f, r in zip(fourier, reference, strict=True))


def test_gridding_correction_reduces_interpolation_error(device: torch.device) -> None:
    n, sigma = 32, 1.5
    centre = torch.tensor([6.0, 4.0, -7.0], dtype=torch.float64, device=device)
    rotations = _random_rotations(20, seed=5, device=device)
    expected = (rotations @ centre)[:, :2]
    ax = torch.arange(n, dtype=torch.float64, device=device) - n // 2
    yy, xx = torch.meshgrid(ax, ax, indexing="ij")
    d2 = (xx - expected[:, 0, None, None]) ** 2 + (yy - expected[:, 1, None, None]) ** 2
    analytic = math.sqrt(2 * math.pi) * sigma * torch.exp(-d2 / (2 * sigma**2))
    volume = _gaussian(n, centre, sigma)
    errors = {
        flag: float(
            (project_real(volume, rotations, gridding_correction=flag) - analytic).abs().max()
        )
        for flag in (False, True)
    }
    assert errors[True] < 0.5 * errors[False]
    assert errors[True] < 0.03 * float(analytic.max())


def test_trilinear_gridding_kernel_is_sinc_squared(device: torch.device) -> None:
    kernel = trilinear_gridding_kernel((16, 16, 16), (32, 32, 32), device=device)
    assert float(kernel[8, 8, 8]) == pytest.approx(1.0)
    edge = (math.sin(math.pi / 4) / (math.pi / 4)) ** 2  # sinc²(8 / 32) at index 0
    assert float(kernel[0, 8, 8]) == pytest.approx(edge, rel=1e-6)
    assert float(kernel[0, 0, 0]) == pytest.approx(edge**3, rel=1e-5)
    volume = torch.ones(16, 16, 16, device=device)
    torch.testing.assert_close(gridding_correct(volume, padded=(32, 32, 32)), 1 / kernel)


@given(n=st.integers(1, 40), factor=st.sampled_from([1.0, 1.5, 2.0, 3.0]))
def test_padding_keeps_the_centre_and_crop_inverts_it(n: int, factor: float) -> None:
    (p, q) = padded_shape((n, n + 1), factor)
    assert p >= n
    assert q >= n + 1
    x = torch.zeros(n, n + 1)
    x[n // 2, (n + 1) // 2] = 1.0
    padded = crop_or_pad(x, (p, q))
    assert padded.shape == (p, q)
    assert int(padded.argmax()) == (p // 2) * q + q // 2
    torch.testing.assert_close(crop_or_pad(padded, (n, n + 1)), x)


def test_projection_is_batched_and_differentiable(device: torch.device) -> None:
    n = 12
    volume = torch.randn(n, n, n, dtype=torch.float64, device=device, requires_grad=True)
    rotations = _random_rotations(6, seed=7, device=device).reshape(2, 3, 3, 3)
    prepared = prepare_volume_for_projection(volume)
    spectra = project_fourier(prepared, rotations)
    assert spectra.shape == (2, 3, n, n // 2 + 1)
    assert spectra.device.type == device.type
    images = project_real(volume, rotations)
    assert images.shape == (2, 3, n, n)
    images.square().sum().backward()
    assert volume.grad is not None
    assert float(volume.grad.abs().sum()) > 0


def test_mismatched_spectrum_shape_is_rejected() -> None:
    spectrum = torch.zeros(8, 8, 5, dtype=torch.complex64)
    with pytest.raises(DimensionMismatchError, match="not the rfft"):
        extract_central_slices_rfft(
            spectrum, torch.eye(3)[None], volume_shape=(8, 8, 10), image_shape=(8, 8)
        )
    with pytest.raises(DimensionMismatchError, match="volume"):
        project_real(torch.zeros(8, 8), torch.eye(3)[None])
