"""``cryowarp reconstruct``: half-maps, full map and FSC from a RELION particle STAR file.

CTF-weighted Fourier back-projection with symmetry and RELION-like Wiener regularisation
(docs/reconstruction.md); poses, origins and CTF are read as RELION defines them. Writes
``half1.mrc``, ``half2.mrc``, ``map.mrc``, ``fsc.star`` and ``reconstruction.json`` into
``--out``; exits with code 1 and the reason when the input cannot be used. Defaults and help
texts come from :class:`~cryowarp.refine.reconstruction.settings.ReconstructionSettings`.

Example::

    cryowarp reconstruct Extract/particles.star --out recon --sym C4 --mask-diameter 180
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from cryowarp.cli._common import parse_device
from cryowarp.errors import CryowarpInputError
from cryowarp.refine.reconstruction import ReconstructionSettings, reconstruct_from_star

__all__ = ["reconstruct"]

_S = ReconstructionSettings()
_HELP = {name: f.description or "" for name, f in ReconstructionSettings.model_fields.items()}


class Regularisation(StrEnum):
    wiener = "wiener"
    none = "none"


_DEFAULT_REGULARISATION = Regularisation(_S.regularisation)


def reconstruct(
    particles_star: Annotated[
        Path, typer.Argument(help="RELION particle STAR file (poses, origins and CTF).")
    ],
    out: Annotated[Path, typer.Option("--out", help="Output folder (created).")],
    sym: Annotated[str, typer.Option("--sym", help=_HELP["symmetry"])] = _S.symmetry,
    mask_diameter: Annotated[
        float | None, typer.Option("--mask-diameter", help=_HELP["mask_diameter_a"])
    ] = _S.mask_diameter_a,
    reference: Annotated[
        Path | None,
        typer.Option(
            "--reference",
            help="Reference map (MRC, same box and pixel size) for an FSC of the map against it.",
        ),
    ] = None,
    device: Annotated[
        str, typer.Option("--device", help='Where to compute: "cpu", "cuda", "cuda:N".')
    ] = "cpu",
    batch_size: Annotated[
        int, typer.Option("--batch-size", help=_HELP["batch_size"])
    ] = _S.batch_size,
    root: Annotated[
        Path | None,
        typer.Option(
            "--root",
            help="Folder the image paths in the STAR file are relative to (default: the STAR "
            "file's folder; RELION projects: the project folder).",
        ),
    ] = None,
    regularisation: Annotated[
        Regularisation, typer.Option("--regularisation", help=_HELP["regularisation"])
    ] = _DEFAULT_REGULARISATION,
    tau2_fudge: Annotated[
        float, typer.Option("--tau2-fudge", help=_HELP["tau2_fudge"])
    ] = _S.tau2_fudge,
    seed: Annotated[int, typer.Option("--seed", help=_HELP["half_set_seed"])] = _S.half_set_seed,
    skip_bad_stacks: Annotated[
        bool,
        typer.Option("--skip-bad-stacks/--no-skip-bad-stacks", help=_HELP["skip_bad_stacks"]),
    ] = _S.skip_bad_stacks,
) -> None:
    """Reconstruct half-maps, the full map and the FSC from particles with known poses.

    Example: cryowarp reconstruct Extract/particles.star --out recon --sym C4 --mask-diameter 180
    """
    try:
        settings = ReconstructionSettings(
            symmetry=sym,
            mask_diameter_a=mask_diameter,
            batch_size=batch_size,
            regularisation=regularisation.value,
            tau2_fudge=tau2_fudge,
            half_set_seed=seed,
            skip_bad_stacks=skip_bad_stacks,
        )
    except ValidationError as error:
        raise typer.BadParameter(str(error)) from error
    dev = parse_device(device)
    console = Console(stderr=True)
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    ) as bar:
        task = bar.add_task(f"inserting {particles_star.name}", total=None)
        try:
            result = reconstruct_from_star(
                particles_star,
                settings=settings,
                out_dir=out,
                device=dev,
                reference=reference,
                root=root,
                progress=lambda done, total: bar.update(task, completed=done, total=total),
            )
        except CryowarpInputError as error:
            bar.stop()
            typer.echo(f"FAILED: {error}", err=True)
            raise typer.Exit(1) from error
    for message in result.skipped:
        typer.echo(f"skipped: {message}", err=True)
    half1, half2 = result.n_particles
    typer.echo(
        f"{half1} + {half2} particles, symmetry {result.symmetry}, "
        f"{result.box_size} px at {result.pixel_size_a:g} Å/px ({result.half_set_source})"
    )
    typer.echo(f"resolution (FSC 0.143, unmasked): {result.resolution_a:.2f} Å")
    if result.resolution_masked_a is not None:
        typer.echo(f"resolution (FSC 0.143, masked): {result.resolution_masked_a:.2f} Å")
    if result.reference_resolution_05_a is not None:
        typer.echo(
            f"FSC against the reference: 0.5 at {result.reference_resolution_05_a:.2f} Å, "
            f"0.143 at {result.reference_resolution_0143_a:.2f} Å"
        )
    for path in result.files:
        typer.echo(f"wrote {path}")
