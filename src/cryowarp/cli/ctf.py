"""``cryowarp ctf``: estimate the CTF of micrographs, movies or precomputed power spectra.

``estimate`` fits micrographs or movies (MRC, TIFF, EER; a file of one section is a
micrograph, more sections are frames); ``spectrum`` fits power spectra written by other
programs (MotionCor2, RELION, CTFFIND: zero frequency at the centre,
:mod:`cryowarp.io.power_spectrum`). Both write, into ``--out``, per item ``<name>_ctf.json``
(:meth:`CtfResult.to_dict`, read back with :meth:`CtfResult.from_dict`) and
``<name>_ctf.png``, and for the batch a RELION ``micrographs_ctf.star``. Items that fail are
reported with their reason and the command exits with code 1. Defaults and help texts come
from :class:`~cryowarp.preprocess.ctf.settings.CtfSettings` and the optics defaults of
:func:`~cryowarp.preprocess.ctf.estimate.estimate_ctf` (one source of truth).

Example::

    cryowarp ctf estimate 'motion/*.mrc' --out ctf --voltage 300 --cs 2.7 --grid 5x5
    cryowarp ctf spectrum run/movie_PS.mrc --pixel-size 1.06 --out ctf
"""

from __future__ import annotations

import inspect
import json
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
import torch
import typer
from pydantic import ValidationError
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from cryowarp.cli._common import expand_patterns, parse_device
from cryowarp.errors import CryowarpError, InvalidValuesError
from cryowarp.io.files import write_text_atomically
from cryowarp.io.gain import orient_gain, prepare_gain, read_gain
from cryowarp.io.movie import open_movie
from cryowarp.io.power_spectrum import read_power_spectrum
from cryowarp.preprocess.ctf.estimate import estimate_ctf, estimate_ctf_from_spectrum
from cryowarp.preprocess.ctf.plot import write_ctf_png
from cryowarp.preprocess.ctf.result import CtfResult
from cryowarp.preprocess.ctf.settings import CtfSettings
from cryowarp.preprocess.ctf.star import write_micrographs_ctf_star

__all__ = ["ctf_app", "estimate", "spectrum"]

ctf_app = typer.Typer(
    name="ctf",
    help="Estimate the CTF (defocus, astigmatism, phase shift, resolution) as Warp does.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

STAR_NAME = "micrographs_ctf.star"

_S = CtfSettings()
_HELP = {name: f.description or "" for name, f in CtfSettings.model_fields.items()}
_OPTICS = inspect.signature(estimate_ctf).parameters
_GRID = re.compile(r"^\s*(\d+)\s*[x×,]\s*(\d+)\s*$")


class SpectrumSource(StrEnum):
    frames = "frames"
    average = "average"


class Layout(StrEnum):
    auto = "auto"
    centred_full = "centred_full"
    centred_half = "centred_half"
    fft_full = "fft_full"
    rfft = "rfft"


class Half(StrEnum):
    right = "right"
    left = "left"


def _grid_text(grid: tuple[int, int] | str) -> str:
    return grid if isinstance(grid, str) else f"{grid[0]}x{grid[1]}"


_DEFAULT_SOURCE = SpectrumSource(_S.spectrum_source)
_DEFAULT_GRID = _grid_text(_S.spatial_grid)


# -- options (defaults and help from CtfSettings and estimate_ctf) -------------------------
Out = Annotated[Path, typer.Option("--out", help="Output folder (created).")]
PixelSize = Annotated[
    float | None,
    typer.Option("--pixel-size", help="Pixel size in Å (default: the file header's)."),
]
Voltage = Annotated[float, typer.Option("--voltage", help="Acceleration voltage in kV.")]
Cs = Annotated[float, typer.Option("--cs", help="Spherical aberration in mm.")]
AmplitudeContrast = Annotated[
    float, typer.Option("--amplitude-contrast", help="Amplitude contrast (fraction, 0–1).")
]
Window = Annotated[int, typer.Option("--window", help=_HELP["window_size_px"])]
Overlap = Annotated[float, typer.Option("--overlap", help=_HELP["patch_overlap"])]
Source = Annotated[SpectrumSource, typer.Option("--source", help=_HELP["spectrum_source"])]
DefocusRange = Annotated[
    tuple[float, float],
    typer.Option(
        "--defocus-range",
        help="Lowest and highest defocus searched in µm (underfocus positive).",
    ),
]
DefocusStep = Annotated[float, typer.Option("--defocus-step", help=_HELP["defocus_step_um"])]
ResolutionRange = Annotated[
    tuple[float, float],
    typer.Option(
        "--resolution-range",
        help="Resolution range of the fit in Å: lowest (e.g. 30) then highest (e.g. 4; "
        "raised to Nyquist when finer).",
    ),
]
Astigmatism = Annotated[
    bool, typer.Option("--astigmatism/--no-astigmatism", help=_HELP["fit_astigmatism"])
]
PhaseShift = Annotated[
    bool, typer.Option("--phase-shift/--no-phase-shift", help=_HELP["fit_phase_shift"])
]
PhaseShiftRange = Annotated[
    tuple[float, float],
    typer.Option("--phase-shift-range", help="Lowest and highest phase shift searched in degrees."),
]
PhaseShiftStep = Annotated[
    float, typer.Option("--phase-shift-step", help=_HELP["phase_shift_step_deg"])
]
Grid = Annotated[
    str,
    typer.Option("--grid", help=_HELP["spatial_grid"] + ' Written as "5x5", or "plane".'),
]
MaxIterations = Annotated[int, typer.Option("--max-iterations", help=_HELP["max_iterations"])]
Threshold = Annotated[
    float, typer.Option("--resolution-threshold", help=_HELP["resolution_threshold"])
]
Png = Annotated[bool, typer.Option("--png/--no-png", help="Write a diagnostic PNG per item.")]
Device = Annotated[str, typer.Option("--device", help='Where to compute: "cpu", "cuda", "cuda:N".')]


@dataclass
class _Item:
    """One fitted item: its name in the outputs, its source and its result (or error)."""

    name: str
    source: str
    result: CtfResult


def _settings(options: dict[str, Any]) -> CtfSettings:
    grid_text = str(options["grid"]).strip().lower()
    grid: tuple[int, int] | Literal["plane"]
    if grid_text == "plane":
        grid = "plane"
    else:
        match = _GRID.match(grid_text)
        if match is None:
            raise typer.BadParameter(
                f'--grid must be "XxY" such as "5x5", or "plane"; got {grid_text!r}'
            )
        grid = (int(match.group(1)), int(match.group(2)))
    try:
        return CtfSettings(
            window_size_px=options["window"],
            patch_overlap=options["overlap"],
            spectrum_source=options["source"].value,
            defocus_min_um=options["defocus_range"][0],
            defocus_max_um=options["defocus_range"][1],
            defocus_step_um=options["defocus_step"],
            min_resolution_a=options["resolution_range"][0],
            max_resolution_a=options["resolution_range"][1],
            fit_astigmatism=options["astigmatism"],
            fit_phase_shift=options["phase_shift"],
            phase_shift_min_deg=options["phase_shift_range"][0],
            phase_shift_max_deg=options["phase_shift_range"][1],
            phase_shift_step_deg=options["phase_shift_step"],
            spatial_grid=grid,
            max_iterations=options["max_iterations"],
            resolution_threshold=options["resolution_threshold"],
        )
    except ValidationError as error:
        raise typer.BadParameter(str(error)) from error


def _read_image_or_frames(
    path: Path, *, gain: np.ndarray | None, pixel_size_a: float | None, average: bool
) -> tuple[torch.Tensor, float]:
    """``(h, w)`` micrograph or ``(n, h, w)`` gain-corrected frames (summed when ``average``),
    and the pixel size in Å."""
    with open_movie(path) as movie:
        pixel = pixel_size_a or movie.pixel_size_a
        if pixel is None:
            raise InvalidValuesError(
                path, "the file records no pixel size and none was given", "pass --pixel-size (Å)"
            )
        factor = None
        if gain is not None and movie.n_frames > 1:  # a micrograph is gain-corrected already
            factor, _ = prepare_gain(
                gain, frame_shape=movie.frame_shape, movie_path=path, max_defect_fraction=0.05
            )
        frames = np.empty((movie.n_frames, *movie.frame_shape), np.float32)
        for start, chunk in movie.iter_chunks(8):
            frames[start : start + len(chunk)] = chunk if factor is None else chunk * factor
    data = torch.from_numpy(frames)
    if data.shape[0] == 1 or average:
        data = data.sum(0)
    return data, pixel


def _write_outputs(item: _Item, out: Path, *, png: bool) -> None:
    write_text_atomically(
        out / f"{item.name}_ctf.json", json.dumps(item.result.to_dict(), indent=2) + "\n"
    )
    if png and not item.result.failed and item.result.diagnostics is not None:
        write_ctf_png(item.result, out / f"{item.name}_ctf.png", title=item.source)


def _failed_result(reason: str, pixel_size_a: float | None, optics: dict[str, float]) -> CtfResult:
    return CtfResult.failure(
        reason,
        pixel_size_a=pixel_size_a if pixel_size_a is not None else math.nan,
        voltage_kv=optics["voltage_kv"],
        cs_mm=optics["cs_mm"],
        amplitude_contrast=optics["amplitude_contrast"],
    )


def _run_batch(
    sources: list[tuple[str, str]],
    fit: Callable[[str], CtfResult],
    *,
    out: Path,
    png: bool,
    what: str,
) -> None:
    """Fit every ``(name, source)``, write the outputs and the STAR file, report, exit 1 on
    any failure."""
    out.mkdir(parents=True, exist_ok=True)
    console = Console(stderr=True)
    items: list[_Item] = []
    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
    )
    with progress:
        task = progress.add_task(what, total=len(sources))
        for name, source in sources:
            progress.update(task, description=f"{what}: {name}")
            item = _Item(name, source, fit(source))
            _write_outputs(item, out, png=png)
            items.append(item)
            progress.advance(task)
    n_rows = write_micrographs_ctf_star(
        out / STAR_NAME, [i.source for i in items], [i.result for i in items]
    )
    Console().print(_table(items))
    failed = [i for i in items if i.result.failed]
    for item in failed:
        typer.echo(f"FAILED: {item.source}: {item.result.failure_reason}", err=True)
    typer.echo(f"{n_rows} of {len(items)} {what} fitted; wrote {out / STAR_NAME}")
    if failed:
        raise typer.Exit(1)


def _table(items: list[_Item]) -> Table:
    table = Table(title="CTF estimation")
    for column in ("item", "status", "U µm", "V µm", "angle °", "phase °", "res. Å", "score"):
        table.add_column(column)
    for item in items:
        r = item.result
        if r.failed:
            table.add_row(item.name, "failed", "", "", "", "", "", "")
            continue
        table.add_row(
            item.name,
            "ok",
            f"{r.defocus_u_um:.4f}",
            f"{r.defocus_v_um:.4f}",
            f"{r.astigmatism_angle_deg:.1f}",
            f"{r.phase_shift_deg:.1f}",
            f"{r.resolution_a:.2f}",
            f"{r.fit_score:.3f}",
        )
    return table


def estimate(
    inputs: Annotated[
        list[str],
        typer.Argument(
            help="Micrographs or movies (MRC, TIFF, EER) or glob patterns (quote them).",
            metavar="MICROGRAPH_OR_MOVIE...",
        ),
    ],
    out: Out,
    pixel_size: PixelSize = None,
    voltage: Voltage = _OPTICS["voltage_kv"].default,
    cs: Cs = _OPTICS["cs_mm"].default,
    amplitude_contrast: AmplitudeContrast = _OPTICS["amplitude_contrast"].default,
    gain: Annotated[
        Path | None,
        typer.Option(
            "--gain",
            help="Multiplicative gain reference (MRC or TIFF), applied to movies only "
            "(files of more than one frame).",
        ),
    ] = None,
    window: Window = _S.window_size_px,
    overlap: Overlap = _S.patch_overlap,
    source: Source = _DEFAULT_SOURCE,
    defocus_range: DefocusRange = (_S.defocus_min_um, _S.defocus_max_um),
    defocus_step: DefocusStep = _S.defocus_step_um,
    resolution_range: ResolutionRange = (_S.min_resolution_a, _S.max_resolution_a),
    astigmatism: Astigmatism = _S.fit_astigmatism,
    phase_shift: PhaseShift = _S.fit_phase_shift,
    phase_shift_range: PhaseShiftRange = (_S.phase_shift_min_deg, _S.phase_shift_max_deg),
    phase_shift_step: PhaseShiftStep = _S.phase_shift_step_deg,
    grid: Grid = _DEFAULT_GRID,
    max_iterations: MaxIterations = _S.max_iterations,
    resolution_threshold: Threshold = _S.resolution_threshold,
    png: Png = True,
    device: Device = "cpu",
) -> None:
    """Estimate the CTF of micrographs or movies; exit code 1 if any item failed.

    Example: cryowarp ctf estimate 'raw/*.mrc' --gain raw/gain.mrc --out ctf --grid 5x5 \
--defocus-range 0.5 4
    """
    settings = _settings(dict(locals()))
    dev = parse_device(device)
    optics = {"voltage_kv": voltage, "cs_mm": cs, "amplitude_contrast": amplitude_contrast}
    gain_image = None
    if gain is not None:
        try:
            gain_image = orient_gain(read_gain(gain))
        except CryowarpError as error:
            raise typer.BadParameter(str(error), param_hint="--gain") from error

    def fit(path_text: str) -> CtfResult:
        path = Path(path_text)
        try:
            data, pixel = _read_image_or_frames(
                path,
                gain=gain_image,
                pixel_size_a=pixel_size,
                average=settings.spectrum_source == "average",
            )
        except (CryowarpError, ValueError) as error:
            return _failed_result(str(error), pixel_size, optics)
        return estimate_ctf(data.to(dev), pixel_size_a=pixel, settings=settings, **optics)

    files = expand_patterns(inputs, what="file")
    _run_batch([(f.stem, str(f)) for f in files], fit, out=out, png=png, what="micrographs")


def spectrum(
    spectra: Annotated[
        list[str],
        typer.Argument(
            help="Power spectra (MRC, zero frequency at the centre) or glob patterns.",
            metavar="PS.mrc...",
        ),
    ],
    out: Out,
    pixel_size: PixelSize = None,
    voltage: Voltage = _OPTICS["voltage_kv"].default,
    cs: Cs = _OPTICS["cs_mm"].default,
    amplitude_contrast: AmplitudeContrast = _OPTICS["amplitude_contrast"].default,
    layout: Annotated[
        Layout,
        typer.Option(
            "--layout",
            help="Layout of the spectrum image (auto: detected; see cryowarp.io.power_spectrum).",
        ),
    ] = Layout.auto,
    use_half: Annotated[
        Half,
        typer.Option(
            "--use-half",
            help="Half of a full spectrum that holds the data (left for diagnostic images "
            "with a model drawn on the right).",
        ),
    ] = Half.right,
    defocus_range: DefocusRange = (_S.defocus_min_um, _S.defocus_max_um),
    defocus_step: DefocusStep = _S.defocus_step_um,
    resolution_range: ResolutionRange = (_S.min_resolution_a, _S.max_resolution_a),
    astigmatism: Astigmatism = _S.fit_astigmatism,
    phase_shift: PhaseShift = _S.fit_phase_shift,
    phase_shift_range: PhaseShiftRange = (_S.phase_shift_min_deg, _S.phase_shift_max_deg),
    phase_shift_step: PhaseShiftStep = _S.phase_shift_step_deg,
    max_iterations: MaxIterations = _S.max_iterations,
    resolution_threshold: Threshold = _S.resolution_threshold,
    png: Png = True,
    device: Device = "cpu",
) -> None:
    """Estimate the CTF of precomputed power spectra (one spectrum per file or per section).

    The spectrum is fitted as one patch (no spatial defocus model). Its values must be power
    (not amplitude or logarithm).

    Example: cryowarp ctf spectrum MotionCorr/job002/movie_PS.mrc --pixel-size 1.06 \
--voltage 300 --cs 2.7 --out ctf
    """
    options = dict(locals())
    options.update(
        window=_S.window_size_px,
        overlap=_S.patch_overlap,
        source=_DEFAULT_SOURCE,
        grid="1x1",
    )
    settings = _settings(options)
    dev = parse_device(device)
    optics = {"voltage_kv": voltage, "cs_mm": cs, "amplitude_contrast": amplitude_contrast}
    loaded: dict[str, torch.Tensor | CtfResult] = {}
    sources: list[tuple[str, str]] = []
    pixels: dict[str, float] = {}
    for path in expand_patterns(spectra, what="file"):
        try:
            ps = read_power_spectrum(
                path, pixel_size_a=pixel_size, layout=layout.value, use_half=use_half.value
            )
        except (CryowarpError, ValueError) as error:
            sources.append((path.stem, str(path)))
            loaded[str(path)] = _failed_result(str(error), pixel_size, optics)
            continue
        if ps.pixel_size_a is None:
            sources.append((path.stem, str(path)))
            loaded[str(path)] = _failed_result(
                f"{path}: the file records no pixel size and none was given (pass --pixel-size)",
                None,
                optics,
            )
            continue
        values = ps.values.reshape(-1, *ps.values.shape[-2:])
        for index, section in enumerate(values):
            name = path.stem if len(values) == 1 else f"{path.stem}_{index:03d}"
            source = str(path) if len(values) == 1 else f"{index + 1:06d}@{path}"
            sources.append((name, source))
            loaded[source] = section
            pixels[source] = ps.pixel_size_a

    def fit(source: str) -> CtfResult:
        value = loaded[source]
        if isinstance(value, CtfResult):
            return value
        return estimate_ctf_from_spectrum(
            value.to(dev), pixel_size_a=pixels[source], settings=settings, **optics
        )

    _run_batch(sources, fit, out=out, png=png, what="spectra")


ctf_app.command("estimate")(estimate)
ctf_app.command("spectrum")(spectrum)
