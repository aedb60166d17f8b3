"""How well picks agree with the truth: one-to-one matching, precision/recall/F1, mask IoU.

A pick **matches** a true particle when their centres lie within ``tolerance_fraction`` (20 %)
of that particle's diameter of each other, and each pick and each true particle takes part
in at most one match. Among all one-to-one matchings the one with the most matches is taken,
and among those the one with the smallest summed distance (an optimal assignment,
:func:`scipy.optimize.linear_sum_assignment`, on the distances of the admissible pairs), so
the counts never depend on the order of the picks. Positions are ``(n, 2)`` (x, y) in Å in
one frame (docs/conventions.md §1); the docs page is docs/picking_baselines.md.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import torch
from scipy.optimize import linear_sum_assignment

from cryowarp.errors import DimensionMismatchError, InvalidValuesError

__all__ = [
    "DEFAULT_TOLERANCE_FRACTION",
    "PickMatch",
    "PrecisionRecallCurve",
    "mask_iou",
    "match_picks",
    "pick_rates",
    "pooled_summary",
    "precision_recall_curve",
]

DEFAULT_TOLERANCE_FRACTION = 0.2
"""A pick matches a true particle within this fraction of the particle's diameter."""

_FloatArray = npt.NDArray[np.float64]
_ArrayLike = torch.Tensor | npt.ArrayLike


@dataclass(frozen=True)
class PickMatch:
    """The result of :func:`match_picks`.

    Attributes
    ----------
    pairs:
        ``(k, 2)`` int64: (index of the pick, index of the true particle) of each match.
    distances_a:
        ``(k,)`` distances (Å) of the matched pairs.
    n_picked, n_true:
        Number of picks and of true particles.
    """

    pairs: npt.NDArray[np.int64]
    distances_a: _FloatArray
    n_picked: int
    n_true: int

    @property
    def n_matched(self) -> int:
        """True positives."""
        return int(self.pairs.shape[0])

    @property
    def n_false_positives(self) -> int:
        return self.n_picked - self.n_matched

    @property
    def n_false_negatives(self) -> int:
        return self.n_true - self.n_matched

    @property
    def precision(self) -> float:
        """Matched picks / picks; 1.0 when nothing was picked (no pick is wrong)."""
        return float(pick_rates(self.n_matched, self.n_picked, self.n_true)["precision"])

    @property
    def recall(self) -> float:
        """Matched true particles / true particles; 1.0 when there are none."""
        return float(pick_rates(self.n_matched, self.n_picked, self.n_true)["recall"])

    @property
    def f1(self) -> float:
        """``2·TP / (picks + true)``; 1.0 when both are empty, 0.0 when only one is."""
        return float(pick_rates(self.n_matched, self.n_picked, self.n_true)["f1"])

    def matched_picks(self) -> npt.NDArray[np.bool_]:
        """``(n_picked,)`` True for the picks that match a true particle."""
        out = np.zeros(self.n_picked, dtype=bool)
        out[self.pairs[:, 0]] = True
        return out

    def summary(self) -> dict[str, float | int]:
        """JSON-ready counts and rates."""
        return {
            "n_picked": self.n_picked,
            "n_true": self.n_true,
            "n_matched": self.n_matched,
            "precision": self.precision,
            "recall": self.recall,
            "f1": self.f1,
            "mean_distance_a": float(self.distances_a.mean()) if self.n_matched else 0.0,
        }


def pick_rates(n_matched: int, n_picked: int, n_true: int) -> dict[str, float | int]:
    """Counts and precision, recall, F1 (``2·TP / (picks + true)``) of match counts; an empty
    set of picks has precision 1, an empty truth recall 1, both empty F1 1."""
    total = n_picked + n_true
    return {
        "n_picked": n_picked,
        "n_true": n_true,
        "n_matched": n_matched,
        "precision": n_matched / n_picked if n_picked else 1.0,
        "recall": n_matched / n_true if n_true else 1.0,
        "f1": 2 * n_matched / total if total else 1.0,
    }


def pooled_summary(matches: Iterable[PickMatch]) -> dict[str, float | int]:
    """:func:`pick_rates` of several micrographs together: picks, true particles and matches
    summed first (each micrograph weighs by its particles, not equally)."""
    items = list(matches)
    return pick_rates(
        sum(m.n_matched for m in items),
        sum(m.n_picked for m in items),
        sum(m.n_true for m in items),
    )


def _positions(values: _ArrayLike, what: str) -> _FloatArray:
    array = (
        values.detach().cpu().to(torch.float64).numpy()
        if isinstance(values, torch.Tensor)
        else np.asarray(values, dtype=np.float64)
    )
    if array.size == 0:
        return np.zeros((0, 2))
    if array.ndim != 2 or array.shape[1] != 2:
        raise DimensionMismatchError(None, f"{what} must be (n, 2) (x, y), got {array.shape}")
    if not np.isfinite(array).all():
        raise InvalidValuesError(None, f"{what} hold NaN or infinite values")
    return array


def match_picks(
    picked_a: _ArrayLike,  # (n, 2) (x, y) Å
    true_a: _ArrayLike,  # (m, 2) (x, y) Å
    *,
    diameter_a: float | _ArrayLike,  # scalar or (m,) per true particle
    tolerance_fraction: float = DEFAULT_TOLERANCE_FRACTION,
) -> PickMatch:
    """Match picks one-to-one to true particles (module docstring).

    Parameters
    ----------
    picked_a, true_a:
        Positions in Å, ``(n, 2)`` and ``(m, 2)``, in the same frame.
    diameter_a:
        The particle diameter in Å, one for all or one per true particle (``(m,)``).
    tolerance_fraction:
        A pair is admissible when its distance is ``≤ tolerance_fraction × diameter`` of the
        true particle (the boundary counts as a match).
    """
    picks = _positions(picked_a, "picked positions")
    truth = _positions(true_a, "true positions")
    diameters = np.broadcast_to(
        np.asarray(
            diameter_a.detach().cpu().numpy()
            if isinstance(diameter_a, torch.Tensor)
            else diameter_a,
            dtype=np.float64,
        ),
        (truth.shape[0],),
    )
    if not (np.isfinite(diameters).all() and (diameters > 0).all()):
        raise InvalidValuesError(None, "particle diameters must be finite and positive")
    if not (np.isfinite(tolerance_fraction) and tolerance_fraction > 0):
        raise InvalidValuesError(None, f"tolerance fraction {tolerance_fraction} must be > 0")
    n, m = picks.shape[0], truth.shape[0]
    empty = PickMatch(np.zeros((0, 2), dtype=np.int64), np.zeros(0), n, m)
    if n == 0 or m == 0:
        return empty
    distances = np.sqrt(((picks[:, None, :] - truth[None, :, :]) ** 2).sum(-1))  # (n, m)
    admissible = distances <= tolerance_fraction * diameters[None, :]
    rows = np.flatnonzero(admissible.any(axis=1))
    cols = np.flatnonzero(admissible.any(axis=0))
    if rows.size == 0:
        return empty
    sub_distance = distances[np.ix_(rows, cols)]
    sub_admissible = admissible[np.ix_(rows, cols)]
    # Maximise the number of matches first, then minimise the summed distance: every
    # admissible pair costs (distance / the largest admissible distance) − (number of
    # candidates + 1), so one more match always outweighs any change in distances.
    scale = float(sub_distance[sub_admissible].max()) or 1.0
    bonus = float(min(sub_distance.shape) + 1)
    cost = np.where(sub_admissible, sub_distance / scale - bonus, 0.0)
    r, c = linear_sum_assignment(cost)
    keep = sub_admissible[r, c]
    pairs = np.stack([rows[r[keep]], cols[c[keep]]], axis=1).astype(np.int64)
    order = np.argsort(pairs[:, 0], kind="stable")
    pairs = pairs[order]
    return PickMatch(pairs, distances[pairs[:, 0], pairs[:, 1]], n, m)


def mask_iou(
    predicted: _ArrayLike,  # (h, w) bool
    truth: _ArrayLike,  # (h, w) bool
) -> float:
    """Intersection over union of two boolean masks of the same shape.

    Defined as **1.0 when both masks are empty** (a micrograph without artefacts where none
    were predicted is a perfect answer), 0.0 when only one is empty.
    """
    a = np.asarray(
        predicted.detach().cpu().numpy() if isinstance(predicted, torch.Tensor) else predicted
    ).astype(bool)
    b = np.asarray(truth.detach().cpu().numpy() if isinstance(truth, torch.Tensor) else truth)
    b = b.astype(bool)
    if a.shape != b.shape:
        raise DimensionMismatchError(
            None, f"masks of different shapes: predicted {a.shape}, truth {b.shape}"
        )
    union = int(np.logical_or(a, b).sum())
    if union == 0:
        return 1.0
    return int(np.logical_and(a, b).sum()) / union


@dataclass(frozen=True)
class PrecisionRecallCurve:
    """Precision and recall as the score threshold is lowered past each distinct score.

    Attributes
    ----------
    thresholds:
        ``(k,)`` distinct scores, descending; entry ``i`` is for the picks with score
        ``≥ thresholds[i]`` (the pickers' own ``threshold`` options keep ``> threshold``).
    precision, recall, f1:
        ``(k,)`` each, for those picks.
    """

    thresholds: _FloatArray
    precision: _FloatArray
    recall: _FloatArray
    f1: _FloatArray

    def best(self) -> tuple[float, float, float, float]:
        """``(threshold, precision, recall, f1)`` at the highest F1 (the highest threshold
        among ties); ``(inf, 1, 0, 0)`` for an empty curve."""
        if self.f1.size == 0:
            return (float("inf"), 1.0, 0.0, 0.0)
        i = int(np.argmax(self.f1))
        return (
            float(self.thresholds[i]),
            float(self.precision[i]),
            float(self.recall[i]),
            float(self.f1[i]),
        )


def precision_recall_curve(
    scores: _ArrayLike,  # (n,)
    matched: _ArrayLike,  # (n,) bool
    *,
    n_true: int,
) -> PrecisionRecallCurve:
    """Precision, recall and F1 of the picks above each threshold.

    ``matched`` says which picks match a true particle when **all** picks are kept
    (:meth:`PickMatch.matched_picks`). Raising the threshold only removes picks, so with
    one-to-one matching a removed matched pick could in principle free its true particle
    for a lower-scored neighbour; the curve ignores that (it is exact whenever picks are
    farther apart than twice the tolerance, which minimum-distance rules make the usual
    case).
    """
    s = np.asarray(
        scores.detach().cpu().numpy() if isinstance(scores, torch.Tensor) else scores,
        dtype=np.float64,
    ).reshape(-1)
    hit = np.asarray(
        matched.detach().cpu().numpy() if isinstance(matched, torch.Tensor) else matched
    ).astype(bool)
    hit = hit.reshape(-1)
    if s.shape != hit.shape:
        raise DimensionMismatchError(None, f"{s.size} scores but {hit.size} match flags")
    if n_true < 0:
        raise InvalidValuesError(None, f"n_true must be ≥ 0, got {n_true}")
    if s.size == 0:
        empty = np.zeros(0)
        return PrecisionRecallCurve(empty, empty, empty, empty)
    order = np.argsort(-s, kind="stable")
    s, hit = s[order], hit[order]
    tp = np.cumsum(hit)
    picked = np.arange(1, s.size + 1)
    last = np.r_[s[1:] != s[:-1], True]  # the last pick of each group of equal scores
    tp, picked, thresholds = tp[last], picked[last], s[last]
    precision = tp / picked
    recall = tp / n_true if n_true else np.ones_like(precision)
    f1 = 2 * tp / (picked + n_true)
    return PrecisionRecallCurve(thresholds, precision, recall, f1.astype(np.float64))
