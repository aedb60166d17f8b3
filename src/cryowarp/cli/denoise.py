"""``cryowarp denoise``: deconvolved and denoised micrographs **for looking at**
(docs/deconvolution.md, docs/denoising.md). Never average or extract particles from them.

``deconvolve`` applies Warp's CTF deconvolution filter; ``apply`` also runs a Noise2Noise
denoiser (the shipped default or a retrained one); ``train`` retrains a denoiser on the odd/
even frame averages of processed items. The CTF of each micrograph comes from ``--ctf-dir``
(``<name>_ctf.json`` of ``cryowarp ctf``/``cryowarp run``; by default ``../ctf`` beside a
processing folder's ``average/``), or from ``--defocus`` (and optics) for all micrographs.
Outputs, per micrograph, in ``--out``: ``<name>_deconv.png|.mrc`` and with ``apply``
``<name>_denoised.png|.mrc`` — 8-bit PNGs with percentile contrast and float32 MRCs at the
working pixel size (4 Å unless ``--full-size``). Items that fail are reported with their
reason and the command exits with code 1. Defaults and help texts come from
:class:`~cryowarp.preprocess.denoise.deconvolution.DeconvolutionSettings`,
:class:`~cryowarp.preprocess.denoise.display.DisplaySettings`; ``train`` is in
:mod:`cryowarp.cli.denoise_train`.

Example::

    cryowarp denoise deconvolve 'project/average/*.mrc' --out deconv
    cryowarp denoise apply 'project/average/*.mrc' --model n2n_micrograph_v1 --out denoised
    cryowarp denoise train project --name my_data_v1 --out models --steps 600
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import numpy as np
import torch
import typer
from pydantic import ValidationError
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from cryowarp.cli._common import expand_patterns, parse_device
from cryowarp.cli.denoise_train import train
from cryowarp.core.ctf_params import CTFParams
from cryowarp.errors import CorruptFileError, CryowarpError, InvalidValuesError, MissingFileError
from cryowarp.io.movie import open_movie
from cryowarp.pipeline.settings import OpticsSettings
from cryowarp.preprocess.ctf.result import CtfResult
from cryowarp.preprocess.denoise.deconvolution import DeconvolutionSettings, SupportsCtfParams
from cryowarp.preprocess.denoise.display import (
    DisplayImages,
    DisplaySettings,
    display_images,
    write_display_images,
)
from cryowarp.preprocess.denoise.n2n_model_file import (
    DEFAULT_DENOISER_MODEL,
    DenoiserModel,
    load_denoiser_model,
    resolve_denoiser_model,
)

__all__ = ["apply", "deconvolve", "denoise_app"]

denoise_app = typer.Typer(
    name="denoise",
    help="Deconvolved and denoised micrographs for looking at (never for averaging or "
    "particle extraction).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

_OPTICS = OpticsSettings()  # defaults of the optics options (one source of truth)
_DECONV = DeconvolutionSettings()
_DECONV_HELP = {n: f.description or "" for n, f in DeconvolutionSettings.model_fields.items()}
_DISPLAY = DisplaySettings()

# -- options --------------------------------------------------------------------------------
Micrographs = Annotated[
    list[str],
    typer.Argument(
        help="Motion-corrected micrographs (MRC or TIFF, one section each) or glob patterns "
        "(quote them).",
        metavar="MICROGRAPHS...",
    ),
]
Out = Annotated[Path, typer.Option("--out", help="Output folder (created).")]
CtfDir = Annotated[
    Path | None,
    typer.Option(
        "--ctf-dir",
        help="Folder of <name>_ctf.json CTF estimates (default: ../ctf beside the "
        "micrographs' folder, as in a processing folder).",
    ),
]
Defocus = Annotated[
    float | None,
    typer.Option(
        "--defocus",
        help="Use this mean defocus (µm, underfocus positive) for every micrograph instead of "
        "CTF estimates.",
    ),
]
Astigmatism = Annotated[
    float, typer.Option("--astigmatism", help="With --defocus: astigmatism (U − V)/2 in µm.")
]
AstigmatismAngle = Annotated[
    float,
    typer.Option("--astigmatism-angle", help="With --defocus: angle of U from +x in degrees."),
]
PhaseShift = Annotated[
    float, typer.Option("--phase-shift", help="With --defocus: phase-plate shift in degrees.")
]
Voltage = Annotated[
    float, typer.Option("--voltage", help="With --defocus: acceleration voltage in kV.")
]
Cs = Annotated[float, typer.Option("--cs", help="With --defocus: spherical aberration in mm.")]
AmplitudeContrast = Annotated[
    float,
    typer.Option("--amplitude-contrast", help="With --defocus: amplitude contrast (fraction)."),
]
PixelSize = Annotated[
    float | None,
    typer.Option("--pixel-size", help="Pixel size of the micrographs in Å (default: header)."),
]
Strength = Annotated[float, typer.Option("--strength", help=_DECONV_HELP["strength"])]
Falloff = Annotated[float, typer.Option("--falloff", help=_DECONV_HELP["falloff"])]
Highpass = Annotated[float, typer.Option("--highpass", help=_DECONV_HELP["highpass_a"])]
FullSize = Annotated[
    bool,
    typer.Option(
        "--full-size/--display-size",
        help=f"Keep the micrographs' pixel size instead of the display's "
        f"({_DISPLAY.pixel_size_a:g} Å, at most {_DISPLAY.max_size_px} px).",
    ),
]
Device = Annotated[str, typer.Option("--device", help='Where to compute: "cpu", "cuda", "cuda:N".')]


@dataclass
class _Outcome:
    """One micrograph: its name, what was written, or why it failed."""

    name: str
    source: Path
    images: DisplayImages | None = None
    files: dict[str, Path] | None = None
    error: str | None = None


@dataclass(frozen=True)
class _CtfSource:
    """Where CTFs come from: a folder of estimates or one set of parameters for all."""

    ctf_dir: Path | None
    manual: CTFParams | None

    def for_micrograph(self, path: Path) -> CTFParams | SupportsCtfParams:
        if self.manual is not None:
            return self.manual
        folder = self.ctf_dir if self.ctf_dir is not None else path.parent.parent / "ctf"
        return _read_ctf(folder / f"{path.stem}_ctf.json")


def _ctf_source(
    ctf_dir: Path | None,
    defocus: float | None,
    *,
    astigmatism: float,
    astigmatism_angle: float,
    phase_shift: float,
    voltage: float,
    cs: float,
    amplitude_contrast: float,
) -> _CtfSource:
    if ctf_dir is not None and defocus is not None:
        raise typer.BadParameter("give either --ctf-dir or --defocus, not both")
    if defocus is None:
        return _CtfSource(ctf_dir, None)
    two_theta = math.radians(2 * astigmatism_angle)
    try:
        params = CTFParams.create(
            pixel_size_a=1.0,  # replaced by each micrograph's
            defocus_um=defocus,
            astig_x_um=astigmatism * math.cos(two_theta),
            astig_y_um=astigmatism * math.sin(two_theta),
            phase_shift_rad=math.radians(phase_shift),
            voltage_kv=voltage,
            cs_mm=cs,
            amplitude_contrast=amplitude_contrast,
            dtype=torch.float64,
        )
    except InvalidValuesError as error:
        raise typer.BadParameter(error.problem) from error
    return _CtfSource(None, params)


def _read_ctf(path: Path) -> CtfResult:
    if not path.is_file():
        raise MissingFileError(
            path, "no CTF estimate for this micrograph", "pass --ctf-dir or --defocus"
        )
    try:
        result = CtfResult.from_dict(json.loads(path.read_text(encoding="utf-8")))
    except (json.JSONDecodeError, InvalidValuesError, TypeError, ValueError) as error:
        raise CorruptFileError(path, f"not a CTF estimate ({error})") from error
    if result.failed:
        raise InvalidValuesError(path, f"the CTF fit failed: {result.failure_reason}")
    return result


def _read_micrograph(path: Path, pixel_size_a: float | None) -> tuple[torch.Tensor, float]:
    """``(h, w)`` float32 micrograph and its pixel size (Å)."""
    with open_movie(path) as reader:
        if reader.n_frames != 1:
            raise InvalidValuesError(
                path,
                f"has {reader.n_frames} sections; a motion-corrected micrograph has one",
                "run cryowarp motion first",
            )
        pixel = pixel_size_a or reader.pixel_size_a
        if pixel is None:
            raise InvalidValuesError(
                path, "the file records no pixel size and none was given", "pass --pixel-size"
            )
        data = np.array(reader.read_frames(0, 1)[0], dtype=np.float32)
    return torch.from_numpy(data), float(pixel)


def _deconvolution(strength: float, falloff: float, highpass: float) -> DeconvolutionSettings:
    try:
        return DeconvolutionSettings(
            strength=strength, falloff=falloff, highpass_a=highpass if highpass > 0 else None
        )
    except ValidationError as error:
        raise typer.BadParameter(str(error)) from error


def _display_settings(image: torch.Tensor, pixel_size_a: float, full_size: bool) -> DisplaySettings:
    if not full_size:
        return _DISPLAY
    return DisplaySettings(pixel_size_a=pixel_size_a, max_size_px=max(16, *image.shape))


def _run_batch(
    files: list[Path],
    process: Callable[[Path], tuple[DisplayImages, dict[str, Path]]],
    *,
    what: str,
) -> list[_Outcome]:
    """Process every micrograph with a progress bar; one failure does not stop the others."""
    outcomes: list[_Outcome] = []
    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=Console(stderr=True),
    )
    with progress:
        task = progress.add_task(what, total=len(files))
        for path in files:
            progress.update(task, description=f"{what}: {path.stem}")
            outcome = _Outcome(path.stem, path)
            try:
                outcome.images, outcome.files = process(path)
            except (CryowarpError, OSError, ValueError) as error:
                outcome.error = str(error)
            outcomes.append(outcome)
            progress.advance(task)
    return outcomes


def _report(outcomes: list[_Outcome], out: Path, *, title: str) -> None:
    table = Table(title=title)
    for column in ("item", "status", "Å/px", "size", "model"):
        table.add_column(column)
    for o in outcomes:
        if o.images is None:
            table.add_row(o.name, "failed", "", "", "")
            continue
        h, w = o.images.deconvolved.shape
        table.add_row(
            o.name, "ok", f"{o.images.pixel_size_a:.3f}", f"{w}×{h}", o.images.model_name or ""
        )
    Console().print(table)
    failed = [o for o in outcomes if o.error is not None]
    for o in failed:
        typer.echo(f"FAILED: {o.source}: {o.error}", err=True)
    typer.echo(f"{len(outcomes) - len(failed)} of {len(outcomes)} micrographs written to {out}")
    typer.echo(
        "These images are for looking at only: never average or extract particles from them."
    )
    if failed:
        raise typer.Exit(1)


def deconvolve(
    micrographs: Micrographs,
    out: Out,
    ctf_dir: CtfDir = None,
    defocus: Defocus = None,
    astigmatism: Astigmatism = 0.0,
    astigmatism_angle: AstigmatismAngle = 0.0,
    phase_shift: PhaseShift = 0.0,
    voltage: Voltage = _OPTICS.voltage_kv,
    cs: Cs = _OPTICS.cs_mm,
    amplitude_contrast: AmplitudeContrast = _OPTICS.amplitude_contrast,
    pixel_size: PixelSize = None,
    strength: Strength = _DECONV.strength,
    falloff: Falloff = _DECONV.falloff,
    highpass: Highpass = _DECONV.highpass_a or 0.0,
    full_size: FullSize = False,
) -> None:
    """Deconvolve micrographs with Warp's CTF filter; writes <name>_deconv.png and .mrc.

    Example: cryowarp denoise deconvolve 'project/average/*.mrc' --out deconv --strength 1 \
--falloff 1
    """
    source = _ctf_source(
        ctf_dir,
        defocus,
        astigmatism=astigmatism,
        astigmatism_angle=astigmatism_angle,
        phase_shift=phase_shift,
        voltage=voltage,
        cs=cs,
        amplitude_contrast=amplitude_contrast,
    )
    settings = _deconvolution(strength, falloff, highpass)
    files = expand_patterns(micrographs, what="micrograph")
    out.mkdir(parents=True, exist_ok=True)

    def process(path: Path) -> tuple[DisplayImages, dict[str, Path]]:
        image, pixel = _read_micrograph(path, pixel_size)
        display = _display_settings(image, pixel, full_size)
        images = display_images(
            image,
            pixel_size_a=pixel,
            ctf=source.for_micrograph(path),
            deconvolution=settings,
            settings=display,
        )
        written = write_display_images(
            images, name=path.stem, out_dir=out, settings=display, folder=""
        )
        return images, written

    _report(_run_batch(files, process, what="deconvolving"), out, title="Deconvolution")


def apply(
    micrographs: Micrographs,
    out: Out,
    model: Annotated[
        str,
        typer.Option(
            "--model",
            help="Denoiser model: a name (shipped, or in --models-dir) or a .n2n.pt file.",
        ),
    ] = DEFAULT_DENOISER_MODEL,
    models_dir: Annotated[
        Path | None,
        typer.Option("--models-dir", help="Folder searched for named models first."),
    ] = None,
    halves: Annotated[
        bool,
        typer.Option(
            "--halves/--no-halves",
            help="Denoise the odd and even half averages (odd/<name>.mrc and even/<name>.mrc "
            "beside each micrograph) separately and average them.",
        ),
    ] = False,
    ctf_dir: CtfDir = None,
    defocus: Defocus = None,
    astigmatism: Astigmatism = 0.0,
    astigmatism_angle: AstigmatismAngle = 0.0,
    phase_shift: PhaseShift = 0.0,
    voltage: Voltage = _OPTICS.voltage_kv,
    cs: Cs = _OPTICS.cs_mm,
    amplitude_contrast: AmplitudeContrast = _OPTICS.amplitude_contrast,
    pixel_size: PixelSize = None,
    strength: Strength = _DECONV.strength,
    falloff: Falloff = _DECONV.falloff,
    highpass: Highpass = _DECONV.highpass_a or 0.0,
    full_size: FullSize = False,
    device: Device = "cpu",
) -> None:
    """Deconvolve and denoise micrographs; writes <name>_deconv and <name>_denoised .png/.mrc.

    The denoiser runs at its own pixel size (4 Å for the shipped model) on its input \
deconvolved as its training data; --strength, --falloff and --highpass set the deconvolved \
image only.

    Example: cryowarp denoise apply 'project/average/*.mrc' --model n2n_micrograph_v1 --out den
    """
    source = _ctf_source(
        ctf_dir,
        defocus,
        astigmatism=astigmatism,
        astigmatism_angle=astigmatism_angle,
        phase_shift=phase_shift,
        voltage=voltage,
        cs=cs,
        amplitude_contrast=amplitude_contrast,
    )
    settings = _deconvolution(strength, falloff, highpass)
    dev = parse_device(device)
    denoiser = _load_model(model, models_dir)
    files = expand_patterns(micrographs, what="micrograph")
    out.mkdir(parents=True, exist_ok=True)

    def process(path: Path) -> tuple[DisplayImages, dict[str, Path]]:
        image, pixel = _read_micrograph(path, pixel_size)
        odd = even = None
        if halves:
            odd, _ = _read_micrograph(path.parent / "odd" / path.name, pixel)
            even, _ = _read_micrograph(path.parent / "even" / path.name, pixel)
        display = _display_settings(image, pixel, full_size)
        images = display_images(
            image,
            pixel_size_a=pixel,
            ctf=source.for_micrograph(path),
            deconvolution=settings,
            denoiser=denoiser,
            odd=odd,
            even=even,
            settings=display,
            device=dev,
        )
        written = write_display_images(
            images, name=path.stem, out_dir=out, settings=display, folder=""
        )
        return images, written

    _report(_run_batch(files, process, what="denoising"), out, title="Denoising")


def _load_model(name_or_path: str, models_dir: Path | None) -> DenoiserModel:
    try:
        search = (models_dir,) if models_dir is not None else ()
        return load_denoiser_model(resolve_denoiser_model(name_or_path, search=search))
    except CryowarpError as error:
        raise typer.BadParameter(str(error), param_hint="--model") from error


denoise_app.command("deconvolve")(deconvolve)
denoise_app.command("apply")(apply)
denoise_app.command("train")(train)
