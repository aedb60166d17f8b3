"""The ``cryowarp`` command-line entry point.

Every sub-command is defined in its own module of :mod:`cryowarp.cli` and registered here.
"""

from __future__ import annotations

import typer

from cryowarp import __version__
from cryowarp.cli.boxnet import boxnet_app
from cryowarp.cli.ctf import ctf_app
from cryowarp.cli.dashboard import dashboard
from cryowarp.cli.demo import demo
from cryowarp.cli.denoise import denoise_app
from cryowarp.cli.export import export_app
from cryowarp.cli.motion import motion_app
from cryowarp.cli.pick import pick_app
from cryowarp.cli.project import init, run, settings_app, status
from cryowarp.cli.reconstruct import reconstruct
from cryowarp.cli.simulate import simulate_app

app = typer.Typer(
    name="cryowarp",
    help="Cryo-EM pre-processing (Warp) and multi-particle refinement (M) on PyTorch.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"cryowarp {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """Cryo-EM pre-processing (Warp) and multi-particle refinement (M) on PyTorch."""


app.command("demo")(demo)
app.add_typer(simulate_app, name="simulate")
app.add_typer(motion_app, name="motion")
app.add_typer(ctf_app, name="ctf")
app.add_typer(boxnet_app, name="boxnet")
app.add_typer(pick_app, name="pick")
app.add_typer(denoise_app, name="denoise")
app.add_typer(export_app, name="export")
app.command("reconstruct")(reconstruct)
app.command("init")(init)
app.command("run")(run)
app.command("status")(status)
app.command("dashboard")(dashboard)
app.add_typer(settings_app, name="settings")
