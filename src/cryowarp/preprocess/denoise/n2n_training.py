"""Noise2Noise training of the denoiser on odd/even frame averages (docs/denoising.md).

The odd and even averages of a micrograph show the same specimen with independent noise, so a
network trained to predict one half from the other with an L2 loss learns the expected clean
image (Lehtinen et al., ICML 2018): no clean ground truth is needed.

Each step draws ``batch_size`` random ``crop_px`` squares, each from a random pair and at a
random place in the pair's training region, turns each by a random multiple of 90° with a
random flip, and chooses at random which half is the input and which the target. Both halves
of a pair are normalised with the statistics of their average
(:func:`~cryowarp.preprocess.denoise.n2n_inference.normalisation`). Adam minimises the mean
squared difference; the learning rate follows a cosine decay from ``learning_rate`` to a tenth
of it at the last step.

Validation: the bottom rows of every pair (``validation_fraction`` of its height, at least
``crop_px``) are never used for training; ``validation_crops`` fixed crops from them, in both
directions (odd → even and even → odd), give the validation loss, evaluated before training,
every ``eval_every_steps`` and at the end. Its floor is the noise variance of the target, not
zero. The network ends with the weights of its best validation (in eval mode). Training stops
early when the validation loss has not improved for ``early_stop_evaluations`` evaluations,
and at once when a training or validation loss is not finite (divergence).

On the CPU, the same seed, pairs and initial network give the same losses and weights.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field

from cryowarp.errors import DimensionMismatchError, InvalidValuesError
from cryowarp.preprocess.denoise.n2n_inference import normalisation
from cryowarp.preprocess.denoise.n2n_network import DenoiserUNet

__all__ = [
    "DenoiserTrainingEvent",
    "DenoiserTrainingReport",
    "DenoiserTrainingSettings",
    "train_denoiser",
]

_FINAL_LEARNING_RATE_FRACTION = 0.1


class DenoiserTrainingSettings(BaseModel):
    """How :func:`train_denoiser` trains (module docstring)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    steps: int = Field(default=600, ge=1, description="Optimiser steps (one batch of crops each).")
    batch_size: int = Field(default=8, ge=1, description="Crops per optimiser step.")
    crop_px: int = Field(
        default=128,
        ge=8,
        description="Side of the square training crops in pixels at the model's working "
        "pixel size (4 Å/px: 128 px = 512 Å); a multiple of the network's multiple_px (8).",
    )
    learning_rate: float = Field(
        default=1e-3, gt=0, description="Initial Adam learning rate; cosine decay to a tenth of it."
    )
    seed: int = Field(
        default=0, description="Seed of the crops, augmentation and validation crops."
    )
    validation_fraction: float = Field(
        default=0.1,
        gt=0,
        lt=0.5,
        description="Fraction of each pair's height (bottom rows, at least crop_px) held out "
        "for validation (unitless).",
    )
    validation_crops: int = Field(
        default=32, ge=1, description="Validation crops in all, spread over the pairs."
    )
    eval_every_steps: int = Field(
        default=50, ge=1, description="Compute the validation loss every this many steps."
    )
    early_stop_evaluations: int | None = Field(
        default=None,
        ge=1,
        description="Stop when the validation loss has not improved for this many "
        "evaluations; None: run all steps.",
    )


@dataclass(frozen=True)
class DenoiserTrainingEvent:
    """What :func:`train_denoiser` tells ``progress`` after every step.

    ``loss`` is the training loss of that step (normalised units²); ``validation_loss`` is
    set on the steps where it was computed (step 0: before training).
    """

    step: int
    total_steps: int
    loss: float | None
    validation_loss: float | None = None


ProgressCallback = Callable[[DenoiserTrainingEvent], None]


@dataclass(frozen=True)
class DenoiserTrainingReport:
    """What happened in :func:`train_denoiser` (losses in normalised units²).

    Attributes
    ----------
    losses:
        Training loss of every step run.
    validations:
        ``(step, validation loss)`` in order; step 0 is the untrained network.
    input_validation_loss:
        Validation loss of using the input itself as the prediction (about twice the noise
        variance of one half): a trained network should end far below it.
    best_step, best_validation_loss:
        The evaluation whose weights the network keeps.
    stopped_early:
        Whether training ended before ``steps``: ``early_stop_evaluations`` or divergence.
    diverged:
        Whether a training or validation loss was not finite (learning rate too high);
        training stopped at that step.
    seconds:
        Wall time of the whole training.
    """

    settings: DenoiserTrainingSettings
    losses: list[float]
    validations: list[tuple[int, float]]
    input_validation_loss: float
    best_step: int
    best_validation_loss: float
    stopped_early: bool
    diverged: bool
    seconds: float
    n_pairs: int

    @property
    def initial_validation_loss(self) -> float:
        return self.validations[0][1]

    @property
    def final_validation_loss(self) -> float:
        return self.validations[-1][1]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary (for model metadata)."""
        return {
            "settings": self.settings.model_dump(),
            "steps_run": len(self.losses),
            "n_pairs": self.n_pairs,
            "validations": [[step, loss] for step, loss in self.validations],
            "input_validation_loss": self.input_validation_loss,
            "best_step": self.best_step,
            "best_validation_loss": self.best_validation_loss,
            "stopped_early": self.stopped_early,
            "diverged": self.diverged,
            "seconds": self.seconds,
        }


def train_denoiser(
    network: DenoiserUNet,
    pairs: Sequence[tuple[torch.Tensor, torch.Tensor]],  # [((h, w) odd, (h, w) even)]
    *,
    settings: DenoiserTrainingSettings | None = None,
    device: torch.device | str | None = None,
    progress: ProgressCallback | None = None,
) -> DenoiserTrainingReport:
    """Train ``network`` in place by Noise2Noise on odd/even pairs (module docstring).

    Parameters
    ----------
    network:
        The network to train (a fresh one, or a trained one to fine-tune).
    pairs:
        ``(odd, even)`` images of each micrograph, deconvolved, at the model's working pixel
        size; the two of a pair have one shape, pairs may differ in shape.
    settings:
        Training settings; default :class:`DenoiserTrainingSettings`.
    device:
        Where to train; default the network's device. The network stays there.
    progress:
        Called with a :class:`DenoiserTrainingEvent` after every step and evaluation.

    Raises
    ------
    InvalidValuesError
        No pairs, a pair too small for the crops and the validation rows, or a pair with
        non-finite or constant values.
    DimensionMismatchError
        The two halves of a pair differ in shape.
    """
    settings = settings or DenoiserTrainingSettings()
    started = time.perf_counter()
    multiple = network.architecture.multiple_px
    if settings.crop_px % multiple:
        raise ValueError(f"crop_px ({settings.crop_px}) must be a multiple of {multiple}")
    run_on = torch.device(device) if device is not None else next(network.parameters()).device
    network.to(run_on)
    halves, train_rows = _prepare_pairs(pairs, settings, run_on)
    generator = torch.Generator().manual_seed(settings.seed)
    val_inputs, val_targets = _validation_crops(halves, train_rows, settings, generator)
    input_loss = float(F.mse_loss(val_inputs, val_targets))

    optimiser = torch.optim.Adam(network.parameters(), lr=settings.learning_rate)
    losses: list[float] = []
    validations: list[tuple[int, float]] = []
    best_state = copy.deepcopy(network.state_dict())
    best_step, best_loss = 0, math.inf
    stopped_early = diverged = False

    def evaluate(step: int, loss: float | None) -> float:
        nonlocal best_state, best_step, best_loss
        value = _validation_loss(network, val_inputs, val_targets, settings.batch_size)
        if value < best_loss or not validations:
            best_state = copy.deepcopy(network.state_dict())
            best_step, best_loss = step, value
        validations.append((step, value))
        if progress is not None:
            progress(DenoiserTrainingEvent(step, settings.steps, loss, value))
        return value

    evaluate(0, None)
    network.train()
    for step in range(1, settings.steps + 1):
        for group in optimiser.param_groups:
            group["lr"] = settings.learning_rate * _cosine_factor(step - 1, settings.steps)
        inputs, targets = _training_batch(halves, train_rows, settings, generator)
        optimiser.zero_grad(set_to_none=True)
        loss = F.mse_loss(network(inputs), targets)
        losses.append(float(loss.detach()))
        if not math.isfinite(losses[-1]):
            diverged = stopped_early = True
            break
        loss.backward()  # type: ignore[no-untyped-call]
        optimiser.step()
        if step % settings.eval_every_steps == 0 or step == settings.steps:
            value = evaluate(step, losses[-1])
            network.train()
            if not math.isfinite(value):
                diverged = stopped_early = True
                break
            limit = settings.early_stop_evaluations
            since_best = sum(1 for s, _ in validations if s > best_step)
            if limit is not None and since_best >= limit and step < settings.steps:
                stopped_early = True
                break
        elif progress is not None:
            progress(DenoiserTrainingEvent(step, settings.steps, losses[-1]))

    network.load_state_dict(best_state)
    network.eval()
    return DenoiserTrainingReport(
        settings=settings,
        losses=losses,
        validations=validations,
        input_validation_loss=input_loss,
        best_step=best_step,
        best_validation_loss=best_loss,
        stopped_early=stopped_early,
        diverged=diverged,
        seconds=time.perf_counter() - started,
        n_pairs=len(halves),
    )


def _prepare_pairs(
    pairs: Sequence[tuple[torch.Tensor, torch.Tensor]],
    settings: DenoiserTrainingSettings,
    device: torch.device,
) -> tuple[list[torch.Tensor], list[int]]:
    """Normalised ``(2, h, w)`` halves per pair and the number of training rows of each."""
    if not pairs:
        raise InvalidValuesError(None, "no odd/even pairs to train the denoiser on")
    crop = settings.crop_px
    halves: list[torch.Tensor] = []
    train_rows: list[int] = []
    for i, (odd, even) in enumerate(pairs):
        where = f"training pair {i}"
        if odd.dim() != 2 or odd.shape != even.shape:
            raise DimensionMismatchError(
                None,
                f"{where}: odd {tuple(odd.shape)} and even {tuple(even.shape)} must be one "
                "(h, w) shape",
            )
        h, w = odd.shape
        validation_rows = max(math.ceil(settings.validation_fraction * h), crop)
        if w < crop or h - validation_rows < crop:
            raise InvalidValuesError(
                None,
                f"{where}: {h}×{w} px is too small for {crop}-px crops plus "
                f"{validation_rows} validation rows (needs at least {crop + validation_rows}"
                f"×{crop} px)",
            )
        scale = normalisation(odd, even, source=None)
        stacked = torch.stack([odd, even]).to(device, torch.float32)
        halves.append(scale.apply(stacked))
        train_rows.append(h - validation_rows)
    return halves, train_rows


def _validation_crops(
    halves: list[torch.Tensor],
    train_rows: list[int],
    settings: DenoiserTrainingSettings,
    generator: torch.Generator,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Fixed crops of the held-out rows, both directions: ``(2n, 1, c, c)`` inputs, targets."""
    crop = settings.crop_px
    crops: list[torch.Tensor] = []
    for k in range(settings.validation_crops):
        index = k % len(halves)
        pair = halves[index]
        h, w = pair.shape[-2:]
        y = train_rows[index] + _randint(h - train_rows[index] - crop + 1, generator)
        x = _randint(w - crop + 1, generator)
        crops.append(pair[:, y : y + crop, x : x + crop])
    stacked = torch.stack(crops)  # (n, 2, c, c)
    inputs = torch.cat([stacked[:, 0:1], stacked[:, 1:2]])
    targets = torch.cat([stacked[:, 1:2], stacked[:, 0:1]])
    return inputs, targets


def _training_batch(
    halves: list[torch.Tensor],
    train_rows: list[int],
    settings: DenoiserTrainingSettings,
    generator: torch.Generator,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(b, 1, c, c)`` inputs and targets: random pair, place, rotation, flip and direction."""
    crop = settings.crop_px
    inputs: list[torch.Tensor] = []
    targets: list[torch.Tensor] = []
    for _ in range(settings.batch_size):
        index = _randint(len(halves), generator)
        pair = halves[index]
        y = _randint(train_rows[index] - crop + 1, generator)
        x = _randint(pair.shape[-1] - crop + 1, generator)
        patch = pair[:, y : y + crop, x : x + crop]
        patch = torch.rot90(patch, _randint(4, generator), dims=(-2, -1))
        if _randint(2, generator):
            patch = torch.flip(patch, dims=(-1,))
        first = _randint(2, generator)
        inputs.append(patch[first])
        targets.append(patch[1 - first])
    return torch.stack(inputs)[:, None], torch.stack(targets)[:, None]


def _validation_loss(
    network: DenoiserUNet, inputs: torch.Tensor, targets: torch.Tensor, batch: int
) -> float:
    network.eval()
    total = 0.0
    with torch.no_grad():
        for start in range(0, inputs.shape[0], batch):
            output = network(inputs[start : start + batch])
            total += float(F.mse_loss(output, targets[start : start + batch], reduction="sum"))
    return total / targets.numel()


def _cosine_factor(step: int, steps: int) -> float:
    """Learning-rate factor at ``step`` (0-based): 1 → 0.1 along half a cosine."""
    progress = step / max(steps - 1, 1)
    final = _FINAL_LEARNING_RATE_FRACTION
    return final + (1 - final) * 0.5 * (1 + math.cos(math.pi * progress))


def _randint(n: int, generator: torch.Generator) -> int:
    return int(torch.randint(n, (1,), generator=generator))
