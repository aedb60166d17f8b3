"""Motion quality figures against values worked out by hand; the motion-track PNG."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from matplotlib.image import imread

from cryowarp.preprocess.motion.model import FrameMotion
from cryowarp.preprocess.motion.plot import plot_motion_tracks
from cryowarp.preprocess.motion.summary import (
    MotionSummary,
    early_exposure_steps,
    motion_summary,
    split_global_local,
    summary_positions_a,
)

FIELD_A = (300.0, 200.0)
N_FRAMES = 10


def _hand_made_motion(local_a: float, device: torch.device) -> FrameMotion:
    """Global: one node per frame (the spline passes through them at whole frames), steps of
    (3, 4) Å for five frames, then at rest. Local: a 2×2×2 (linear) grid whose x part is
    ``local_a · (2u − 1) · τ`` (u = x / width, τ = frame / (n − 1)), y part zero."""
    steps = torch.tensor([[3.0, 4.0]] * 5 + [[0.0, 0.0]] * 4)  # (9, 2)
    track = torch.cat([torch.zeros(1, 2), steps.cumsum(0)])  # (10, 2)
    local = torch.zeros(2, 2, 2, 2)  # (xy, t, gy, gx)
    local[0, 1, :, 0] = -local_a
    local[0, 1, :, 1] = local_a
    return FrameMotion(track.T.contiguous().to(device), local.to(device), FIELD_A, N_FRAMES)


def test_figures_of_a_hand_made_motion(device: torch.device) -> None:
    local_a = 2.0
    summary = motion_summary(_hand_made_motion(local_a, device), field_size_a=FIELD_A)
    assert summary.n_frames == N_FRAMES
    # Global track: five steps of 5 Å, then no motion.
    assert summary.total_drift_a == pytest.approx(25.0, abs=1e-4)
    assert summary.net_drift_a == pytest.approx(25.0, abs=1e-4)
    # Local: |x part| is largest at the field edges in the last frame.
    assert summary.max_local_motion_a == pytest.approx(local_a, abs=1e-5)
    # RMS over the 9 positions per axis (u = i/8) and the 10 frames (τ = f/9):
    # mean (2u − 1)² = 3.75 / 9, mean τ² = 285 / (81 · 10).
    rms = local_a * math.sqrt(3.75 / 9 * 285 / 810)
    assert summary.rms_local_motion_a == pytest.approx(rms, rel=1e-5)
    # Early motion: 10 frames at constant dose → the first 2 steps (the first fifth);
    # each step moves x by 3 + local_a (2u − 1) / 9 and y by 4.
    assert summary.early_steps == 2
    u = torch.linspace(0, 1, 9, dtype=torch.float64)
    expected = torch.sqrt((3 + local_a * (2 * u - 1) / 9) ** 2 + 16).mean()
    assert summary.early_motion_a_per_frame == pytest.approx(float(expected), rel=1e-5)


def test_without_local_grid_the_local_figures_are_zero(device: torch.device) -> None:
    motion = FrameMotion.zeros(N_FRAMES, field_size_a=FIELD_A, global_nodes=N_FRAMES, device=device)
    nodes = torch.zeros(2, N_FRAMES, device=device)
    nodes[1] = torch.tensor([0, -2, -2, 0, 2, 2, 2, 2, 2, 2], device=device)  # back and forth
    motion = FrameMotion(nodes, motion.local_nodes_a, FIELD_A, N_FRAMES)
    summary = motion_summary(motion, field_size_a=FIELD_A)
    assert summary.max_local_motion_a == 0.0
    assert summary.rms_local_motion_a == 0.0
    assert summary.total_drift_a == pytest.approx(2 + 0 + 2 + 2, abs=1e-5)
    assert summary.net_drift_a == pytest.approx(2.0, abs=1e-5)
    assert summary.early_motion_a_per_frame == pytest.approx(1.0, abs=1e-5)  # (2 + 0) / 2


class _TotalOnly:
    """A motion field that only gives total shifts: global = field mean, local = the rest."""

    def __init__(self, motion: FrameMotion) -> None:
        self._motion = motion

    @property
    def n_frames(self) -> int:
        return self._motion.n_frames

    def shifts_at(
        self, positions_xy_a: torch.Tensor, frames: torch.Tensor | None = None
    ) -> torch.Tensor:
        return self._motion.shifts_at(positions_xy_a, frames)


def test_a_field_without_parts_is_split_by_its_spatial_mean() -> None:
    motion = _hand_made_motion(2.0, torch.device("cpu"))  # local part has zero mean over x
    split = motion_summary(motion, field_size_a=FIELD_A)
    total_only = motion_summary(_TotalOnly(motion), field_size_a=FIELD_A)
    for name, value in split.to_dict().items():
        assert total_only.to_dict()[name] == pytest.approx(value, rel=1e-5, abs=1e-6), name
    positions = summary_positions_a(FIELD_A).reshape(-1, 2)
    track, local = split_global_local(_TotalOnly(motion), positions, torch.arange(10.0))
    assert track.shape == (10, 2)
    assert local.shape == (81, 10, 2)
    assert local.mean(dim=0).abs().max() < 1e-6


def test_summary_of_the_ground_truth_is_in_the_simulated_range() -> None:
    from cryowarp.simulate.motion import random_motion

    truth = random_motion(
        20, field_size_a=(400.0, 400.0), drift_a=10.0, jitter_a=0.0, local_amplitude_a=2.0,
        local_grid_shape=(3, 3, 3), generator=torch.Generator().manual_seed(1),
    )  # fmt: skip
    summary = motion_summary(truth, field_size_a=(400.0, 400.0))
    assert summary.net_drift_a <= summary.total_drift_a + 1e-6
    assert summary.total_drift_a == pytest.approx(10.0, rel=0.3)
    assert 0 < summary.rms_local_motion_a <= summary.max_local_motion_a


def test_early_steps_follow_the_exposure() -> None:
    assert early_exposure_steps(1.0, 40) == 8
    assert early_exposure_steps(1.0, 8) == 1  # at least one step
    assert early_exposure_steps(1.0, 1) == 0
    # Heavier first frames: the first fifth of 10 e⁻/Å² is over after frame 0.
    assert early_exposure_steps(torch.tensor([2.0, 1, 1, 1, 1, 1, 1, 1, 1]), 9) == 1
    with pytest.raises(ValueError, match="doses per frame"):
        early_exposure_steps(torch.ones(3), 4)


def test_to_dict_round_trips() -> None:
    summary = motion_summary(_hand_made_motion(1.0, torch.device("cpu")), field_size_a=FIELD_A)
    assert MotionSummary(**summary.to_dict()) == summary  # type: ignore[arg-type]


def test_plot_writes_a_png_of_the_right_size_that_is_not_blank(tmp_path: Path) -> None:
    motion = _hand_made_motion(2.0, torch.device("cpu"))
    path = plot_motion_tracks(
        motion, path=tmp_path / "tracks.png", n_frames=N_FRAMES, field_size_a=FIELD_A,
        pixel_size_a=1.5, title="hand-made",
    )  # fmt: skip
    assert path == tmp_path / "tracks.png"
    image = imread(path)
    assert image.shape[:2] == (500, 1100)
    grey = image[..., :3].mean(axis=-1)
    assert grey.std() > 0.05  # lines and text, not a uniform picture
    assert (grey < 0.5).mean() > 0.002  # some dark ink
    assert [p.name for p in tmp_path.iterdir()] == ["tracks.png"]  # no temporary left


def test_plot_without_local_motion(tmp_path: Path) -> None:
    motion = FrameMotion.zeros(3, field_size_a=FIELD_A, global_nodes=3)
    path = plot_motion_tracks(
        motion, path=tmp_path / "still.png", n_frames=3, field_size_a=FIELD_A, pixel_size_a=1.0
    )
    assert imread(path).shape[:2] == (500, 1100)
