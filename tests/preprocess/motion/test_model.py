"""The motion model: gauge fixing keeps the motion, frame 0 is the reference, round trips."""

from __future__ import annotations

import torch

from cryowarp.preprocess.motion.model import FrameMotion, surface_mean_weights


def _random_motion(seed: int) -> FrameMotion:
    generator = torch.Generator().manual_seed(seed)
    return FrameMotion(
        torch.randn(2, 3, generator=generator),
        torch.randn(2, 3, 4, 5, generator=generator),
        (500.0, 400.0),
        9,
    )


def test_gauge_keeps_relative_motion_and_zeroes_frame_zero_and_local_mean() -> None:
    motion = _random_motion(0)
    gauged = motion.gauged()
    positions = torch.rand(50, 2, generator=torch.Generator().manual_seed(1)) * 400
    before = motion.shifts_at(positions)
    after = gauged.shifts_at(positions)
    assert torch.allclose(after, before - before[:, :1], atol=1e-5)  # only a constant removed
    assert float(after[:, 0].abs().max()) < 1e-6
    # The local field of the gauged model has zero spatial mean at every frame.
    xs, ys = torch.linspace(0, 500, 65), torch.linspace(0, 400, 65)
    grid = torch.stack(torch.meshgrid(xs, ys, indexing="xy"), dim=-1).reshape(-1, 2)
    local_mean = gauged.local_shifts_at(grid).mean(dim=0)  # (n, 2)
    assert float(local_mean.abs().max()) < 0.05 * float(motion.local_nodes_a.abs().max())


def test_surface_mean_weights_average_the_spline_surface() -> None:
    nodes = torch.randn(4, 5, generator=torch.Generator().manual_seed(2))
    weights = surface_mean_weights(4, 5)
    motion = FrameMotion(torch.zeros(2, 2), nodes.expand(2, 2, 4, 5).clone(), (1.0, 1.0), 2)
    xs = (torch.arange(400) + 0.5) / 400  # midpoints of a fine grid over the field
    grid = torch.stack(torch.meshgrid(xs, xs, indexing="xy"), dim=-1).reshape(-1, 2)
    dense_mean = motion.local_shifts_at(grid, torch.zeros(1))[:, 0, 0].mean()
    assert abs(float((weights * nodes).sum() - dense_mean)) < 1e-3
    assert abs(float(weights.sum()) - 1.0) < 1e-5


def test_dictionary_round_trip_is_exact() -> None:
    motion = _random_motion(3)
    restored = FrameMotion.from_dict(motion.to_dict())
    assert torch.equal(restored.global_nodes_a, motion.global_nodes_a)
    assert torch.equal(restored.local_nodes_a, motion.local_nodes_a)
    assert restored.field_size_a == motion.field_size_a
    assert restored.n_frames == motion.n_frames
