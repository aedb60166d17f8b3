"""``cryowarp denoise train``: retrain the Noise2Noise denoiser on a data set's own odd/even
frame averages (docs/denoising_training.md).

Training pairs come from :func:`~cryowarp.preprocess.denoise.n2n_data.collect_training_pairs`
(items motion-corrected with odd/even averages and CTF-estimated; each half Fourier-cropped to
the working pixel size and deconvolved with
:data:`~cryowarp.preprocess.denoise.deconvolution.DENOISER_INPUT_DECONVOLUTION`), training is
:func:`~cryowarp.preprocess.denoise.n2n_training.train_denoiser` with a progress bar showing
the training and validation losses, and the model is written as ``OUT/NAME.n2n.pt`` with its
training facts and deconvolution settings in its metadata (``cryowarp denoise apply`` reads
them). Defaults and help texts come from
:class:`~cryowarp.preprocess.denoise.n2n_training.DenoiserTrainingSettings`.

Example::

    cryowarp denoise train project --name my_data_v1 --out models --steps 600
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import torch
import typer
from pydantic import ValidationError
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from cryowarp.cli._common import parse_device
from cryowarp.errors import CryowarpError
from cryowarp.io.model_files import check_model_name
from cryowarp.preprocess.denoise.deconvolution import DENOISER_INPUT_DECONVOLUTION
from cryowarp.preprocess.denoise.n2n_data import (
    DEFAULT_MAX_EXAMPLES,
    DEFAULT_MIN_EXAMPLES,
    SkippedItem,
    TrainingPair,
    collect_training_pairs,
)
from cryowarp.preprocess.denoise.n2n_model_file import (
    DEFAULT_DENOISER_PIXEL_SIZE_A,
    DENOISER_MODEL_SUFFIX,
    DenoiserModel,
    load_denoiser_model,
    resolve_denoiser_model,
    save_denoiser_model,
)
from cryowarp.preprocess.denoise.n2n_network import DenoiserUNet
from cryowarp.preprocess.denoise.n2n_training import (
    DenoiserTrainingEvent,
    DenoiserTrainingReport,
    DenoiserTrainingSettings,
    train_denoiser,
)

__all__ = ["train"]

_TRAIN = DenoiserTrainingSettings()
_TRAIN_HELP = {n: f.description or "" for n, f in DenoiserTrainingSettings.model_fields.items()}
Device = Annotated[str, typer.Option("--device", help='Where to compute: "cpu", "cuda", "cuda:N".')]


def train(
    folder: Annotated[
        Path,
        typer.Argument(
            help="Processing or project folder (motion/, average/odd|even/, ctf/).",
            metavar="FOLDER_OR_PROJECT",
        ),
    ],
    name: Annotated[
        str,
        typer.Option(
            "--name",
            help="Name of the new model (letters, digits, _ . -); recorded with every image "
            "it denoises.",
        ),
    ],
    out: Annotated[Path, typer.Option("--out", help="Folder of the model file (created).")],
    max_examples: Annotated[
        int, typer.Option("--max-examples", help="Items used at most (newest first).")
    ] = DEFAULT_MAX_EXAMPLES,
    min_examples: Annotated[
        int, typer.Option("--min-examples", help="Fewer usable items is an error.")
    ] = DEFAULT_MIN_EXAMPLES,
    pixel_size: Annotated[
        float,
        typer.Option(
            "--pixel-size",
            help="Working pixel size of the model in Å (the display's by default; the data's "
            "own for full-size denoised images).",
        ),
    ] = DEFAULT_DENOISER_PIXEL_SIZE_A,
    steps: Annotated[int, typer.Option("--steps", help=_TRAIN_HELP["steps"])] = _TRAIN.steps,
    batch_size: Annotated[
        int, typer.Option("--batch-size", help=_TRAIN_HELP["batch_size"])
    ] = _TRAIN.batch_size,
    crop: Annotated[int, typer.Option("--crop", help=_TRAIN_HELP["crop_px"])] = _TRAIN.crop_px,
    seed: Annotated[int, typer.Option("--seed", help=_TRAIN_HELP["seed"])] = _TRAIN.seed,
    from_model: Annotated[
        str | None,
        typer.Option(
            "--from-model",
            help="Start from this model (name or .n2n.pt file, same pixel size) instead of a "
            "fresh network.",
        ),
    ] = None,
    ctf_dir: Annotated[
        Path | None,
        typer.Option("--ctf-dir", help="Folder of <name>_ctf.json (default: FOLDER/ctf)."),
    ] = None,
    device: Device = "cpu",
) -> None:
    """Train a Noise2Noise denoiser on the odd/even averages of processed items; writes \
OUT/NAME.n2n.pt.

    Each item's halves are Fourier-cropped to --pixel-size and deconvolved with its CTF; the \
network learns to predict one half from the other. Needs items motion-corrected with odd/even \
averages and CTF-estimated.

    Example: cryowarp denoise train project --name my_data_v1 --out models --steps 600
    """
    try:
        check_model_name(name, suffix=DENOISER_MODEL_SUFFIX)
    except ValueError as error:
        raise typer.BadParameter(str(error), param_hint="--name") from error
    try:
        settings = DenoiserTrainingSettings(
            steps=steps, batch_size=batch_size, crop_px=crop, seed=seed
        )
    except ValidationError as error:
        raise typer.BadParameter(str(error)) from error
    dev = parse_device(device)
    network, parent = _initial_network(from_model, pixel_size, seed)

    def skipped(item: SkippedItem) -> None:
        typer.echo(f"skipped {item.name}: {item.reason}", err=True)

    try:
        pairs = collect_training_pairs(
            folder,
            max_examples=max_examples,
            pixel_size_a=pixel_size,
            deconvolution=DENOISER_INPUT_DECONVOLUTION,
            min_examples=min_examples,
            ctf_dir=ctf_dir,
            on_skipped=skipped,
        )
        typer.echo(f"training on {len(pairs)} odd/even pairs at {pixel_size:g} Å/px")
        report = _train_with_progress(network, pairs, settings, dev)
    except (CryowarpError, ValueError) as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(1) from error
    model = DenoiserModel(
        network=network.cpu(),
        name=name,
        pixel_size_a=pixel_size,
        metadata={
            "command": "cryowarp denoise train",
            "data": str(Path(folder).resolve()),
            "items": [pair.name for pair in pairs],
            "parent": parent,
            "deconvolution": DENOISER_INPUT_DECONVOLUTION.model_dump(),
            "training": report.to_dict(),
        },
    )
    out.mkdir(parents=True, exist_ok=True)
    path = save_denoiser_model(model, out / name)
    typer.echo(
        f"validation loss {report.initial_validation_loss:.4f} (untrained) → "
        f"{report.best_validation_loss:.4f} (step {report.best_step}); using the input as the "
        f"prediction: {report.input_validation_loss:.4f}"
    )
    typer.echo(f"wrote {path} in {report.seconds:.0f} s")


def _initial_network(
    from_model: str | None, pixel_size_a: float, seed: int
) -> tuple[DenoiserUNet, str | None]:
    if from_model is None:
        torch.manual_seed(seed)
        return DenoiserUNet(), None
    try:
        model = load_denoiser_model(resolve_denoiser_model(from_model))
    except CryowarpError as error:
        raise typer.BadParameter(str(error), param_hint="--from-model") from error
    if abs(model.pixel_size_a - pixel_size_a) > 0.01 * pixel_size_a:
        raise typer.BadParameter(
            f"model {model.name!r} works at {model.pixel_size_a:g} Å/px, not {pixel_size_a:g}",
            param_hint="--from-model",
        )
    return model.network, model.name


def _train_with_progress(
    network: DenoiserUNet,
    pairs: list[TrainingPair],
    settings: DenoiserTrainingSettings,
    device: torch.device,
) -> DenoiserTrainingReport:
    progress = Progress(
        TextColumn("training"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("loss {task.fields[loss]}  validation {task.fields[validation]}"),
        TimeElapsedColumn(),
        console=Console(stderr=True),
    )
    with progress:
        task = progress.add_task("training", total=settings.steps, loss="–", validation="–")

        shown = {"loss": "–", "validation": "–"}

        def on_event(event: DenoiserTrainingEvent) -> None:
            if event.loss is not None:
                shown["loss"] = f"{event.loss:.4f}"
            if event.validation_loss is not None:
                shown["validation"] = f"{event.validation_loss:.4f}"
            progress.update(
                task, completed=event.step, loss=shown["loss"], validation=shown["validation"]
            )

        return train_denoiser(
            network,
            [(pair.odd, pair.even) for pair in pairs],
            settings=settings,
            device=device,
            progress=on_event,
        )
