"""``cryowarp motion``: motion-correct movies (docs/motion.md).

``correct`` handles one movie, ``batch`` many (glob patterns) with a progress bar, a final
table and exit code 1 when any movie failed. Defaults and help texts come from
:class:`~cryowarp.preprocess.motion.settings.MovieInputSettings` and
:class:`~cryowarp.preprocess.motion.settings.MotionSettings` (one source of truth).

Example::

    cryowarp motion batch 'raw/*.tif' --out motion --pixel-size 0.83 --dose-per-frame 1.0 \\
        --gain raw/gain.mrc --gain-flip y --bin 2 --voltage 300
"""

from __future__ import annotations

import re
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from cryowarp.cli._common import expand_patterns, parse_device
from cryowarp.errors import CryowarpInputError
from cryowarp.preprocess.motion.correct import (
    MotionOutcome,
    MotionResult,
    correct_movie,
    correct_movies,
)
from cryowarp.preprocess.motion.settings import MotionSettings, MovieInputSettings

__all__ = ["batch", "correct", "motion_app"]

motion_app = typer.Typer(
    name="motion",
    help="Motion-correct movies (Warp's global + local model), write dose-weighted averages.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

_IN = MovieInputSettings()
_MO = MotionSettings()
_IN_HELP = {name: f.description or "" for name, f in MovieInputSettings.model_fields.items()}
_MO_HELP = {name: f.description or "" for name, f in MotionSettings.model_fields.items()}
_GRID = re.compile(r"^\s*(\d+)\s*[x×,]\s*(\d+)\s*[x×,]\s*(\d+)\s*$")


class GainFlip(StrEnum):
    none = "none"
    x = "x"
    y = "y"


_DEFAULT_FLIP = GainFlip(_IN.gain_flip)
_DEFAULT_GRID = "x".join(str(nodes) for nodes in _MO.local_grid)

# -- options shared by both commands (defaults and help from the settings models) ----------
PixelSize = Annotated[float | None, typer.Option("--pixel-size", help=_IN_HELP["pixel_size_a"])]
DosePerFrame = Annotated[
    float, typer.Option("--dose-per-frame", help=_IN_HELP["dose_per_frame_e_per_a2"])
]
PreExposure = Annotated[
    float, typer.Option("--pre-exposure", help=_IN_HELP["pre_exposure_e_per_a2"])
]
Gain = Annotated[Path | None, typer.Option("--gain", help=_IN_HELP["gain_path"])]
GainTranspose = Annotated[
    bool, typer.Option("--gain-transpose/--no-gain-transpose", help=_IN_HELP["gain_transpose"])
]
GainRotation = Annotated[
    int, typer.Option("--gain-rotation", help=_IN_HELP["gain_rotation_quarter_turns"])
]
GainFlipOption = Annotated[GainFlip, typer.Option("--gain-flip", help=_IN_HELP["gain_flip"])]
GainCheck = Annotated[
    bool,
    typer.Option(
        "--check-gain-orientation/--no-check-gain-orientation",
        help=_IN_HELP["check_gain_orientation"],
    ),
]
Defects = Annotated[Path | None, typer.Option("--defects", help=_IN_HELP["defects_path"])]
HotPixels = Annotated[
    bool,
    typer.Option("--hot-pixels/--no-hot-pixels", help=_IN_HELP["detect_hot_pixels"]),
]
FlipTiff = Annotated[
    bool, typer.Option("--flip-tiff-y/--no-flip-tiff-y", help=_IN_HELP["flip_tiff_y"])
]
MinFrames = Annotated[int, typer.Option("--min-frames", help=_IN_HELP["min_frames"])]
EerUpsampling = Annotated[
    int, typer.Option("--eer-upsampling", help=_IN_HELP["eer_upsampling"] + " (1, 2 or 4)")
]
EerFractions = Annotated[
    int | None, typer.Option("--eer-fractions", help=_IN_HELP["eer_n_fractions"])
]
EerFractionDose = Annotated[
    float | None,
    typer.Option("--eer-fraction-dose", help=_IN_HELP["eer_dose_per_fraction_e_per_a2"]),
]
EerTotalDose = Annotated[
    float | None, typer.Option("--eer-total-dose", help=_IN_HELP["eer_total_dose_e_per_a2"])
]
Bin = Annotated[float, typer.Option("--bin", help=_IN_HELP["bin_factor"])]
ResolutionRange = Annotated[
    tuple[float, float],
    typer.Option(
        "--resolution-range",
        help=f"{_MO_HELP['min_resolution_a']} {_MO_HELP['max_resolution_a']} (two values: "
        "lowest then highest resolution in Å).",
    ),
]
BFactor = Annotated[float, typer.Option("--bfactor", help=_MO_HELP["bfactor_a2"])]
PatchSize = Annotated[int, typer.Option("--patch-size", help=_MO_HELP["patch_size_px"])]
PatchOverlap = Annotated[float, typer.Option("--patch-overlap", help=_MO_HELP["patch_overlap"])]
GlobalNodes = Annotated[
    int | None, typer.Option("--global-nodes", help=_MO_HELP["global_temporal_nodes"])
]
LocalGrid = Annotated[
    str, typer.Option("--local-grid", help=_MO_HELP["local_grid"] + ' Written as "5x5x3".')
]
MaxIterations = Annotated[int, typer.Option("--max-iterations", help=_MO_HELP["max_iterations"])]
DoseWeighting = Annotated[
    bool,
    typer.Option("--dose-weighting/--no-dose-weighting", help=_MO_HELP["dose_weighting"]),
]
LocalTolerance = Annotated[
    float, typer.Option("--local-tolerance", help=_MO_HELP["local_tolerance_px"])
]
OddEven = Annotated[bool, typer.Option("--odd-even/--no-odd-even", help=_MO_HELP["write_odd_even"])]
AlignedStack = Annotated[
    bool,
    typer.Option("--aligned-stack/--no-aligned-stack", help=_MO_HELP["write_aligned_stack"]),
]
Png = Annotated[bool, typer.Option("--png/--no-png", help=_MO_HELP["write_png"])]
Voltage = Annotated[
    float | None,
    typer.Option(
        "--voltage",
        help="Acceleration voltage in kV, written to the RELION motion STAR file "
        "(rlnVoltage; left out when not given).",
    ),
]
Device = Annotated[
    str, typer.Option("--device", help='Where to compute: "cpu", "cuda" or "cuda:N".')
]
Out = Annotated[Path, typer.Option("--out", help="Output folder (created); see docs/motion.md.")]


def correct(
    movie: Annotated[Path, typer.Argument(help="The movie (MRC, TIFF or EER).")],
    out: Out,
    pixel_size: PixelSize = _IN.pixel_size_a,
    dose_per_frame: DosePerFrame = _IN.dose_per_frame_e_per_a2,
    pre_exposure: PreExposure = _IN.pre_exposure_e_per_a2,
    gain: Gain = None,
    gain_transpose: GainTranspose = _IN.gain_transpose,
    gain_rotation: GainRotation = _IN.gain_rotation_quarter_turns,
    gain_flip: GainFlipOption = _DEFAULT_FLIP,
    check_gain_orientation: GainCheck = _IN.check_gain_orientation,
    defects: Defects = None,
    hot_pixels: HotPixels = _IN.detect_hot_pixels,
    flip_tiff_y: FlipTiff = _IN.flip_tiff_y,
    min_frames: MinFrames = _IN.min_frames,
    eer_upsampling: EerUpsampling = _IN.eer_upsampling,
    eer_fractions: EerFractions = _IN.eer_n_fractions,
    eer_fraction_dose: EerFractionDose = _IN.eer_dose_per_fraction_e_per_a2,
    eer_total_dose: EerTotalDose = _IN.eer_total_dose_e_per_a2,
    bin_factor: Bin = _IN.bin_factor,
    resolution_range: ResolutionRange = (_MO.min_resolution_a, _MO.max_resolution_a),
    bfactor: BFactor = _MO.bfactor_a2,
    patch_size: PatchSize = _MO.patch_size_px,
    patch_overlap: PatchOverlap = _MO.patch_overlap,
    global_nodes: GlobalNodes = _MO.global_temporal_nodes,
    local_grid: LocalGrid = _DEFAULT_GRID,
    max_iterations: MaxIterations = _MO.max_iterations,
    dose_weighting: DoseWeighting = _MO.dose_weighting,
    local_tolerance: LocalTolerance = _MO.local_tolerance_px,
    odd_even: OddEven = _MO.write_odd_even,
    aligned_stack: AlignedStack = _MO.write_aligned_stack,
    png: Png = _MO.write_png,
    voltage: Voltage = None,
    device: Device = "cpu",
) -> None:
    """Motion-correct one movie: averages, motion metadata, RELION STAR and a PNG.

    Example: cryowarp motion correct raw/movie_000.mrc --out motion --dose-per-frame 1.0 \
--gain raw/gain.mrc --local-grid 5x5x3
    """
    options = dict(locals())
    input_settings, settings = _settings(options)
    dev = parse_device(device)
    console = Console()
    with _progress(console) as bar:
        task = bar.add_task(movie.name, total=1.0)
        try:
            result = correct_movie(
                movie,
                input_settings=input_settings,
                settings=settings,
                out_dir=out,
                device=dev,
                progress=lambda message, done: bar.update(
                    task, completed=done, description=f"{movie.name}: {message}"
                ),
                relion_voltage_kv=voltage,
            )
        except (CryowarpInputError, ValueError) as error:
            bar.stop()
            typer.echo(f"FAILED: {_message(movie, error)}", err=True)
            raise typer.Exit(1) from error
    console.print(_table([MotionOutcome(movie, result=result)]))
    typer.echo(f"wrote {result.paths.average} and {len(result.paths.files()) - 1} more files")


def batch(
    patterns: Annotated[
        list[str], typer.Argument(help="Movies or glob patterns (quote them: 'raw/*.tif').")
    ],
    out: Out,
    pixel_size: PixelSize = _IN.pixel_size_a,
    dose_per_frame: DosePerFrame = _IN.dose_per_frame_e_per_a2,
    pre_exposure: PreExposure = _IN.pre_exposure_e_per_a2,
    gain: Gain = None,
    gain_transpose: GainTranspose = _IN.gain_transpose,
    gain_rotation: GainRotation = _IN.gain_rotation_quarter_turns,
    gain_flip: GainFlipOption = _DEFAULT_FLIP,
    check_gain_orientation: GainCheck = _IN.check_gain_orientation,
    defects: Defects = None,
    hot_pixels: HotPixels = _IN.detect_hot_pixels,
    flip_tiff_y: FlipTiff = _IN.flip_tiff_y,
    min_frames: MinFrames = _IN.min_frames,
    eer_upsampling: EerUpsampling = _IN.eer_upsampling,
    eer_fractions: EerFractions = _IN.eer_n_fractions,
    eer_fraction_dose: EerFractionDose = _IN.eer_dose_per_fraction_e_per_a2,
    eer_total_dose: EerTotalDose = _IN.eer_total_dose_e_per_a2,
    bin_factor: Bin = _IN.bin_factor,
    resolution_range: ResolutionRange = (_MO.min_resolution_a, _MO.max_resolution_a),
    bfactor: BFactor = _MO.bfactor_a2,
    patch_size: PatchSize = _MO.patch_size_px,
    patch_overlap: PatchOverlap = _MO.patch_overlap,
    global_nodes: GlobalNodes = _MO.global_temporal_nodes,
    local_grid: LocalGrid = _DEFAULT_GRID,
    max_iterations: MaxIterations = _MO.max_iterations,
    dose_weighting: DoseWeighting = _MO.dose_weighting,
    local_tolerance: LocalTolerance = _MO.local_tolerance_px,
    odd_even: OddEven = _MO.write_odd_even,
    aligned_stack: AlignedStack = _MO.write_aligned_stack,
    png: Png = _MO.write_png,
    voltage: Voltage = None,
    device: Device = "cpu",
) -> None:
    """Motion-correct many movies into one folder; exit code 1 if any movie failed.

    A movie that cannot be read (corrupt file, wrong gain, too few frames) is reported and
    the others go on; its outputs are not written.

    Example: cryowarp motion batch 'raw/*.mrc' --out motion --dose-per-frame 1.0 \
--gain raw/gain.mrc --bin 2 --voltage 300
    """
    options = dict(locals())
    input_settings, settings = _settings(options)
    dev = parse_device(device)
    movies = expand_patterns(patterns, what="movie")
    console = Console()
    with _progress(console) as bar:
        task = bar.add_task("movies", total=len(movies))

        def advance(message: str, done: float) -> None:
            bar.update(task, completed=done * len(movies), description=message)

        outcomes = correct_movies(
            movies,
            input_settings=input_settings,
            settings=settings,
            out_dir=out,
            device=dev,
            progress=advance,
            relion_voltage_kv=voltage,
        )
    console.print(_table(outcomes))
    failed = [o for o in outcomes if not o.ok]
    for outcome in failed:
        typer.echo(f"FAILED: {outcome.error}", err=True)
    typer.echo(f"{len(outcomes) - len(failed)} of {len(outcomes)} movies corrected into {out}")
    if failed:
        raise typer.Exit(1)


def _settings(options: dict[str, Any]) -> tuple[MovieInputSettings, MotionSettings]:
    """Both settings models from the command's options; bad values → a usage error."""
    try:
        low, high = options["resolution_range"]
        input_settings = MovieInputSettings(
            pixel_size_a=options["pixel_size"],
            dose_per_frame_e_per_a2=options["dose_per_frame"],
            pre_exposure_e_per_a2=options["pre_exposure"],
            gain_path=None if options["gain"] is None else str(options["gain"]),
            gain_transpose=options["gain_transpose"],
            gain_rotation_quarter_turns=options["gain_rotation"],
            gain_flip=options["gain_flip"].value,
            check_gain_orientation=options["check_gain_orientation"],
            defects_path=None if options["defects"] is None else str(options["defects"]),
            detect_hot_pixels=options["hot_pixels"],
            flip_tiff_y=options["flip_tiff_y"],
            min_frames=options["min_frames"],
            eer_upsampling=options["eer_upsampling"],
            eer_n_fractions=options["eer_fractions"],
            eer_dose_per_fraction_e_per_a2=options["eer_fraction_dose"],
            eer_total_dose_e_per_a2=options["eer_total_dose"],
            bin_factor=options["bin_factor"],
        )
        settings = MotionSettings(
            min_resolution_a=low,
            max_resolution_a=high,
            bfactor_a2=options["bfactor"],
            patch_size_px=options["patch_size"],
            patch_overlap=options["patch_overlap"],
            global_temporal_nodes=options["global_nodes"],
            local_grid=_local_grid(options["local_grid"]),
            max_iterations=options["max_iterations"],
            dose_weighting=options["dose_weighting"],
            local_tolerance_px=options["local_tolerance"],
            write_odd_even=options["odd_even"],
            write_aligned_stack=options["aligned_stack"],
            write_png=options["png"],
        )
    except ValidationError as error:
        raise typer.BadParameter(str(error)) from error
    return input_settings, settings


def _local_grid(text: str) -> tuple[int, int, int]:
    match = _GRID.match(text)
    if match is None:
        raise typer.BadParameter(
            f'--local-grid must be three node counts X x Y x T such as "5x5x3", got {text!r}'
        )
    x, y, t = (int(v) for v in match.groups())
    return x, y, t


def _progress(console: Console) -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.percentage:>3.0f}%"),
        TimeElapsedColumn(),
        console=console,
    )


def _table(outcomes: list[MotionOutcome]) -> Table:
    """One row per movie: quality figures, or the error."""
    table = Table(title="motion correction")
    for column in ("movie", "status", "early Å/frame", "drift Å", "max local Å", "pixel Å", "s"):
        table.add_column(column)
    for outcome in outcomes:
        result: MotionResult | None = outcome.result
        if result is None:
            table.add_row(outcome.movie_path.name, "failed", "", "", "", "", "")
            continue
        summary = result.summary
        table.add_row(
            outcome.movie_path.name,
            "ok",
            f"{summary.early_motion_a_per_frame:.2f}",
            f"{summary.total_drift_a:.1f}",
            f"{summary.max_local_motion_a:.2f}",
            f"{result.output_pixel_size_a:.3f}",
            f"{result.seconds.get('total', 0.0):.1f}",
        )
    return table


def _message(movie: Path, error: Exception) -> str:
    return str(error) if isinstance(error, CryowarpInputError) else f"{movie}: {error}"


motion_app.command("correct")(correct)
motion_app.command("batch")(batch)
