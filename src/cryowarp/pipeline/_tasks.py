"""What the executors share: the errors they raise, the device a worker is bound to, and the
envelope a task's outcome travels in between processes.

A task runs inside :func:`run_task`, which returns ``(True, value)`` or ``(False, failure)``
instead of raising: cryowarp's typed errors take several ``__init__`` arguments and cannot be
unpickled by the standard exception pickling, which in a process pool would break the whole
pool. :func:`rebuild_exception` turns the failure back into an exception of the same type
with the same attributes, chained to the worker's traceback.
"""

from __future__ import annotations

import inspect
import os
import pickle
import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from cryowarp.errors import CryowarpError

__all__ = [
    "MissingExtraError",
    "RemoteTaskError",
    "WorkerDiedError",
    "accepts_device",
    "cpu_count",
    "default_worker_devices",
    "rebuild_exception",
    "run_task",
]


class WorkerDiedError(CryowarpError):
    """The worker process running a task died (killed by the out-of-memory killer or a
    signal, or crashed); only that task fails and the worker is replaced."""

    def __init__(self, message: str, *, worker: int | None = None, exitcode: int | None = None):
        super().__init__(message)
        self.worker = worker
        self.exitcode = exitcode

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild_worker_died, (str(self), self.worker, self.exitcode))


def _rebuild_worker_died(message: str, worker: int | None, exitcode: int | None) -> WorkerDiedError:
    return WorkerDiedError(message, worker=worker, exitcode=exitcode)


class MissingExtraError(CryowarpError, ImportError):
    """An optional dependency needed for the requested executor is not installed."""


class RemoteTaskError(CryowarpError):
    """A task failed with an exception that could not be sent back as itself; the message
    holds its type and text."""


class _RemoteTraceback(Exception):
    """Carries the worker's formatted traceback as the ``__cause__`` of a task's error."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.text = text

    def __str__(self) -> str:
        return self.text


@dataclass(frozen=True)
class _Failure:
    exc_type: type[BaseException] | None
    args: tuple[Any, ...]
    state: dict[str, Any] = field(default_factory=dict)
    message: str = ""
    traceback: str = ""


def _capture(exc: Exception) -> _Failure:
    text = "".join(traceback.format_exception(exc))
    message = f"{type(exc).__name__}: {exc}"
    failure = _Failure(type(exc), tuple(exc.args), dict(vars(exc)), message, text)
    try:
        pickle.loads(pickle.dumps(failure))
    except Exception:
        failure = _Failure(None, (), {}, message, text)
    return failure


def run_task(
    fn: Callable[..., Any], args: Sequence[Any], kwargs: Mapping[str, Any]
) -> tuple[bool, Any]:
    """Call ``fn(*args, **kwargs)``; ``(True, value)`` or ``(False, failure)`` (run in the
    worker; :func:`rebuild_exception` reads the failure in the caller)."""
    try:
        return True, fn(*args, **kwargs)
    except Exception as exc:
        return False, _capture(exc)


def rebuild_exception(failure: Any) -> BaseException:
    """The exception described by a failure from :func:`run_task`, with the worker's
    traceback as its ``__cause__``."""
    exc: BaseException
    if not isinstance(failure, _Failure):
        return RemoteTaskError(f"task failed: {failure!r}")
    try:
        if failure.exc_type is None:
            raise TypeError("exception not transferable")
        exc = failure.exc_type.__new__(failure.exc_type, *failure.args)
        exc.args = failure.args
        exc.__dict__.update(failure.state)
    except Exception:
        exc = RemoteTaskError(failure.message)
    exc.__cause__ = _RemoteTraceback(failure.traceback)
    return exc


def accepts_device(fn: Callable[..., Any]) -> bool:
    """Whether ``fn`` has a parameter named ``device`` that can be passed by keyword."""
    try:
        parameter = inspect.signature(fn).parameters.get("device")
    except (TypeError, ValueError):  # builtins without a signature
        return False
    return parameter is not None and parameter.kind in (
        inspect.Parameter.POSITIONAL_OR_KEYWORD,
        inspect.Parameter.KEYWORD_ONLY,
    )


def cpu_count() -> int:
    """CPU cores this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def default_worker_devices(n_workers: int, devices: Sequence[str] | None = None) -> list[str]:
    """The device of each worker: ``devices[i % len(devices)]``; by default ``"cuda:k"``
    round-robin over the visible GPUs, or ``"cpu"`` without CUDA."""
    if devices is None:
        n_gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
        devices = [f"cuda:{k}" for k in range(n_gpus)] or ["cpu"]
    if not devices:
        raise ValueError("devices must name at least one device")
    return [str(devices[i % len(devices)]) for i in range(n_workers)]
