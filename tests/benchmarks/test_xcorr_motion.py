"""The cross-correlation baseline of the motion benchmark recovers known global shifts."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from benchmarks._xcorr_motion import xcorr_global_motion

from cryowarp.core.shift import shift_image
from cryowarp.io.gain import read_gain
from cryowarp.io.movie import open_movie
from cryowarp.simulate.ground_truth import load_ground_truth
from cryowarp.simulate.presets import frame_series_preset
from cryowarp.simulate.write import write_frame_series_dataset


@pytest.fixture(scope="module")
def tiny_movie(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny simulated movie (256², 8 frames, 1 e⁻/Å² per frame) without detector defects."""
    folder = tmp_path_factory.mktemp("tiny_motion")
    settings = frame_series_preset("tiny", n_hot_pixels=0, n_dead_columns=0)
    write_frame_series_dataset(folder, settings, n_movies=1, seed=0)
    return folder


def test_recovers_the_global_shifts_of_a_simulated_movie(
    tiny_movie: Path, device: torch.device
) -> None:
    truth = load_ground_truth(tiny_movie)
    pixel_size_a = truth.settings.pixel_size_a
    with open_movie(truth.movie_path) as movie:
        frames = movie.read_frames_tensor(0, movie.n_frames)
    frames = (frames * torch.from_numpy(read_gain(truth.gain_path))).to(device)

    motion = xcorr_global_motion(frames, pixel_size_a=pixel_size_a)

    estimate_px = motion.global_shifts_at().cpu() / pixel_size_a  # (n, 2)
    true_px = truth.motion.global_shifts_a.float() / pixel_size_a
    assert float(true_px.abs().max()) > 4  # the drift is worth recovering
    error_px = (estimate_px - true_px).square().sum(-1)[1:].sqrt()
    assert float(error_px.square().mean().sqrt()) < 0.5
    assert torch.equal(estimate_px[0], torch.zeros(2))  # frame 0 is the reference
    assert motion.local_grid_dims == (1, 1, 1)


def test_shift_direction_and_order_are_the_conventions(device: torch.device) -> None:
    """Frames whose content moved by +s (x, y) give +s − s₀ in Å (conventions §4), and a
    shift along x only is found along x only."""
    generator = torch.Generator().manual_seed(1)
    pixel_size_a = 2.0
    image = torch.randn(192, 160, generator=generator)  # (h, w): non-square catches x/y swaps
    shifts_px = torch.tensor([[0.0, 0.0], [3.3, 0.0], [5.7, -2.2], [-1.4, 4.6], [0.8, 0.3]])
    frames = shift_image(image.expand(5, -1, -1), shifts_px)
    frames = frames + 0.5 * torch.randn(frames.shape, generator=generator)

    motion = xcorr_global_motion(
        frames.to(device), pixel_size_a=pixel_size_a, bfactor_a2=-50.0, max_resolution_a=6.0
    )

    estimate_px = motion.global_shifts_at().cpu() / pixel_size_a
    assert torch.allclose(estimate_px, shifts_px, atol=0.1)
    assert motion.field_size_a == (160 * pixel_size_a, 192 * pixel_size_a)


def test_reader_input_gives_the_same_motion_as_a_tensor() -> None:
    generator = torch.Generator().manual_seed(2)
    image = torch.randn(96, 96, generator=generator)
    frames = shift_image(image.expand(6, -1, -1), torch.randn(6, 2, generator=generator) * 2)

    from_tensor = xcorr_global_motion(frames, pixel_size_a=1.0, max_resolution_a=4.0)
    from_reader = xcorr_global_motion(
        lambda start, stop: frames[start:stop],
        n_frames=6,
        pixel_size_a=1.0,
        max_resolution_a=4.0,
        frames_per_chunk=4,
    )

    np.testing.assert_allclose(
        from_reader.global_nodes_a.numpy(), from_tensor.global_nodes_a.numpy(), atol=1e-5
    )


@pytest.mark.slow  # importing teamtomo's package and its dependencies takes seconds
def test_teamtomo_shifts_are_content_displacements() -> None:
    """Pins the adapter of teamtomo's optional torch-motion-correction: its (y, x) field in Å
    becomes a cryowarp MotionField (x, y) of content displacements (conventions §4)."""
    pytest.importorskip("torch_motion_correction")
    from benchmarks._teamtomo_motion import teamtomo_motion

    generator = torch.Generator().manual_seed(3)
    image = torch.randn(128, 96, generator=generator)  # (h, w)
    shifts_px = torch.tensor([[0.0, 0.0], [3.0, 0.0], [5.0, -2.0], [-1.0, 4.0]])  # whole pixels
    frames = shift_image(image.expand(4, -1, -1), shifts_px)

    motion = teamtomo_motion(frames, pixel_size_a=2.0, max_resolution_a=5.0, local=False)

    centre_a = torch.tensor([48.0, 64.0]) * 2.0
    estimate_px = motion.shifts_at(centre_a).cpu() / 2.0  # (n, 2)
    assert torch.allclose(estimate_px - estimate_px[:1], shifts_px, atol=1e-3)
