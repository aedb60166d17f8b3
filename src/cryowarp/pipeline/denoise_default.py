"""Training the default denoiser shipped with cryowarp (``n2n_micrograph_v1``) on simulated data.

The shipped model ``src/cryowarp/preprocess/denoise/models/n2n_micrograph_v1.n2n.pt`` is made
by exactly this command, run from the repository root (docs/denoising_training.md)::

    python -m cryowarp.pipeline.denoise_default \\
        --out src/cryowarp/preprocess/denoise/models --seed 0

Steps of :func:`train_default_denoiser`:

1. ``n_micrographs`` simulated micrographs as odd/even half-averages at 4 Å/px
   (:func:`~cryowarp.simulate.odd_even_pairs.simulated_pairs`, seed ``seed``: varied species,
   defocus, dose, ice, artefacts, phase plate on some);
2. each pair deconvolved with its true CTF and normalised as the denoiser's inputs always are
   (:func:`~cryowarp.preprocess.denoise.n2n_data.prepare_pair`, denoiser-input deconvolution);
3. Noise2Noise training of a fresh :class:`~cryowarp.preprocess.denoise.n2n_network.
   DenoiserUNet` (weights initialised from ``seed``) with
   :func:`~cryowarp.preprocess.denoise.n2n_training.train_denoiser`;
4. a check on ``n_held_out`` other simulated micrographs (seed ``seed + 1 000 000``) whose
   clean images are known: the correlation with the clean image, deconvolved the same way, of
   the deconvolved input and of the denoised output;
5. the model file with metadata: the command, seed, simulation, deconvolution and training
   settings, the validation losses and the held-out check.

This module lives in the orchestration layer because it joins the simulator and the
denoiser (tests/test_layering.py).
"""

from __future__ import annotations

import argparse
import platform
import shlex
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

import cryowarp
from cryowarp.preprocess.denoise.deconvolution import (
    DENOISER_INPUT_DECONVOLUTION,
    DeconvolutionSettings,
    deconvolve,
)
from cryowarp.preprocess.denoise.n2n_data import prepare_pair
from cryowarp.preprocess.denoise.n2n_inference import denoise_pair
from cryowarp.preprocess.denoise.n2n_model_file import (
    DEFAULT_DENOISER_MODEL,
    DEFAULT_DENOISER_PIXEL_SIZE_A,
    DenoiserModel,
    save_denoiser_model,
)
from cryowarp.preprocess.denoise.n2n_network import DenoiserArchitecture, DenoiserUNet
from cryowarp.preprocess.denoise.n2n_training import (
    DenoiserTrainingEvent,
    DenoiserTrainingReport,
    DenoiserTrainingSettings,
    train_denoiser,
)
from cryowarp.simulate.odd_even_pairs import (
    OddEvenSimulationSettings,
    SimulatedOddEven,
    simulated_pairs,
)

__all__ = [
    "DEFAULT_MICROGRAPHS",
    "DEFAULT_STEPS",
    "HELD_OUT_SEED_OFFSET",
    "DefaultDenoiserResult",
    "correlation",
    "held_out_scores",
    "main",
    "psnr_db",
    "train_default_denoiser",
    "training_pairs_from_simulation",
]

DEFAULT_MICROGRAPHS = 40
"""Simulated micrographs (512² at 4 Å/px) of the default model's training set."""
DEFAULT_STEPS = 800
"""Optimiser steps of the default model (8 crops of 128² each)."""
HELD_OUT_SEED_OFFSET = 1_000_000
"""The held-out check uses seed ``seed + HELD_OUT_SEED_OFFSET``."""
_COMMAND = "python -m cryowarp.pipeline.denoise_default"


@dataclass(frozen=True)
class DefaultDenoiserResult:
    """What :func:`train_default_denoiser` made: the file, the model and how it trained."""

    path: Path
    model: DenoiserModel
    report: DenoiserTrainingReport
    held_out: dict[str, float]
    seconds_simulation: float


def correlation(image: torch.Tensor, reference: torch.Tensor) -> float:
    """Pearson correlation of two images over all pixels."""
    a = image.to(torch.float64).flatten()
    b = reference.to(torch.float64).flatten()
    a = a - a.mean()
    b = b - b.mean()
    return float((a * b).sum() / (a.norm() * b.norm()))


def psnr_db(image: torch.Tensor, reference: torch.Tensor) -> float:
    """Peak signal-to-noise ratio (dB) of ``image`` against ``reference``:
    ``10·log10((max − min of the reference)² / mean squared difference)``, no rescaling."""
    ref = reference.to(torch.float64)
    mse = float((image.to(torch.float64) - ref).square().mean())
    peak = float(ref.max() - ref.min())
    return float(10.0 * torch.log10(torch.tensor(peak**2 / mse)))


def training_pairs_from_simulation(
    micrographs: Sequence[SimulatedOddEven],
    *,
    deconvolution: DeconvolutionSettings = DENOISER_INPUT_DECONVOLUTION,
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """The ``(odd, even)`` pairs of simulated micrographs, deconvolved with their true CTF and
    normalised (:func:`~cryowarp.preprocess.denoise.n2n_data.prepare_pair`)."""
    pairs = []
    for m in micrographs:
        odd, even, _, _ = prepare_pair(
            m.odd,
            m.even,
            pixel_size_a=m.pixel_size_a,
            ctf=m.ctf,
            working_pixel_size_a=m.pixel_size_a,
            deconvolution=deconvolution,
            source=m.name,
        )
        pairs.append((odd, even))
    return pairs


def held_out_scores(
    model: DenoiserModel,
    micrographs: Sequence[SimulatedOddEven],
    *,
    deconvolution: DeconvolutionSettings = DENOISER_INPUT_DECONVOLUTION,
) -> dict[str, float]:
    """Mean correlation with the clean image (deconvolved with the same filter and true CTF)
    of the deconvolved average (``input``) and of the denoised pair (``denoised``)."""
    inputs, outputs = [], []
    for m in micrographs:
        odd, even, clean = (
            deconvolve(x, pixel_size_a=m.pixel_size_a, ctf=m.ctf, settings=deconvolution)
            for x in (m.odd, m.even, m.clean)
        )
        denoised = denoise_pair(model, odd, even, pixel_size_a=m.pixel_size_a)
        inputs.append(correlation((odd + even) / 2, clean))
        outputs.append(correlation(denoised, clean))
    n = max(len(inputs), 1)
    return {
        "n_micrographs": float(len(inputs)),
        "correlation_input": sum(inputs) / n,
        "correlation_denoised": sum(outputs) / n,
    }


def train_default_denoiser(
    out_dir: str | Path,
    *,
    seed: int = 0,
    n_micrographs: int = DEFAULT_MICROGRAPHS,
    steps: int = DEFAULT_STEPS,
    n_held_out: int = 4,
    name: str = DEFAULT_DENOISER_MODEL,
    simulation: OddEvenSimulationSettings | None = None,
    architecture: DenoiserArchitecture | None = None,
    training: DenoiserTrainingSettings | None = None,
    progress: Callable[[DenoiserTrainingEvent], None] | None = None,
) -> DefaultDenoiserResult:
    """Train the default denoiser on simulated micrographs and write ``out_dir/<name>.n2n.pt``
    (module docstring). Deterministic on the CPU for a seed.

    Parameters
    ----------
    out_dir:
        Folder of the model file (created).
    seed:
        Seed of the simulated data, the network's initial weights and the training crops.
    n_micrographs, steps:
        Size of the simulated training set and number of optimiser steps.
    n_held_out:
        Simulated micrographs of the held-out check (0: none).
    name:
        The model's name.
    simulation, architecture, training:
        Defaults: :class:`OddEvenSimulationSettings`, :class:`DenoiserArchitecture`,
        :class:`DenoiserTrainingSettings` (its ``steps`` and ``seed`` are replaced by the
        arguments of the same names).
    progress:
        Training progress events.
    """
    pixel_a = DEFAULT_DENOISER_PIXEL_SIZE_A
    simulation = simulation or OddEvenSimulationSettings()
    deconvolution = DENOISER_INPUT_DECONVOLUTION
    started = time.perf_counter()
    micrographs = simulated_pairs(
        n_micrographs, seed=seed, pixel_size_a=pixel_a, settings=simulation
    )
    pairs = training_pairs_from_simulation(micrographs, deconvolution=deconvolution)
    del micrographs
    seconds_simulation = time.perf_counter() - started

    with torch.random.fork_rng(devices=[]):  # seeded weights, global RNG state untouched
        torch.manual_seed(seed)
        network = DenoiserUNet(architecture or DenoiserArchitecture())
    settings = (training or DenoiserTrainingSettings()).model_copy(
        update={"steps": steps, "seed": seed}
    )
    report = train_denoiser(network, pairs, settings=settings, progress=progress)
    model = DenoiserModel(network=network, name=name, pixel_size_a=pixel_a)

    held_out: dict[str, float] = {}
    if n_held_out > 0:
        check = simulated_pairs(
            n_held_out, seed=seed + HELD_OUT_SEED_OFFSET, pixel_size_a=pixel_a, settings=simulation
        )
        held_out = held_out_scores(model, check, deconvolution=deconvolution)

    command = (
        f"{_COMMAND} --out {shlex.quote(str(out_dir))} --seed {seed} "
        f"--micrographs {n_micrographs} --steps {steps} --held-out {n_held_out}"
    )
    model.metadata = {
        "trained_by": command,
        "cryowarp_version": cryowarp.__version__,
        "torch_version": str(torch.__version__),
        "platform": platform.platform(),
        "seed": seed,
        "data": {
            "kind": "simulated odd/even half-averages (cryowarp.simulate.odd_even_pairs)",
            "n_micrographs": n_micrographs,
            "simulation": simulation.model_dump(mode="json"),
        },
        "deconvolution": deconvolution.model_dump(mode="json"),
        "architecture": network.architecture.to_dict(),
        "training": report.to_dict(),
        "validation_loss": report.best_validation_loss,
        "held_out": {"seed": seed + HELD_OUT_SEED_OFFSET, **held_out},
        "seconds_simulation": seconds_simulation,
    }
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = save_denoiser_model(model, out / name)
    return DefaultDenoiserResult(path, model, report, held_out, seconds_simulation)


def main(argv: Sequence[str] | None = None) -> None:
    """Command line: ``python -m cryowarp.pipeline.denoise_default --out DIR --seed 0``."""
    parser = argparse.ArgumentParser(prog=_COMMAND, description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="folder of the model file")
    parser.add_argument("--seed", type=int, default=0, help="seed of data, weights and crops")
    parser.add_argument(
        "--micrographs",
        type=int,
        default=DEFAULT_MICROGRAPHS,
        help="simulated micrographs (512² at 4 Å/px)",
    )
    parser.add_argument("--steps", type=int, default=DEFAULT_STEPS, help="optimiser steps")
    parser.add_argument(
        "--held-out", type=int, default=4, help="simulated micrographs of the held-out check"
    )
    parser.add_argument("--name", default=DEFAULT_DENOISER_MODEL, help="model name")
    args = parser.parse_args(argv)

    def show(event: DenoiserTrainingEvent) -> None:
        if event.validation_loss is not None:
            print(
                f"step {event.step}/{event.total_steps}: validation loss "
                f"{event.validation_loss:.4f}",
                flush=True,
            )

    result = train_default_denoiser(
        args.out,
        seed=args.seed,
        n_micrographs=args.micrographs,
        steps=args.steps,
        n_held_out=args.held_out,
        name=args.name,
        progress=show,
    )
    summary: dict[str, Any] = {
        "path": str(result.path),
        "seconds_simulation": round(result.seconds_simulation, 1),
        "seconds_training": round(result.report.seconds, 1),
        "input_validation_loss": round(result.report.input_validation_loss, 4),
        "best_validation_loss": round(result.report.best_validation_loss, 4),
        **{k: round(v, 4) for k, v in result.held_out.items()},
    }
    print(summary)


if __name__ == "__main__":
    main()
