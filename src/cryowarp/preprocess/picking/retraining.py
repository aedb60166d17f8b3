"""Retrain a BoxNet on a few user-labelled micrographs without forgetting
(docs/picking_training.md).

:func:`retrain_boxnet` fine-tunes a copy of a model on batches that mix crops of the user's
micrographs with crops of generic training data (``generic_per_user`` generic crops per user
crop, 1:1 by default), so the network learns the new species without losing what it knew.

Held-out data. A strip of ``holdout_fraction`` (25 %) at one edge of each user micrograph
(:func:`hold_out_region`: the edge strip with the most particle pixels) is never trained on
and serves as the user validation region (scored with a context margin of :data:`CONTEXT_PX`
pixels whose labels are ignored); the generic micrographs are split into training and
validation ones. An **epoch** is one pass over the user training crops: ``crop_px`` tiles at
half-tile spacing covering the training region of every micrograph, each augmented afresh.
The windows cut for augmentation are kept inside the micrograph and take their image from the
whole micrograph (the held-out strip included), but only the training region's labels: the
generic model never saw zero-padded borders (its crops lie inside its micrographs), and user
crops padded with zeros around the training region taught it to call artefact along image
edges and next to the carbon that touches them. The held-out labels are never trained on.
With ``freeze_batch_norm`` the batch-norm statistics stay those of the base model.

After every epoch the four **accuracies** (:mod:`.training`: mean pixel F1 of the foreground
classes) are reported: ``old_on_old`` and ``old_on_new`` (the base model on the generic and
on the user validation data; measured once), ``new_on_old`` and ``new_on_new`` (the model
being trained). Retraining worked when ``new_on_new`` rose above ``old_on_new`` while
``new_on_old`` stayed near ``old_on_old``.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

import torch
from pydantic import BaseModel, ConfigDict, Field

from cryowarp.preprocess.picking.augment import augment_batch, augmentation_window_px
from cryowarp.preprocess.picking.labels import LabelledMicrograph
from cryowarp.preprocess.picking.model_file import BoxNetModel
from cryowarp.preprocess.picking.network import PARTICLE
from cryowarp.preprocess.picking.training import (
    Evaluation,
    ProgressCallback,
    TrainingEvent,
    class_frequencies,
    class_weights_from_frequencies,
    draw_training_batch,
    evaluate_boxnet,
    learning_rate_factor,
    split_validation,
    weighted_loss,
)

__all__ = [
    "CONTEXT_PX",
    "RetrainingEpoch",
    "RetrainingReport",
    "RetrainingSettings",
    "hold_out_region",
    "retrain_boxnet",
]

CONTEXT_PX = 16
"""Pixels of image context around a held-out region (labels ignored there)."""


class RetrainingSettings(BaseModel):
    """How :func:`retrain_boxnet` fine-tunes a model."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_epochs: int = Field(
        default=5,
        ge=1,
        description="Epochs: passes over the user training crops (every crop_px tile of the "
        "micrographs' training regions, at half-tile spacing, once).",
    )
    batch_size: int = Field(
        default=8, ge=2, description="Crops per optimiser step, user + generic."
    )
    crop_px: int = Field(
        default=128,
        ge=16,
        multiple_of=8,
        description="Side of the training crops in pixels at the picking pixel size (8 Å/px).",
    )
    learning_rate: float = Field(
        default=3e-4, gt=0, description="Initial Adam learning rate; cosine decay to 10 % of it."
    )
    generic_per_user: float = Field(
        default=1.0,
        ge=0,
        description="Dilution: generic crops per user crop in every batch (1: half and half).",
    )
    holdout_fraction: float = Field(
        default=0.25,
        gt=0,
        lt=1,
        description="Fraction of each user micrograph (along its longer side) held out to "
        "measure the accuracy on new data; never trained on.",
    )
    generic_validation_fraction: float = Field(
        default=0.2, ge=0, lt=1, description="Fraction of the generic micrographs held out."
    )
    max_generic_validation: int = Field(
        default=8, ge=1, description="At most this many generic micrographs are scored per epoch."
    )
    class_weights: tuple[float, float, float] | None = Field(
        default=None,
        description="Cross-entropy weights (background, particle, artefact); None: from the "
        "label frequencies of the mixed data, as in TrainingSettings.",
    )
    augment: bool = Field(
        default=True, description="Rotate, flip, shear and add noise to the crops."
    )
    freeze_batch_norm: bool = Field(
        default=False,
        description="Keep the batch-norm layers in eval mode while fine-tuning: their running "
        "statistics stay those of the base model (their scales and offsets are still "
        "trained). Helps a converged model on a species of familiar contrast; hurts when the "
        "new data look unlike anything the base model saw.",
    )
    seed: int = Field(default=0, description="Seed of the splits, crop order and augmentation.")


@dataclass(frozen=True)
class RetrainingEpoch:
    """The model being trained after ``epoch`` passes (mean training loss of the epoch)."""

    epoch: int
    loss: float
    new_on_old: Evaluation | None
    new_on_new: Evaluation


@dataclass(frozen=True)
class RetrainingReport:
    """What happened in :func:`retrain_boxnet` (module docstring for the accuracies)."""

    settings: RetrainingSettings
    old_on_old: Evaluation | None
    old_on_new: Evaluation
    epochs: list[RetrainingEpoch]
    class_weights: tuple[float, float, float]
    n_user_tiles: int
    steps_per_epoch: int
    seconds_training: float
    seconds_evaluating: float

    def accuracies(self, epoch: int = -1) -> dict[str, float]:
        """The four accuracies after ``epoch`` (index into :attr:`epochs`; NaN for the old
        data when no generic data were given)."""
        return _four_accuracies(self.old_on_old, self.old_on_new, self.epochs[epoch])

    def to_dict(self) -> dict[str, Any]:
        return {
            "settings": self.settings.model_dump(mode="json"),
            "old_on_old": self.old_on_old.to_dict() if self.old_on_old else None,
            "old_on_new": self.old_on_new.to_dict(),
            "epochs": [
                {
                    "epoch": e.epoch,
                    "loss": e.loss,
                    "new_on_old": e.new_on_old.to_dict() if e.new_on_old else None,
                    "new_on_new": e.new_on_new.to_dict(),
                    "accuracies": self.accuracies(i),
                }
                for i, e in enumerate(self.epochs)
            ],
            "class_weights": list(self.class_weights),
            "n_user_tiles": self.n_user_tiles,
            "steps_per_epoch": self.steps_per_epoch,
            "seconds_training": self.seconds_training,
            "seconds_evaluating": self.seconds_evaluating,
        }


def _four_accuracies(
    old_on_old: Evaluation | None, old_on_new: Evaluation, epoch: RetrainingEpoch
) -> dict[str, float]:
    nan = float("nan")
    return {
        "old_on_old": old_on_old.accuracy if old_on_old else nan,
        "old_on_new": old_on_new.accuracy,
        "new_on_old": epoch.new_on_old.accuracy if epoch.new_on_old else nan,
        "new_on_new": epoch.new_on_new.accuracy,
    }


def _window(item: LabelledMicrograph, axis: int, start: int, stop: int) -> LabelledMicrograph:
    """The part ``start:stop`` of ``item`` along array axis ``axis`` (0 = y, 1 = x)."""
    index: list[slice] = [slice(None), slice(None)]
    index[axis] = slice(start, stop)
    where = tuple(index)
    coordinate = item.positions_px[:, 1 - axis]  # positions are (x, y)
    inside = (coordinate >= start - 0.5) & (coordinate < stop - 0.5)
    positions = item.positions_px[inside].clone()
    positions[:, 1 - axis] -= start
    return replace(
        item,
        image=item.image[where].clone(),
        labels=item.labels[where].clone(),
        artefact_mask=item.artefact_mask[where].clone(),
        positions_px=positions,
        diameters_a=item.diameters_a[inside].clone(),
    )


@dataclass(frozen=True)
class _Split:
    """A micrograph split into a training window ``start:stop`` along ``axis`` and the rest."""

    training: LabelledMicrograph
    held: LabelledMicrograph
    axis: int
    start: int
    stop: int

    def training_labels(self, item: LabelledMicrograph) -> torch.Tensor:  # (h, w) int64
        """``item``'s labels, −1 outside the training window."""
        labels = torch.full_like(item.labels, -1)
        index: list[slice] = [slice(None), slice(None)]
        index[self.axis] = slice(self.start, self.stop)
        labels[tuple(index)] = item.labels[tuple(index)]
        return labels


def _strip(item: LabelledMicrograph, axis: int, at_end: bool, fraction: float) -> _Split:
    length = int(item.labels.shape[axis])
    n_held = min(length - 1, max(1, math.ceil(fraction * length)))
    if at_end:
        split = length - n_held
        train_start, train_stop = 0, split
        start, stop = max(0, split - CONTEXT_PX), length
        context = slice(0, split - start)
    else:
        train_start, train_stop = n_held, length
        start, stop = 0, min(length, n_held + CONTEXT_PX)
        context = slice(n_held, stop)
    training = _window(item, axis, train_start, train_stop)
    held = _window(item, axis, start, stop)
    labels = held.labels.clone()
    if axis == 1:
        labels[:, context] = -1
    else:
        labels[context] = -1
    return _Split(training, replace(held, labels=labels), axis, train_start, train_stop)


def _split(item: LabelledMicrograph, fraction: float) -> _Split:
    h, w = item.labels.shape
    longer, shorter = (1, 0) if w >= h else (0, 1)
    candidates = [(longer, True), (longer, False), (shorter, True), (shorter, False)]
    splits = [_strip(item, axis, at_end, fraction) for axis, at_end in candidates]
    counts = [int((split.held.labels == PARTICLE).sum()) for split in splits]
    return splits[counts.index(max(counts))]


def hold_out_region(
    item: LabelledMicrograph, fraction: float
) -> tuple[LabelledMicrograph, LabelledMicrograph]:
    """``(training part, held-out part)`` of a micrograph.

    The held-out part is a strip of ``fraction`` of the micrograph at one of its four edges,
    plus :data:`CONTEXT_PX` pixels of context on its inner side whose labels are set to −1;
    the training part is the rest. Of the four strips, the one with the most particle pixels
    is held out (so that regions painted "ignore" do not leave nothing to score); ties go to
    the end of the longer side, then its start, then the ends of the shorter side.
    """
    split = _split(item, fraction)
    return split.training, split.held


def _tile_starts(length: int, tile: int) -> list[int]:
    if length <= tile:
        return [(length - tile) // 2]
    step = tile // 2
    starts = list(range(0, length - tile + 1, step))
    if starts[-1] != length - tile:
        starts.append(length - tile)
    return starts


def _window_starts(length: int, tile: int, window: int) -> list[int]:
    """Starts of ``window``-px windows centred on the ``tile``-px tiles (half-tile spacing)
    of ``length`` px, moved inside ``0:length`` when the window fits."""
    margin = (window - tile) // 2
    starts = []
    for t0 in _tile_starts(length, tile):
        fits = length >= window
        start = min(max(t0 - margin, 0), length - window) if fits else (length - window) // 2
        if start not in starts:
            starts.append(start)
    return starts


def _user_tiles(
    items: Sequence[LabelledMicrograph],
    training_labels: Sequence[torch.Tensor],  # (h, w) int64 each
    *,
    crop_px: int,
    source_px: int,
) -> tuple[torch.Tensor, torch.Tensor]:  # (n, s, s) float32, (n, s, s) int64
    """Windows of ``source_px`` around the ``crop_px`` tiles (half-tile spacing) of each
    micrograph, kept inside it when it is large enough; image from the whole micrograph,
    labels from ``training_labels``; outside the micrograph image 0, labels −1."""
    images, labels = [], []
    for item, item_labels in zip(items, training_labels, strict=True):
        h, w = item_labels.shape
        padded_image = torch.zeros(h + 2 * source_px, w + 2 * source_px)
        padded_labels = torch.full((h + 2 * source_px, w + 2 * source_px), -1, dtype=torch.int64)
        padded_image[source_px : source_px + h, source_px : source_px + w] = item.image
        padded_labels[source_px : source_px + h, source_px : source_px + w] = item_labels
        for y0 in _window_starts(h, crop_px, source_px):
            for x0 in _window_starts(w, crop_px, source_px):
                ys = slice(y0 + source_px, y0 + 2 * source_px)
                xs = slice(x0 + source_px, x0 + 2 * source_px)
                tile_labels = padded_labels[ys, xs]
                if bool((tile_labels >= 0).any()):
                    images.append(padded_image[ys, xs])
                    labels.append(tile_labels)
    if not images:
        raise ValueError("the user micrographs hold no labelled pixel to train on")
    return torch.stack(images), torch.stack(labels)


def _mixed_weights(
    user: Sequence[LabelledMicrograph],
    generic: Sequence[LabelledMicrograph],
    generic_per_user: float,
) -> tuple[float, float, float]:
    f_user = class_frequencies(user)
    if not generic:
        return class_weights_from_frequencies(f_user)
    f_generic = class_frequencies(generic)
    mixed = [
        (u + generic_per_user * g) / (1 + generic_per_user)
        for u, g in zip(f_user, f_generic, strict=True)
    ]
    return class_weights_from_frequencies((mixed[0], mixed[1], mixed[2]))


def _train_mode(network: torch.nn.Module, *, freeze_batch_norm: bool) -> None:
    network.train()
    if freeze_batch_norm:
        for module in network.modules():
            if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
                module.eval()


def retrain_boxnet(
    base: BoxNetModel,
    user: list[LabelledMicrograph],
    generic: list[LabelledMicrograph],
    *,
    name: str,
    settings: RetrainingSettings | None = None,
    device: torch.device | None = None,
    progress: ProgressCallback | None = None,
) -> tuple[BoxNetModel, RetrainingReport]:
    """Fine-tune a copy of ``base`` on ``user`` micrographs diluted with ``generic`` ones
    (module docstring). ``base`` is not changed. The new model's metadata record the parent,
    the user data, the settings and the accuracies."""
    settings = settings or RetrainingSettings()
    if not user:
        raise ValueError("retraining needs at least one labelled user micrograph")
    device = device or torch.device("cpu")
    generator = torch.Generator().manual_seed(settings.seed)
    splits = [_split(item, settings.holdout_fraction) for item in user]
    user_train = [split.training for split in splits]
    user_validation = [split.held for split in splits]
    generic_train, generic_validation = split_validation(
        generic,
        settings.generic_validation_fraction if len(generic) >= 2 else 0.0,
        seed=settings.seed,
    )
    generic_validation = generic_validation[: settings.max_generic_validation]
    weights_used = settings.class_weights or _mixed_weights(
        user_train, generic_train, settings.generic_per_user
    )
    weights = torch.tensor(weights_used, dtype=torch.float32, device=device)
    source_px = augmentation_window_px(settings.crop_px) if settings.augment else settings.crop_px
    tile_images, tile_labels = _user_tiles(
        user,
        [split.training_labels(item) for split, item in zip(splits, user, strict=True)],
        crop_px=settings.crop_px,
        source_px=source_px,
    )
    n_user = settings.batch_size
    if generic_train and settings.generic_per_user > 0:
        n_user = max(1, round(settings.batch_size / (1 + settings.generic_per_user)))
        n_user = min(n_user, settings.batch_size - 1)
    n_generic = settings.batch_size - n_user
    steps_per_epoch = math.ceil(tile_images.shape[0] / n_user)
    total_steps = steps_per_epoch * settings.max_epochs

    network = copy.deepcopy(base.network).to(device)
    seconds = {"training": 0.0, "evaluating": 0.0}

    def evaluate(data: Sequence[LabelledMicrograph]) -> Evaluation:
        start = time.perf_counter()
        result = evaluate_boxnet(network, data, class_weights=weights_used, device=device)
        seconds["evaluating"] += time.perf_counter() - start
        return result

    old_on_old = evaluate(generic_validation) if generic_validation else None
    old_on_new = evaluate(user_validation)
    optimiser = torch.optim.Adam(network.parameters(), lr=settings.learning_rate)
    warmup = min(20, total_steps // 10)
    epochs: list[RetrainingEpoch] = []
    step = 0
    for epoch in range(1, settings.max_epochs + 1):
        start = time.perf_counter()
        _train_mode(network, freeze_batch_norm=settings.freeze_batch_norm)
        order = torch.randperm(tile_images.shape[0], generator=generator)
        epoch_losses = []
        for first in range(0, order.numel(), n_user):
            chosen = order[first : first + n_user]
            images, labels = tile_images[chosen], tile_labels[chosen]
            if settings.augment:
                images, labels = augment_batch(
                    images, labels, generator=generator, crop_px=settings.crop_px
                )
            else:
                images = images[:, None]
            if n_generic:
                more_images, more_labels = draw_training_batch(
                    generic_train,
                    n_generic,
                    crop_px=settings.crop_px,
                    generator=generator,
                    augment=settings.augment,
                )
                images = torch.cat([images, more_images])
                labels = torch.cat([labels, more_labels])
            factor = learning_rate_factor(
                step, total_steps=total_steps, warmup_steps=warmup, final=0.1
            )
            for group in optimiser.param_groups:
                group["lr"] = settings.learning_rate * factor
            loss = weighted_loss(network(images.to(device)), labels.to(device), weights)
            optimiser.zero_grad(set_to_none=True)
            loss.backward()  # type: ignore[no-untyped-call]
            optimiser.step()
            step += 1
            epoch_losses.append(float(loss.detach()))
            if progress is not None:
                progress(TrainingEvent("step", step, total_steps, loss=epoch_losses[-1]))
        seconds["training"] += time.perf_counter() - start
        new_on_old = evaluate(generic_validation) if generic_validation else None
        new_on_new = evaluate(user_validation)
        epochs.append(
            RetrainingEpoch(epoch, sum(epoch_losses) / len(epoch_losses), new_on_old, new_on_new)
        )
        if progress is not None:
            progress(
                TrainingEvent(
                    "epoch",
                    step,
                    total_steps,
                    loss=epochs[-1].loss,
                    epoch=epoch,
                    total_epochs=settings.max_epochs,
                    accuracies=_four_accuracies(old_on_old, old_on_new, epochs[-1]),
                )
            )
    network.eval()
    network.to("cpu")
    report = RetrainingReport(
        settings=settings,
        old_on_old=old_on_old,
        old_on_new=old_on_new,
        epochs=epochs,
        class_weights=weights_used,
        n_user_tiles=int(tile_images.shape[0]),
        steps_per_epoch=steps_per_epoch,
        seconds_training=seconds["training"],
        seconds_evaluating=seconds["evaluating"],
    )
    metadata = {
        "kind": "retrained",
        "parent": base.name,
        "lineage": [base.name, *base.metadata.get("lineage", [])],
        "user_data": [item.source for item in user],
        "n_user_micrographs": len(user),
        "n_user_particles": int(sum(item.positions_px.shape[0] for item in user)),
        "n_generic_micrographs": len(generic),
        "settings": settings.model_dump(mode="json"),
        "accuracies": report.accuracies(),
        "accuracies_per_epoch": [report.accuracies(i) for i in range(len(epochs))],
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    model = BoxNetModel(
        network=network, name=name, pixel_size_a=base.pixel_size_a, metadata=metadata
    )
    return model, report
