"""The Dask path end to end: a project run on a local Dask cluster gives the outputs and item
records of a run on the local process pool (issue 7: "the Dask path is exercised in CI with a
local Dask cluster on this machine, producing the same item results as the local pool").

The project helpers (settings of the tiny simulated project, the list of outputs and their
comparable bytes) are those of ``tests/pipeline/test_runner.py``, loaded from that file.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from cryowarp.pipeline.events import EventLog
from cryowarp.pipeline.executors import Executor, LocalPoolExecutor
from cryowarp.pipeline.items import read_item_record
from cryowarp.pipeline.runner import RunSummary, run_project
from cryowarp.pipeline.steps import STEPS
from cryowarp.simulate.presets import frame_series_preset
from cryowarp.simulate.write import write_frame_series_dataset

N_MOVIES = 2
N_WORKERS = 2
TIME_KEYS = ("started_at", "finished_at", "seconds")  # of a step record: wall-clock times
TIMED_OUTPUTS = {"motion": "metadata"}  # the motion JSON holds wall times: its size varies


def _load_runner_tests() -> ModuleType:
    """``tests/pipeline/test_runner.py`` as a module (pytest imports test files in importlib
    mode, so it is not importable by name); its tests are not collected from here."""
    name = "_cryowarp_test_runner_helpers"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, Path(__file__).with_name("test_runner.py"))
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


runner_tests = _load_runner_tests()


@pytest.fixture(scope="module")
def raw(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two 128² movies of 8 frames (seed 5, 4 e⁻/Å² per frame) and their gain (read-only)."""
    folder = tmp_path_factory.mktemp("raw")
    preset = frame_series_preset("tiny", shape_px=(128, 128), dose_per_frame_e_per_a2=4.0)
    write_frame_series_dataset(folder, preset, n_movies=N_MOVIES, seed=5)
    return folder


def _run_with(executor: Executor, folder: Path, raw: Path) -> RunSummary:
    project = runner_tests._new_project(folder, raw)
    try:
        return run_project(project, executor=executor)
    finally:
        executor.shutdown()


def _records_without_times(folder: Path) -> dict[str, dict[str, Any]]:
    records = {}
    for path in sorted((folder / "items").glob("*.json")):
        document = read_item_record(path).model_dump(mode="json")
        document.pop("first_seen_at")
        for step_name, step in document["steps"].items():
            for key in TIME_KEYS:
                step.pop(key)
            if step_name in TIMED_OUTPUTS:
                step["outputs"][TIMED_OUTPUTS[step_name]].pop("size_bytes")
        records[path.stem] = document
    return records


def _worker_pids(folder: Path) -> set[int]:
    events = EventLog.read(folder / "logs" / "events.jsonl")
    return {int(e["worker"].split(":")[0]) for e in events if e["kind"] == "step_started"}


@pytest.mark.slow
def test_a_dask_cluster_gives_the_outputs_and_records_of_the_local_pool(
    raw: Path, tmp_path: Path
) -> None:
    pytest.importorskip("distributed", reason="the 'cluster' extra (distributed) is absent")
    from cryowarp.pipeline._dask_executor import DaskExecutor

    pooled = tmp_path / "pool"
    dasked = tmp_path / "dask"
    pool_summary = _run_with(LocalPoolExecutor(N_WORKERS), pooled, raw)
    dask_summary = _run_with(DaskExecutor(n_workers=N_WORKERS), dasked, raw)

    for summary in (pool_summary, dask_summary):
        assert sorted((o.name, o.state, o.steps_run) for o in summary.outcomes) == [
            (f"movie_{i:03d}", "done", tuple(step.name for step in STEPS)) for i in range(N_MOVIES)
        ]
    # the items ran in worker processes, not in the runner
    assert os.getpid() not in _worker_pids(pooled) | _worker_pids(dasked)

    pool_outputs = runner_tests._outputs(pooled)
    dask_outputs = runner_tests._outputs(dasked)
    assert sorted(dask_outputs) == sorted(pool_outputs)
    assert len(pool_outputs) == N_MOVIES * 19  # motion 6, ctf 4, picking 5, display 4
    for name, path in dask_outputs.items():
        assert runner_tests._comparable(path, dasked) == runner_tests._comparable(
            pool_outputs[name], pooled
        ), name

    pool_records = _records_without_times(pooled)
    dask_records = _records_without_times(dasked)
    assert sorted(pool_records) == [f"movie_{i:03d}" for i in range(N_MOVIES)]
    assert dask_records == pool_records
    for record in dask_records.values():
        assert {step["status"] for step in record["steps"].values()} == {"done"}
        assert record["steps"]["ctf"]["results"]["defocus_um"] > 0
