"""Where tasks run: in the calling process, in a local pool of worker processes (one per
worker and device), or on a Dask cluster — with one interface and identical results.

Every executor returns :class:`concurrent.futures.Future` objects. A task is a module-level
(picklable, importable in the workers) function; if it has a ``device`` parameter and the
caller does not pass one, it receives the device of the worker that runs it (``"cuda:k"`` or
``"cpu"``). A task that raises fails only its own future, with its own exception type (typed
cryowarp errors keep their ``path`` and ``problem``); a worker that dies (out-of-memory kill,
signal, crash) fails only the task it was running, with :class:`WorkerDiedError`, and is
replaced. See docs/pipeline_workers.md.
"""

from __future__ import annotations

import json
import multiprocessing
import threading
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar

import torch

from cryowarp.errors import FileFormatError, MissingFileError
from cryowarp.pipeline._dask_executor import DaskExecutor
from cryowarp.pipeline._tasks import (
    MissingExtraError,
    RemoteTaskError,
    WorkerDiedError,
    accepts_device,
    cpu_count,
    default_worker_devices,
    rebuild_exception,
    run_task,
)
from cryowarp.pipeline.memory import (
    MemorySlots,
    available_memory_bytes,
    estimate_movie_task_bytes,
    memory_slots,
)

__all__ = [
    "DaskExecutor",
    "Executor",
    "LocalPoolExecutor",
    "MemorySlots",
    "MissingExtraError",
    "RemoteTaskError",
    "SerialExecutor",
    "WorkerDiedError",
    "available_memory_bytes",
    "default_worker_devices",
    "estimate_movie_task_bytes",
    "make_executor",
    "memory_slots",
]

T = TypeVar("T")


class Executor(Protocol):
    """What the runner needs from an executor."""

    n_workers: int

    def submit(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> Future[T]: ...

    def shutdown(self, *, cancel: bool = False) -> None: ...


class SerialExecutor:
    """Runs each task at once in the calling process and returns a finished future (for
    debugging and for ``--workers 0``). The device injected is ``device``."""

    def __init__(self, *, device: str = "cpu") -> None:
        self.n_workers = 1
        self.device = str(device)

    def submit(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> Future[T]:
        future: Future[T] = Future()
        future.set_running_or_notify_cancel()
        if "device" not in kwargs and accepts_device(fn):
            kwargs["device"] = self.device
        try:
            future.set_result(fn(*args, **kwargs))
        except Exception as exc:
            future.set_exception(exc)
        return future

    def shutdown(self, *, cancel: bool = False) -> None:
        """Nothing to release."""

    def __enter__(self) -> SerialExecutor:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.shutdown()


def _init_worker(device: str, n_threads: int) -> None:
    """Initializer of a pool worker process."""
    torch.set_num_threads(n_threads)
    if device.startswith("cuda"):
        torch.cuda.set_device(torch.device(device))


@dataclass(eq=False)
class _Task:
    future: Future[Any]
    fn: Callable[..., Any]
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    inject_device: bool


@dataclass(eq=False)
class _Worker:
    index: int
    device: str
    pool: ProcessPoolExecutor | None = None
    task: _Task | None = None


class LocalPoolExecutor:
    """A pool of ``n_workers`` processes on this machine, each bound to one device.

    Parameters
    ----------
    n_workers:
        Worker processes (started with the ``spawn`` method; each runs one task at a time).
    devices:
        Worker ``i`` is bound to ``devices[i % len(devices)]``; by default ``"cuda:k"``
        round-robin over the visible GPUs, else ``"cpu"``.
    max_tasks_per_worker:
        Replace a worker process after this many tasks (releases leaked memory); ``None``
        keeps it for the life of the pool.

    Each worker uses ``max(1, cpu_count // n_workers)`` torch threads. Tasks wait in a queue
    in this process and go to the first idle worker, so a slow task never holds up a task
    queued behind it.
    """

    def __init__(
        self,
        n_workers: int,
        *,
        devices: Sequence[str] | None = None,
        max_tasks_per_worker: int | None = None,
    ) -> None:
        if n_workers < 1:
            raise ValueError(f"n_workers must be ≥ 1, got {n_workers}")
        if max_tasks_per_worker is not None and max_tasks_per_worker < 1:
            raise ValueError(f"max_tasks_per_worker must be ≥ 1, got {max_tasks_per_worker}")
        self.n_workers = n_workers
        self.devices = tuple(default_worker_devices(n_workers, devices))
        self.threads_per_worker = max(1, cpu_count() // n_workers)
        self._max_tasks = max_tasks_per_worker
        self._context = multiprocessing.get_context("spawn")
        self._workers = [_Worker(i, d) for i, d in enumerate(self.devices)]
        self._queue: deque[_Task] = deque()
        self._lock = threading.RLock()
        self._closed = False

    def submit(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> Future[T]:
        """Queue ``fn(*args, **kwargs)``; ``fn`` gets ``device=`` when it has that parameter."""
        future: Future[T] = Future()
        inject = "device" not in kwargs and accepts_device(fn)
        with self._lock:
            if self._closed:
                raise RuntimeError("cannot submit to a LocalPoolExecutor that was shut down")
            self._queue.append(_Task(future, fn, args, kwargs, inject))
        self._dispatch()
        return future

    def _new_pool(self, worker: _Worker) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(
            max_workers=1,
            mp_context=self._context,
            initializer=_init_worker,
            initargs=(worker.device, self.threads_per_worker),
            max_tasks_per_child=self._max_tasks,
        )

    def _dispatch(self) -> None:
        with self._lock:
            for worker in self._workers:
                while worker.task is None and self._queue:
                    task = self._queue.popleft()
                    if not task.future.set_running_or_notify_cancel():
                        continue  # cancelled while queued
                    try:
                        self._start(worker, task)
                    except Exception as exc:  # e.g. no process can be started
                        task.future.set_exception(exc)

    def _start(self, worker: _Worker, task: _Task) -> None:
        kwargs = dict(task.kwargs, device=worker.device) if task.inject_device else task.kwargs
        for attempt in range(2):
            if worker.pool is None:
                worker.pool = self._new_pool(worker)
            try:
                inner = worker.pool.submit(run_task, task.fn, task.args, kwargs)
                break
            except BrokenProcessPool:  # the process died while idle: replace it once
                worker.pool.shutdown(wait=False)
                worker.pool = None
                if attempt:
                    raise
        worker.task = task
        inner.add_done_callback(lambda done: self._finish(worker, task, done))

    def _finish(self, worker: _Worker, task: _Task, inner: Future[Any]) -> None:
        outcome: BaseException | None = None
        value: Any = None
        try:
            exc = inner.exception()
            if isinstance(exc, BrokenProcessPool):
                outcome = self._worker_died(worker, task)
            elif exc is not None:  # e.g. the arguments or the result could not be pickled
                outcome = exc
            else:
                ok, payload = inner.result()
                value, outcome = (payload, None) if ok else (None, rebuild_exception(payload))
        except Exception as exc:  # never leave the task's future unresolved
            outcome = exc
        with self._lock:
            worker.task = None
        self._dispatch()
        if outcome is None:
            task.future.set_result(value)
        else:
            task.future.set_exception(outcome)

    def _worker_died(self, worker: _Worker, task: _Task) -> WorkerDiedError:
        with self._lock:
            pool, worker.pool = worker.pool, None
        exitcode = None
        # the dead process is still listed by the broken pool (private attribute: best effort)
        for process in list((getattr(pool, "_processes", None) or {}).values()):
            process.join(timeout=2.0)
            if process.exitcode not in (None, 0):
                exitcode = process.exitcode
        if pool is not None:
            pool.shutdown(wait=False)
        how = f"exit code {exitcode}" if exitcode is not None else "no exit code"
        if exitcode is not None and exitcode < 0:
            how = f"killed by signal {-exitcode}"
            if exitcode == -9:
                how += " (SIGKILL: often the out-of-memory killer)"
        name = getattr(task.fn, "__qualname__", repr(task.fn))
        return WorkerDiedError(
            f"worker {worker.index} ({worker.device}) died while running {name}: {how}; "
            "the worker was restarted",
            worker=worker.index,
            exitcode=exitcode,
        )

    def shutdown(self, *, cancel: bool = False) -> None:
        """Stop accepting tasks; with ``cancel`` drop the queued ones (their futures are
        cancelled), else wait for them. Running tasks always finish."""
        with self._lock:
            self._closed = True
            if cancel:
                while self._queue:
                    self._queue.popleft().future.cancel()
            waiting = [t.future for t in self._queue] + [
                w.task.future for w in self._workers if w.task is not None
            ]
        wait(waiting)
        with self._lock:
            pools = [w.pool for w in self._workers if w.pool is not None]
            for w in self._workers:
                w.pool = None
        for pool in pools:
            pool.shutdown(wait=True)

    def __enter__(self) -> LocalPoolExecutor:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.shutdown()


_DASK_SCHEMES = ("tcp://", "tls://", "ucx://", "inproc://", "ws://", "wss://")


def _read_jobqueue_config(path: Path) -> dict[str, Any]:
    """A dask-jobqueue configuration: YAML or JSON mapping with ``kind`` (``slurm``, ``pbs``,
    ``lsf``, ``sge``) and the keyword arguments of that cluster class."""
    if not path.is_file():
        raise MissingFileError(path, "cluster configuration file not found")
    try:
        text = path.read_text()
        if path.suffix.lower() == ".json":
            config = json.loads(text)
        else:
            import yaml

            config = yaml.safe_load(text)
    except Exception as exc:
        raise FileFormatError(path, f"cluster configuration cannot be parsed ({exc})") from exc
    if not isinstance(config, dict) or "kind" not in config:
        raise FileFormatError(
            path,
            "cluster configuration must be a mapping with a 'kind' key",
            "e.g. kind: slurm, cores: 8, memory: 64GB, queue: gpu",
        )
    return config


def make_executor(
    *,
    workers: int,
    cluster: str | None = None,
    devices: Sequence[str] | None = None,
) -> Executor:
    """The executor for ``cryowarp run --workers N [--cluster ...]``.

    ``cluster``:

    - ``None``: a :class:`LocalPoolExecutor` of ``workers`` processes — also for
      ``workers == 1``, so a crash or out-of-memory kill in a task never takes the runner
      down; ``workers == 0`` runs tasks in the calling process (:class:`SerialExecutor`).
    - ``"local"``: a Dask ``LocalCluster`` of ``workers`` processes.
    - ``"tcp://host:port"`` (any Dask scheme): an existing Dask scheduler.
    - a path to a ``.yaml``/``.yml``/``.json`` file: a dask-jobqueue cluster
      (``kind: slurm`` or ``pbs``, ...) scaled to ``workers`` jobs.
    """
    if workers < 0:
        raise ValueError(f"workers must be ≥ 0, got {workers}")
    if cluster is None:
        if workers == 0:
            return SerialExecutor(device=default_worker_devices(1, devices)[0])
        return LocalPoolExecutor(workers, devices=devices)
    n = max(1, workers)
    if cluster == "local":
        return DaskExecutor(n_workers=n, devices=devices)
    if cluster.startswith(_DASK_SCHEMES):
        return DaskExecutor(cluster, n_workers=n, devices=devices)
    path = Path(cluster)
    if path.suffix.lower() in (".yaml", ".yml", ".json"):
        return DaskExecutor(n_workers=n, jobqueue=_read_jobqueue_config(path), devices=devices)
    raise ValueError(
        f"--cluster {cluster!r}: expected 'local', a scheduler address such as "
        "tcp://host:8786, or a .yaml/.json dask-jobqueue configuration file"
    )
