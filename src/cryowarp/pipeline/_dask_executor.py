"""The Dask executor (``cryowarp run --cluster``): the same tasks on a Dask cluster.

``distributed`` (and ``dask-jobqueue`` for SLURM/PBS/LSF/SGE) are optional extras imported
only when a :class:`DaskExecutor` is made. Dask futures are turned into
:class:`concurrent.futures.Future` objects, so the runner sees one type whatever runs the
tasks; outcomes travel in the envelope of :mod:`cryowarp.pipeline._tasks`, so typed errors
arrive as themselves.
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import CancelledError, Future, InvalidStateError, wait
from functools import partial
from types import ModuleType
from typing import Any, TypeVar

import torch

from cryowarp.pipeline._tasks import (
    MissingExtraError,
    WorkerDiedError,
    accepts_device,
    cpu_count,
    default_worker_devices,
    rebuild_exception,
    run_task,
)

__all__ = ["DaskExecutor"]

T = TypeVar("T")

_JOBQUEUE_CLASSES = {
    "slurm": "SLURMCluster",
    "pbs": "PBSCluster",
    "lsf": "LSFCluster",
    "sge": "SGECluster",
}


def _require(module: str, package: str) -> ModuleType:
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingExtraError(
            f"running on a Dask cluster needs the optional package {package!r}, which is not "
            "installed: pip install 'cryowarp[cluster]'"
        ) from exc


def _worker_index(name: object) -> int:
    """The number of a Dask worker: its name in a LocalCluster (0, 1, ...), the trailing
    number of a jobqueue name (``SLURMCluster-3``), else 0."""
    if isinstance(name, int):
        return name
    tail = str(name).rsplit("-", 1)[-1]
    return int(tail) if tail.isdigit() else 0


def _dask_call(
    fn: Callable[..., Any],
    args: Sequence[Any],
    kwargs: Mapping[str, Any],
    inject_device: bool,
    devices: Sequence[str] | None,
    n_threads: int | None,
) -> tuple[bool, Any]:
    """Runs on a Dask worker: set the torch threads, inject the device, run the task."""
    if n_threads is not None and torch.get_num_threads() != n_threads:
        torch.set_num_threads(n_threads)
    if inject_device:
        from distributed import get_worker

        index = _worker_index(get_worker().name)
        kwargs = dict(kwargs, device=default_worker_devices(index + 1, devices)[index])
    return run_task(fn, args, kwargs)


class DaskExecutor:
    """Runs tasks on a Dask cluster.

    Parameters
    ----------
    address:
        A running scheduler (``"tcp://host:8786"``). ``None`` with no ``jobqueue`` starts a
        ``LocalCluster`` of ``n_workers`` processes with one thread each (its own Dask
        dashboard off), whose workers use ``max(1, cpu_count // n_workers)`` torch threads.
    n_workers:
        Workers of a local or jobqueue cluster (for ``address``, the scheduler's count).
    jobqueue:
        ``{"kind": "slurm" | "pbs" | "lsf" | "sge", **keyword arguments of that
        dask_jobqueue cluster class}``; the cluster is scaled to ``n_workers`` workers.
    devices:
        Worker ``i`` (its number in the cluster) gets ``devices[i % len(devices)]``; by
        default ``"cuda:k"`` round-robin over the GPUs it sees, else ``"cpu"``.

    A worker lost while running a task (Dask retries a task on another worker up to
    ``distributed.scheduler.allowed-failures`` times) fails that task with
    :class:`WorkerDiedError`.
    """

    def __init__(
        self,
        address: str | None = None,
        *,
        n_workers: int = 2,
        jobqueue: Mapping[str, Any] | None = None,
        devices: Sequence[str] | None = None,
    ) -> None:
        if address is not None and jobqueue is not None:
            raise ValueError("give either a scheduler address or a jobqueue configuration")
        if n_workers < 1:
            raise ValueError(f"n_workers must be ≥ 1, got {n_workers}")
        distributed = _require("distributed", "distributed")
        self._devices = tuple(devices) if devices is not None else None
        self._threads: int | None = None
        self._cluster: Any = None
        if jobqueue is not None:
            config = dict(jobqueue)
            kind = str(config.pop("kind", "")).lower()
            if kind not in _JOBQUEUE_CLASSES:
                raise ValueError(f"jobqueue kind must be one of {sorted(_JOBQUEUE_CLASSES)}")
            dask_jobqueue = _require("dask_jobqueue", "dask-jobqueue")
            self._cluster = getattr(dask_jobqueue, _JOBQUEUE_CLASSES[kind])(**config)
            self._cluster.scale(n_workers)
            self._client = distributed.Client(self._cluster)
        elif address is not None:
            self._client = distributed.Client(address)
            n_workers = len(self._client.scheduler_info().get("workers", {})) or n_workers
        else:
            self._cluster = distributed.LocalCluster(
                n_workers=n_workers, processes=True, threads_per_worker=1, dashboard_address=None
            )
            self._client = distributed.Client(self._cluster)
            self._threads = max(1, cpu_count() // n_workers)
        self.n_workers = n_workers
        self._lock = threading.Lock()
        self._outstanding: dict[Future[Any], Any] = {}
        self._closed = False

    @property
    def client(self) -> Any:
        """The ``distributed.Client`` (e.g. for its dashboard link)."""
        return self._client

    def submit(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> Future[T]:
        """Run ``fn(*args, **kwargs)`` on the cluster; ``fn`` gets ``device=`` when it has
        that parameter and none is given."""
        inject = "device" not in kwargs and accepts_device(fn)
        future: Future[T] = Future()
        with self._lock:
            if self._closed:
                raise RuntimeError("cannot submit to a DaskExecutor that was shut down")
            dask_future = self._client.submit(
                _dask_call, fn, args, kwargs, inject, self._devices, self._threads, pure=False
            )
            self._outstanding[future] = dask_future
        future.add_done_callback(self._cancel_if_cancelled)
        dask_future.add_done_callback(partial(self._transfer, future))
        return future

    def _cancel_if_cancelled(self, future: Future[Any]) -> None:
        if future.cancelled():
            with self._lock:
                dask_future = self._outstanding.pop(future, None)
            if dask_future is not None:
                dask_future.cancel()

    def _transfer(self, future: Future[Any], dask_future: Any) -> None:
        value: Any = None
        outcome: BaseException | None = None
        try:
            if dask_future.status == "finished":
                ok, payload = dask_future.result()
                value, outcome = (payload, None) if ok else (None, rebuild_exception(payload))
            elif dask_future.status == "cancelled":
                outcome = CancelledError("the Dask task was cancelled")
            else:
                outcome = dask_future.exception()
                if type(outcome).__name__ == "KilledWorker":
                    outcome = WorkerDiedError(f"Dask lost the workers running the task: {outcome}")
        except Exception as exc:
            outcome = exc
        with self._lock:
            self._outstanding.pop(future, None)
        if not future.set_running_or_notify_cancel():
            return  # cancelled by the caller
        try:
            if outcome is None:
                future.set_result(value)
            else:
                future.set_exception(outcome)
        except InvalidStateError:
            pass

    def shutdown(self, *, cancel: bool = False) -> None:
        """Stop accepting tasks; with ``cancel`` cancel the unfinished ones, else wait for
        them; then close the client and any cluster this executor started."""
        with self._lock:
            self._closed = True
            futures = list(self._outstanding)
        if cancel:
            for future in futures:
                future.cancel()
        else:
            wait(futures)
        self._client.close()
        if self._cluster is not None:
            self._cluster.close()

    def __enter__(self) -> DaskExecutor:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.shutdown()
