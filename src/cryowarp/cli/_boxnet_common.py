"""Helpers of ``cryowarp boxnet``: the progress bar, errors, and generic training data."""

from __future__ import annotations

import shlex
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from cryowarp.pipeline.picking_training_data import build_generic_dataset
from cryowarp.preprocess.picking.labels import LabelledMicrograph, load_labelled
from cryowarp.preprocess.picking.training_data import GenericTrainingSettings, dataset_hash

__all__ = [
    "command_line",
    "fail",
    "generic_examples",
    "generic_settings_default",
    "generic_settings_help",
    "progress_bar",
    "set_threads",
]


def progress_bar(console: Console) -> Progress:
    """The bar every ``boxnet`` command draws."""
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
    )


def command_line(command: str, options: dict[str, Any]) -> str:
    """``cryowarp boxnet COMMAND --option value …`` for every option given (``None`` left
    out, lists repeated, ``True`` as a bare flag): the command that reproduces a run."""
    words = ["cryowarp", "boxnet", command]
    for key, value in options.items():
        flag = "--" + key.replace("_", "-")
        values = value if isinstance(value, list | tuple) else [value]
        for item in values:
            if item is None or item is False:
                continue
            words.extend([flag] if item is True else [flag, str(item)])
    return shlex.join(words)


def fail(console: Console, error: Exception) -> typer.Exit:
    """Print ``error`` and return the exit (code 1) to raise."""
    console.print(f"[red]error:[/] {error}", soft_wrap=True)
    return typer.Exit(1)


def set_threads(threads: int) -> None:
    """``--threads``: the number of CPU threads torch computes with (0: leave its default)."""
    if threads < 0:
        raise typer.BadParameter(f"--threads must be ≥ 0, got {threads}")
    if threads:
        torch.set_num_threads(threads)


def generic_settings_help(field: str) -> str:
    """Help text of a :class:`GenericTrainingSettings` field."""
    return GenericTrainingSettings.model_fields[field].description or ""


def generic_settings_default(field: str) -> Any:
    """Default of a :class:`GenericTrainingSettings` field."""
    return GenericTrainingSettings.model_fields[field].default


def generic_examples(
    n_micrographs: int,
    *,
    seed: int,
    out_dir: Path,
    species: Sequence[str],
    progress: Callable[[int, int], None] | None = None,
    n_species: int | None = None,
) -> tuple[list[LabelledMicrograph], str, float, dict[str, Any]]:
    """Simulate (or reuse) ``n_micrographs`` generic training micrographs in ``out_dir``
    (``n_species`` procedural species; default: the settings' default).

    Returns the examples, the dataset hash, the seconds it took and the dataset settings.
    """
    fields: dict[str, int] = {"n_micrographs": n_micrographs}
    if n_species is not None:
        fields["n_procedural_species"] = n_species
    settings = GenericTrainingSettings.model_validate(fields)
    start = time.perf_counter()
    files = build_generic_dataset(
        settings,
        seed=seed,
        out_dir=out_dir,
        extra_species_paths=tuple(species),
        progress=progress,
    )
    examples = [load_labelled(f) for f in files]
    digest = dataset_hash(settings, seed=seed, extra_species=[str(p) for p in species])
    return examples, digest, time.perf_counter() - start, settings.model_dump(mode="json")
