"""Known movie motion: global drift + local spline-grid motion, relative to frame 0."""

from __future__ import annotations

import json

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from cryowarp.core.spline_grid import evaluate_cubic_grid
from cryowarp.simulate.motion import MotionTruth, random_motion

FIELD_A = (1200.0, 900.0)


def _motion(seed: int, device: torch.device | str = "cpu", **kwargs: object) -> MotionTruth:
    generator = torch.Generator(device=device).manual_seed(seed)
    return random_motion(20, field_size_a=FIELD_A, generator=generator, **kwargs)  # type: ignore[arg-type]


def _positions(n: int, device: torch.device | str = "cpu", seed: int = 1) -> torch.Tensor:
    generator = torch.Generator(device=device).manual_seed(seed)
    unit = torch.rand((n, 2), generator=generator, device=device)
    return unit * torch.tensor(FIELD_A, device=device)


def test_shifts_at_is_global_plus_the_spline_grid(device: torch.device) -> None:
    motion = _motion(3, device)
    positions = _positions(50, device)  # (50, 2)
    shifts = motion.shifts_at(positions)  # (50, 20, 2)
    assert shifts.shape == (50, 20, 2)
    # The grid evaluated directly at (x / width, y / height, frame / (n - 1)).
    frames = torch.arange(20, device=device, dtype=torch.float32)
    xy = positions / torch.tensor(FIELD_A, device=device)
    coords = torch.cat(
        [xy[:, None, :].expand(50, 20, 2), (frames / 19)[None, :, None].expand(50, 20, 1)], -1
    )
    for component in range(2):
        local = evaluate_cubic_grid(motion.local_grid_a[component], coords)
        expected = motion.global_shifts_a[:, component][None] + local
        torch.testing.assert_close(shifts[..., component], expected, atol=1e-5, rtol=1e-6)


def test_frame_zero_is_the_reference() -> None:
    motion = _motion(5)
    assert torch.equal(motion.global_shifts_a[0], torch.zeros(2))
    at_start = motion.shifts_at(_positions(200), torch.tensor([0]))
    assert at_start.abs().max() < 1e-5
    assert motion.shifts_at(_positions(200)).abs().max() > 1.0  # it does move later


def test_fractional_frames_interpolate_the_global_shifts() -> None:
    motion = _motion(7)
    origin = torch.zeros(1, 2)
    half = (
        motion.shifts_at(origin, torch.tensor([4.5]))[0, 0]
        - motion.local_shifts_at(origin, torch.tensor([4.5]))[0, 0]
    )
    torch.testing.assert_close(half, motion.global_shifts_a[4:6].mean(0))


def test_motion_is_larger_early_in_the_exposure() -> None:
    early, late = [], []
    for seed in range(20):
        steps = torch.diff(_motion(seed).global_shifts_a, dim=0).norm(dim=-1)  # (19,)
        early.append(steps[:4].mean())  # the first fifth of 20 frames
        late.append(steps[4:].mean())
    assert torch.stack(early).mean() > 2 * torch.stack(late).mean()


def test_smooth_drift_has_the_requested_path_length() -> None:
    motion = _motion(11, drift_a=37.0, jitter_a=0.0)
    path = torch.diff(motion.global_shifts_a, dim=0).norm(dim=-1).sum()
    assert float(path) == pytest.approx(37.0, rel=1e-5)


@pytest.mark.parametrize(("amplitude_a", "grid"), [(2.0, (5, 5, 3)), (7.5, (4, 6, 2))])
def test_local_motion_has_the_requested_rms(amplitude_a: float, grid: tuple[int, int, int]) -> None:
    motion = _motion(2, local_amplitude_a=amplitude_a, local_grid_shape=grid)
    assert motion.local_grid_a.shape == (2, grid[2], grid[1], grid[0])
    local = motion.local_shifts_at(_positions(4000), torch.tensor([19]))[:, 0]  # (4000, 2)
    rms = local.square().sum(-1).mean().sqrt()
    assert float(rms) == pytest.approx(amplitude_a, rel=0.2)
    assert local.mean(0).norm() < 0.1 * amplitude_a  # no net (global) part in the local field


def test_same_generator_state_gives_the_same_motion(device: torch.device) -> None:
    a, b, c = _motion(4, device), _motion(4, device), _motion(5, device)
    assert torch.equal(a.global_shifts_a, b.global_shifts_a)
    assert torch.equal(a.local_grid_a, b.local_grid_a)
    assert not torch.equal(a.global_shifts_a, c.global_shifts_a)
    assert a.global_shifts_a.device.type == device.type


@settings(max_examples=25)
@given(
    seed=st.integers(0, 2**31 - 1),
    n_frames=st.integers(1, 12),
    dtype=st.sampled_from([torch.float32, torch.float64]),
)
def test_dict_round_trip_is_exact(seed: int, n_frames: int, dtype: torch.dtype) -> None:
    generator = torch.Generator().manual_seed(seed)
    motion = random_motion(n_frames, field_size_a=FIELD_A, generator=generator, dtype=dtype)
    restored = MotionTruth.from_dict(json.loads(json.dumps(motion.to_dict())))
    assert restored.global_shifts_a.dtype == dtype
    assert torch.equal(restored.global_shifts_a, motion.global_shifts_a)
    assert torch.equal(restored.local_grid_a, motion.local_grid_a)
    assert restored.field_size_a == motion.field_size_a


def test_rejects_a_grid_without_time_nodes() -> None:
    with pytest.raises(ValueError, match="T >= 2"):
        _motion(0, local_grid_shape=(5, 5, 1))
