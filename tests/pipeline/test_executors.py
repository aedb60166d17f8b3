"""Executors: the local pool, the serial executor and Dask give the same results; devices are
injected per worker; a failing task or a killed worker fails only its own future."""

from __future__ import annotations

import importlib
import importlib.util
import json
import os
import sys
import threading
from collections.abc import Iterator
from concurrent.futures import CancelledError
from pathlib import Path
from types import ModuleType

import pytest
import torch

from cryowarp.errors import FileFormatError, MissingFileError
from cryowarp.pipeline.events import EventLog
from cryowarp.pipeline.executors import (
    LocalPoolExecutor,
    MissingExtraError,
    SerialExecutor,
    WorkerDiedError,
    available_memory_bytes,
    default_worker_devices,
    estimate_movie_task_bytes,
    make_executor,
    memory_slots,
)
from cryowarp.pipeline.memory import _meminfo_available_bytes

SEEDS = list(range(6))
TIMEOUT_S = 120


@pytest.fixture(scope="module")
def toy() -> Iterator[ModuleType]:
    """The toy task module, importable by name in spawned workers (they inherit sys.path)."""
    folder = str(Path(__file__).parent)
    sys.path.insert(0, folder)
    try:
        yield importlib.import_module("_toy_tasks")
    finally:
        sys.path.remove(folder)


@pytest.fixture(scope="module")
def pool(toy: ModuleType) -> Iterator[LocalPoolExecutor]:
    with LocalPoolExecutor(2, devices=["cpu:0", "cpu:1"]) as executor:
        yield executor


def test_pool_and_serial_give_the_bytes_of_a_direct_call(
    toy: ModuleType, pool: LocalPoolExecutor
) -> None:
    expected = [toy.seeded_bytes(s) for s in SEEDS]
    pooled = [f.result(TIMEOUT_S) for f in [pool.submit(toy.seeded_bytes, s) for s in SEEDS]]
    serial = [SerialExecutor().submit(toy.seeded_bytes, s).result() for s in SEEDS]
    assert pooled == expected
    assert serial == expected
    assert len(set(expected)) == len(SEEDS)  # the seeds matter


def test_each_worker_gets_its_device_and_its_share_of_threads(
    toy: ModuleType, pool: LocalPoolExecutor
) -> None:
    # both workers idle: the first task goes to worker 0, the second to worker 1
    futures = [pool.submit(toy.where_am_i, tag, sleep_s=0.5) for tag in ("a", "b")]
    first, second = (f.result(TIMEOUT_S) for f in futures)
    assert (first["device"], second["device"]) == ("cpu:0", "cpu:1")
    assert first["pid"] != second["pid"]
    assert os.getpid() not in (first["pid"], second["pid"])
    assert first["threads"] == second["threads"] == pool.threads_per_worker
    assert pool.threads_per_worker == max(1, len(os.sched_getaffinity(0)) // 2)
    # a device given by the caller wins; a task without a device parameter gets none
    assert pool.submit(toy.where_am_i, "c", device="mine").result(TIMEOUT_S)["device"] == "mine"
    assert pool.submit(toy.double, 21).result(TIMEOUT_S) == 42
    assert SerialExecutor(device="cpu").submit(toy.where_am_i, "d").result()["device"] == "cpu"


def test_a_typed_error_fails_only_its_future_and_keeps_its_fields(
    toy: ModuleType, pool: LocalPoolExecutor
) -> None:
    futures = [
        pool.submit(toy.double, 1),
        pool.submit(toy.raise_missing, "/data/movie_007.tif"),
        pool.submit(toy.double, 2),
    ]
    assert futures[0].result(TIMEOUT_S) == 2
    assert futures[2].result(TIMEOUT_S) == 4
    error = futures[1].exception(TIMEOUT_S)
    assert isinstance(error, MissingFileError)
    assert isinstance(error, FileNotFoundError)
    assert error.path == Path("/data/movie_007.tif")
    assert error.problem == "is gone for the test"
    assert error.hint == "put it back"
    assert str(error) == "/data/movie_007.tif: is gone for the test (put it back)"
    assert "raise_missing" in str(error.__cause__)  # the worker's traceback
    unpicklable = pool.submit(toy.double, threading.Lock())
    assert isinstance(unpicklable.exception(TIMEOUT_S), TypeError)  # cannot pickle a lock
    assert pool.submit(toy.double, 3).result(TIMEOUT_S) == 6


def test_a_killed_worker_fails_only_its_task_and_the_pool_goes_on(
    toy: ModuleType, pool: LocalPoolExecutor
) -> None:
    killer = pool.submit(toy.kill_self)
    others = [pool.submit(toy.sleep_then, i, 0.05) for i in range(4)]
    error = killer.exception(TIMEOUT_S)
    assert isinstance(error, WorkerDiedError)
    assert error.exitcode == -9
    assert "SIGKILL" in str(error)
    assert [f.result(TIMEOUT_S) for f in others] == [0, 1, 2, 3]
    later = [pool.submit(toy.seeded_bytes, s) for s in SEEDS[:2]]
    assert [f.result(TIMEOUT_S) for f in later] == [toy.seeded_bytes(s) for s in SEEDS[:2]]


def test_a_queued_task_can_be_cancelled(toy: ModuleType, pool: LocalPoolExecutor) -> None:
    busy = [pool.submit(toy.sleep_then, i, 0.5) for i in range(pool.n_workers)]
    queued = [pool.submit(toy.double, i) for i in (10, 20)]
    assert queued[0].cancel()
    assert queued[1].result(TIMEOUT_S) == 40
    assert [f.result(TIMEOUT_S) for f in busy] == list(range(pool.n_workers))
    with pytest.raises(CancelledError):
        queued[0].result(0)


@pytest.mark.slow
def test_shutdown_with_cancel_drops_queued_tasks_only(toy: ModuleType) -> None:
    executor = LocalPoolExecutor(1)
    running = executor.submit(toy.sleep_then, 7, 1.0)
    queued = [executor.submit(toy.double, i) for i in range(2)]
    executor.shutdown(cancel=True)
    assert running.result(TIMEOUT_S) == 7
    assert all(f.cancelled() for f in queued)
    with pytest.raises(RuntimeError, match="shut down"):
        executor.submit(toy.double, 1)


def test_default_devices_without_cuda(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert default_worker_devices(3) == ["cpu"] * 3
    assert default_worker_devices(3, ["cuda:0", "cuda:1"]) == ["cuda:0", "cuda:1", "cuda:0"]
    with pytest.raises(ValueError, match="at least one"):
        default_worker_devices(2, [])


def test_make_executor_choices(tmp_path: Path) -> None:
    assert isinstance(make_executor(workers=0), SerialExecutor)
    one = make_executor(workers=1)  # still a worker process: a crash cannot kill the runner
    assert isinstance(one, LocalPoolExecutor)
    assert one.n_workers == 1
    one.shutdown()
    with pytest.raises(ValueError, match="scheduler address"):
        make_executor(workers=2, cluster="somewhere")
    with pytest.raises(MissingFileError, match="cluster configuration"):
        make_executor(workers=2, cluster=str(tmp_path / "slurm.yaml"))
    bad = tmp_path / "bad.yaml"
    bad.write_text("cores: 8\n")
    with pytest.raises(FileFormatError, match="'kind'"):
        make_executor(workers=2, cluster=str(bad))


def test_a_jobqueue_cluster_without_the_extra_names_it(tmp_path: Path) -> None:
    pytest.importorskip("distributed", reason="the 'cluster' extra (distributed) is absent")
    if importlib.util.find_spec("dask_jobqueue") is not None:
        pytest.skip("dask-jobqueue is installed")
    config = tmp_path / "slurm.json"
    config.write_text(json.dumps({"kind": "slurm", "cores": 8, "memory": "64GB"}))
    with pytest.raises(MissingExtraError, match="dask-jobqueue"):
        make_executor(workers=2, cluster=str(config))


@pytest.mark.slow
def test_dask_local_cluster_gives_the_same_results(toy: ModuleType) -> None:
    pytest.importorskip("distributed", reason="the 'cluster' extra (distributed) is absent")
    executor = make_executor(workers=2, cluster="local", devices=["cpu:0", "cpu:1"])
    try:
        assert executor.n_workers == 2
        futures = [executor.submit(toy.seeded_bytes, s) for s in SEEDS]
        results = [f.result(TIMEOUT_S) for f in futures]
        assert results == [toy.seeded_bytes(s) for s in SEEDS]
        placed = [executor.submit(toy.where_am_i, str(i)).result(TIMEOUT_S) for i in range(4)]
        assert {p["device"] for p in placed} <= {"cpu:0", "cpu:1"}
        assert all(p["threads"] == max(1, len(os.sched_getaffinity(0)) // 2) for p in placed)
        error = executor.submit(toy.raise_missing, "/data/x.eer").exception(TIMEOUT_S)
        assert isinstance(error, MissingFileError)
        assert error.path == Path("/data/x.eer")
        assert executor.submit(toy.double, 5).result(TIMEOUT_S) == 10
    finally:
        executor.shutdown()


def test_movie_memory_estimate_and_slots(tmp_path: Path) -> None:
    eer = estimate_movie_task_bytes((4096, 4096), 40, eer_upsampling=2)
    assert eer == 40 * 8192 * 8192 * 4 * 4  # 42.9 GB: 4 float32 copies of the stack
    k3 = estimate_movie_task_bytes((4092, 5760), 50, working_copies=1)
    assert k3 == 50 * 4092 * 5760 * 4
    gib = 1 << 30
    slots = memory_slots(3 * gib, n_workers=4, available_bytes=100 * gib, reserve_fraction=0.2)
    assert slots.budget_bytes == 20 * gib
    assert (slots.slots, slots.fits) == (6, True)
    log = EventLog(tmp_path / "events.jsonl")
    big = memory_slots(eer, n_workers=4, available_bytes=100 * gib, events=log)
    assert (big.slots, big.fits) == (1, False)
    (warning,) = EventLog.read(log.path)
    assert warning["kind"] == "memory_warning"
    assert (warning["task_bytes"], warning["budget_bytes"]) == (eer, 20 * gib)


def test_available_memory_from_the_system(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    total_kb = int(Path("/proc/meminfo").read_text().split("MemTotal:")[1].split()[0])
    assert 0 < available_memory_bytes("cpu") <= total_kb * 1024
    fake = tmp_path / "meminfo"
    fake.write_text("MemTotal:  2048 kB\nMemFree:  100 kB\nMemAvailable:  1000 kB\n")
    monkeypatch.setattr("cryowarp.pipeline.memory._MEMINFO", fake)
    monkeypatch.setitem(sys.modules, "psutil", None)  # import psutil now fails
    assert _meminfo_available_bytes() == 1000 * 1024
    assert available_memory_bytes("cpu") == 1000 * 1024


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_workers_are_bound_to_gpus_round_robin(toy: ModuleType) -> None:
    n_gpus = torch.cuda.device_count()
    assert default_worker_devices(n_gpus + 1) == [f"cuda:{k}" for k in range(n_gpus)] + ["cuda:0"]
    with LocalPoolExecutor(1) as executor:
        assert executor.devices == ("cuda:0",)
        assert executor.submit(toy.cuda_placement).result(TIMEOUT_S) == ("cuda:0", 0, "cuda:0")
    assert available_memory_bytes("cuda:0") > 0
