"""``cryowarp demo``: the main job on an embedded default.

Simulates CTF-affected noisy projections of a procedural phantom, exports them as an MRC
stack with a RELION 5 ``particles.star``, reads them back, reconstructs two half-maps by
CTF-weighted Fourier back-projection and reports the FSC.

Example::

    cryowarp demo --out demo_out --particles 1000 --box 48 --pixel-size 2.0
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cryowarp.pipeline.demo import DemoSettings, run_demo

_DEFAULTS = DemoSettings()
_HELP = {name: field.description for name, field in DemoSettings.model_fields.items()}


def demo(
    out: Annotated[Path, typer.Option("--out", help="Output folder.")] = Path("cryowarp_demo"),
    particles: Annotated[
        int, typer.Option("--particles", help=_HELP["n_particles"])
    ] = _DEFAULTS.n_particles,
    box: Annotated[int, typer.Option("--box", help=_HELP["box_size_px"])] = _DEFAULTS.box_size_px,
    pixel_size: Annotated[
        float, typer.Option("--pixel-size", help=_HELP["pixel_size_a"])
    ] = _DEFAULTS.pixel_size_a,
    snr: Annotated[float, typer.Option("--snr", help=_HELP["snr"])] = _DEFAULTS.snr,
    seed: Annotated[int, typer.Option("--seed", help=_HELP["seed"])] = _DEFAULTS.seed,
) -> None:
    """Run the demo job: simulate, export to RELION STAR + MRC, read back, reconstruct, FSC.

    Example: cryowarp demo --out demo_out --particles 1000 --box 48 --pixel-size 2.0
    """
    try:
        settings = DemoSettings(
            n_particles=particles, box_size_px=box, pixel_size_a=pixel_size, snr=snr, seed=seed
        )
    except ValueError as error:
        raise typer.BadParameter(str(error)) from error
    result = run_demo(out, settings, log=lambda line: typer.echo(f"[demo] {line}"))
    typer.echo(f"[demo] wrote {len(result.files)} files to {result.out_dir}")
