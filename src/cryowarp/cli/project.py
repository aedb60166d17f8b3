"""``cryowarp init|run|status|settings``: a processing project (docs/pipeline.md).

``init`` creates a project (typed settings in ``PROJECT/cryowarp.json``), ``run`` brings every
movie up to date (``--watch`` keeps taking new ones), ``status`` reports counts, failures,
throughput and quality, ``settings show|set`` read and change one setting by its dotted key.
Defaults and help texts come from :class:`~cryowarp.pipeline.settings.ProjectSettings` and
the models it holds (one source of truth).

Example::

    cryowarp init proj --data 'raw/*.tif' --pixel-size 0.83 --dose-per-frame 1.0 \\
        --voltage 300 --cs 2.7 --gain raw/gain.mrc
    cryowarp run proj --workers 2
    cryowarp settings set proj ctf.defocus_max_um 4
    cryowarp status proj
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from cryowarp.errors import CryowarpError
from cryowarp.pipeline.executors import make_executor
from cryowarp.pipeline.project import Project, init_project, open_project, save_settings
from cryowarp.pipeline.runner import ItemOutcome, run_project
from cryowarp.pipeline.settings import (
    DataSettings,
    OpticsSettings,
    ProjectSettings,
    WorkerSettings,
    set_setting,
)
from cryowarp.pipeline.status import format_status, project_status
from cryowarp.pipeline.steps import settings_hashes
from cryowarp.preprocess.motion.settings import MovieInputSettings

__all__ = ["init", "run", "settings_app", "settings_set", "settings_show", "status"]

_IN = MovieInputSettings()
_OP = OpticsSettings()
_WO = WorkerSettings()
_IN_HELP = {name: f.description or "" for name, f in MovieInputSettings.model_fields.items()}
_OP_HELP = {name: f.description or "" for name, f in OpticsSettings.model_fields.items()}
_WO_HELP = {name: f.description or "" for name, f in WorkerSettings.model_fields.items()}

ProjectArg = Annotated[Path, typer.Argument(help="The project folder.", metavar="PROJECT")]


def _open(folder: Path) -> Project:
    try:
        return open_project(folder)
    except CryowarpError as error:
        raise typer.BadParameter(str(error), param_hint="PROJECT") from error


def _relative_to_project(path_text: str, project: Path) -> str:
    """A path or pattern given relative to the working folder, relative to the project."""
    return os.path.relpath(os.path.abspath(path_text), os.path.abspath(project))


def init(
    project: ProjectArg,
    data: Annotated[
        str,
        typer.Option(
            "--data",
            help="Raw movies: a glob pattern (quote it), e.g. 'raw/*.tif'.",
            show_default=False,
        ),
    ],
    pixel_size: Annotated[
        float | None, typer.Option("--pixel-size", help=_IN_HELP["pixel_size_a"])
    ] = _IN.pixel_size_a,
    dose_per_frame: Annotated[
        float, typer.Option("--dose-per-frame", help=_IN_HELP["dose_per_frame_e_per_a2"])
    ] = _IN.dose_per_frame_e_per_a2,
    voltage: Annotated[
        float, typer.Option("--voltage", help=_OP_HELP["voltage_kv"])
    ] = _OP.voltage_kv,
    cs: Annotated[float, typer.Option("--cs", help=_OP_HELP["cs_mm"])] = _OP.cs_mm,
    amplitude_contrast: Annotated[
        float, typer.Option("--amplitude-contrast", help=_OP_HELP["amplitude_contrast"])
    ] = _OP.amplitude_contrast,
    gain: Annotated[Path | None, typer.Option("--gain", help=_IN_HELP["gain_path"])] = None,
    defects: Annotated[
        Path | None, typer.Option("--defects", help=_IN_HELP["defects_path"])
    ] = None,
    set_values: Annotated[
        list[str] | None,
        typer.Option(
            "--set",
            help="Any other setting as KEY=VALUE (dotted key, e.g. motion.max_iterations=30; "
            "see `cryowarp settings show`). Repeatable.",
        ),
    ] = None,
    force: Annotated[
        bool, typer.Option("--force", help="Replace the settings of an existing project.")
    ] = False,
) -> None:
    """Create a processing project for the movies matching --data.

    Paths given here are stored relative to the project folder.

    Example: cryowarp init proj --data 'raw/*.tif' --pixel-size 0.83 --dose-per-frame 1.0 \
--voltage 300 --cs 2.7 --gain raw/gain.mrc
    """
    movie: dict[str, Any] = {"pixel_size_a": pixel_size, "dose_per_frame_e_per_a2": dose_per_frame}
    if gain is not None:
        movie["gain_path"] = _relative_to_project(str(gain), project)
    if defects is not None:
        movie["defects_path"] = _relative_to_project(str(defects), project)
    pattern = data if os.path.isabs(data) else _relative_to_project(data, project)
    try:
        settings = ProjectSettings(
            data=DataSettings(pattern=pattern, movie=MovieInputSettings(**movie)),
            optics=OpticsSettings(
                voltage_kv=voltage, cs_mm=cs, amplitude_contrast=amplitude_contrast
            ),
        )
        for item in set_values or []:
            key, sep, value = item.partition("=")
            if not sep:
                raise ValueError(f"--set needs KEY=VALUE, got {item!r}")
            settings = set_setting(settings, key.strip(), value.strip())
        created = init_project(project, settings, overwrite=force)
    except (ValueError, CryowarpError) as error:
        raise typer.BadParameter(str(error)) from error
    n_movies = len(created.raw_files())
    typer.echo(f"created {created.settings_path} ({n_movies} movies match {pattern!r} now)")
    if n_movies == 0:
        typer.echo("warning: no movie matches the pattern yet (fine for --watch)", err=True)


@contextmanager
def _graceful_interrupt(stop: threading.Event) -> Iterator[None]:
    """The first Ctrl-C asks the run to stop after the running items; the second aborts."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.getsignal(signal.SIGINT)

    def handler(signum: int, frame: FrameType | None) -> None:
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()
        typer.echo("\nstopping after the running items (Ctrl-C again to abort)", err=True)

    signal.signal(signal.SIGINT, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def run(
    project: ProjectArg,
    watch: Annotated[
        bool,
        typer.Option(
            "--watch", help="Keep watching for new movies until Ctrl-C (or --stop-after)."
        ),
    ] = False,
    workers: Annotated[
        int | None,
        typer.Option(
            "--workers",
            help=_WO_HELP["n_workers"] + " 0 runs in this process. Default: the project's "
            "workers.n_workers.",
        ),
    ] = None,
    cluster: Annotated[
        str | None,
        typer.Option(
            "--cluster",
            help="Run on Dask: 'local', a scheduler address (tcp://host:8786) or a "
            "dask-jobqueue .yaml. Default: the project's workers.cluster.",
        ),
    ] = None,
    device: Annotated[
        list[str] | None,
        typer.Option("--device", help=_WO_HELP["devices"] + " Repeatable."),
    ] = None,
    stop_after: Annotated[
        float | None,
        typer.Option(
            "--stop-after", help="Stop taking new items after this many seconds (watch mode)."
        ),
    ] = None,
) -> None:
    """Bring every movie of the project up to date (only what changed is redone).

    Exit code 1 when an item handled in this run is not done (failed, quarantined, error).

    Example: cryowarp run proj --workers 2 --watch
    """
    opened = _open(project)
    workers_settings = opened.settings.workers
    try:
        executor = make_executor(
            workers=workers if workers is not None else workers_settings.n_workers,
            cluster=cluster if cluster is not None else workers_settings.cluster,
            devices=device or workers_settings.devices,
        )
    except (ValueError, CryowarpError) as error:
        raise typer.BadParameter(str(error)) from error
    stop = threading.Event()
    deadline = None if stop_after is None else time.monotonic() + stop_after
    console = Console(stderr=True)
    bar = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
    )
    failed: list[ItemOutcome] = []

    def on_item(outcome: ItemOutcome, done: int, known: int) -> None:
        bar.update(task, completed=done, total=known, description=f"items ({outcome.name})")
        if outcome.state != "done":
            failed.append(outcome)
            console.print(f"{outcome.name}: {outcome.state}: {outcome.reason}")

    def should_stop() -> bool:
        return stop.is_set() or (deadline is not None and time.monotonic() > deadline)

    try:
        with _graceful_interrupt(stop), bar:
            task = bar.add_task("items", total=None)
            summary = run_project(
                opened, watch=watch, executor=executor, progress=on_item, stop=should_stop
            )
    finally:
        executor.shutdown(cancel=True)
    done = summary.count("done")
    typer.echo(
        f"{len(summary.outcomes)} items processed in {summary.seconds:.1f} s: {done} done, "
        f"{len(summary.outcomes) - done} not done; {summary.n_items} items in the project"
    )
    typer.echo(
        f"results: {opened.folder / 'average'}, {opened.folder / 'ctf'}; records in "
        f"{opened.items_folder}; `cryowarp status {project}` for details"
    )
    if failed:
        raise typer.Exit(1)


def status(
    project: ProjectArg,
    as_json: Annotated[bool, typer.Option("--json", help="Print the status as JSON.")] = False,
) -> None:
    """Per-step counts, failures with reasons, throughput (movies/hour) and quality.

    Example: cryowarp status proj --json
    """
    report = project_status(_open(project))
    if as_json:
        typer.echo(json.dumps(report.to_dict(), indent=2))
    else:
        typer.echo(format_status(report))


def settings_show(
    project: ProjectArg,
    key: Annotated[
        str | None, typer.Argument(help="A dotted key or section, e.g. motion (default: all).")
    ] = None,
) -> None:
    """Print the project's settings (or one section or value) as JSON.

    Example: cryowarp settings show proj motion
    """
    value: Any = _open(project).settings.model_dump(mode="json")
    for part in key.split(".") if key else []:
        if not isinstance(value, dict) or part not in value:
            raise typer.BadParameter(f"no setting {key!r}", param_hint="KEY")
        value = value[part]
    typer.echo(json.dumps(value, indent=2, ensure_ascii=False))


def settings_set(
    project: ProjectArg,
    key: Annotated[str, typer.Argument(help="Dotted key, e.g. motion.max_iterations.")],
    value: Annotated[str, typer.Argument(help="New value (JSON, or plain text for strings).")],
) -> None:
    """Change one setting; the next run redoes the steps that depend on it (and later ones).

    Example: cryowarp settings set proj ctf.defocus_max_um 4
    """
    opened = _open(project)
    try:
        updated = set_setting(opened.settings, key, value)
    except ValueError as error:
        raise typer.BadParameter(str(error)) from error
    before, after = settings_hashes(opened), settings_hashes(opened.with_settings(updated))
    save_settings(opened.settings_path, updated)
    stale = [step for step in after if before[step] != after[step]]
    typer.echo(f"{key} = {json.dumps(_lookup(updated, key))}")
    typer.echo("steps to redo on the next run: " + (", ".join(stale) if stale else "none"))


def _lookup(settings: ProjectSettings, key: str) -> Any:
    value: Any = settings.model_dump(mode="json")
    for part in key.split("."):
        value = value[part]
    return value


settings_app = typer.Typer(
    name="settings",
    help="Show or change a project's settings.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
settings_app.command("show")(settings_show)
settings_app.command("set")(settings_set)
