"""Train a BoxNet on labelled micrographs (docs/picking_training.md).

Training draws random crops of the labelled micrographs (:func:`~.augment.random_crops`,
crops with particles or artefacts preferred), augments them (:func:`~.augment.augment_batch`:
rotation, flips, shear, noise) and minimises the **class-weighted cross-entropy** of the
per-pixel labels with Adam; pixels labelled ``-1`` (ignore) take no part. The learning rate
rises linearly over the first steps (warm-up) and then follows a **cosine decay** to
``final_learning_rate_fraction`` × the initial rate.

Every ``eval_every_steps`` steps and at the end the network is evaluated on whole validation
micrographs (:func:`evaluate_boxnet`). Its headline number, **accuracy**, is the mean pixel
F1 score of the foreground classes (particle, artefact) that occur in the labels: F1 punishes
both missed particle pixels and particles called on background, which plain pixel accuracy
(≈ 0.97 for a network that calls everything background) does not. Per-class precision,
recall and F1 and the balanced accuracy (mean per-class recall) come with it.

On the CPU, the same seed, data and initial network give the same losses and weights.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field

from cryowarp.preprocess.picking.augment import (
    augment_batch,
    augmentation_window_px,
    random_crops,
)
from cryowarp.preprocess.picking.labels import LabelledMicrograph
from cryowarp.preprocess.picking.network import ARTEFACT, CLASS_NAMES, PARTICLE, BoxNet

__all__ = [
    "Evaluation",
    "TrainingEvent",
    "TrainingReport",
    "TrainingSettings",
    "class_frequencies",
    "class_weights_from_frequencies",
    "draw_training_batch",
    "evaluate_boxnet",
    "learning_rate_factor",
    "split_validation",
    "train_boxnet",
    "weighted_loss",
]

_N_CLASSES = len(CLASS_NAMES)
_MAX_CLASS_WEIGHT = 20.0


class TrainingSettings(BaseModel):
    """How :func:`train_boxnet` trains (defaults: the generic model's training)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    steps: int = Field(default=1200, ge=1, description="Optimiser steps (one batch each).")
    batch_size: int = Field(default=8, ge=1, description="Crops per optimiser step.")
    crop_px: int = Field(
        default=128,
        ge=16,
        multiple_of=8,
        description="Side of the training crops in pixels at the picking pixel size "
        "(8 Å/px: 128 px = 1024 Å); a multiple of 8.",
    )
    learning_rate: float = Field(
        default=1e-3, gt=0, description="Initial Adam learning rate (after a linear warm-up)."
    )
    warmup_steps: int = Field(
        default=50, ge=0, description="Steps over which the learning rate rises linearly from 0."
    )
    final_learning_rate_fraction: float = Field(
        default=0.05,
        ge=0,
        le=1,
        description="The cosine decay ends at this fraction of the learning rate (unitless).",
    )
    weight_decay: float = Field(default=1e-5, ge=0, description="Adam weight decay (L2, unitless).")
    class_weights: tuple[float, float, float] | None = Field(
        default=None,
        description="Cross-entropy weights of (background, particle, artefact); None: "
        "from the training labels, (f_background / f_class)^0.5 clipped to 1–20, where f "
        "is the fraction of labelled pixels of a class (particles cover ~1–3 % of the "
        "pixels, artefacts ~5–15 %, giving weights of ~6 and ~3).",
    )
    augment: bool = Field(
        default=True, description="Rotate, flip, shear and add noise to the crops (augment_batch)."
    )
    seed: int = Field(default=0, description="Seed of the crops and augmentation.")
    validation_fraction: float = Field(
        default=0.1,
        ge=0,
        lt=1,
        description="Fraction of the micrographs kept for validation (split_validation).",
    )
    eval_every_steps: int = Field(
        default=100,
        ge=1,
        description="Evaluate on the validation micrographs every this many steps.",
    )


@dataclass(frozen=True)
class Evaluation:
    """How a network labels whole micrographs (module docstring for the numbers).

    Attributes
    ----------
    loss:
        Class-weighted cross-entropy per labelled pixel.
    accuracy:
        Mean F1 of the foreground classes present in the labels (background F1 when none).
    precision, recall, f1:
        Per class, in :data:`~.network.CLASS_NAMES` order (0 when a class is absent).
    balanced_accuracy:
        Mean recall of the classes present in the labels.
    confusion:
        ``confusion[true][predicted]`` pixel counts.
    """

    loss: float
    accuracy: float
    precision: tuple[float, float, float]
    recall: tuple[float, float, float]
    f1: tuple[float, float, float]
    balanced_accuracy: float
    confusion: tuple[tuple[int, int, int], ...]

    @property
    def n_pixels(self) -> int:
        """Labelled pixels evaluated."""
        return sum(sum(row) for row in self.confusion)

    def to_dict(self) -> dict[str, Any]:
        return {
            "loss": self.loss,
            "accuracy": self.accuracy,
            "precision": list(self.precision),
            "recall": list(self.recall),
            "f1": list(self.f1),
            "balanced_accuracy": self.balanced_accuracy,
            "confusion": [list(row) for row in self.confusion],
        }


@dataclass(frozen=True)
class TrainingEvent:
    """What :func:`train_boxnet` and :func:`~.retraining.retrain_boxnet` tell ``progress``.

    ``kind`` is ``"step"`` after every optimiser step (``loss``), ``"evaluation"`` after a
    validation (``evaluation``), ``"epoch"`` after a retraining epoch (``epoch``,
    ``accuracies``: the four accuracies, JSON-ready).
    """

    kind: Literal["step", "evaluation", "epoch"]
    step: int
    total_steps: int
    loss: float | None = None
    evaluation: Evaluation | None = None
    epoch: int | None = None
    total_epochs: int | None = None
    accuracies: dict[str, float] | None = None


ProgressCallback = Callable[[TrainingEvent], None]


@dataclass(frozen=True)
class TrainingReport:
    """What happened in :func:`train_boxnet`.

    Attributes
    ----------
    losses:
        Training loss of every step.
    evaluations:
        ``(step, evaluation)`` on the validation micrographs, in order.
    class_weights:
        Cross-entropy weights used.
    seconds_batches, seconds_steps, seconds_evaluating:
        Wall time drawing and augmenting crops, in forward/backward/update, and evaluating.
    """

    settings: TrainingSettings
    losses: list[float]
    evaluations: list[tuple[int, Evaluation]]
    class_weights: tuple[float, float, float]
    seconds_batches: float = 0.0
    seconds_steps: float = 0.0
    seconds_evaluating: float = 0.0
    n_train: int = 0
    n_validation: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def final(self) -> Evaluation | None:
        """The last validation, or ``None`` without validation micrographs."""
        return self.evaluations[-1][1] if self.evaluations else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "settings": self.settings.model_dump(mode="json"),
            "losses": self.losses,
            "evaluations": [{"step": s, **e.to_dict()} for s, e in self.evaluations],
            "class_weights": list(self.class_weights),
            "seconds_batches": self.seconds_batches,
            "seconds_steps": self.seconds_steps,
            "seconds_evaluating": self.seconds_evaluating,
            "n_train": self.n_train,
            "n_validation": self.n_validation,
        }


def class_frequencies(data: Sequence[LabelledMicrograph]) -> tuple[float, float, float]:
    """Fraction of the labelled (≠ −1) pixels in each class."""
    counts = torch.zeros(_N_CLASSES, dtype=torch.float64)
    for item in data:
        labels = item.labels.flatten()
        counts += torch.bincount(labels[labels >= 0], minlength=_N_CLASSES)[:_N_CLASSES]
    total = float(counts.sum())
    if total == 0:
        return (1.0, 0.0, 0.0)
    b, p, a = (float(c) / total for c in counts)
    return (b, p, a)


def class_weights_from_frequencies(
    frequencies: tuple[float, float, float],
) -> tuple[float, float, float]:
    """``(f_background / f_class)^0.5`` clipped to 1–20 (1 for absent classes)."""
    background = max(frequencies[0], 1e-12)
    weights = [1.0]
    for f in frequencies[1:]:
        w = math.sqrt(background / f) if f > 0 else 1.0
        weights.append(min(max(w, 1.0), _MAX_CLASS_WEIGHT))
    return (weights[0], weights[1], weights[2])


def split_validation(
    data: Sequence[LabelledMicrograph], fraction: float, *, seed: int
) -> tuple[list[LabelledMicrograph], list[LabelledMicrograph]]:
    """Random ``(train, validation)`` split of whole micrographs: ``round(fraction × n)``
    micrographs (at least one when ``fraction > 0`` and ``n ≥ 2``) go to validation."""
    n = len(data)
    n_validation = round(fraction * n)
    if fraction > 0 and n >= 2:
        n_validation = min(max(n_validation, 1), n - 1)
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).tolist()
    chosen = set(order[:n_validation])
    train = [item for i, item in enumerate(data) if i not in chosen]
    validation = [item for i, item in enumerate(data) if i in chosen]
    return train, validation


def draw_training_batch(
    data: Sequence[LabelledMicrograph],
    n: int,
    *,
    crop_px: int,
    generator: torch.Generator,
    augment: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:  # (n, 1, c, c) float32, (n, c, c) int64
    """``n`` random (augmented) training crops of ``data`` on the CPU."""
    if not augment:
        images, labels = random_crops(list(data), n, crop_px=crop_px, generator=generator)
        return images[:, None].contiguous(), labels
    images, labels = random_crops(
        list(data), n, crop_px=augmentation_window_px(crop_px), generator=generator
    )
    return augment_batch(images, labels, generator=generator, crop_px=crop_px)


def weighted_loss(
    logits: torch.Tensor,  # (b, 3, h, w)
    labels: torch.Tensor,  # (b, h, w) int64, -1 ignored
    weights: torch.Tensor,  # (3,)
) -> torch.Tensor:
    """Class-weighted cross-entropy per labelled pixel (0 when no pixel is labelled)."""
    if not bool((labels >= 0).any()):
        return logits.sum() * 0.0
    return F.cross_entropy(logits, labels, weight=weights, ignore_index=-1)


def _pad_to_multiple(
    image: torch.Tensor,  # (h, w)
    labels: torch.Tensor,  # (h, w)
    multiple: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    h, w = image.shape
    ph, pw = (-h) % multiple, (-w) % multiple
    if ph == 0 and pw == 0:
        return image, labels
    return F.pad(image, (0, pw, 0, ph)), F.pad(labels, (0, pw, 0, ph), value=-1)


def _scores_from_confusion(
    confusion: torch.Tensor,  # (3, 3) int64, [true, predicted]
    loss: float,
) -> Evaluation:
    c = confusion.to(torch.float64)
    true_counts, predicted_counts, hits = c.sum(1), c.sum(0), c.diagonal()
    precision = torch.where(predicted_counts > 0, hits / predicted_counts.clamp(min=1), 0.0)
    recall = torch.where(true_counts > 0, hits / true_counts.clamp(min=1), 0.0)
    f1 = torch.where(
        precision + recall > 0, 2 * precision * recall / (precision + recall).clamp(min=1e-12), 0.0
    )
    present = [k for k in range(_N_CLASSES) if true_counts[k] > 0]
    foreground = [k for k in (PARTICLE, ARTEFACT) if k in present]
    accuracy = float(f1[foreground].mean()) if foreground else float(f1[0])
    balanced = float(recall[present].mean()) if present else 0.0

    def triple(t: torch.Tensor) -> tuple[float, float, float]:
        return (float(t[0]), float(t[1]), float(t[2]))

    return Evaluation(
        loss=loss,
        accuracy=accuracy,
        precision=triple(precision),
        recall=triple(recall),
        f1=triple(f1),
        balanced_accuracy=balanced,
        confusion=tuple((int(r[0]), int(r[1]), int(r[2])) for r in confusion.tolist()),
    )


@torch.no_grad()
def evaluate_boxnet(
    network: BoxNet,
    data: Sequence[LabelledMicrograph],
    *,
    class_weights: tuple[float, float, float] = (1.0, 1.0, 1.0),
    device: torch.device | None = None,
) -> Evaluation:
    """Label whole micrographs (padded to the network's multiple, in eval mode) and compare
    with their labels; the network's training/eval mode is restored afterwards."""
    device = device or next(network.parameters()).device
    weights = torch.tensor(class_weights, dtype=torch.float32, device=device)
    was_training = network.training
    network.eval()
    confusion = torch.zeros(_N_CLASSES, _N_CLASSES, dtype=torch.int64)
    loss_sum, weight_sum = 0.0, 0.0
    try:
        for item in data:
            image, labels = _pad_to_multiple(
                item.image.to(torch.float32), item.labels, network.architecture.multiple_px
            )
            logits = network(image[None, None].to(device))[0]  # (3, h, w)
            target = labels.to(device)
            keep = target >= 0
            if not bool(keep.any()):
                continue
            kept_target = target[keep]
            kept_logits = logits[:, keep].T  # (n, 3)
            per_pixel = F.cross_entropy(kept_logits, kept_target, reduction="none")
            pixel_weights = weights[kept_target]
            loss_sum += float((per_pixel * pixel_weights).sum())
            weight_sum += float(pixel_weights.sum())
            predicted = kept_logits.argmax(1)
            pairs = (kept_target * _N_CLASSES + predicted).cpu()
            confusion += torch.bincount(pairs, minlength=_N_CLASSES**2).reshape(3, 3)
    finally:
        network.train(was_training)
    loss = loss_sum / weight_sum if weight_sum > 0 else float("nan")
    return _scores_from_confusion(confusion, loss)


def learning_rate_factor(step: int, *, total_steps: int, warmup_steps: int, final: float) -> float:
    """Multiplier of the learning rate at ``step`` (0-based): linear warm-up, cosine decay."""
    if step < warmup_steps:
        return (step + 1) / (warmup_steps + 1)
    span = max(1, total_steps - warmup_steps)
    progress = min(1.0, (step - warmup_steps) / span)
    return final + (1 - final) * 0.5 * (1 + math.cos(math.pi * progress))


def train_boxnet(
    network: BoxNet,
    train: Sequence[LabelledMicrograph],
    validation: Sequence[LabelledMicrograph],
    *,
    settings: TrainingSettings | None = None,
    device: torch.device | None = None,
    progress: ProgressCallback | None = None,
) -> TrainingReport:
    """Train ``network`` in place on ``train``; evaluate on ``validation`` (may be empty).

    The network is moved to ``device`` (default: where its parameters are) and left in
    eval mode. Crops and augmentation are drawn on the CPU from a generator seeded with
    ``settings.seed``.
    """
    settings = settings or TrainingSettings()
    if not train:
        raise ValueError("train_boxnet needs at least one training micrograph")
    device = device or next(network.parameters()).device
    network.to(device)
    weights_used = settings.class_weights or class_weights_from_frequencies(
        class_frequencies(train)
    )
    weights = torch.tensor(weights_used, dtype=torch.float32, device=device)
    generator = torch.Generator().manual_seed(settings.seed)
    optimiser = torch.optim.Adam(
        network.parameters(), lr=settings.learning_rate, weight_decay=settings.weight_decay
    )
    losses: list[float] = []
    evaluations: list[tuple[int, Evaluation]] = []
    seconds = {"batches": 0.0, "steps": 0.0, "evaluating": 0.0}

    def evaluate(step: int) -> None:
        if not validation:
            return
        start = time.perf_counter()
        result = evaluate_boxnet(network, validation, class_weights=weights_used, device=device)
        seconds["evaluating"] += time.perf_counter() - start
        evaluations.append((step, result))
        if progress is not None:
            progress(TrainingEvent("evaluation", step, settings.steps, evaluation=result))

    network.train()
    for step in range(settings.steps):
        start = time.perf_counter()
        images, labels = draw_training_batch(
            train,
            settings.batch_size,
            crop_px=settings.crop_px,
            generator=generator,
            augment=settings.augment,
        )
        middle = time.perf_counter()
        factor = learning_rate_factor(
            step,
            total_steps=settings.steps,
            warmup_steps=settings.warmup_steps,
            final=settings.final_learning_rate_fraction,
        )
        for group in optimiser.param_groups:
            group["lr"] = settings.learning_rate * factor
        loss = weighted_loss(network(images.to(device)), labels.to(device), weights)
        optimiser.zero_grad(set_to_none=True)
        loss.backward()  # type: ignore[no-untyped-call]
        optimiser.step()
        losses.append(float(loss.detach()))
        seconds["batches"] += middle - start
        seconds["steps"] += time.perf_counter() - middle
        if progress is not None:
            progress(TrainingEvent("step", step + 1, settings.steps, loss=losses[-1]))
        done = step + 1
        if done % settings.eval_every_steps == 0 and done != settings.steps:
            evaluate(done)
            network.train()
    evaluate(settings.steps)
    network.eval()
    return TrainingReport(
        settings=settings,
        losses=losses,
        evaluations=evaluations,
        class_weights=weights_used,
        seconds_batches=seconds["batches"],
        seconds_steps=seconds["steps"],
        seconds_evaluating=seconds["evaluating"],
        n_train=len(train),
        n_validation=len(validation),
    )
