"""The Laplacian-of-Gaussian baseline picker on planted blobs."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from cryowarp.errors import InvalidValuesError
from cryowarp.preprocess.picking.log_picker import find_peaks, pick_log
from cryowarp.preprocess.picking.metrics import match_picks

PIXEL_A = 2.0
DIAMETER_A = 60.0


def _gaussian(shape: tuple[int, int], x: float, y: float, diameter_a: float) -> torch.Tensor:
    """A blob of peak 1 and standard deviation diameter/4 (95 % of it inside the diameter)."""
    rows = torch.arange(shape[0], dtype=torch.float64)[:, None]
    cols = torch.arange(shape[1], dtype=torch.float64)[None, :]
    sigma_px = diameter_a / 4 / PIXEL_A
    return torch.exp(-((cols - x) ** 2 + (rows - y) ** 2) / (2 * sigma_px**2))


def _planted(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Dark blobs of DIAMETER_A and of 3 × DIAMETER_A on white noise (per-pixel SNR 0.8),
    alternating on a jittered grid. Returns (image, small centres Å, large centres Å)."""
    shape = (480, 480)
    g = np.random.default_rng(seed)
    image = torch.from_numpy(g.normal(0.0, 1.0, shape))
    small, large = [], []
    for i in range(4):
        for j in range(4):
            x, y = 60 + 120 * i + g.uniform(-8, 8), 60 + 120 * j + g.uniform(-8, 8)
            big = (i + j) % 2 == 1
            image -= 0.8 * _gaussian(shape, x, y, 3 * DIAMETER_A if big else DIAMETER_A)
            (large if big else small).append((x * PIXEL_A, y * PIXEL_A))
    return image.float(), torch.tensor(small), torch.tensor(large)


def test_finds_blobs_of_the_given_size_and_ignores_blobs_three_times_larger() -> None:
    image, small, large = _planted()
    picks = pick_log(
        image,
        pixel_size_a=PIXEL_A,
        diameter_min_a=0.8 * DIAMETER_A,
        diameter_max_a=1.2 * DIAMETER_A,
    )  # the default threshold
    match = match_picks(picks.positions_a, small, diameter_a=DIAMETER_A)
    assert match.f1 >= 0.9, match.summary()
    assert match.distances_a.mean() < 0.1 * DIAMETER_A
    # No pick anywhere on a large blob (within its radius of its centre).
    to_large = torch.cdist(picks.positions_a, large.to(torch.float64))
    assert float(to_large.min()) > 1.5 * DIAMETER_A
    # Detected diameters are those of the range that fits the blobs.
    assert picks.diameters_a.min() >= 0.8 * DIAMETER_A / 1.25 - 1e-9
    # The working pixel size is diameter_min / 16.
    assert picks.working_pixel_size_a == pytest.approx(0.8 * DIAMETER_A / 16, rel=0.01)


def test_sizes_outside_the_range_are_not_picked() -> None:
    image, small, _ = _planted()
    picks = pick_log(
        image,
        pixel_size_a=PIXEL_A,
        diameter_min_a=2.5 * DIAMETER_A,
        diameter_max_a=3.5 * DIAMETER_A,
        threshold_sigma=-2.0,
    )
    assert match_picks(picks.positions_a, small, diameter_a=DIAMETER_A).n_matched == 0


def test_higher_thresholds_keep_a_subset_and_scores_are_sorted() -> None:
    image, _, _ = _planted(seed=1)
    options = dict(pixel_size_a=PIXEL_A, diameter_min_a=48.0, diameter_max_a=72.0)
    everything = pick_log(image, threshold_sigma=-math.inf, **options)  # type: ignore[arg-type]
    some = pick_log(image, threshold_sigma=-1.0, **options)  # type: ignore[arg-type]
    assert 0 < len(some.scores) < len(everything.scores)
    assert bool((some.scores > -1.0).all())
    assert torch.equal(everything.above(-1.0).positions_a, some.positions_a)
    assert bool((everything.scores[1:] <= everything.scores[:-1]).all())
    capped = everything.above(-1.0)
    capped_run = pick_log(image, threshold_sigma=-1.0, upper_threshold_sigma=2.0, **options)  # type: ignore[arg-type]
    assert torch.equal(capped_run.scores, capped.scores[capped.scores <= 2.0])


def test_minimum_distance_keeps_the_stronger_of_two_close_blobs() -> None:
    shape = (200, 200)
    g = np.random.default_rng(2)
    image = torch.from_numpy(g.normal(0.0, 0.2, shape))
    image -= 1.0 * _gaussian(shape, 80, 100, DIAMETER_A)
    image -= 0.6 * _gaussian(shape, 120, 100, DIAMETER_A)  # 80 Å away
    options = dict(pixel_size_a=PIXEL_A, diameter_min_a=48.0, diameter_max_a=72.0)
    close = pick_log(image.float(), min_distance_a=100.0, **options)  # type: ignore[arg-type]
    assert len(close.scores) == 1
    assert close.positions_a[0].tolist() == pytest.approx([160.0, 200.0], abs=4.0)
    both = pick_log(image.float(), min_distance_a=60.0, **options)  # type: ignore[arg-type]
    assert len(both.scores) == 2


def test_find_peaks_exact_positions_and_distance_rule() -> None:
    score = torch.zeros(20, 30)
    score[5, 7] = 3.0  # (x, y) = (7, 5)
    score[5, 11] = 2.0  # 4 px away
    score[15, 20] = 1.0
    positions, values = find_peaks(score, min_distance_px=4.0, threshold=0.5)
    assert positions.tolist() == [[7.0, 5.0], [11.0, 5.0], [20.0, 15.0]]  # exactly 4 apart: kept
    assert values.tolist() == [3.0, 2.0, 1.0]
    positions, _ = find_peaks(score, min_distance_px=4.5, threshold=0.5)
    assert positions.tolist() == [[7.0, 5.0], [20.0, 15.0]]
    positions, _ = find_peaks(score, min_distance_px=4.5, threshold=1.5)
    assert positions.tolist() == [[7.0, 5.0]]


def test_bad_inputs_raise_typed_errors() -> None:
    image = torch.randn(64, 64)
    with pytest.raises(InvalidValuesError, match="exceeds"):
        pick_log(image, pixel_size_a=2.0, diameter_min_a=50.0, diameter_max_a=200.0)
    with pytest.raises(InvalidValuesError, match="min"):
        pick_log(image, pixel_size_a=2.0, diameter_min_a=60.0, diameter_max_a=40.0)
    with pytest.raises(InvalidValuesError, match="blank"):
        pick_log(torch.ones(64, 64), pixel_size_a=2.0, diameter_min_a=20.0, diameter_max_a=30.0)
