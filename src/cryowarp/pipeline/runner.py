"""Bring every item of a project up to date (docs/pipeline.md, "Running").

:func:`discover_items` finds the raw movies and keeps one record per item (content-based
identity: a moved or renamed movie keeps its item); :func:`plan` says which steps of which
items are stale; :func:`run_item` brings one item up to date in a worker; :func:`run_project`
does it all, once or, with ``watch=True``, for new movies as they arrive until ``stop()``.

Crash safety: :func:`run_item` holds the item's lock, writes each step's outputs into a
staging folder, moves them into place and then writes the item record atomically. A process
killed at any moment loses at most the step in progress (its leftovers are removed on the next
visit) and never redoes a finished one.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from cryowarp.errors import CryowarpInputError, MissingFileError
from cryowarp.io.movie import open_movie
from cryowarp.pipeline._item_files import clean_leftovers, commit_outputs, item_lock, link_input
from cryowarp.pipeline.discovery import discover_items, register_raw_file
from cryowarp.pipeline.events import EventLog
from cryowarp.pipeline.executors import (
    Executor,
    LocalPoolExecutor,
    SerialExecutor,
    estimate_movie_task_bytes,
    make_executor,
    memory_slots,
)
from cryowarp.pipeline.items import (
    ItemRecord,
    StepRecord,
    StepStatus,
    read_item_record,
    write_item_record,
)
from cryowarp.pipeline.project import Project, open_project
from cryowarp.pipeline.steps import (
    STEPS,
    StepContext,
    settings_hashes,
    stale_steps,
    step_states,
)
from cryowarp.pipeline.watch import CompleteFile, FolderWatcher

__all__ = [
    "ItemOutcome",
    "RunSummary",
    "discover_items",
    "item_state",
    "plan",
    "run_item",
    "run_project",
]

ItemState = Literal["done", "failed", "quarantined", "error", "pending", "busy"]


@dataclass(frozen=True)
class ItemOutcome:
    """What :func:`run_item` did: the item's state afterwards, the steps it ran, and the reason
    when the item is not done (``busy``: another process holds the item)."""

    name: str
    state: ItemState
    steps_run: tuple[str, ...] = ()
    reason: str | None = None
    seconds: float = 0.0


@dataclass(frozen=True)
class RunSummary:
    """What :func:`run_project` did: one outcome per item handed to a worker, in the order
    they finished, and the wall time in seconds."""

    outcomes: tuple[ItemOutcome, ...] = ()
    seconds: float = 0.0
    n_items: int = 0

    def count(self, state: ItemState) -> int:
        return sum(1 for o in self.outcomes if o.state == state)


Progress = Callable[[ItemOutcome, int, int], None]
"""Called with each finished item, the number finished so far and the number known."""


def plan(project: Project, records: Sequence[ItemRecord]) -> dict[str, list[str]]:
    """The stale steps of each item that has any (item name → step names, in order)."""
    hashes = settings_hashes(project)
    todo = {r.name: stale_steps(r, hashes, project.folder) for r in records}
    return {name: steps for name, steps in todo.items() if steps}


def item_state(record: ItemRecord, project: Project) -> tuple[ItemState, str | None]:
    """The state of an item under the project's current settings, and the reason when it
    is not done: that of its first step that is not done
    (:func:`~cryowarp.pipeline.steps.step_states`), ``done`` when none."""
    states = step_states(record, settings_hashes(project), project.folder)
    for step_name, state in states.items():
        if state != "done":
            previous = record.steps.get(step_name)
            reason = previous.reason if previous is not None and state != "pending" else None
            return state, reason  # type: ignore[return-value]
    return "done", None


# -- one item ----------------------------------------------------------------------------


def run_item(project_dir: str | os.PathLike[str], name: str, device: str = "cpu") -> ItemOutcome:
    """Bring item ``name`` up to date: run its stale steps in order, recording each.

    Runs in a worker (a module-level function, so it pickles). A typed input error
    quarantines the item with its reason; an algorithm that reports failure (or a
    ``ValueError``: settings that cannot handle this movie) fails the step; any other
    exception is recorded as an ``error`` (retried on the next run). Only the item's lock
    holder works on it; when another process holds it the outcome is ``busy``.
    """
    started = time.perf_counter()
    project = open_project(project_dir)
    events = EventLog(project.events_path)
    with item_lock(project, name) as locked:
        if not locked:
            return ItemOutcome(name, "busy", reason="another process is working on this item")
        clean_leftovers(project, name)
        record = read_item_record(project.record_path(name))
        hashes = settings_hashes(project)
        todo = stale_steps(record, hashes, project.folder)
        ran: list[str] = []
        for step in STEPS:
            if step.name not in todo:
                continue
            ran.append(step.name)
            record, status = _run_step(project, record, step.name, hashes, device, events)
            if status != "done":
                break
        shutil.rmtree(project.staging_folder(name), ignore_errors=True)
    state, reason = item_state(record, project)
    if ran and state == "done":
        latency = time.time() - record.complete_at if record.complete_at is not None else None
        events.append("item_done", item=name, latency_s=latency)
    return ItemOutcome(name, state, tuple(ran), reason, time.perf_counter() - started)


def _run_step(
    project: Project,
    record: ItemRecord,
    step_name: str,
    hashes: dict[str, str],
    device: str,
    events: EventLog,
) -> tuple[ItemRecord, StepStatus]:
    step = next(s for s in STEPS if s.name == step_name)
    name = record.name
    events.append("step_started", item=name, step=step_name, worker=f"{os.getpid()}:{device}")
    staging = project.staging_folder(name) / step_name
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    started_at, clock = time.time(), time.perf_counter()
    outputs = {}
    results = {}
    reason: str | None = None
    status: StepStatus
    raw = Path(record.raw_path)
    movie = project.input_link(name, raw.suffix)
    try:
        if not raw.is_file():
            raise MissingFileError(raw, "the raw movie is gone", "put it back or remove the item")
        movie = link_input(project, name, raw)
        output = step.run(StepContext(project, name, movie, staging, device))
        outputs = commit_outputs(staging, output.files, project.folder, step.possible_outputs(name))
        results = output.results
        status, reason = ("failed", output.failure) if output.failure else ("done", None)
    except CryowarpInputError as error:  # name the raw file, not the link to it
        status, reason = "quarantined", str(error).replace(str(movie), str(raw))
    except ValueError as error:
        status, reason = "failed", f"{type(error).__name__}: {error}"
    except Exception as error:  # a bug or a resource problem: recorded, retried next run
        status, reason = "error", f"{type(error).__name__}: {error}"
    seconds = time.perf_counter() - clock
    step_record = StepRecord(
        status=status,
        settings_hash=hashes[step_name],
        outputs=outputs,
        results=results,
        reason=reason,
        started_at=started_at,
        finished_at=time.time(),
        seconds=seconds,
    )
    later = [s.name for s in STEPS[STEPS.index(step) + 1 :] if s.name in record.steps]
    updated = record.with_step(step_name, step_record)
    for other in later:  # their outputs came from the previous run of this step
        updated = updated.with_step(
            other, updated.steps[other].model_copy(update={"status": "stale"})
        )
    write_item_record(project.record_path(name), updated)
    if status == "done":
        events.append("step_finished", item=name, step=step_name, duration_s=seconds)
    elif status == "quarantined":
        events.append("item_quarantined", item=name, step=step_name, reason=reason)
    else:
        events.append("step_failed", item=name, step=step_name, error=reason, status=status)
    return updated, status


# -- the whole project -------------------------------------------------------------------


@dataclass
class _Queue:
    """Items waiting for a worker, those handed to one, and the outcomes so far."""

    waiting: list[str] = field(default_factory=list)
    running: dict[Future[ItemOutcome], str] = field(default_factory=dict)
    outcomes: list[ItemOutcome] = field(default_factory=list)
    known: int = 0


def run_project(
    project: Project | str | os.PathLike[str],
    *,
    watch: bool = False,
    executor: Executor | None = None,
    progress: Progress | None = None,
    stop: Callable[[], bool] | None = None,
) -> RunSummary:
    """Bring every item up to date; with ``watch``, keep taking new movies until ``stop()``.

    Parameters
    ----------
    project:
        A project or its folder; the settings saved in its folder are used (workers read
        them from there too).
    watch:
        Also watch the raw pattern for movies that become complete
        (:class:`~cryowarp.pipeline.watch.FolderWatcher` with ``settings.watch``) and process
        them as they come, until ``stop()`` returns true.
    executor:
        Where items run (default: :func:`~cryowarp.pipeline.executors.make_executor` from
        ``settings.workers``, shut down at the end).
    progress:
        Called with each finished item (:data:`Progress`).
    stop:
        Polled between items: once true, no new item is started and the call returns when
        the running ones are finished.
    """
    folder = project.folder if isinstance(project, Project) else Path(project)
    project = open_project(folder)
    settings = project.settings
    events = EventLog(project.events_path)
    own = executor is None
    if executor is None:
        executor = make_executor(
            workers=settings.workers.n_workers,
            cluster=settings.workers.cluster,
            devices=settings.workers.devices,
        )
    should_stop = stop or (lambda: False)
    started = time.perf_counter()
    events.append(
        "run_started", workers=executor.n_workers, cluster=settings.workers.cluster, watch=watch
    )
    queue = _Queue()
    records: dict[str, ItemRecord] = {}
    watcher: FolderWatcher | None = None
    try:
        records = {r.name: r for r in discover_items(project, events=events, new_files=not watch)}
        queue.waiting = list(plan(project, list(records.values())))
        queue.known = len(queue.waiting)
        if watch:
            watcher = FolderWatcher(
                project.resolve(settings.data.pattern),
                stable_s=settings.watch.stable_s,
                poll_interval_s=settings.watch.poll_interval_s,
                give_up_s=settings.watch.give_up_s,
            )
        poll_s = settings.watch.poll_interval_s if watch else 1.0
        arrived: list[CompleteFile] = []
        in_flight: int | None = None
        while True:
            stopping = should_stop()
            if watcher is not None and not stopping:
                arrived += watcher.poll()
                _take_new_files(project, arrived, watcher, records, queue, events)
                arrived = []
            if in_flight is None and queue.waiting:
                in_flight = _in_flight_limit(project, executor, records[queue.waiting[0]], events)
            while not stopping and queue.waiting and len(queue.running) < (in_flight or 1):
                item = queue.waiting.pop(0)
                queue.running[executor.submit(run_item, str(project.folder), item)] = item
            if not queue.running and (stopping or (not queue.waiting and watcher is None)):
                break
            if queue.running:
                finished, _ = wait(list(queue.running), timeout=poll_s, return_when=FIRST_COMPLETED)
                for future in finished:
                    _collect(future, queue, events, progress)
            elif watcher is not None:
                arrived = watcher.wait(poll_s)
    finally:
        if watcher is not None:
            watcher.close()
        if own:
            executor.shutdown(cancel=True)
        done = sum(1 for o in queue.outcomes if o.state == "done")
        events.append("run_finished", n_done=done, n_failed=len(queue.outcomes) - done)
    return RunSummary(tuple(queue.outcomes), time.perf_counter() - started, len(records))


def _in_flight_limit(
    project: Project, executor: Executor, record: ItemRecord, events: EventLog
) -> int:
    """How many items to hand out at once: two per worker (one running, one queued), but only
    as many as host memory holds when it holds fewer movies than there are workers (local
    executors; the size of a movie estimated from ``record``'s header,
    :func:`~cryowarp.pipeline.memory.memory_slots`)."""
    limit = 2 * executor.n_workers
    if not isinstance(executor, LocalPoolExecutor | SerialExecutor):
        return limit
    movie_settings = project.settings.data.movie
    try:
        with open_movie(
            record.raw_path,
            eer_upsampling=movie_settings.eer_upsampling,
            eer_n_fractions=movie_settings.eer_n_fractions,
            eer_dose_per_fraction_e_per_a2=movie_settings.eer_dose_per_fraction_e_per_a2,
            eer_total_dose_e_per_a2=movie_settings.eer_total_dose_e_per_a2,
        ) as movie:
            task_bytes = estimate_movie_task_bytes(movie.frame_shape, movie.n_frames)
    except (CryowarpInputError, ValueError):
        return limit  # the item will be quarantined; nothing to learn from it
    slots = memory_slots(task_bytes, device="cpu", n_workers=1, events=events)
    return slots.slots if slots.slots < executor.n_workers else limit


def _take_new_files(
    project: Project,
    arrived: list[CompleteFile],
    watcher: FolderWatcher,
    records: dict[str, ItemRecord],
    queue: _Queue,
    events: EventLog,
) -> None:
    """Register the files the watcher found complete (or gave up on: their items are run
    and quarantined with the reader's reason) and queue the items that have work."""
    failures = watcher.poll_failures()
    if not arrived and not failures:
        return
    candidates = set(project.raw_files())
    found: list[tuple[Path, CompleteFile | None]] = []
    for file in arrived:
        path = Path(os.path.abspath(file.path))
        if path in candidates:
            found.append((path, file))
    for failed, reason in failures:
        path = Path(os.path.abspath(failed))
        if path in candidates:
            events.append("file_failed", path=str(path), reason=reason)
            found.append((path, None))
    for path, complete in found:
        complete_at = complete.complete_at if complete is not None else None
        record = register_raw_file(project, path, records, complete_at=complete_at, events=events)
        if record is not None and complete is not None:
            events.append(
                "file_complete",
                item=record.name,
                path=str(path),
                size_bytes=complete.size,
                complete_at=complete.complete_at,
            )
        if record is None or record.name in queue.waiting or record.name in queue.running.values():
            continue
        current = read_item_record(project.record_path(record.name))  # workers update it
        if plan(project, [current]):
            queue.waiting.append(record.name)
            queue.known += 1


def _collect(
    future: Future[ItemOutcome], queue: _Queue, events: EventLog, progress: Progress | None
) -> None:
    name = queue.running.pop(future)
    try:
        outcome = future.result()
    except Exception as error:  # the worker died, or the record could not be read
        outcome = ItemOutcome(name, "error", reason=f"{type(error).__name__}: {error}")
        events.append("step_failed", item=name, step=None, error=outcome.reason, status="error")
    queue.outcomes.append(outcome)
    if progress is not None:
        progress(outcome, len(queue.outcomes), queue.known)
