"""Toy tasks for tests/pipeline/test_executors.py.

They live in a module of their own (imported as ``_toy_tasks`` with this folder on
``sys.path``) so that spawned pool workers and Dask workers can import them by name.
"""

from __future__ import annotations

import os
import signal
import time
from typing import Any

import torch

from cryowarp.errors import MissingFileError


def seeded_bytes(seed: int) -> bytes:
    """A seeded torch computation (element-wise only, so thread counts cannot change a bit)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(64, 64, generator=g)
    return (torch.sin(x) * torch.exp(-x.abs()) + x.pow(3)).numpy().tobytes()


def where_am_i(tag: str, *, device: str, sleep_s: float = 0.0) -> dict[str, Any]:
    time.sleep(sleep_s)
    return {"tag": tag, "device": device, "pid": os.getpid(), "threads": torch.get_num_threads()}


def double(x: int) -> int:
    return 2 * x


def raise_missing(path: str) -> None:
    raise MissingFileError(path, "is gone for the test", "put it back")


def kill_self() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def sleep_then(x: int, seconds: float) -> int:
    time.sleep(seconds)
    return x


def cuda_placement(*, device: str) -> tuple[str, int, str]:
    """The injected device, the worker's current CUDA device and where a new tensor lands."""
    return device, torch.cuda.current_device(), str(torch.ones(1, device=device).device)
