"""One-to-one pick matching, precision/recall/F1, mask IoU and precision-recall curves."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cryowarp.errors import DimensionMismatchError, InvalidValuesError
from cryowarp.preprocess.picking.metrics import (
    mask_iou,
    match_picks,
    pick_rates,
    pooled_summary,
    precision_recall_curve,
)


def test_known_answer_counts_and_rates() -> None:
    picks = [[0.0, 0.0], [100.0, 0.0], [300.0, 300.0]]
    truth = [[5.0, 0.0], [100.0, 10.0], [500.0, 500.0], [900.0, 0.0]]
    match = match_picks(picks, truth, diameter_a=100.0)  # tolerance 20 Å
    assert match.pairs.tolist() == [[0, 0], [1, 1]]
    assert match.distances_a.tolist() == pytest.approx([5.0, 10.0])
    assert (match.n_matched, match.n_false_positives, match.n_false_negatives) == (2, 1, 2)
    assert match.precision == pytest.approx(2 / 3)
    assert match.recall == pytest.approx(2 / 4)
    assert match.f1 == pytest.approx(2 * 2 / (3 + 4))
    assert match.matched_picks().tolist() == [True, True, False]


def test_matching_is_one_to_one_and_takes_the_closer_pick() -> None:
    truth = [[0.0, 0.0]]
    picks = [[8.0, 0.0], [3.0, 0.0], [-6.0, 0.0]]
    match = match_picks(picks, truth, diameter_a=50.0)  # tolerance 10 Å: all admissible
    assert match.pairs.tolist() == [[1, 0]]
    assert (match.precision, match.recall) == (pytest.approx(1 / 3), 1.0)


def test_assignment_maximises_matches_where_greedy_nearest_would_not() -> None:
    # Pick A is nearest to X but also within reach of Y; pick B reaches only X. Greedy
    # nearest-first matching gives A–X and leaves B and Y unmatched; the optimum is A–Y, B–X.
    truth = [[0.0, 0.0], [15.0, 0.0]]  # X, Y
    picks = [[6.0, 0.0], [-9.0, 0.0]]  # A, B
    match = match_picks(picks, truth, diameter_a=50.0)
    assert sorted(match.pairs.tolist()) == [[0, 1], [1, 0]]
    assert match.f1 == 1.0


def test_tolerance_boundary_is_inclusive() -> None:
    truth = [[0.0, 0.0]]
    assert match_picks([[10.0, 0.0]], truth, diameter_a=50.0).n_matched == 1
    assert match_picks([[10.001, 0.0]], truth, diameter_a=50.0).n_matched == 0
    # The fraction is an option.
    assert match_picks([[12.0, 0.0]], truth, diameter_a=50.0, tolerance_fraction=0.25).n_matched
    # Per-particle diameters: the tolerance is that of the true particle.
    truth2 = [[0.0, 0.0], [100.0, 0.0]]
    picks2 = [[15.0, 0.0], [115.0, 0.0]]
    match = match_picks(picks2, truth2, diameter_a=torch.tensor([100.0, 50.0]))
    assert match.pairs.tolist() == [[0, 0]]


def test_result_does_not_depend_on_the_order_of_picks() -> None:
    g = np.random.default_rng(3)
    truth = g.uniform(0, 1000, (40, 2))
    picks = np.concatenate([truth[:30] + g.normal(0, 6, (30, 2)), g.uniform(0, 1000, (20, 2))])
    first = match_picks(picks, truth, diameter_a=80.0)
    order = g.permutation(len(picks))
    second = match_picks(picks[order], truth, diameter_a=80.0)
    assert first.n_matched == second.n_matched
    assert first.distances_a.sum() == pytest.approx(second.distances_a.sum())


def test_empty_sets() -> None:
    assert match_picks(np.zeros((0, 2)), [[1.0, 1.0]], diameter_a=10).f1 == 0.0
    none = match_picks(np.zeros((0, 2)), np.zeros((0, 2)), diameter_a=10)
    assert (none.precision, none.recall, none.f1) == (1.0, 1.0, 1.0)
    only_picks = match_picks([[1.0, 1.0]], np.zeros((0, 2)), diameter_a=10)
    assert (only_picks.precision, only_picks.recall, only_picks.f1) == (0.0, 1.0, 0.0)


def test_bad_inputs_raise_typed_errors() -> None:
    with pytest.raises(DimensionMismatchError):
        match_picks([[1.0, 2.0, 3.0]], [[1.0, 2.0]], diameter_a=10)
    with pytest.raises(InvalidValuesError):
        match_picks([[np.nan, 2.0]], [[1.0, 2.0]], diameter_a=10)
    with pytest.raises(InvalidValuesError):
        match_picks([[1.0, 2.0]], [[1.0, 2.0]], diameter_a=0.0)


def test_mask_iou_values_and_the_empty_convention() -> None:
    a = np.zeros((4, 4), dtype=bool)
    b = np.zeros((4, 4), dtype=bool)
    assert mask_iou(a, b) == 1.0  # both empty: defined as a perfect answer
    a[:2] = True  # 8 px
    assert mask_iou(a, b) == 0.0
    b[1:3] = True  # 8 px, overlap 4, union 12
    assert mask_iou(a, b) == pytest.approx(4 / 12)
    assert mask_iou(torch.from_numpy(a), torch.from_numpy(a)) == 1.0
    with pytest.raises(DimensionMismatchError):
        mask_iou(a, np.zeros((4, 5), dtype=bool))


def test_precision_recall_curve_known_answer() -> None:
    scores = [0.9, 0.8, 0.8, 0.5, 0.3]
    matched = [True, False, True, True, False]
    curve = precision_recall_curve(scores, matched, n_true=4)
    assert curve.thresholds.tolist() == [0.9, 0.8, 0.5, 0.3]
    assert curve.precision.tolist() == pytest.approx([1.0, 2 / 3, 3 / 4, 3 / 5])
    assert curve.recall.tolist() == pytest.approx([0.25, 0.5, 0.75, 0.75])
    assert curve.f1.tolist() == pytest.approx([2 / 5, 4 / 7, 6 / 8, 6 / 9])
    threshold, precision, recall, f1 = curve.best()
    assert (threshold, precision, recall, f1) == (0.5, 0.75, 0.75, 0.75)
    # The curve agrees with matching the thresholded picks directly.
    truth = np.array([[0.0, 0.0], [100.0, 0.0], [200.0, 0.0], [300.0, 0.0]])
    picks = np.array([[1.0, 0.0], [500.0, 0.0], [101.0, 0.0], [201.0, 0.0], [800.0, 0.0]])
    direct = match_picks(picks[np.array(scores) >= 0.5], truth, diameter_a=50.0)
    assert direct.f1 == pytest.approx(f1)
    assert precision_recall_curve([], [], n_true=3).best()[3] == 0.0


def test_pooled_rates_sum_the_counts_of_every_micrograph() -> None:
    first = match_picks([[0.0, 0.0], [100.0, 0.0]], [[0.0, 0.0]], diameter_a=50.0)  # 1 of 2
    second = match_picks([[0.0, 0.0]], [[0.0, 0.0], [300.0, 0.0], [600.0, 0.0]], diameter_a=50.0)
    pooled = pooled_summary([first, second])
    assert (pooled["n_matched"], pooled["n_picked"], pooled["n_true"]) == (2, 3, 4)
    assert pooled["precision"] == pytest.approx(2 / 3)
    assert pooled["recall"] == pytest.approx(2 / 4)
    assert pooled["f1"] == pytest.approx(2 * 2 / 7)
    assert pick_rates(0, 0, 0) == {
        "n_picked": 0,
        "n_true": 0,
        "n_matched": 0,
        "precision": 1.0,
        "recall": 1.0,
        "f1": 1.0,
    }
