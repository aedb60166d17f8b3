"""Memory-aware batching: does one task fit a worker's memory, and how many fit at once?

A task's peak memory is estimated from its input (for a movie: frames × h × w × 4 bytes ×
the number of working copies the algorithm holds), the available memory is read from the
system (``psutil`` when installed, else ``/proc/meminfo``) or from the GPU
(``torch.cuda.mem_get_info``), and :func:`memory_slots` divides one by the other. The runner
uses the answer to run fewer movies at once — or fewer workers per GPU — on K3 or EER
super-resolution data, instead of letting a worker die of an out-of-memory kill.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch

from cryowarp.pipeline.events import EventLog

__all__ = ["MemorySlots", "available_memory_bytes", "estimate_movie_task_bytes", "memory_slots"]

_MEMINFO = Path("/proc/meminfo")


def estimate_movie_task_bytes(
    frame_shape: tuple[int, int],
    n_frames: int,
    *,
    eer_upsampling: int = 1,
    working_copies: float = 4.0,
    bytes_per_value: int = 4,
) -> int:
    """Estimated peak memory (bytes) of processing one movie.

    Parameters
    ----------
    frame_shape:
        ``(h, w)`` of a frame in detector pixels as stored (for EER: at upsampling 1).
    n_frames:
        Frames held in memory (for EER: the fractions, not the raw detector frames).
    eer_upsampling:
        EER rendering factor (1, 2 or 4); multiplies both frame axes.
    working_copies:
        How many frame stacks of that size the algorithm holds at its peak. The default, 4,
        is for motion correction: the float32 frames, their spectra (complex64 rfft, about
        the same size), the aligned frames and autograd's buffers.
    bytes_per_value:
        4 for float32.
    """
    h, w = frame_shape
    if h < 1 or w < 1 or n_frames < 1:
        raise ValueError(
            f"need a positive frame shape and frame count, got {frame_shape}, {n_frames}"
        )
    if eer_upsampling not in (1, 2, 4):
        raise ValueError(f"EER upsampling must be 1, 2 or 4, got {eer_upsampling}")
    values = n_frames * (h * eer_upsampling) * (w * eer_upsampling)
    return int(values * bytes_per_value * working_copies)


def _meminfo_available_bytes() -> int | None:
    try:
        text = _MEMINFO.read_text()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) * 1024  # the value is in kB
    return None


def available_memory_bytes(device: str | torch.device = "cpu") -> int:
    """Memory (bytes) free for new work on ``device``: available RAM for ``"cpu"`` (psutil,
    else ``/proc/meminfo``'s ``MemAvailable``, else free pages), free GPU memory for CUDA."""
    device = torch.device(device)
    if device.type == "cuda":
        free, _total = torch.cuda.mem_get_info(device)
        return int(free)
    try:
        import psutil

        return int(psutil.virtual_memory().available)
    except ImportError:
        pass
    from_meminfo = _meminfo_available_bytes()
    if from_meminfo is not None:
        return from_meminfo
    return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))


@dataclass(frozen=True)
class MemorySlots:
    """The answer of :func:`memory_slots`.

    Attributes
    ----------
    slots:
        How many such tasks one worker may hold at once (≥ 1 even when one does not fit:
        the work must still be tried).
    fits:
        Whether one task fits the worker's budget.
    task_bytes, budget_bytes:
        The estimate of one task and the memory one worker may use, in bytes.
    """

    slots: int
    fits: bool
    task_bytes: int
    budget_bytes: int


def memory_slots(
    task_bytes: int,
    *,
    device: str | torch.device = "cpu",
    n_workers: int = 1,
    available_bytes: int | None = None,
    reserve_fraction: float = 0.2,
    events: EventLog | None = None,
) -> MemorySlots:
    """How many tasks of ``task_bytes`` one worker may run at once on ``device``.

    The budget of a worker is ``available × (1 − reserve_fraction) / n_workers``, where
    ``available`` is ``available_bytes`` or :func:`available_memory_bytes` of ``device`` and
    ``n_workers`` the workers sharing that memory (all workers for host RAM, those bound to
    the GPU for a CUDA device). When one task exceeds the budget the answer is still one
    slot, and a ``memory_warning`` event is written to ``events`` if given.

    Examples
    --------
    >>> k3 = estimate_movie_task_bytes((5760, 4092), 40)  # doctest: +SKIP
    >>> memory_slots(k3, n_workers=4).slots  # doctest: +SKIP
    """
    if task_bytes < 1:
        raise ValueError(f"task_bytes must be positive, got {task_bytes}")
    if n_workers < 1:
        raise ValueError(f"n_workers must be ≥ 1, got {n_workers}")
    if not 0.0 <= reserve_fraction < 1.0:
        raise ValueError(f"reserve_fraction must be in [0, 1), got {reserve_fraction}")
    available = available_memory_bytes(device) if available_bytes is None else available_bytes
    budget = int(max(0, available) * (1.0 - reserve_fraction) / n_workers)
    fits = task_bytes <= budget
    if not fits and events is not None:
        events.append(
            "memory_warning",
            task_bytes=task_bytes,
            budget_bytes=budget,
            device=str(device),
            n_workers=n_workers,
        )
    return MemorySlots(
        slots=max(1, budget // task_bytes), fits=fits, task_bytes=task_bytes, budget_bytes=budget
    )
