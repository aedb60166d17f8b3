"""``cryowarp simulate tilt-series``: a simulated tilt series with its exact ground truth.

Writes the tilt stack (MRC), a SerialEM-style ``.mdoc``, IMOD ``.tlt``/``.rawtlt``/``.xf``,
optional tilt movies and a ``ground_truth`` folder (docs/simulator.md, "Tilt series").
Defaults and help texts come from :class:`~cryowarp.simulate.tilt_presets.TiltSeriesSettings`;
an option left out keeps the preset's value.

Example::

    cryowarp simulate tilt-series ts_out --preset small --seed 1 --step 2 --axis-angle 175
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import ValidationError

from cryowarp.simulate.build_species import build_species
from cryowarp.simulate.tilt_presets import TiltSeriesSettings, tilt_series_preset
from cryowarp.simulate.tilt_series import simulate_tilt_series
from cryowarp.simulate.tilt_series_files import write_tilt_series_dataset

__all__ = ["register", "tilt_series"]

_HELP = {name: field.description or "" for name, field in TiltSeriesSettings.model_fields.items()}
_NOTE = " (default: the preset's value)"


class TiltPreset(StrEnum):
    tiny = "tiny"
    small = "small"


class Scheme(StrEnum):
    dose_symmetric = "dose_symmetric"
    bidirectional = "bidirectional"


class StackOrder(StrEnum):
    acquisition = "acquisition"
    angle = "angle"


def tilt_series(
    out: Annotated[Path, typer.Argument(help="Output folder (created).")],
    preset: Annotated[
        TiltPreset, typer.Option("--preset", help="Preset: tiny (tests) or small (integration).")
    ] = TiltPreset.tiny,
    seed: Annotated[int, typer.Option("--seed", help="Seed of every random draw.")] = 0,
    scheme: Annotated[Scheme | None, typer.Option("--scheme", help=_HELP["scheme"] + _NOTE)] = None,
    min_angle: Annotated[
        float | None, typer.Option("--min-angle", help=_HELP["min_angle_deg"] + _NOTE)
    ] = None,
    max_angle: Annotated[
        float | None, typer.Option("--max-angle", help=_HELP["max_angle_deg"] + _NOTE)
    ] = None,
    step: Annotated[float | None, typer.Option("--step", help=_HELP["step_deg"] + _NOTE)] = None,
    start_angle: Annotated[
        float | None, typer.Option("--start-angle", help=_HELP["start_angle_deg"] + _NOTE)
    ] = None,
    axis_angle: Annotated[
        float | None, typer.Option("--axis-angle", help=_HELP["tilt_axis_angle_deg"] + _NOTE)
    ] = None,
    thickness: Annotated[
        float | None, typer.Option("--thickness", help=_HELP["thickness_a"] + _NOTE)
    ] = None,
    pretilt: Annotated[
        float | None, typer.Option("--pretilt", help=_HELP["pretilt_deg"] + _NOTE)
    ] = None,
    dose_per_tilt: Annotated[
        float | None,
        typer.Option("--dose-per-tilt", help=_HELP["dose_per_tilt_e_per_a2"] + _NOTE),
    ] = None,
    pixel_size: Annotated[
        float | None, typer.Option("--pixel-size", help=_HELP["pixel_size_a"] + _NOTE)
    ] = None,
    size: Annotated[
        tuple[int, int] | None, typer.Option("--size", help=_HELP["shape_px"] + _NOTE)
    ] = None,
    defocus: Annotated[
        float | None, typer.Option("--defocus", help=_HELP["target_defocus_um"] + _NOTE)
    ] = None,
    particles: Annotated[
        int | None, typer.Option("--particles", help=_HELP["n_particles"] + _NOTE)
    ] = None,
    frames_per_tilt: Annotated[
        int | None, typer.Option("--frames-per-tilt", help=_HELP["frames_per_tilt"] + _NOTE)
    ] = None,
    stack_order: Annotated[
        StackOrder | None, typer.Option("--stack-order", help=_HELP["stack_order"] + _NOTE)
    ] = None,
) -> None:
    """Simulate a tilt series of particles in a slab, with .mdoc/.tlt/.xf and ground truth.

    Example: cryowarp simulate tilt-series ts_out --preset tiny --seed 1 --scheme bidirectional
    """
    overrides: dict[str, Any] = {
        "scheme": None if scheme is None else scheme.value,
        "min_angle_deg": min_angle,
        "max_angle_deg": max_angle,
        "step_deg": step,
        "start_angle_deg": start_angle,
        "tilt_axis_angle_deg": axis_angle,
        "thickness_a": thickness,
        "pretilt_deg": pretilt,
        "dose_per_tilt_e_per_a2": dose_per_tilt,
        "pixel_size_a": pixel_size,
        "shape_px": size,
        "target_defocus_um": defocus,
        "n_particles": particles,
        "frames_per_tilt": frames_per_tilt,
        "stack_order": None if stack_order is None else stack_order.value,
    }
    try:
        settings = tilt_series_preset(
            preset.value, **{k: v for k, v in overrides.items() if v is not None}
        )
    except (ValidationError, ValueError) as error:
        raise typer.BadParameter(str(error)) from error
    species = build_species(settings, seed=seed)
    sim = simulate_tilt_series(settings, species, seed=seed)
    dataset = write_tilt_series_dataset(out, sim, seed=seed, species=species)
    typer.echo(
        f"[simulate] wrote {sim.geometry.n_tilts} tilts ({len(sim.particles)} particles), "
        f"{dataset.mdoc.name}, {dataset.xf.name}, {dataset.tlt.name} and "
        f"{dataset.ground_truth.relative_to(dataset.folder)} to {dataset.folder}"
    )


def register(simulate_app: typer.Typer) -> None:
    """Add the ``tilt-series`` command to the ``simulate`` sub-app."""
    simulate_app.command("tilt-series")(tilt_series)
