"""``cryowarp demo``: the main job on an embedded default (``make demo``).

Simulates movies with exact ground truth, creates a project on them, runs motion correction,
CTF estimation, BoxNet picking (scored against the true centres) and the display views, exports
micrographs and particles (the true particle centres and orientations are the picks: no
orientation search exists yet), reconstructs them and prints how close every step came to the truth
and where the results are (:mod:`cryowarp.pipeline.demo`). Defaults and help texts come from
:class:`~cryowarp.pipeline.demo.DemoSettings`.

Example::

    cryowarp demo --out demo_out --movies 4 --seed 3 --workers 2
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated

import typer
from pydantic import ValidationError

from cryowarp.errors import CryowarpError
from cryowarp.pipeline.demo import DemoResult, DemoSettings, run_demo

__all__ = ["demo", "format_summary"]

_DEFAULTS = DemoSettings()
_HELP = {name: field.description or "" for name, field in DemoSettings.model_fields.items()}


def demo(
    out: Annotated[
        Path,
        typer.Option("--out", help="Output folder (new, empty, or that of an earlier demo run)."),
    ] = Path("cryowarp_demo"),
    movies: Annotated[int, typer.Option("--movies", help=_HELP["n_movies"])] = _DEFAULTS.n_movies,
    seed: Annotated[int, typer.Option("--seed", help=_HELP["seed"])] = _DEFAULTS.seed,
    workers: Annotated[
        int, typer.Option("--workers", help=_HELP["n_workers"])
    ] = _DEFAULTS.n_workers,
) -> None:
    """Simulate movies, process them as a project (motion, CTF), export to RELION 5,
    reconstruct, and compare every step with the ground truth.

    Example: cryowarp demo --out demo_out --movies 4 --workers 2
    """
    try:
        settings = DemoSettings(n_movies=movies, seed=seed, n_workers=workers)
    except ValidationError as error:
        raise typer.BadParameter(str(error)) from error
    try:
        result = run_demo(out, settings, log=lambda line: typer.echo(f"[demo] {line}"))
    except CryowarpError as error:
        typer.echo(f"[demo] {error}", err=True)
        raise typer.Exit(1) from error
    typer.echo(format_summary(result))


def _picking_rows(result: DemoResult) -> list[tuple[str, str]]:
    if not result.picking:
        return [("BoxNet picks vs truth", "no item picked")]
    p = result.picking
    return [
        (
            "BoxNet picks vs truth",
            f"{p['n_picked']:.0f} picks, {p['n_true']:.0f} true: precision {p['precision']:.2f}, "
            f"recall {p['recall']:.2f}, F1 {p['f1']:.2f}",
        )
    ]


def format_summary(result: DemoResult) -> str:
    """The demo's summary table, where each output is, and the commands to go on with."""
    out = result.out_dir
    rows = [
        ("items done", f"{result.n_done} of {result.n_items}"),
        ("mean CTF defocus error vs truth", f"{result.mean_defocus_error_um:.3f} µm"),
        *_picking_rows(result),
        ("particles exported", f"{result.n_particles} (picks: the simulation's true centres)"),
        ("FSC 0.143 of the half-maps", f"{result.resolution_half_maps_a:.1f} Å"),
        ("FSC 0.143 of the map vs the truth", _angstrom(result.resolution_truth_0143_a)),
        ("FSC 0.5 of the map vs the truth", _angstrom(result.resolution_truth_05_a)),
        ("Nyquist", f"{result.nyquist_a:.1f} Å"),
    ]
    rows += [(f"not done: {name}", state) for name, state in result.not_done.items()]
    paths = result.paths
    labels = {
        "data": "simulated movies + ground truth",
        "project": "project",
        "micrographs_star": "micrographs STAR",
        "corrected_micrographs_star": "corrected micrographs STAR",
        "particles_star": "particles STAR",
        "map": "map (half1/half2.mrc beside it)",
        "fsc_star": "FSC",
        "truth_map": "truth map",
    }
    places = [(label, paths[key]) for key, label in labels.items() if key in paths]
    width = max(len(label) for label, _ in rows + places)
    lines = ["", "demo summary", "-" * (width + 30)]
    lines += [f"{label:<{width}}  {value}" for label, value in rows]
    lines += ["", "outputs"]
    lines += [f"{label:<{width}}  {path}" for label, path in places]
    project = paths["project"]
    lines += [
        "",
        "next",
        f"  cryowarp status {project}",
        f"  cryowarp export particles {project} --out {out / 'boxnet_particles'}   "
        "# BoxNet's picks",
        f"  cryowarp reconstruct {paths['particles_star']} --out {out / 'reconstruction_again'}",
        f"  cryowarp dashboard {project}   # live plots, filters and item views in a browser",
    ]
    return "\n".join(lines)


def _angstrom(value: float | None) -> str:
    return "not reached" if value is None or not math.isfinite(value) else f"{value:.1f} Å"
