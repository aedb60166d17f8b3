"""``cryowarp pick``: pick particles and mask artefacts on micrographs with BoxNet.

``micrographs`` runs the network on each micrograph and writes, into ``--out``, per item the
RELION coordinate file ``<name>_picks.star``, the probabilities (``<name>_picking.mrc``,
8 Å/px), the artefact mask (``<name>_mask.mrc``), the settings and model
(``<name>_picking.json``) and an overlay (``<name>_picks.png``);
:mod:`cryowarp.preprocess.picking.outputs` describes them. ``rethreshold`` re-makes the picks
of every micrograph in such a folder from the saved probabilities, without the network, and
rewrites its files. (Two commands of one ``pick`` group, as ``cryowarp ctf estimate`` /
``spectrum``: picking and re-thresholding take different inputs.) Items that fail are
reported with their reason and the command exits with code 1. Defaults and help texts come
from :class:`~cryowarp.preprocess.picking.settings.PickingSettings`.

A header pixel size of 0 or exactly 1.0 Å is taken as "not recorded" (1.0 is what many
programs write when they know none): pass ``--pixel-size``.

Example::

    cryowarp pick micrographs 'average/*.mrc' --diameter 140 --out picks
    cryowarp pick rethreshold picks --threshold 0.7
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import torch
import typer
from pydantic import ValidationError
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from cryowarp.cli._common import expand_patterns, parse_device
from cryowarp.errors import CryowarpError, CryowarpInputError, InvalidValuesError
from cryowarp.io.movie import open_movie
from cryowarp.preprocess.picking.inference import PickResult, pick_micrograph
from cryowarp.preprocess.picking.model_file import (
    BoxNetModel,
    load_boxnet_model,
    resolve_boxnet_model,
)
from cryowarp.preprocess.picking.outputs import read_pick_result, write_picks
from cryowarp.preprocess.picking.settings import PickingSettings

__all__ = ["micrographs", "pick_app", "rethreshold"]

pick_app = typer.Typer(
    name="pick",
    help="Pick particles and mask artefacts with BoxNet; re-threshold saved picks.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

_S = PickingSettings()
_HELP = {name: f.description or "" for name, f in PickingSettings.model_fields.items()}
_UNSET_PIXEL_SIZES_A = (0.0, 1.0)
_METADATA = re.compile(r"^(?P<name>.+)_picking\.json$")

# -- options (defaults and help from PickingSettings) -------------------------------------
Out = Annotated[Path, typer.Option("--out", help="Output folder (created).")]
Diameter = Annotated[float, typer.Option("--diameter", help=_HELP["diameter_a"])]
Model = Annotated[str, typer.Option("--model", help=_HELP["model"])]
Threshold = Annotated[float, typer.Option("--threshold", help=_HELP["threshold"])]
MinDistance = Annotated[
    float, typer.Option("--min-distance-to-mask", help=_HELP["min_distance_to_mask_a"])
]
ArtefactThreshold = Annotated[
    float, typer.Option("--artefact-threshold", help=_HELP["artefact_threshold"])
]
PixelSize = Annotated[
    float | None,
    typer.Option(
        "--pixel-size",
        help="Pixel size of the micrographs in Å (default: the file header's; required when "
        "the header records 0 or 1.0).",
    ),
]
Png = Annotated[bool, typer.Option("--png/--no-png", help="Write an overlay PNG per item.")]
Device = Annotated[str, typer.Option("--device", help='Where to compute: "cpu", "cuda", "cuda:N".')]


@dataclass
class _Item:
    """One micrograph: its name in the outputs, its source, and its result or failure."""

    name: str
    source: str
    result: PickResult | None = None
    failure: str | None = None


def _reason(source: str, error: Exception) -> str:
    """The error's message, naming the item's file when the error itself names none."""
    if isinstance(error, CryowarpInputError) and error.path is None:
        text = f"{source}: {error.problem}"
        return f"{text} ({error.hint})" if error.hint else text
    return str(error)


def _read_micrograph(path: Path, *, pixel_size_a: float | None) -> tuple[torch.Tensor, float]:
    """The ``(h, w)`` micrograph and its pixel size in Å (see the module docstring)."""
    with open_movie(path) as movie:
        if movie.n_frames != 1:
            raise InvalidValuesError(
                path,
                f"holds {movie.n_frames} frames, not one micrograph",
                "pick on motion-corrected averages",
            )
        header_pixel = movie.pixel_size_a
        image = torch.from_numpy(movie.read_frames(0, 1)[0])
    if pixel_size_a is not None:
        return image, pixel_size_a
    if header_pixel is None or header_pixel in _UNSET_PIXEL_SIZES_A:
        raise InvalidValuesError(
            path,
            f"the header's pixel size ({header_pixel or 0:g} Å) means none was recorded",
            "pass --pixel-size (Å)",
        )
    return image, header_pixel


def _load_model(name_or_path: str, device: torch.device) -> BoxNetModel:
    try:
        model = load_boxnet_model(resolve_boxnet_model(name_or_path))
    except CryowarpError as error:
        raise typer.BadParameter(str(error), param_hint="--model") from error
    model.network.to(device)
    return model


def _settings(**values: object) -> PickingSettings:
    try:
        return PickingSettings.model_validate(values)
    except ValidationError as error:
        raise typer.BadParameter(str(error)) from error


def _progress(console: Console) -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
    )


def _report(items: list[_Item], *, out: Path, title: str) -> None:
    """Print the table and the failures; exit 1 if any item failed."""
    table = Table(title=title)
    for column in ("micrograph", "status", "picks", "masked %", "mean score"):
        table.add_column(column)
    for item in items:
        r = item.result
        if r is None:
            table.add_row(item.name, "failed", "", "", "")
            continue
        mean = f"{float(r.scores.float().mean()):.3f}" if r.n_picks else ""
        table.add_row(item.name, "ok", str(r.n_picks), f"{100 * r.picks.masked_fraction:.1f}", mean)
    Console().print(table)
    failed = [i for i in items if i.result is None]
    for item in failed:
        typer.echo(f"FAILED: {item.failure}", err=True)
    picked = sum(i.result.n_picks for i in items if i.result is not None)
    done = len(items) - len(failed)
    typer.echo(f"{picked} picks on {done} of {len(items)} micrographs; wrote {out}")
    if failed:
        raise typer.Exit(1)


def micrographs(
    inputs: Annotated[
        list[str],
        typer.Argument(
            help="Micrographs (MRC, one section; raw contrast, protein dark) or glob patterns "
            "(quote them).",
            metavar="MICROGRAPH...",
        ),
    ],
    diameter: Diameter,
    out: Out,
    model: Model = _S.model,
    threshold: Threshold = _S.threshold,
    min_distance_to_mask: MinDistance = _S.min_distance_to_mask_a,
    artefact_threshold: ArtefactThreshold = _S.artefact_threshold,
    pixel_size: PixelSize = None,
    png: Png = True,
    device: Device = "cpu",
) -> None:
    """Pick particles and mask artefacts; exit code 1 if any micrograph failed.

    Example: cryowarp pick micrographs 'average/*.mrc' --diameter 140 --out picks
    """
    settings = _settings(
        model=model,
        diameter_a=diameter,
        threshold=threshold,
        min_distance_to_mask_a=min_distance_to_mask,
        artefact_threshold=artefact_threshold,
    )
    if pixel_size is not None and not pixel_size > 0:
        raise typer.BadParameter("must be positive (Å)", param_hint="--pixel-size")
    dev = parse_device(device)
    network_model = _load_model(settings.model, dev)
    files = expand_patterns(inputs, what="micrograph")
    out.mkdir(parents=True, exist_ok=True)
    items: list[_Item] = []
    progress = _progress(Console(stderr=True))
    with progress:
        task = progress.add_task("picking", total=len(files))
        for path in files:
            item = _Item(path.stem, str(path))
            progress.update(task, description=f"picking: {item.name}")
            try:
                image, pixel = _read_micrograph(path, pixel_size_a=pixel_size)
                item.result = pick_micrograph(
                    image, pixel_size_a=pixel, model=network_model, settings=settings, device=dev
                )
                write_picks(item.result, micrograph_name=item.name, out_dir=out, png=png)
            except (CryowarpError, ValueError, OSError) as error:
                item.result, item.failure = None, _reason(item.source, error)
            items.append(item)
            progress.advance(task)
    _report(items, out=out, title=f"BoxNet picking ({network_model.name})")


def rethreshold(
    folder: Annotated[
        Path,
        typer.Argument(help="Output folder of `cryowarp pick micrographs`.", metavar="OUT_DIR"),
    ],
    threshold: Annotated[float, typer.Option("--threshold", help=_HELP["threshold"])],
    min_distance_to_mask: Annotated[
        float | None,
        typer.Option(
            "--min-distance-to-mask",
            help=_HELP["min_distance_to_mask_a"] + " Default: the value the picks were made with.",
        ),
    ] = None,
    png: Png = True,
) -> None:
    """Re-make the picks of every micrograph in OUT_DIR from the saved probabilities (no
    network) and rewrite their files.

    Example: cryowarp pick rethreshold picks --threshold 0.7
    """
    if not 0 <= threshold <= 1:
        raise typer.BadParameter("must be between 0 and 1", param_hint="--threshold")
    if min_distance_to_mask is not None and min_distance_to_mask < 0:
        raise typer.BadParameter("must be at least 0 (Å)", param_hint="--min-distance-to-mask")
    if not folder.is_dir():
        raise typer.BadParameter(f"{folder} is not a folder", param_hint="OUT_DIR")
    names = sorted(m.group("name") for p in folder.iterdir() if (m := _METADATA.match(p.name)))
    if not names:
        raise typer.BadParameter(f"no *_picking.json files in {folder}", param_hint="OUT_DIR")
    items: list[_Item] = []
    for name in names:
        item = _Item(name, str(folder / f"{name}_picking.json"))
        try:
            saved = read_pick_result(folder, name)
            item.result = saved.rethreshold(threshold, min_distance_to_mask_a=min_distance_to_mask)
            write_picks(item.result, micrograph_name=name, out_dir=folder, png=png)
        except (CryowarpError, ValueError, OSError) as error:
            item.result, item.failure = None, _reason(item.source, error)
        items.append(item)
    _report(items, out=folder, title=f"Re-thresholded at {threshold:g}")


pick_app.command("micrographs")(micrographs)
pick_app.command("rethreshold")(rethreshold)
