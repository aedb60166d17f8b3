"""``cryowarp boxnet retrain``: fine-tune a BoxNet on a few micrographs a user picked.

Reads the micrographs, coordinates and painted masks
(:func:`~cryowarp.preprocess.picking.user_labels.read_user_examples`), generic data (a folder
of ``.npz`` from ``train-generic``, or a few simulated on the fly), runs
:func:`~cryowarp.preprocess.picking.retraining.retrain_boxnet` with a progress bar showing the
four accuracies, and saves the new model (docs/picking_training.md).
"""

from __future__ import annotations

import json
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
    progress_bar,
    set_threads,
)
from cryowarp.cli._common import expand_patterns, parse_device
from cryowarp.errors import CryowarpError
from cryowarp.io.files import write_text_atomically
from cryowarp.io.model_files import check_model_name
from cryowarp.preprocess.picking.labels import LabelledMicrograph
from cryowarp.preprocess.picking.model_file import (
    MODEL_SUFFIX,
    BoxNetModel,
    load_boxnet_model,
    resolve_boxnet_model,
    save_boxnet_model,
)
from cryowarp.preprocess.picking.retraining import (
    RetrainingReport,
    RetrainingSettings,
    retrain_boxnet,
)
from cryowarp.preprocess.picking.training import TrainingEvent
from cryowarp.preprocess.picking.training_data import load_dataset
from cryowarp.preprocess.picking.user_labels import read_user_examples

__all__ = ["retrain"]

_R = RetrainingSettings()
_R_HELP = {name: f.description or "" for name, f in RetrainingSettings.model_fields.items()}

Device = Annotated[str, typer.Option("--device", help='Where to compute: "cpu", "cuda", "cuda:N".')]


def retrain(
    base: Annotated[
        str,
        typer.Option(
            "--base",
            help="Model to start from: a name (shipped, or in --out) or a .boxnet.pt path.",
        ),
    ],
    micrographs: Annotated[
        list[str],
        typer.Option("--micrographs", help="Micrographs (MRC) or glob patterns (quote them)."),
    ],
    coordinates: Annotated[
        list[str],
        typer.Option(
            "--coordinates",
            help="Your picks: RELION/Warp STAR, cryoSPARC .cs or EMAN .box files or globs; "
            "matched to micrographs by name. Pick EVERY particle in these micrographs.",
        ),
    ],
    diameter: Annotated[float, typer.Option("--diameter", help="Particle diameter in Å.")],
    name: Annotated[str, typer.Option("--name", help="Name of the new model.")],
    out: Annotated[Path, typer.Option("--out", help="Output folder of the model (created).")],
    pixel_size: Annotated[
        float | None,
        typer.Option("--pixel-size", help="Micrograph pixel size in Å (default: the header's)."),
    ] = None,
    painted_artefacts: Annotated[
        list[str] | None,
        typer.Option(
            "--painted-artefacts",
            help="Masks (MRC/PNG, nonzero = painted, micrograph size) of artefacts, named "
            "after their micrograph (e.g. abc_artefacts.png).",
        ),
    ] = None,
    painted_ignore: Annotated[
        list[str] | None,
        typer.Option(
            "--painted-ignore",
            help="Masks of regions you did not pick in (excluded from training), named after "
            "their micrograph (e.g. abc_ignore.png).",
        ),
    ] = None,
    epochs: Annotated[int, typer.Option("--epochs", help=_R_HELP["max_epochs"])] = _R.max_epochs,
    learning_rate: Annotated[
        float, typer.Option("--learning-rate", help=_R_HELP["learning_rate"])
    ] = _R.learning_rate,
    batch_size: Annotated[
        int, typer.Option("--batch-size", help=_R_HELP["batch_size"])
    ] = _R.batch_size,
    crop: Annotated[int, typer.Option("--crop", help=_R_HELP["crop_px"])] = _R.crop_px,
    dilution: Annotated[
        float, typer.Option("--dilution", help=_R_HELP["generic_per_user"])
    ] = _R.generic_per_user,
    generic_data: Annotated[
        Path | None,
        typer.Option(
            "--generic-data",
            help="Folder of generic training micrographs (.npz of train-generic); default: "
            "simulate --generic-micrographs of them into OUT/generic_data (reused next time).",
        ),
    ] = None,
    generic_micrographs: Annotated[
        int, typer.Option("--generic-micrographs", help="Generic micrographs to simulate.")
    ] = 24,
    generic_species: Annotated[
        int,
        typer.Option(
            "--generic-species", help="Procedural species of the simulated generic micrographs."
        ),
    ] = 12,
    seed: Annotated[int, typer.Option("--seed", help=_R_HELP["seed"])] = _R.seed,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Replace an existing model of that name in OUT.")
    ] = False,
    device: Device = "cpu",
    threads: Annotated[
        int, typer.Option("--threads", help="CPU threads torch uses (0: its default).")
    ] = 0,
) -> None:
    """Fine-tune a model on a few micrographs you picked completely; save it as NAME.

    Shows the four accuracies (old/new model on old/new data) after every epoch and writes
    OUT/NAME.boxnet.pt and OUT/NAME.retraining.json.

    Example: cryowarp boxnet retrain --base boxnet_generic_v1 --micrographs 'avg/*.mrc' \
--coordinates 'picks/*_autopick.star' --diameter 150 --name my_protein_v1 --out models/boxnet
    """
    command = command_line("retrain", dict(locals()))
    console = Console()
    dev = parse_device(device)
    set_threads(threads)
    target = out / f"{name}{MODEL_SUFFIX}"
    if target.exists() and not overwrite:
        raise typer.BadParameter(f"{target} exists; choose another --name or --overwrite")
    try:
        settings = RetrainingSettings(
            max_epochs=epochs,
            learning_rate=learning_rate,
            batch_size=batch_size,
            crop_px=crop,
            generic_per_user=dilution,
            seed=seed,
        )
        check_model_name(name)
    except (ValidationError, ValueError) as error:
        raise typer.BadParameter(str(error)) from error
    micrograph_files = expand_patterns(micrographs, what="micrograph")
    coordinate_files = expand_patterns(coordinates, what="coordinate file")
    try:
        base_model = load_boxnet_model(resolve_boxnet_model(base, search=(out,)))
        user = read_user_examples(
            micrograph_files,
            coordinate_files,
            diameter_a=diameter,
            pixel_size_a=pixel_size,
            painted_artefacts=expand_patterns(painted_artefacts) if painted_artefacts else (),
            painted_ignore=expand_patterns(painted_ignore) if painted_ignore else (),
        )
    except (CryowarpError, ValueError) as error:
        raise fail(console, error) from error
    for skipped in user.skipped:
        console.print(f"[yellow]no picks for {skipped}: not used[/]")
    console.print(
        f"{len(user.examples)} micrographs, {user.n_particles} particles; base model "
        f"{base_model.name}"
    )
    try:
        if generic_data is not None:
            generic = load_dataset(generic_data)
        else:
            with progress_bar(console) as bar:
                task = bar.add_task("simulating generic data", total=generic_micrographs)
                generic = generic_examples(
                    generic_micrographs,
                    seed=seed + 1_000_003,  # never the generic model's own training set
                    out_dir=out / "generic_data",
                    species=[],
                    n_species=generic_species,
                    progress=lambda done, total: bar.update(task, completed=done, total=total),
                )[0]
    except (CryowarpError, ValueError) as error:
        raise fail(console, error) from error
    model, report = _retrain_with_bar(
        console, base_model, user.examples, generic, name, settings, dev
    )
    model.metadata.update(
        command=command,
        diameter_a=diameter,
        micrographs=[str(e.source) for e in user.examples],
        coordinates=[str(p) for p in coordinate_files],
        generic_data=str(generic_data) if generic_data else f"simulated ({len(generic)})",
    )  # fmt: skip
    try:
        path = save_boxnet_model(model, target)
    except (OSError, ValueError) as error:
        raise fail(console, error) from error
    write_text_atomically(
        out / f"{name}.retraining.json", json.dumps(report.to_dict(), indent=1) + "\n"
    )
    table = Table(title=f"accuracies (foreground pixel F1) of {name}")
    for column in ("epoch", "loss", "old model, old data", "old model, new data",
                   "new model, old data", "new model, new data"):  # fmt: skip
        table.add_column(column)
    for i, epoch in enumerate(report.epochs):
        a = report.accuracies(i)
        table.add_row(
            str(epoch.epoch), f"{epoch.loss:.3f}",
            *(f"{a[k]:.3f}" for k in ("old_on_old", "old_on_new", "new_on_old", "new_on_new")),
        )  # fmt: skip
    console.print(table)
    console.print(
        f"training {report.seconds_training:.0f} s, evaluation {report.seconds_evaluating:.0f} s"
    )
    console.print(f"model {name} → {path}")


def _retrain_with_bar(
    console: Console,
    base: BoxNetModel,
    user: list[LabelledMicrograph],
    generic: list[LabelledMicrograph],
    name: str,
    settings: RetrainingSettings,
    device: torch.device,
) -> tuple[BoxNetModel, RetrainingReport]:
    with progress_bar(console) as bar:
        task = bar.add_task("retraining", total=None)
        text = {"accuracies": ""}

        def progress(event: TrainingEvent) -> None:
            if event.kind == "epoch" and event.accuracies is not None:
                a = event.accuracies
                text["accuracies"] = (
                    f" | epoch {event.epoch}/{event.total_epochs}: old→old "
                    f"{a['old_on_old']:.2f} old→new {a['old_on_new']:.2f} new→old "
                    f"{a['new_on_old']:.2f} new→new {a['new_on_new']:.2f}"
                )
            loss = f"loss {event.loss:.3f}" if event.loss is not None else ""
            bar.update(
                task,
                completed=event.step,
                total=event.total_steps,
                description=f"retraining {loss}{text['accuracies']}",
            )

        return retrain_boxnet(
            base, user, generic, name=name, settings=settings, device=device, progress=progress
        )
