"""The motion fit recovers known global and local motion (patch Fourier cost, L-BFGS)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from cryowarp.core.shift import shift_image
from cryowarp.preprocess.motion._xcorr_init import initial_global_track_a
from cryowarp.preprocess.motion.fit import estimate_motion, global_stage_nodes
from cryowarp.preprocess.motion.frames import alignment_frames, load_movie
from cryowarp.preprocess.motion.patches import patch_layout, sparse_patch_indices
from cryowarp.preprocess.motion.settings import MotionSettings, MovieInputSettings
from cryowarp.simulate.ground_truth import FrameSeriesTruth, load_ground_truth
from cryowarp.simulate.presets import frame_series_preset
from cryowarp.simulate.write import write_frame_series_dataset


def test_global_stages_grow_by_powers_of_three_up_to_the_target() -> None:
    assert global_stage_nodes(40, None) == [3, 9, 27, 40]
    assert global_stage_nodes(40, 10) == [3, 9, 10]
    assert global_stage_nodes(8, None) == [3, 8]
    assert global_stage_nodes(3, None) == [3]
    assert global_stage_nodes(2, None) == [2]


def test_patches_cover_the_frame_with_the_overlap() -> None:
    size, corners = patch_layout((300, 500), patch_size_px=128, overlap=0.5)
    assert size == 128
    xs, ys = torch.unique(corners[:, 0]), torch.unique(corners[:, 1])
    assert int(xs[0]) == 0
    assert int(xs[-1]) == 500 - 128
    assert int(ys[0]) == 0
    assert int(ys[-1]) == 300 - 128
    assert float(torch.diff(xs).max()) <= 64
    assert float(torch.diff(ys).max()) <= 64
    sparse = sparse_patch_indices((300, 500), patch_size_px=128, overlap=0.5)
    chosen = corners[sparse]
    assert int(chosen[:, 0].max()) == 500 - 128  # the last column is kept
    assert len(sparse) < len(corners)


def _textured_frames(
    shifts_px: torch.Tensor, *, size: int = 128, noise: float = 0.5, seed: int = 0
) -> torch.Tensor:  # (n, size, size)
    generator = torch.Generator().manual_seed(seed)
    reference = torch.randn(size, size, generator=generator, dtype=torch.float64)
    k = torch.fft.fftfreq(size, dtype=torch.float64)
    envelope = torch.exp(-(k[:, None] ** 2 + k[None] ** 2) * 30)
    reference = torch.fft.ifft2(torch.fft.fft2(reference) * envelope).real
    reference = reference / reference.std()
    frames = shift_image(reference.expand(len(shifts_px), size, size), shifts_px)
    frames = frames + noise * torch.randn(frames.shape, generator=generator, dtype=torch.float64)
    return frames.float()


def test_cross_correlation_start_finds_whole_and_sub_pixel_shifts() -> None:
    shifts = torch.tensor([[0.0, 0.0], [3.0, -2.0], [5.4, -3.7], [6.2, -4.9]], dtype=torch.float64)
    frames = _textured_frames(shifts)
    track = initial_global_track_a(
        frames, pixel_size_a=2.0, min_resolution_a=200.0, max_resolution_a=4.0, bfactor_a2=0.0
    )
    assert torch.allclose(track, (shifts * 2.0).float(), atol=0.4)  # Å; parabola: ±0.1 px


def test_fit_recovers_sub_pixel_global_shifts() -> None:
    steps = torch.tensor([[0.0, 0.0], [0.7, -0.4], [1.3, -0.9], [1.6, -1.5], [1.8, -1.8]])
    shifts_px = steps.double()
    frames = _textured_frames(shifts_px, noise=0.5, seed=3)
    settings = MotionSettings(
        min_resolution_a=300.0, max_resolution_a=4.0, bfactor_a2=0.0, local_grid=(1, 1, 1)
    )
    fit = estimate_motion(
        frames,
        pixel_size_a=2.0,
        field_size_a=(256.0, 256.0),
        settings=settings,
        patch_size_px=64,
    )
    track_px = fit.motion.global_shifts_at() / 2.0
    assert torch.allclose(track_px[0], torch.zeros(2))  # frame 0 is the reference
    error = (track_px - shifts_px.float()).norm(dim=-1)
    assert float(error.max()) < 0.05  # px
    assert all(stage.cost_end <= stage.cost_start + 1e-6 for stage in fit.stages)


@pytest.fixture(scope="module")
def tiny_local_movie(tmp_path_factory: pytest.TempPathFactory) -> FrameSeriesTruth:
    folder: Path = tmp_path_factory.mktemp("tiny_local")
    settings = frame_series_preset(
        "tiny", dose_per_frame_e_per_a2=5.0, local_motion_a=2.0, local_grid_shape=(3, 3, 3)
    )
    write_frame_series_dataset(folder, settings, n_movies=1, seed=1)
    return load_ground_truth(folder, 0)


def _errors_a(truth: FrameSeriesTruth, motion_shifts: torch.Tensor) -> tuple[float, float]:
    """RMS error (Å) of the global part (field mean) and of the local remainder."""
    field_w, field_h = truth.motion.field_size_a
    grid = torch.linspace(0, 1, 17)
    yy, xx = torch.meshgrid(grid * field_h, grid * field_w, indexing="ij")
    positions = torch.stack([xx, yy], dim=-1).reshape(-1, 2)
    true = truth.shifts_at(positions)
    true = true - true[:, :1]
    estimated = motion_shifts(positions)  # type: ignore[operator]
    estimated = estimated - estimated[:, :1]
    true_global, est_global = true.mean(0), estimated.mean(0)
    global_error = (true_global - est_global).norm(dim=-1).square().mean().sqrt()
    local_error = ((true - true_global) - (estimated - est_global)).norm(dim=-1)
    return float(global_error), float(local_error.square().mean().sqrt())


@pytest.mark.slow
def test_fit_recovers_global_and_local_motion_of_a_simulated_movie(
    tiny_local_movie: FrameSeriesTruth,
) -> None:
    truth = tiny_local_movie
    movie = load_movie(truth.movie_path, MovieInputSettings(gain_path=str(truth.gain_path)))
    settings = MotionSettings(local_grid=(3, 3, 3))
    frames, pixel_size_a = alignment_frames(movie, pixel_size_a=settings.max_resolution_a / 2)
    patch_px = round(128 * movie.pixel_size_a / pixel_size_a)
    fit = estimate_motion(
        frames,
        pixel_size_a=pixel_size_a,
        field_size_a=movie.field_size_a,
        settings=settings,
        patch_size_px=patch_px,
    )
    global_error, local_error = _errors_a(truth, fit.motion.shifts_at)
    _, local_rms = _errors_a(truth, lambda p: torch.zeros(p.shape[0], truth.motion.n_frames, 2))
    assert global_error < 0.3  # Å (measured 0.16; truth drifts 8 Å RMS)
    assert local_error < 0.5 * local_rms  # measured 0.65 Å of 1.6 Å
    # Without the local grid the local motion stays uncorrected.
    global_only = estimate_motion(
        frames,
        pixel_size_a=pixel_size_a,
        field_size_a=movie.field_size_a,
        settings=MotionSettings(local_grid=(1, 1, 1)),
        patch_size_px=patch_px,
    )
    _, local_error_without = _errors_a(truth, global_only.motion.shifts_at)
    assert local_error < 0.6 * local_error_without
