"""Particle extraction: centring, motion following, exposure weighting, halves, finishing."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from cryowarp.core.ctf import CTFParams, ctf_2d
from cryowarp.core.fourier import irfft_centered, rfft_centered
from cryowarp.core.masks import spherical_mask
from cryowarp.core.resize import crop_or_pad
from cryowarp.errors import InvalidValuesError
from cryowarp.io.mrc import write_mrc
from cryowarp.preprocess.export.extract import (
    box_geometry,
    cut_boxes,
    extract_from_frames,
    extract_from_images,
    finish_particles,
)
from cryowarp.preprocess.motion.frames import load_movie
from cryowarp.preprocess.motion.settings import MovieInputSettings


def _blob(shape: tuple[int, int], centre_xy: torch.Tensor, sigma_px: float) -> torch.Tensor:
    y, x = torch.meshgrid(
        torch.arange(shape[0], dtype=torch.float64),
        torch.arange(shape[1], dtype=torch.float64),
        indexing="ij",
    )
    out = torch.zeros(shape, dtype=torch.float64)
    for cx, cy in centre_xy.tolist():
        out += torch.exp(-((x - cx) ** 2 + (y - cy) ** 2) / (2 * sigma_px**2))
    return out


def _centroid(boxes: torch.Tensor) -> torch.Tensor:  # (n, 2) x, y
    _, h, w = boxes.shape
    y, x = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    mass = boxes.sum(dim=(-2, -1))
    return torch.stack(
        [(boxes * x).sum(dim=(-2, -1)) / mass, (boxes * y).sum(dim=(-2, -1)) / mass], -1
    )


def test_box_geometry_output_pixel_is_exact_and_no_upsampling() -> None:
    g = box_geometry(64, input_pixel_size_a=1.0, pixel_size_a=1.6)
    assert g.read_box_px == 102  # nearest even size to 64 × 1.6
    assert g.pixel_size_a == pytest.approx(102 / 64)
    padded = box_geometry(64, input_pixel_size_a=1.0, pixel_size_a=1.6, padding=2)
    assert (padded.read_box_px, padded.padded_box_px) == (204, 128)
    assert padded.pixel_size_a == g.pixel_size_a
    with pytest.raises(InvalidValuesError, match="finer than"):
        box_geometry(64, input_pixel_size_a=1.0, pixel_size_a=0.8)
    with pytest.raises(InvalidValuesError, match="even"):
        box_geometry(63, input_pixel_size_a=1.0)


def test_cut_boxes_puts_the_centre_pixel_at_n_over_2_and_repeats_edges() -> None:
    image = torch.arange(100.0).reshape(10, 10)
    boxes = cut_boxes(image, torch.tensor([[3, 4], [0, 9]]), 4)
    assert boxes[0, 2, 2] == image[4, 3]
    assert torch.equal(boxes[0], image[2:6, 1:5])
    assert boxes[1, 0, 0] == image[7, 0]  # (x, y) = (−2, 7) → clamped to column 0
    assert boxes[1, 3, 3] == image[9, 1]  # y = 10 → row 9


def test_sub_pixel_positions_are_centred_and_rescaled() -> None:
    """A blob at a sub-pixel position lands on the box centre N//2, also after rescaling."""
    centres_px = torch.tensor([[40.3, 50.7], [90.55, 31.2]], dtype=torch.float64)
    image = _blob((128, 128), centres_px, 2.5).to(torch.float32)
    (boxes,) = extract_from_images(
        [image], centres_px * 1.5, image_pixel_size_a=1.5, box_size_px=32
    )
    assert torch.allclose(_centroid(boxes), torch.tensor(16.0), atol=0.02)
    (coarse,) = extract_from_images(
        [image], centres_px * 1.5, image_pixel_size_a=1.5, box_size_px=16, pixel_size_a=3.0
    )
    assert torch.allclose(_centroid(coarse), torch.tensor(8.0), atol=0.02)
    # Fourier cropping keeps the mean level of the image
    assert coarse.sum(dim=(-2, -1)) * 4 == pytest.approx(boxes.sum(dim=(-2, -1)), rel=0.02)


class _Drift:
    """A rigid drift of (1.3, −0.7) Å per frame plus a position-dependent term (Å)."""

    n_frames = 6

    def shifts_at(
        self, positions_xy_a: torch.Tensor, frames: torch.Tensor | None = None
    ) -> torch.Tensor:
        t = torch.arange(self.n_frames, dtype=torch.float64) if frames is None else frames
        step = torch.tensor([1.3, -0.7], dtype=torch.float64)
        local = positions_xy_a[..., None, :1] * 0.01  # x-dependent, same on both axes
        return t[:, None] * step + local * t[:, None] / self.n_frames


def _movie(tmp_path: Path, frames: np.ndarray, pixel_size_a: float) -> Path:
    path = tmp_path / "movie.mrc"
    write_mrc(path, frames.astype(np.float32), voxel_size_a=pixel_size_a, is_stack=True)
    return path


def test_extraction_follows_the_motion_at_each_particle(tmp_path: Path) -> None:
    """Frames hold blobs at x + s(x, t): the extracted sum is centred (no motion blur)."""
    px = 1.0
    positions_a = torch.tensor([[30.0, 40.0], [80.0, 70.0], [64.5, 20.25]], dtype=torch.float64)
    motion = _Drift()
    shifts = motion.shifts_at(positions_a)  # (n, T, 2)
    frames = np.stack(
        [
            _blob((112, 112), (positions_a + shifts[:, t]) / px, 2.0).numpy()
            for t in range(motion.n_frames)
        ]
    )
    settings = MovieInputSettings(pixel_size_a=px, detect_hot_pixels=False)
    movie = load_movie(_movie(tmp_path, frames, px), settings)
    out = extract_from_frames(movie, motion, positions_a, box_size_px=32, dose_weighting=False)
    assert torch.allclose(_centroid(out.full), torch.tensor(16.0), atol=0.02)
    peak = out.full[:, 16, 16]
    assert torch.allclose(peak, torch.ones(3), atol=0.02)  # each frame's blob adds up unblurred
    # Ignoring the motion blurs and displaces the sum
    still = extract_from_frames(
        movie, _Still(), positions_a, box_size_px=32, dose_weighting=False, odd_even=False
    )
    assert float(still.full[:, 16, 16].max()) < 0.6


class _Still:
    n_frames = 6

    def shifts_at(
        self, positions_xy_a: torch.Tensor, frames: torch.Tensor | None = None
    ) -> torch.Tensor:
        return torch.zeros(*positions_xy_a.shape[:-1], self.n_frames, 2, dtype=torch.float64)


def test_odd_and_even_halves_and_exposure_weights(tmp_path: Path) -> None:
    """Odd frames (1, 3, 5) hold +1, even ones (0, 2, 4) −1: the halves are ±1, the full sum
    is 0 at DC; exposure weights favour early frames at high frequency only."""
    n = 6
    frames = np.stack([np.full((64, 64), 1.0 if t % 2 else -1.0) for t in range(n)])
    settings = MovieInputSettings(pixel_size_a=1.0, dose_per_frame_e_per_a2=3.0)
    movie = load_movie(_movie(tmp_path, frames, 1.0), settings)
    out = extract_from_frames(movie, _Still(), torch.tensor([[32.0, 32.0]]), box_size_px=16)
    assert out.odd is not None
    assert out.even is not None
    assert torch.allclose(out.odd, torch.ones(1, 16, 16), atol=1e-5)
    assert torch.allclose(out.even, -torch.ones(1, 16, 16), atol=1e-5)
    assert torch.allclose(out.full, torch.zeros(1, 16, 16), atol=1e-5)

    # A pattern in frame 0 only: kept at DC at 1/n of its value, damped more at Nyquist
    frames = np.full((n, 64, 64), 0.5)  # (a frame of zeros is a detector error)
    frames[0] += np.cos(np.pi * np.arange(64))[None, :] + 1.0
    movie = load_movie(_movie(tmp_path, frames, 1.0), settings)
    out = extract_from_frames(
        movie, _Still(), torch.tensor([[32.0, 32.0]]), box_size_px=16, odd_even=False
    )
    spectrum = torch.fft.rfft2(out.full[0]) / 256
    dose = 3.0 * (torch.arange(n) + 0.5)
    weights = torch.exp(-4.0 * dose * 0.25 / 4)  # k = 0.5 /Å at Nyquist
    assert float(spectrum[0, 0].real) == pytest.approx(0.5 + 1 / n, rel=1e-4)
    assert abs(float(spectrum[0, 8].real)) == pytest.approx(
        float(weights[0] / weights.sum()), rel=1e-3
    )


def test_finishing_normalises_the_background_and_inverts() -> None:
    generator = torch.Generator().manual_seed(1)
    boxes = 3.0 + 2.0 * torch.randn(4, 32, 32, generator=generator)
    out = finish_particles(boxes, box_size_px=32, background_radius_px=10.0)
    outside = spherical_mask((32, 32), 10.0) <= 0.5
    assert torch.allclose(out[:, outside].mean(-1), torch.zeros(4), atol=1e-5)
    assert torch.allclose(out[:, outside].std(-1), torch.ones(4), atol=1e-5)
    kept = finish_particles(boxes, box_size_px=32, normalize=False, invert_contrast=True)
    assert torch.equal(kept, -boxes)
    with pytest.raises(InvalidValuesError, match="no background"):
        finish_particles(boxes, box_size_px=32, background_radius_px=30.0)


@pytest.mark.parametrize("mode", ["phase_flip", "premultiply"])
def test_ctf_correction_on_the_padded_box(mode: str) -> None:
    generator = torch.Generator().manual_seed(2)
    boxes = torch.randn(2, 64, 64, generator=generator)
    ctf = CTFParams.from_relion(
        defocus_u_a=torch.tensor([15000.0, 22000.0]),
        defocus_v_a=torch.tensor([14000.0, 21000.0]),
        defocus_angle_deg=torch.tensor([30.0, -40.0]),
        pixel_size_a=1.5,
        dtype=torch.float32,
    )
    out = finish_particles(
        boxes, box_size_px=32, ctf=ctf, ctf_correction=mode, invert_contrast=False, normalize=False
    )
    values = ctf_2d(ctf, (64, 64))
    factor = torch.sign(values) if mode == "phase_flip" else values
    expected = crop_or_pad(
        irfft_centered(rfft_centered(boxes, ndim=2) * factor, shape=(64, 64)), (32, 32)
    )
    assert torch.allclose(out, expected, atol=1e-5)
    with pytest.raises(InvalidValuesError, match="needs the CTF"):
        finish_particles(boxes, box_size_px=32, ctf_correction=mode)
