"""``cryowarp boxnet``: train the generic BoxNet, retrain it on your picks, list models.

``train-generic`` simulates (or reuses) the generic training set and trains a fresh BoxNet;
``retrain`` fine-tunes a model on a few micrographs you picked completely, diluted 1:1 with
generic data, and saves it under a new name; ``list`` shows the shipped and your models.
docs/picking_training.md explains the workflow and the four accuracies. Defaults and help
texts come from :class:`~cryowarp.preprocess.picking.training.TrainingSettings` and
:class:`~cryowarp.preprocess.picking.retraining.RetrainingSettings`.

Example::

    cryowarp boxnet train-generic --out models --micrographs 200 --steps 1200
    cryowarp boxnet retrain --base boxnet_generic_v1 --micrographs 'avg/*.mrc' \\
        --coordinates 'picks/*.star' --diameter 150 --name my_protein_v1 --out models/boxnet
    cryowarp boxnet list --search models/boxnet
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import torch
import typer
from pydantic import ValidationError
from rich.console import Console
from rich.table import Table

from cryowarp.cli._boxnet_common import (
    command_line,
    fail,
    generic_examples,
    generic_settings_default,
    generic_settings_help,
    progress_bar,
    set_threads,
)
from cryowarp.cli._boxnet_retrain import retrain
from cryowarp.cli._common import parse_device
from cryowarp.errors import CryowarpError
from cryowarp.io.files import write_text_atomically
from cryowarp.preprocess.picking.labels import LabelledMicrograph
from cryowarp.preprocess.picking.model_file import (
    DEFAULT_BOXNET_MODEL,
    MODEL_SUFFIX,
    BoxNetModel,
    load_boxnet_model,
    packaged_models_folder,
    save_boxnet_model,
)
from cryowarp.preprocess.picking.network import BoxNet
from cryowarp.preprocess.picking.training import (
    TrainingEvent,
    TrainingReport,
    TrainingSettings,
    split_validation,
    train_boxnet,
)

__all__ = ["boxnet_app", "list_models", "retrain", "train_generic"]

boxnet_app = typer.Typer(
    name="boxnet",
    help="Train the generic BoxNet picker, retrain it on your picks, list models.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

_T = TrainingSettings()
_T_HELP = {name: f.description or "" for name, f in TrainingSettings.model_fields.items()}

Out = Annotated[Path, typer.Option("--out", help="Output folder of the model (created).")]
Device = Annotated[str, typer.Option("--device", help='Where to compute: "cpu", "cuda", "cuda:N".')]
Seed = Annotated[int, typer.Option("--seed", help=_T_HELP["seed"])]
Threads = Annotated[
    int,
    typer.Option(
        "--threads",
        help="CPU threads torch uses (0: its default, one per core); 1 is fastest on a "
        "machine other jobs share.",
    ),
]


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


@boxnet_app.command("train-generic")
def train_generic(
    out: Out,
    name: Annotated[str, typer.Option("--name", help="Model name.")] = DEFAULT_BOXNET_MODEL,
    seed: Seed = _T.seed,
    micrographs: Annotated[
        int, typer.Option("--micrographs", help=generic_settings_help("n_micrographs"))
    ] = generic_settings_default("n_micrographs"),
    steps: Annotated[int, typer.Option("--steps", help=_T_HELP["steps"])] = _T.steps,
    batch_size: Annotated[
        int, typer.Option("--batch-size", help=_T_HELP["batch_size"])
    ] = _T.batch_size,
    eval_every: Annotated[
        int, typer.Option("--eval-every", help=_T_HELP["eval_every_steps"])
    ] = _T.eval_every_steps,
    species: Annotated[
        list[str] | None,
        typer.Option(
            "--species",
            help="A real species (PDB/mmCIF model or MRC map) to add to the procedural ones, "
            "as PATH or PATH:PIXEL_SIZE (Å, overrides a map's header); repeat the option.",
        ),
    ] = None,
    data_dir: Annotated[
        Path | None,
        typer.Option(
            "--data-dir",
            help="Folder of the simulated dataset (reused when it holds the same settings); "
            "default: OUT/generic_data.",
        ),
    ] = None,
    device: Device = "cpu",
    threads: Threads = 0,
) -> None:
    """Simulate the generic training set and train a fresh BoxNet on it.

    Writes OUT/NAME.boxnet.pt (metadata: this command, seed, settings, dataset hash, final
    validation accuracies) and OUT/NAME.training.json (losses, validations, timings).

    Example: cryowarp boxnet train-generic --out models --micrographs 200 --steps 1200 \
--species ../shared/data/models/apoferritin_human_6z6u/6z6u.pdb
    """
    species = species or []
    data_dir = data_dir or out / "generic_data"
    command = command_line("train-generic", dict(locals()))
    console = Console()
    dev = parse_device(device)
    set_threads(threads)
    try:
        settings = TrainingSettings(
            steps=steps, batch_size=batch_size, seed=seed, eval_every_steps=eval_every
        )
    except ValidationError as error:
        raise typer.BadParameter(str(error)) from error
    started, cpu_started = time.perf_counter(), time.process_time()
    try:
        with progress_bar(console) as bar:
            task = bar.add_task("simulating micrographs", total=micrographs)
            examples, dataset_digest, seconds_data, dataset_settings = generic_examples(
                micrographs,
                seed=seed,
                out_dir=data_dir,
                species=species,
                progress=lambda done, total: bar.update(task, completed=done, total=total),
            )
    except (CryowarpError, ValueError) as error:
        raise fail(console, error) from error
    cpu_data = time.process_time() - cpu_started
    train, validation = split_validation(examples, settings.validation_fraction, seed=seed)
    console.print(
        f"dataset: {len(examples)} micrographs ({len(train)} training, {len(validation)} "
        f"validation) in {data_dir}, {seconds_data:.0f} s"
    )
    torch.manual_seed(seed)
    network = BoxNet()
    cpu_training = time.process_time()
    report = _train_with_bar(console, network, train, validation, settings, dev)
    cpu_training = time.process_time() - cpu_training
    final = report.final
    accuracies = final.to_dict() if final is not None else {}
    model = BoxNetModel(
        network=network.cpu(),
        name=name,
        metadata={
            "kind": "generic",
            "command": command,
            "seed": seed,
            "training_settings": settings.model_dump(mode="json"),
            "dataset_settings": dataset_settings,
            "dataset_hash": dataset_digest,
            "n_micrographs": len(examples),
            "species": species,
            "final_validation": accuracies,
            "created": _now(),
        },
    )
    try:
        path = save_boxnet_model(model, out / name)
    except (OSError, ValueError) as error:
        raise fail(console, error) from error
    write_text_atomically(
        out / f"{name}.training.json",
        json.dumps({"command": command, **report.to_dict()}, indent=1) + "\n",
    )
    total, cpu_total = time.perf_counter() - started, time.process_time() - cpu_started
    timing = Table(title=f"where the time went ({torch.get_num_threads()} torch threads)")
    for column in ("stage", "wall s", "CPU s", "per unit (wall)"):
        timing.add_column(column)
    per_step = (report.seconds_batches + report.seconds_steps) / steps
    rows = [
        ("simulate dataset", seconds_data, cpu_data,
         f"{seconds_data / max(1, micrographs):.2f} s/micrograph"),
        ("draw + augment crops", report.seconds_batches, None,
         f"{report.seconds_batches / steps:.3f} s/step"),
        ("forward/backward/update", report.seconds_steps, None,
         f"{report.seconds_steps / steps:.3f} s/step"),
        ("validation", report.seconds_evaluating, None,
         f"{len(report.evaluations)} × {len(validation)} micrographs"),
        ("training (all)", report.seconds_batches + report.seconds_steps
         + report.seconds_evaluating, cpu_training, f"{per_step:.3f} s/step"),
        ("total", total, cpu_total, ""),
    ]  # fmt: skip
    for stage, wall, cpu, unit in rows:
        timing.add_row(stage, f"{wall:.0f}", "" if cpu is None else f"{cpu:.0f}", unit)
    console.print(timing)
    if final is not None:
        console.print(
            f"validation: accuracy (foreground F1) {final.accuracy:.3f}, particle F1 "
            f"{final.f1[1]:.3f}, artefact F1 {final.f1[2]:.3f}, loss {final.loss:.3f}"
        )
    console.print(f"model {name} → {path}")


def _train_with_bar(
    console: Console,
    network: BoxNet,
    train: list[LabelledMicrograph],
    validation: list[LabelledMicrograph],
    settings: TrainingSettings,
    device: torch.device,
) -> TrainingReport:
    with progress_bar(console) as bar:
        task = bar.add_task("training", total=settings.steps)
        state = {"loss": float("nan"), "accuracy": float("nan")}

        def progress(event: TrainingEvent) -> None:
            if event.kind == "step" and event.loss is not None:
                mean = state["loss"]
                state["loss"] = event.loss if mean != mean else 0.95 * mean + 0.05 * event.loss
            if event.kind == "evaluation" and event.evaluation is not None:
                state["accuracy"] = event.evaluation.accuracy
            bar.update(
                task,
                completed=event.step,
                description=f"training: loss {state['loss']:.3f}, "
                f"validation accuracy {state['accuracy']:.3f}",
            )

        return train_boxnet(
            network, train, validation, settings=settings, device=device, progress=progress
        )


boxnet_app.command("retrain")(retrain)


@boxnet_app.command("list")
def list_models(
    search: Annotated[
        list[Path] | None,
        typer.Option("--search", help="Folders of your models (e.g. a project's models/boxnet)."),
    ] = None,
) -> None:
    """List the shipped models and those in the --search folders.

    Example: cryowarp boxnet list --search models/boxnet
    """
    console = Console()
    table = Table(title="BoxNet models")
    for column in ("name", "pixel (Å)", "parent", "created", "file"):
        table.add_column(column)
    folders = [packaged_models_folder(), *(search or [])]
    n = 0
    for folder in folders:
        for path in sorted(Path(folder).glob(f"*{MODEL_SUFFIX}")):
            n += 1
            try:
                model = load_boxnet_model(path)
            except CryowarpError as error:
                table.add_row(path.name, "", "", "", f"[red]unreadable: {error}[/]")
                continue
            table.add_row(
                model.name,
                f"{model.pixel_size_a:g}",
                str(model.metadata.get("parent", "—")),
                str(model.metadata.get("created", "—")),
                "shipped" if folder == packaged_models_folder() else str(path),
            )
    console.print(table)
    if n == 0:
        console.print("no model found in " + ", ".join(str(f) for f in folders))
