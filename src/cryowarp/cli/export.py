"""``cryowarp export``: RELION 5 / cryoSPARC-ready STAR files, particle stacks and defocus updates.

``FOLDER`` is a processing folder: the ``--out`` of ``cryowarp motion batch`` with the CTF
estimates in ``FOLDER/ctf`` (``cryowarp ctf estimate 'FOLDER/average/*.mrc' --out FOLDER/ctf``),
or a project (``cryowarp init``): then only its items whose every step is done are exported,
and extraction options and quality filters not given default to the project's ``export`` and
``filters`` settings (:mod:`cryowarp.pipeline.export`). Every command reads what motion
correction and CTF estimation recorded per micrograph (docs/relion_export.md), so its output
can be regenerated at any time.

Examples::

    cryowarp export micrographs proc --out relion
    cryowarp export particles proj --coords 'picks/*.star' --out relion   # proj: a project
    cryowarp export particles proj --out relion --pick-threshold 0.6   # the project's picks
    cryowarp export particles proc --coords 'picks/*.star' --box 256 --diameter 180 --out relion
    cryowarp export update-defocus refined.star proc --out refined_localctf.star
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, NamedTuple

import typer
from pydantic import ValidationError
from rich.console import Console

from cryowarp.cli._common import expand_patterns, parse_device
from cryowarp.errors import CryowarpError, CryowarpInputError
from cryowarp.io.relion import read_particles, write_particles
from cryowarp.pipeline.events import EventLog
from cryowarp.pipeline.export import (
    export_defaults,
    is_project,
    project_picks,
    project_sources,
    with_overrides,
)
from cryowarp.pipeline.project import open_project
from cryowarp.preprocess.export.coordinates import read_coordinates
from cryowarp.preprocess.export.defocus_update import update_particle_defocus
from cryowarp.preprocess.export.export_micrographs import export_micrographs
from cryowarp.preprocess.export.export_particles import export_particles
from cryowarp.preprocess.export.filters import ExportFilters, read_name_list
from cryowarp.preprocess.export.particle_set import ParticleSet, concatenate_particle_sets
from cryowarp.preprocess.export.settings import ExtractionSettings
from cryowarp.preprocess.export.sources import MicrographSource, scan_processing_folder

__all__ = ["export_app"]

export_app = typer.Typer(
    name="export",
    help="Write RELION 5 / cryoSPARC-ready STAR files and particle stacks.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

_EX = ExtractionSettings()


def _ex_help(name: str) -> str:
    """The field's description and where its default comes from (one source of truth)."""
    description = ExtractionSettings.model_fields[name].description or ""
    default = getattr(_EX, name)
    otherwise = "" if default is None else f", else {default}"
    return f"{description} When not given: the project's export.{name}{otherwise}."


def _f_help(name: str) -> str:
    description = ExportFilters.model_fields[name].description or ""
    return f"{description} When not given: the project's filters.{name}, else not checked."


Folder = Annotated[
    Path,
    typer.Argument(
        help="Processing folder (motion outputs, CTF estimates in ctf/) or project folder "
        "(only items whose every step is done are exported)."
    ),
]
CtfDir = Annotated[
    Path | None,
    typer.Option(
        "--ctf-dir",
        help="Folder of <name>_ctf.json (default FOLDER/ctf; not for a project).",
    ),
]
Out = Annotated[Path, typer.Option("--out", help="Export folder (created).")]
Root = Annotated[
    Path | None,
    typer.Option(
        "--root",
        help="Folder the paths in the STAR files are relative to (your RELION project; "
        "default: the folder of the STAR file).",
    ),
]
DefocusMin = Annotated[float | None, typer.Option("--defocus-min", help=_f_help("defocus_min_um"))]
DefocusMax = Annotated[float | None, typer.Option("--defocus-max", help=_f_help("defocus_max_um"))]
AstigMax = Annotated[
    float | None, typer.Option("--astigmatism-max", help=_f_help("astigmatism_max_um"))
]
CtfResMax = Annotated[
    float | None, typer.Option("--ctf-resolution-max", help=_f_help("ctf_resolution_max_a"))
]
DriftMax = Annotated[float | None, typer.Option("--drift-max", help=_f_help("total_drift_max_a"))]
EarlyMax = Annotated[
    float | None,
    typer.Option("--early-motion-max", help=_f_help("early_motion_max_a_per_frame")),
]
MaskedMax = Annotated[
    float | None, typer.Option("--masked-fraction-max", help=_f_help("masked_fraction_max"))
]
Include = Annotated[
    Path | None,
    typer.Option(
        "--include",
        help="File of item names to export (one per line). When not given: the project's "
        "filters.include, else all items.",
    ),
]
Exclude = Annotated[
    Path | None,
    typer.Option(
        "--exclude",
        help="File of item names never to export. When not given: the project's filters.exclude.",
    ),
]


class _Inputs(NamedTuple):
    """What an export starts from: the micrographs and the default settings."""

    sources: list[MicrographSource]
    extraction: ExtractionSettings
    filters: ExportFilters


def _filters(base: ExportFilters, options: dict[str, Any], **extra: Any) -> ExportFilters:
    """``base`` with the filter options that were given."""
    try:
        return with_overrides(
            base,
            {
                "defocus_min_um": options["defocus_min"],
                "defocus_max_um": options["defocus_max"],
                "astigmatism_max_um": options["astigmatism_max"],
                "ctf_resolution_max_a": options["ctf_resolution_max"],
                "total_drift_max_a": options["drift_max"],
                "early_motion_max_a_per_frame": options["early_motion_max"],
                "masked_fraction_max": options["masked_fraction_max"],
                "include": None
                if options["include"] is None
                else tuple(read_name_list(options["include"])),
                "exclude": None
                if options["exclude"] is None
                else tuple(read_name_list(options["exclude"])),
                **extra,
            },
        )
    except ValidationError as error:
        raise typer.BadParameter(str(error)) from error


def _inputs(folder: Path, ctf_dir: Path | None, console: Console) -> _Inputs:
    """The micrographs of a processing folder, or the done items of a project, and the
    defaults (the project's export and filters settings, or the models')."""
    if not is_project(folder):
        sources, problems = scan_processing_folder(folder, ctf_dir=ctf_dir)
        where = f"{folder}/motion"
        extraction, filters = ExtractionSettings(), ExportFilters()
    else:
        if ctf_dir is not None:
            raise typer.BadParameter(
                "a project keeps its CTF estimates in ctf/; leave --ctf-dir out",
                param_hint="--ctf-dir",
            )
        try:
            found = project_sources(open_project(folder))
            extraction, filters = export_defaults(folder)
        except CryowarpError as error:
            raise typer.BadParameter(str(error), param_hint="FOLDER") from error
        sources, problems = found.sources, found.problems
        where = f"the done items of project {folder} (run `cryowarp run {folder}`)"
        if found.not_done:
            names = ", ".join(sorted(found.not_done)[:5])
            console.print(
                f"[yellow]{len(found.not_done)} item(s) not done are left out[/] ({names}"
                f"{', …' if len(found.not_done) > 5 else ''}; `cryowarp status {folder}`)"
            )
    for problem in problems:
        console.print(f"[yellow]skipped[/] {problem.path}: {problem.message}")
    if not sources:
        console.print(f"[red]no micrograph found in {where}[/]")
        raise typer.Exit(1)
    return _Inputs(sources, extraction, filters)


@export_app.command("micrographs")
def micrographs(
    folder: Folder,
    out: Out,
    ctf_dir: CtfDir = None,
    root: Root = None,
    defocus_min: DefocusMin = None,
    defocus_max: DefocusMax = None,
    astigmatism_max: AstigMax = None,
    ctf_resolution_max: CtfResMax = None,
    drift_max: DriftMax = None,
    early_motion_max: EarlyMax = None,
    masked_fraction_max: MaskedMax = None,
    include: Include = None,
    exclude: Exclude = None,
) -> None:
    """Write micrographs_ctf.star and corrected_micrographs.star (with each movie's RELION
    motion STAR file for Bayesian polishing) for the micrographs that pass the filters.

    Example: ``cryowarp export micrographs proc --out relion --ctf-resolution-max 6``
    """
    console = Console()
    options = dict(locals())
    inputs = _inputs(folder, ctf_dir, console)
    sources = inputs.sources
    filters = _filters(inputs.filters, options)
    try:
        result = export_micrographs(sources, out_dir=out, filters=filters, root=root)
    except CryowarpInputError as error:
        console.print(f"[red]{error}[/]")
        raise typer.Exit(1) from error
    for decision in result.decisions:
        if not decision.accepted:
            console.print(f"excluded {decision.name}: {'; '.join(decision.reasons)}")
    console.print(
        f"{result.n_micrographs} of {len(sources)} micrographs → {result.ctf_star}, "
        f"{result.corrected_star}"
    )
    _log_export(folder, "micrographs", out, n_micrographs=result.n_micrographs)


@export_app.command("particles")
def particles(
    folder: Folder,
    out: Out,
    coords: Annotated[
        list[str] | None,
        typer.Option(
            "--coords",
            help="Particle coordinates: RELION/Warp STAR, cryoSPARC .cs or EMAN .box files "
            "(patterns allowed; repeat the option for more). On a project, leave it out to "
            "export the project's BoxNet picks.",
        ),
    ] = None,
    pick_threshold: Annotated[
        float | None,
        typer.Option(
            "--pick-threshold",
            help="Project picks only: re-threshold the BoxNet picks at this score (0–1) from "
            "the saved probabilities, without picking again (default: the project's "
            "picking.threshold).",
        ),
    ] = None,
    coords_pixel_size: Annotated[
        float | None,
        typer.Option(
            "--coords-pixel-size",
            help="Pixel size (Å) of the micrographs the coordinates refer to, when the files "
            "do not say it (.box, .cs, coordinate-only STAR).",
        ),
    ] = None,
    box: Annotated[int | None, typer.Option("--box", help=_ex_help("box_size_px"))] = None,
    pixel_size: Annotated[
        float | None, typer.Option("--pixel-size", help=_ex_help("pixel_size_a"))
    ] = None,
    diameter: Annotated[
        float | None, typer.Option("--diameter", help=_ex_help("particle_diameter_a"))
    ] = None,
    source: Annotated[str | None, typer.Option("--source", help=_ex_help("source"))] = None,
    ctf_correction: Annotated[
        str | None, typer.Option("--ctf-correction", help=_ex_help("ctf_correction"))
    ] = None,
    invert: Annotated[
        bool | None, typer.Option("--invert/--no-invert", help=_ex_help("invert_contrast"))
    ] = None,
    normalize: Annotated[
        bool | None, typer.Option("--normalize/--no-normalize", help=_ex_help("normalize"))
    ] = None,
    dose_weighting: Annotated[
        bool | None,
        typer.Option("--dose-weighting/--no-dose-weighting", help=_ex_help("dose_weighting")),
    ] = None,
    odd_even: Annotated[
        bool | None, typer.Option("--odd-even/--no-odd-even", help=_ex_help("odd_even"))
    ] = None,
    float16: Annotated[
        bool | None, typer.Option("--float16/--float32", help=_ex_help("float16"))
    ] = None,
    skip_edge: Annotated[
        bool | None,
        typer.Option("--skip-edge/--keep-edge", help=_ex_help("skip_edge_particles")),
    ] = None,
    latest: Annotated[
        int | None,
        typer.Option(
            "--latest",
            help="Export only the most recent micrographs that hold this many particles "
            "(a streaming set for 2-D classification).",
        ),
    ] = None,
    particles_min: Annotated[
        int | None, typer.Option("--particles-min", help=_f_help("particles_min"))
    ] = None,
    particles_max: Annotated[
        int | None, typer.Option("--particles-max", help=_f_help("particles_max"))
    ] = None,
    ctf_dir: CtfDir = None,
    root: Root = None,
    defocus_min: DefocusMin = None,
    defocus_max: DefocusMax = None,
    astigmatism_max: AstigMax = None,
    ctf_resolution_max: CtfResMax = None,
    drift_max: DriftMax = None,
    early_motion_max: EarlyMax = None,
    masked_fraction_max: MaskedMax = None,
    include: Include = None,
    exclude: Exclude = None,
    device: Annotated[
        str, typer.Option("--device", help='Where to compute: "cpu", "cuda" or "cuda:N".')
    ] = "cpu",
) -> None:
    """Extract particles with our motion and local CTF; write OUT/particles.star (and
    particles_odd.star / particles_even.star for the half stacks).

    Example: ``cryowarp export particles proc --coords 'picks/*.star' --box 256 --diameter 180
    --pixel-size 1.6 --out relion``
    """
    console = Console()
    options = dict(locals())
    inputs = _inputs(folder, ctf_dir, console)
    sources = inputs.sources
    try:
        settings = with_overrides(
            inputs.extraction,
            {
                "box_size_px": box,
                "pixel_size_a": pixel_size,
                "source": source,
                "particle_diameter_a": diameter,
                "invert_contrast": invert,
                "normalize": normalize,
                "ctf_correction": ctf_correction,
                "dose_weighting": dose_weighting,
                "odd_even": odd_even,
                "float16": float16,
                "skip_edge_particles": skip_edge,
            },
        )
    except ValidationError as error:
        raise typer.BadParameter(str(error)) from error
    filters = _filters(
        inputs.filters, options, particles_min=particles_min, particles_max=particles_max
    )
    sets = _particle_sets(folder, coords, coords_pixel_size, pick_threshold, sources, console)
    unknown = sorted(set(sets) - {s.name for s in sources})
    if unknown:
        console.print(
            f"[yellow]{len(unknown)} coordinate set(s) name no processed micrograph[/] "
            f"(e.g. {unknown[0]!r})"
        )
    result = export_particles(
        sources,
        sets,
        settings,
        out_dir=out,
        filters=filters,
        latest_n_particles=latest,
        root=root,
        device=parse_device(device),
    )
    for name, reason in result.failures.items():
        console.print(f"[red]failed[/] {name}: {reason}")
    console.print(
        f"{result.n_particles} particles from {len(result.counts)} micrographs "
        f"({len(result.reused)} kept from an earlier run) → {result.star}"
    )
    _log_export(
        folder,
        "particles",
        out,
        n_micrographs=len(result.counts),
        n_particles=result.n_particles,
        n_failed=len(result.failures),
    )
    if result.failures:
        raise typer.Exit(1)


def _log_export(folder: Path, what: str, out: Path, **counts: int) -> None:
    """On a project, an ``export_finished`` event (the dashboard's exported count)."""
    if is_project(folder):
        EventLog(open_project(folder).events_path).append(
            "export_finished", what=what, out=str(out.resolve()), **counts
        )


def _particle_sets(
    folder: Path,
    coords: list[str] | None,
    coords_pixel_size: float | None,
    pick_threshold: float | None,
    sources: list[MicrographSource],
    console: Console,
) -> dict[str, ParticleSet]:
    """Particles per micrograph: from coordinate files, or a project's BoxNet picks."""
    if not coords:
        if not is_project(folder):
            raise typer.BadParameter(
                "give coordinate files (--coords); only a project has its own picks",
                param_hint="--coords",
            )
        picks, problems = project_picks(
            open_project(folder), [s.name for s in sources], threshold=pick_threshold
        )
        for problem in problems:
            console.print(f"[yellow]no picks[/] {problem.path}: {problem.message}")
        return picks
    if pick_threshold is not None:
        raise typer.BadParameter(
            "--pick-threshold re-thresholds a project's picks; leave out --coords",
            param_hint="--pick-threshold",
        )
    found: dict[str, list[ParticleSet]] = {}
    for path in expand_patterns(coords, what="coordinate file"):
        try:
            for particle_set in read_coordinates(path, pixel_size_a=coords_pixel_size):
                found.setdefault(particle_set.micrograph, []).append(particle_set)
        except CryowarpInputError as error:
            console.print(f"[red]{error}[/]")
            raise typer.Exit(1) from error
    return {name: concatenate_particle_sets(group) for name, group in found.items()}


@export_app.command("update-defocus")
def update_defocus(
    particles_star: Annotated[Path, typer.Argument(help="An existing particles STAR file.")],
    folder: Folder,
    out: Annotated[Path, typer.Option("--out", help="The updated STAR file.")],
    ctf_dir: CtfDir = None,
) -> None:
    """Set each particle's defocus from our local CTF model at its position (poses, classes
    and every other column kept).

    Example: ``cryowarp export update-defocus Refine3D/job012/run_data.star proc --out
    run_data_localctf.star``
    """
    console = Console()
    sources = _inputs(folder, ctf_dir, console).sources
    try:
        optics, table = read_particles(particles_star)
        ctfs = {s.name: s.ctf for s in sources if s.ctf is not None}
        updated, missing = update_particle_defocus(table, ctfs)
        write_particles(out, optics, updated)
    except CryowarpError as error:
        console.print(f"[red]{error}[/]")
        raise typer.Exit(1) from error
    if missing:
        console.print(f"[yellow]no CTF estimate for {len(missing)} micrograph(s)[/]: {missing[:5]}")
    console.print(f"{len(updated)} particles → {out}")
