"""Back-projection: adjointness, Hermitian handling, 3-D CTF geometry, reconstructions."""

from __future__ import annotations

import math
from pathlib import Path

import mrcfile
import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from cryowarp.core.backprojection import (
    Reconstructor,
    backproject_real,
    insert_central_slices_rfft,
)
from cryowarp.core.fsc import fsc
from cryowarp.core.projection import (
    extract_central_slices_rfft,
    prepare_volume_for_projection,
    project_real,
)
from cryowarp.errors import DimensionMismatchError


def _random_rotations(n: int, seed: int, device: torch.device) -> torch.Tensor:
    matrices = Rotation.random(n, random_state=seed).as_matrix()
    return torch.tensor(matrices, dtype=torch.float64, device=device)


def _uniform_views(n: int, seed: int, device: torch.device) -> torch.Tensor:
    """``(n, 3, 3)`` matrices ``A`` whose viewing directions ``Aᵀ e_z`` lie on a Fibonacci
    sphere, with random in-plane angles: close to uniform on SO(3)."""
    i = np.arange(n) + 0.5
    tilt = np.arccos(1 - 2 * i / n)
    rot = np.pi * (1 + 5**0.5) * i
    psi = np.random.default_rng(seed).uniform(0, 2 * np.pi, n)
    matrices = Rotation.from_euler("ZYZ", np.stack([rot, tilt, psi], -1)).as_matrix()
    return torch.tensor(matrices, dtype=torch.float32, device=device).transpose(-1, -2)


def _random_ball(n: int, device: torch.device) -> torch.Tensor:
    """White noise inside a sphere of radius n/2 − 3: power at every frequency up to Nyquist,
    and every projection fits in the ``n × n`` image."""
    generator = torch.Generator().manual_seed(11)
    ax = torch.arange(n, dtype=torch.float32) - n // 2
    z, y, x = torch.meshgrid(ax, ax, ax, indexing="ij")
    inside = (x**2 + y**2 + z**2).sqrt() < n / 2 - 3
    return (torch.randn(n, n, n, generator=generator) * inside).to(device)


@pytest.mark.parametrize("box", [(16, 16, 16), (15, 15, 15), (12, 14, 17)])
@pytest.mark.parametrize("oversampling", [1.5, 2.0])
@pytest.mark.parametrize("gridding", [False, True])
def test_backprojection_is_adjoint_of_projection(
    device: torch.device, box: tuple[int, int, int], oversampling: float, gridding: bool
) -> None:
    """<P v, y> = <v, Pᵀ y> for random real v, y, to float64 precision."""
    rotations = _random_rotations(5, seed=1, device=device)
    v = torch.randn(box, dtype=torch.float64, device=device)
    y = torch.randn(5, box[1], box[2], dtype=torch.float64, device=device)
    options = {"oversampling": oversampling, "gridding_correction": gridding}
    lhs = (project_real(v, rotations, **options) * y).sum()
    rhs = (v * backproject_real(y, rotations, box_shape=box, **options)).sum()
    assert float(abs(lhs - rhs)) < 1e-10 * float(abs(lhs)) + 1e-12


def test_fourier_insertion_is_adjoint_of_slice_extraction(device: torch.device) -> None:
    """With ``hermitian=False``, insertion is the adjoint of extraction for Re Σ a·conj(b)."""
    volume_shape, image_shape = (20, 18, 22), (11, 13)
    rotations = _random_rotations(4, seed=2, device=device)
    spectrum = torch.randn(20, 18, 12, dtype=torch.complex128, device=device)
    slices = torch.randn(4, 11, 7, dtype=torch.complex128, device=device)
    extracted = extract_central_slices_rfft(
        spectrum, rotations, volume_shape=volume_shape, image_shape=image_shape
    )
    inserted = insert_central_slices_rfft(
        slices, rotations, volume_shape=volume_shape, image_shape=image_shape, hermitian=False
    )
    lhs = (extracted * slices.conj()).real.sum()
    rhs = (spectrum * inserted.conj()).real.sum()
    assert float(abs(lhs - rhs)) < 1e-10 * float(abs(lhs))


def test_backprojection_matches_autograd_of_projection(device: torch.device) -> None:
    n = 10
    rotations = _random_rotations(3, seed=3, device=device)
    volume = torch.randn(n, n, n, dtype=torch.float64, device=device, requires_grad=True)
    y = torch.randn(3, n, n, dtype=torch.float64, device=device)
    (project_real(volume, rotations) * y).sum().backward()
    assert volume.grad is not None
    torch.testing.assert_close(volume.grad, backproject_real(y, rotations, box_shape=(n, n, n)))


def test_hermitian_insertion_gives_hermitian_planes(device: torch.device) -> None:
    volume_shape = (16, 16, 16)
    slices = torch.randn(30, 16, 9, dtype=torch.complex128, device=device)
    data = insert_central_slices_rfft(
        slices, _random_rotations(30, 4, device), volume_shape=volume_shape, image_shape=(16, 16)
    )
    for x in (0, 8):
        plane = data[..., x]
        mirror = torch.roll(plane.flip(0, 1), shifts=(1, 1), dims=(0, 1))
        torch.testing.assert_close(plane, mirror.conj())
    assert float(data[..., 0].abs().sum()) > 0


def test_3d_ctf_of_a_tilt_series_has_a_missing_wedge(device: torch.device) -> None:
    """Tilts ±60° about +y: the sampling fills the x-z plane within 60° of x, not the z axis."""
    n = 32
    tilts = torch.arange(-60.0, 61.0, 3.0)
    matrices = Rotation.from_euler("y", tilts.numpy()[:, None], degrees=True).as_matrix()
    rotations = torch.tensor(matrices, dtype=torch.float32, device=device)
    ctfs = torch.ones(len(tilts), n, n // 2 + 1, device=device)
    weights = insert_central_slices_rfft(
        ctfs, rotations, volume_shape=(n, n, n), image_shape=(n, n)
    )  # (z, y, x) half-spectrum
    radius = 10
    assert float(weights[0, radius, 0]) > 0.5  # k_y axis: in every tilt
    assert float(weights[0, 0, radius]) > 0.5  # k_x axis
    assert float(weights[radius, 0, 0]) == 0.0  # k_z axis: missing wedge
    for angle_deg, sampled in [(45.0, True), (75.0, False)]:
        kx = round(radius * math.cos(math.radians(angle_deg)))
        kz = round(radius * math.sin(math.radians(angle_deg)))
        value = float(weights[kz, 0, kx]) + float(weights[-kz, 0, kx])
        assert (value > 0.5) == sampled, angle_deg


def test_reconstruction_of_projected_random_ball(device: torch.device) -> None:
    n = 20
    volume = _random_ball(n, device)
    rotations = _uniform_views(500, seed=0, device=device)
    reconstructor = Reconstructor((n, n, n), device=device)
    reconstructor.insert_images(project_real(volume, rotations), rotations)
    curve = fsc(reconstructor.reconstruct(), volume)
    assert float(curve[: int(0.9 * n / 2) + 1].min()) > 0.99


def test_reconstruction_divides_out_ctf_weights(device: torch.device) -> None:
    """Data CTF·F with weights CTF² reconstruct the volume, the Wiener form close to it."""
    n = 16
    volume = _random_ball(n, device)
    rotations = _uniform_views(300, seed=1, device=device)
    reconstructor = Reconstructor((n, n, n), device=device)
    prepared = prepare_volume_for_projection(volume)
    slices = extract_central_slices_rfft(
        prepared.spectrum,
        rotations,
        volume_shape=prepared.padded_shape,
        image_shape=reconstructor.padded_image_shape,
    )
    generator = torch.Generator().manual_seed(5)
    ctf = (0.2 + 0.8 * torch.rand(slices.shape, generator=generator)).to(device)
    reconstructor.insert(slices * ctf, rotations, weights=ctf.square())
    for snr in (None, 1e4):
        curve = fsc(reconstructor.reconstruct(snr=snr), volume)
        assert float(curve[: int(0.9 * n / 2) + 1].min()) > 0.99, snr


def test_mismatched_slices_and_rotations_are_rejected() -> None:
    with pytest.raises(DimensionMismatchError, match="do not match"):
        insert_central_slices_rfft(
            torch.zeros(3, 8, 5),
            torch.eye(3).expand(2, 3, 3),
            volume_shape=(8, 8, 8),
            image_shape=(8, 8),
        )


def test_project_backproject_real_map_reaches_fsc_0_99(shared_data: Path) -> None:
    """EMD-1832 (64³, 5.7 Å/px) Fourier-cropped to 32³; 1000 uniform views."""
    path = shared_data / "maps" / "emdb_EMD-1832_sfftk" / "emd_1832.map"
    if not path.is_file():
        pytest.skip(f"{path} not found")
    with mrcfile.open(path, permissive=True) as mrc:
        full = torch.tensor(np.asarray(mrc.data, dtype=np.float32))
    n, n_full = 32, full.shape[0]
    spectrum = torch.fft.fftshift(torch.fft.fftn(full))
    start = n_full // 2 - n // 2
    cropped = spectrum[start : start + n, start : start + n, start : start + n]
    volume = torch.fft.ifftn(torch.fft.ifftshift(cropped)).real * (n / n_full) ** 3

    rotations = _uniform_views(1000, seed=0, device=volume.device)
    reconstructor = Reconstructor((n, n, n))
    reconstructor.insert_images(project_real(volume, rotations), rotations)
    curve = fsc(reconstructor.reconstruct(), volume)
    assert float(curve[: int(0.9 * n / 2) + 1].min()) >= 0.99
