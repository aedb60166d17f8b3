"""``cryowarp simulate``: synthetic data with exact ground truth.

``frame-series`` writes movies (MRC or TIFF), a gain reference and a ``ground_truth`` folder
(docs/simulator.md). Defaults and help texts come from
:class:`~cryowarp.simulate.presets.FrameSeriesSettings` and
:class:`~cryowarp.simulate.presets.FrameSeriesJob`; an option left out keeps the preset's value.

Example::

    cryowarp simulate frame-series sim_out --preset small --movies 4 --seed 1 --pixel-size 1.0
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import ValidationError

from cryowarp.cli.simulate_tilt import register as register_tilt_series
from cryowarp.simulate.presets import FrameSeriesJob, FrameSeriesSettings, frame_series_preset
from cryowarp.simulate.write import write_frame_series_dataset

__all__ = ["frame_series", "simulate_app"]

simulate_app = typer.Typer(
    name="simulate",
    help="Simulate data with exact ground truth (frame series, tilt series).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

_JOB = FrameSeriesJob()
_HELP = {name: field.description or "" for name, field in FrameSeriesSettings.model_fields.items()}
_JOB_HELP = {name: field.description or "" for name, field in FrameSeriesJob.model_fields.items()}
_PRESET_NOTE = " (default: the preset's value)"


class Preset(StrEnum):
    tiny = "tiny"
    small = "small"
    k3 = "k3"


class MovieFormat(StrEnum):
    mrc = "mrc"
    tiff = "tiff"


_DEFAULT_PRESET = Preset(_JOB.preset)


def frame_series(
    out: Annotated[Path, typer.Argument(help="Output folder (created).")],
    preset: Annotated[Preset, typer.Option("--preset", help=_JOB_HELP["preset"])] = _DEFAULT_PRESET,
    movies: Annotated[int, typer.Option("--movies", help=_JOB_HELP["n_movies"])] = _JOB.n_movies,
    seed: Annotated[int, typer.Option("--seed", help=_JOB_HELP["seed"])] = _JOB.seed,
    pixel_size: Annotated[
        float | None, typer.Option("--pixel-size", help=_HELP["pixel_size_a"] + _PRESET_NOTE)
    ] = None,
    dose_per_frame: Annotated[
        float | None,
        typer.Option("--dose-per-frame", help=_HELP["dose_per_frame_e_per_a2"] + _PRESET_NOTE),
    ] = None,
    frames: Annotated[
        int | None, typer.Option("--frames", help=_HELP["n_frames"] + _PRESET_NOTE)
    ] = None,
    size: Annotated[
        tuple[int, int] | None,
        typer.Option("--size", help=_HELP["shape_px"] + _PRESET_NOTE),
    ] = None,
    defocus_range: Annotated[
        tuple[float, float] | None,
        typer.Option("--defocus-range", help=_HELP["defocus_range_um"] + _PRESET_NOTE),
    ] = None,
    astigmatism_range: Annotated[
        tuple[float, float] | None,
        typer.Option("--astigmatism-range", help=_HELP["astigmatism_range_um"] + _PRESET_NOTE),
    ] = None,
    sample_tilt_range: Annotated[
        tuple[float, float] | None,
        typer.Option("--sample-tilt-range", help=_HELP["sample_tilt_range_deg"] + _PRESET_NOTE),
    ] = None,
    phase_shift: Annotated[
        float | None, typer.Option("--phase-shift", help=_HELP["phase_shift_deg"] + _PRESET_NOTE)
    ] = None,
    ice_thickness: Annotated[
        float | None,
        typer.Option("--ice-thickness", help=_HELP["ice_thickness_a"] + _PRESET_NOTE),
    ] = None,
    particles: Annotated[
        int | None, typer.Option("--particles", help=_HELP["n_particles"] + _PRESET_NOTE)
    ] = None,
    voltage: Annotated[
        float | None, typer.Option("--voltage", help=_HELP["voltage_kv"] + _PRESET_NOTE)
    ] = None,
    cs: Annotated[float | None, typer.Option("--cs", help=_HELP["cs_mm"] + _PRESET_NOTE)] = None,
    drift: Annotated[
        float | None, typer.Option("--drift", help=_HELP["drift_a"] + _PRESET_NOTE)
    ] = None,
    local_motion: Annotated[
        float | None, typer.Option("--local-motion", help=_HELP["local_motion_a"] + _PRESET_NOTE)
    ] = None,
    movie_format: Annotated[
        MovieFormat | None,
        typer.Option("--format", help=_HELP["output_format"] + _PRESET_NOTE),
    ] = None,
) -> None:
    """Simulate movies of particles in ice, with a gain reference and the exact ground truth.

    Example: cryowarp simulate frame-series sim_out --preset tiny --movies 2 --seed 1
    """
    overrides: dict[str, Any] = {
        "pixel_size_a": pixel_size,
        "dose_per_frame_e_per_a2": dose_per_frame,
        "n_frames": frames,
        "shape_px": size,
        "defocus_range_um": defocus_range,
        "astigmatism_range_um": astigmatism_range,
        "sample_tilt_range_deg": sample_tilt_range,
        "phase_shift_deg": phase_shift,
        "ice_thickness_a": ice_thickness,
        "n_particles": particles,
        "voltage_kv": voltage,
        "cs_mm": cs,
        "drift_a": drift,
        "local_motion_a": local_motion,
        "output_format": None if movie_format is None else movie_format.value,
    }
    try:
        job = FrameSeriesJob(preset=preset.value, n_movies=movies, seed=seed)
        settings = frame_series_preset(
            job.preset, **{k: v for k, v in overrides.items() if v is not None}
        )
    except ValidationError as error:
        raise typer.BadParameter(str(error)) from error
    dataset = write_frame_series_dataset(
        out,
        settings,
        n_movies=job.n_movies,
        seed=job.seed,
        log=lambda line: typer.echo(f"[simulate] {line}"),
    )
    typer.echo(
        f"[simulate] wrote {len(dataset.movies)} movies, {dataset.gain.name} and "
        f"{dataset.ground_truth.relative_to(dataset.folder)} to {dataset.folder}"
    )


simulate_app.command("frame-series")(frame_series)
register_tilt_series(simulate_app)  # cli/simulate_tilt.py
