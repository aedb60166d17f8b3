"""The runner on tiny simulated movies (128², 8 frames): what a run does and what a rerun does
not redo, content identity of renamed and moved data, quarantine of bad input, watch mode,
per-item locks, and crash safety under SIGKILL at random moments."""

from __future__ import annotations

import json
import multiprocessing
import os
import shutil
import signal
import threading
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch

from cryowarp.io.mrc import read_mrc, write_mrc
from cryowarp.io.star import read_star
from cryowarp.pipeline import memory as memory_module
from cryowarp.pipeline import steps as steps_module
from cryowarp.pipeline._item_files import item_lock
from cryowarp.pipeline.events import EventLog
from cryowarp.pipeline.executors import LocalPoolExecutor, SerialExecutor
from cryowarp.pipeline.items import read_item_record
from cryowarp.pipeline.picking_step import picking_output_paths
from cryowarp.pipeline.project import Project, init_project, open_project, save_settings
from cryowarp.pipeline.runner import RunSummary, _in_flight_limit, run_item, run_project
from cryowarp.pipeline.settings import ProjectSettings, set_setting
from cryowarp.pipeline.status import format_status, project_status
from cryowarp.pipeline.steps import ctf_output_paths, settings_hashes
from cryowarp.preprocess.ctf.result import CtfResult
from cryowarp.preprocess.denoise.display import display_file_names
from cryowarp.simulate.ground_truth import load_ground_truth
from cryowarp.simulate.presets import frame_series_preset
from cryowarp.simulate.write import write_frame_series_dataset

N_MOVIES = 3
FAST = {
    "motion": {"patch_size_px": 64, "max_iterations": 5, "local_grid": [1, 1, 1]},
    "ctf": {"spectrum_source": "average"},
}
OUTPUT_FOLDERS = ("average", "motion", "ctf", "picking", "display")
ALL_STEPS = tuple(step.name for step in steps_module.STEPS)  # motion, ctf, picking, display
FROM_CTF = ALL_STEPS[ALL_STEPS.index("ctf") :]
TIMING_KEYS = ("seconds",)  # motion JSON: wall times, the only bytes that differ between runs


@pytest.fixture(scope="module")
def raw(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three 128² movies (seed 5, 4 e⁻/Å² per frame: Thon rings on every average) and their
    gain; treat as read-only."""
    folder = tmp_path_factory.mktemp("raw")
    preset = frame_series_preset("tiny", shape_px=(128, 128), dose_per_frame_e_per_a2=4.0)
    write_frame_series_dataset(folder, preset, n_movies=N_MOVIES, seed=5)
    return folder


def _new_project(folder: Path, raw: Path, pattern: str = "movie_*.mrc") -> Project:
    settings = ProjectSettings.model_validate(
        {
            "data": {
                "pattern": str(raw / pattern),
                "movie": {"gain_path": str(raw / "gain.mrc"), "pixel_size_a": 1.5},
            },
            **FAST,
        }
    )
    return init_project(folder, settings)


def _run(project: Project | Path) -> RunSummary:
    return run_project(project, executor=SerialExecutor())


@pytest.fixture(scope="module")
def processed(raw: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, RunSummary]:
    """A project of the three movies after one run (copy it before changing it)."""
    project = _new_project(tmp_path_factory.mktemp("processed") / "proj", raw)
    return project.folder, _run(project)


def _copy(processed: tuple[Path, RunSummary], tmp_path: Path) -> Project:
    folder = tmp_path / "proj"
    shutil.copytree(processed[0], folder, symlinks=True)
    return open_project(folder)


def _outputs(folder: Path) -> dict[str, Path]:
    return {
        p.relative_to(folder).as_posix(): p
        for name in OUTPUT_FOLDERS
        for p in sorted((folder / name).rglob("*"))
        if p.is_file()
    }


def _mtimes(folder: Path) -> dict[str, int]:
    return {name: path.stat().st_mtime_ns for name, path in _outputs(folder).items()}


def _change(project: Project, key: str, value: str) -> Project:
    changed = project.with_settings(set_setting(project.settings, key, value))
    save_settings(changed.settings_path, changed.settings)
    return changed


def _comparable(path: Path, folder: Path) -> bytes:
    """The file's bytes with the project folder's path replaced by a placeholder (the motion
    JSON and STAR name the project's input link), and the motion JSON without its wall
    times (the only bytes that differ between two runs)."""
    if path.suffix == ".json" and path.parent.name == "motion":
        document = json.loads(path.read_text())
        for key in TIMING_KEYS:
            document.pop(key)
        for stage in document["fit"]["stages"]:
            stage.pop("seconds")
        data = json.dumps(document, sort_keys=True).encode()
    else:
        data = path.read_bytes()
    return data.replace(str(folder).encode(), b"<project>")


def test_a_run_processes_every_item_and_a_rerun_redoes_nothing(
    raw: Path, processed: tuple[Path, RunSummary], tmp_path: Path
) -> None:
    _, first = processed
    assert sorted(o.name for o in first.outcomes) == [f"movie_{i:03d}" for i in range(N_MOVIES)]
    assert {o.steps_run for o in first.outcomes} == {ALL_STEPS}
    assert {o.state for o in first.outcomes} == {"done"}, first.outcomes
    project = _copy(processed, tmp_path)
    hashes = settings_hashes(project)
    for index in range(N_MOVIES):
        record = read_item_record(project.record_path(f"movie_{index:03d}"))
        assert {name: s.settings_hash for name, s in record.steps.items()} == hashes
        for step in record.steps.values():
            for output in step.outputs.values():
                assert (project.folder / output.path).stat().st_size == output.size_bytes
        ctf = CtfResult.from_dict(
            json.loads((project.folder / record.steps["ctf"].outputs["json"].path).read_text())
        )
        truth = load_ground_truth(raw, index)
        assert abs(ctf.defocus_um - truth.ctf.defocus_um) < 0.05  # measured: ≤ 0.006 µm
        motion = json.loads((project.folder / f"motion/movie_{index:03d}.json").read_text())
        assert motion["movie"] == str(processed[0] / "inputs" / f"movie_{index:03d}.mrc")
    before = _mtimes(project.folder)
    # average, odd, even, json, star, png, ctf json + png + 2 spectrum files, 5 picking files,
    # 4 display views
    assert len(before) == N_MOVIES * 19
    n_events = len(EventLog.read(project.events_path))
    again = _run(project)
    assert again.outcomes == ()
    assert again.n_items == N_MOVIES
    assert _mtimes(project.folder) == before
    new_events = EventLog.read(project.events_path)[n_events:]
    assert [e["kind"] for e in new_events] == ["run_started", "run_finished"]


def test_changing_a_ctf_setting_reruns_ctf_only(
    processed: tuple[Path, RunSummary], tmp_path: Path
) -> None:
    project = _change(_copy(processed, tmp_path), "ctf.defocus_step_um", "0.02")
    before = _mtimes(project.folder)
    summary = _run(project)
    assert {o.steps_run for o in summary.outcomes} == {FROM_CTF}
    assert len(summary.outcomes) == N_MOVIES
    after = _mtimes(project.folder)
    changed = {name for name in before if after[name] != before[name]}
    assert changed == {
        name
        for i in range(N_MOVIES)
        for name in (
            *ctf_output_paths(f"movie_{i:03d}").values(),
            *picking_output_paths(f"movie_{i:03d}").values(),
            *display_file_names(f"movie_{i:03d}", denoised=True).values(),
        )
    }
    record = read_item_record(project.record_path("movie_001"))
    assert record.steps["ctf"].settings_hash == settings_hashes(project)["ctf"]


def test_changing_a_motion_setting_reruns_motion_and_ctf(
    raw: Path, processed: tuple[Path, RunSummary], tmp_path: Path, device: torch.device
) -> None:
    """Also the device plumbing: the steps run on the executor's device."""
    project = _change(_copy(processed, tmp_path), "motion.max_iterations", "6")
    before = _mtimes(project.folder)
    summary = run_project(project, executor=SerialExecutor(device=str(device)))
    assert {o.steps_run for o in summary.outcomes} == {ALL_STEPS}
    assert all(after != before[name] for name, after in _mtimes(project.folder).items())
    for index in range(N_MOVIES):
        ctf = json.loads((project.folder / f"ctf/movie_{index:03d}_ctf.json").read_text())
        assert abs(ctf["defocus_u_um"] / 2 + ctf["defocus_v_um"] / 2
                   - load_ground_truth(raw, index).ctf.defocus_um) < 0.05  # fmt: skip
    assert _run(project).outcomes == ()


def test_a_missing_or_resized_output_reruns_its_step_and_the_later_ones(
    processed: tuple[Path, RunSummary], tmp_path: Path
) -> None:
    project = _copy(processed, tmp_path)
    (project.folder / "ctf" / "movie_000_ctf.png").unlink()
    with (project.folder / "average" / "odd" / "movie_002.mrc").open("ab") as handle:
        handle.write(b"\0")
    summary = _run(project)
    assert sorted((o.name, o.steps_run) for o in summary.outcomes) == [
        ("movie_000", FROM_CTF),
        ("movie_002", ALL_STEPS),
    ]
    # the regenerated files are those of the first run (timings aside)
    reference = _outputs(processed[0])
    for name, path in _outputs(project.folder).items():  # copied files name the original
        regenerated = _comparable(path, project.folder).replace(
            str(processed[0]).encode(), b"<project>"
        )
        assert regenerated == _comparable(reference[name], processed[0]), name


def test_renamed_and_moved_movies_keep_their_items(raw: Path, tmp_path: Path) -> None:
    data = tmp_path / "session"
    data.mkdir()
    shutil.copy(raw / "movie_000.mrc", data / "movie_000.mrc")
    shutil.copy(raw / "gain.mrc", data / "gain.mrc")
    project = _new_project(tmp_path / "proj", data, pattern="*.mrc")
    assert [o.steps_run for o in _run(project).outcomes] == [ALL_STEPS]
    (data / "movie_000.mrc").rename(data / "renamed.mrc")
    assert _run(project).outcomes == ()  # recognised: nothing redone
    record = read_item_record(project.record_path("movie_000"))
    assert record.raw_path == str(data / "renamed.mrc")
    assert os.readlink(project.folder / "inputs" / "movie_000.mrc") == str(data / "renamed.mrc")
    assert sorted(p.name for p in project.items_folder.iterdir()) == ["movie_000.json"]
    # the whole session (movie and gain) moves elsewhere: the gain counts by content
    moved = shutil.move(data, tmp_path / "archive")
    project = _change(project, "data.pattern", f"{moved}/*.mrc")
    project = _change(project, "data.movie.gain_path", f"{moved}/gain.mrc")
    events_before = len(EventLog.read(project.events_path))
    assert _run(project).outcomes == ()
    assert read_item_record(project.record_path("movie_000")).raw_path == f"{moved}/renamed.mrc"
    kinds = [e["kind"] for e in EventLog.read(project.events_path)[events_before:]]
    assert "item_moved" in kinds
    # a rewritten movie (same path, other content) is redone
    shutil.copy(raw / "movie_001.mrc", Path(moved) / "renamed.mrc")
    assert [o.steps_run for o in _run(project).outcomes] == [ALL_STEPS]


def test_bad_movies_are_quarantined_with_reasons_and_good_ones_finish(
    raw: Path, tmp_path: Path
) -> None:
    data = tmp_path / "session"
    data.mkdir()
    for name in ("movie_000.mrc", "gain.mrc"):
        shutil.copy(raw / name, data / name)
    full = (raw / "movie_001.mrc").read_bytes()
    (data / "corrupt.mrc").write_bytes(np.random.default_rng(1).bytes(5000))
    (data / "empty.mrc").write_bytes(b"")
    (data / "partial.mrc").write_bytes(full[: len(full) * 6 // 10])  # still being written
    counts = np.random.default_rng(2).poisson(1.0, (8, 96, 96)).astype(np.float32)
    write_mrc(data / "wrong_size.mrc", counts, voxel_size_a=1.5)
    project = _new_project(tmp_path / "proj", data, pattern="*.mrc")
    summary = _run(project)
    states = {o.name: (o.state, o.reason or "") for o in summary.outcomes}
    assert states["movie_000"] == ("done", "")
    expected = {
        "corrupt": "not an MRC file",
        "empty": "only 0 bytes",
        "partial": "the copy or write was probably interrupted",
        "wrong_size": "does not match the frames",
    }
    for name, words in expected.items():
        state, reason = states[name]
        assert state == "quarantined", (name, reason)
        assert words in reason, reason
        assert str(data / f"{name}.mrc") in reason  # the raw file, not the project's link
        assert read_item_record(project.record_path(name)).quarantine_reason == reason
    assert _run(project).outcomes == ()  # quarantined input is not retried unchanged
    status = project_status(project)
    assert status.items == {"done": 1, "failed": 0, "quarantined": 4, "error": 0, "pending": 0}
    assert status.steps["motion"]["quarantined"] == 4
    assert status.steps["ctf"]["blocked"] == 4
    assert {f.item: f.reason for f in status.failures} == {n: states[n][1] for n in expected}
    (data / "partial.mrc").write_bytes(full)  # the write completes
    again = _run(project)
    assert [(o.name, o.state, o.steps_run) for o in again.outcomes] == [
        ("partial", "done", ALL_STEPS)
    ]


def test_an_unexpected_error_is_recorded_and_retried_on_the_next_run(
    processed: tuple[Path, RunSummary], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = _change(_copy(processed, tmp_path), "ctf.defocus_step_um", "0.02")

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("out of memory (simulated)")

    with monkeypatch.context() as patch:
        patch.setattr(steps_module, "estimate_ctf", broken)
        summary = _run(project)
    assert {(o.state, o.reason) for o in summary.outcomes} == {
        ("error", "RuntimeError: out of memory (simulated)")
    }
    status = project_status(project)
    assert status.steps["ctf"]["error"] == N_MOVIES
    assert "out of memory" in format_status(status)
    again = _run(project)
    assert {(o.state, o.steps_run) for o in again.outcomes} == {("done", FROM_CTF)}


def test_fewer_items_are_handed_out_when_memory_holds_fewer_movies(
    processed: tuple[Path, RunSummary], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A movie of 8 × 128² float32 frames is estimated at 8·128²·4 B × 4 copies = 2 MiB."""
    project = open_project(processed[0])
    record = read_item_record(project.record_path("movie_000"))
    events = EventLog(processed[0].parent / "memory_events.jsonl")
    task_bytes = 8 * 128 * 128 * 4 * 4
    pool = LocalPoolExecutor(4)  # no process starts before the first task
    try:
        monkeypatch.setattr(memory_module, "available_memory_bytes", lambda device: 10 * 2**30)
        assert _in_flight_limit(project, pool, record, events) == 8  # two per worker
        monkeypatch.setattr(memory_module, "available_memory_bytes", lambda d: 3 * task_bytes)
        assert _in_flight_limit(project, pool, record, events) == 2  # ⌊3 × 0.8⌋ movies
        monkeypatch.setattr(memory_module, "available_memory_bytes", lambda d: task_bytes)
        assert _in_flight_limit(project, pool, record, events) == 1
    finally:
        pool.shutdown()
    (warning,) = [e for e in EventLog.read(events.path) if e["kind"] == "memory_warning"]
    assert warning["task_bytes"] == task_bytes


def test_an_item_locked_by_another_process_is_left_alone(
    processed: tuple[Path, RunSummary], tmp_path: Path
) -> None:
    project = _change(_copy(processed, tmp_path), "ctf.defocus_step_um", "0.02")
    with item_lock(project, "movie_001") as locked:
        assert locked
        outcome = run_item(project.folder, "movie_001")
    assert (outcome.state, outcome.steps_run) == ("busy", ())
    assert run_item(project.folder, "movie_001").steps_run == FROM_CTF


def test_watch_mode_takes_new_movies_as_they_complete(raw: Path, tmp_path: Path) -> None:
    data = tmp_path / "session"
    data.mkdir()
    shutil.copy(raw / "gain.mrc", data / "gain.mrc")
    project = _new_project(tmp_path / "proj", data, pattern="*.mrc")
    project = _change(project, "watch.stable_s", "0.3")
    project = _change(project, "watch.poll_interval_s", "0.1")
    project = _change(project, "watch.give_up_s", "1.0")
    finished: list[str] = []
    deadline = time.monotonic() + 60

    def write_slowly() -> None:
        # a file that never completes comes first: the watcher must quarantine it and go on
        (data / "stuck.mrc").write_bytes((raw / "movie_001.mrc").read_bytes()[:5000])
        while "stuck" not in finished and time.monotonic() < deadline:
            time.sleep(0.05)
        for name in ("movie_000.mrc", "movie_002.mrc"):
            content = (raw / name).read_bytes()
            with (data / name).open("wb") as handle:
                for start in range(0, len(content), len(content) // 4):
                    handle.write(content[start : start + len(content) // 4])
                    handle.flush()
                    time.sleep(0.1)

    writer = threading.Thread(target=write_slowly)
    writer.start()
    summary = run_project(
        project,
        watch=True,
        executor=SerialExecutor(),
        progress=lambda outcome, done, known: finished.append(outcome.name),
        stop=lambda: len(finished) >= 3 or time.monotonic() > deadline,
    )
    writer.join()
    states = {o.name: o.state for o in summary.outcomes}
    assert states == {"movie_000": "done", "movie_002": "done", "stuck": "quarantined"}
    assert finished[0] == "stuck"  # the good movies came after it and were still taken
    events = EventLog.read(project.events_path)
    latencies = [e["latency_s"] for e in events if e["kind"] == "item_done"]
    assert len(latencies) == 2
    assert all(0 <= latency < 30 for latency in latencies)
    assert any(e["kind"] == "file_failed" and "stuck.mrc" in e["path"] for e in events)
    assert read_item_record(project.record_path("movie_000")).complete_at is not None


# -- crash safety ------------------------------------------------------------------------


def _child_run(folder: str) -> None:
    torch.set_num_threads(1)  # never fork into OpenMP; the same arithmetic in every child
    run_project(folder, executor=SerialExecutor())


def _run_in_child(folder: Path, *, kill_after_s: float | None = None) -> int | None:
    process = multiprocessing.get_context("fork").Process(target=_child_run, args=(str(folder),))
    process.start()
    process.join(kill_after_s)
    if process.is_alive():
        os.kill(process.pid, signal.SIGKILL)
        process.join()
    return process.exitcode


@pytest.mark.slow
def test_sigkill_at_random_moments_loses_nothing_and_redoes_nothing(
    raw: Path, tmp_path: Path
) -> None:
    """Kill the runner at random (seeded) moments, restarting it until it finishes, and
    compare every output with an uninterrupted run in the same folder: identical bytes (the
    motion JSON without its wall times), no leftovers, no finished step run twice."""
    folder = tmp_path / "proj"
    settings = _new_project(folder, raw).settings
    started = time.monotonic()
    assert _run_in_child(folder) == 0
    uninterrupted_s = time.monotonic() - started
    reference = {name: _comparable(path, folder) for name, path in _outputs(folder).items()}
    assert len(reference) == N_MOVIES * 19
    shutil.rmtree(folder)
    init_project(folder, settings)

    rng = np.random.default_rng(7)
    # About one step's worth, growing 10 % per try: kills land inside steps and between them
    # however fast the machine (one movie's worth finished in 4 runs on a fast CI machine).
    longest_s = uninterrupted_s / (N_MOVIES * len(ALL_STEPS))
    attempts = kills = 0
    exitcode = None
    while exitcode != 0 and attempts < 60:
        exitcode = _run_in_child(folder, kill_after_s=rng.uniform(0.02, longest_s))
        attempts += 1
        if exitcode != 0:
            assert exitcode == -signal.SIGKILL
            kills += 1
            longest_s *= 1.1
    assert exitcode == 0, f"not finished after {attempts} attempts"
    assert kills >= 5  # really interrupted, many times
    assert _run(folder).outcomes == ()  # everything is done

    outputs = _outputs(folder)
    assert sorted(outputs) == sorted(reference)
    for name, path in outputs.items():
        assert _comparable(path, folder) == reference[name], name
    leftovers = [p for p in folder.rglob("*") if p.name.endswith(".tmp") or ".staging" in p.parts]
    assert leftovers == []
    assert not any((folder / ".cryowarp" / "staging").iterdir())
    events = EventLog.read(folder / "logs" / "events.jsonl")
    finished = Counter(
        (e["item"], e["step"])
        for e in events
        if e["kind"] in ("step_finished", "step_failed", "item_quarantined")
    )
    assert max(finished.values()) == 1  # no finished step was run again
    done = Counter(e["item"] for e in events if e["kind"] == "item_done")
    assert max(done.values()) == 1
    for index in range(N_MOVIES):
        record = read_item_record(folder / "items" / f"movie_{index:03d}.json")
        assert {s.status for s in record.steps.values()} == {"done"}


@pytest.mark.slow
def test_two_local_workers_give_the_same_outputs(
    processed: tuple[Path, RunSummary], raw: Path, tmp_path: Path
) -> None:
    project = _new_project(tmp_path / "proj", raw)
    with LocalPoolExecutor(2) as pool:
        summary = run_project(project, executor=pool)
    assert {o.state for o in summary.outcomes} == {"done"}
    reference = _outputs(processed[0])
    outputs = _outputs(project.folder)
    assert sorted(outputs) == sorted(reference)
    for name, path in outputs.items():
        if path.parent.name in _NETWORK_OUTPUTS:
            _assert_close(path, reference[name])
        else:
            assert _comparable(path, project.folder) == _comparable(reference[name], processed[0])


_NETWORK_OUTPUTS = ("picking", "display")
"""Folders of network outputs: a worker computes with one torch thread, the serial run with
more, and convolutions sum in another order (float16 probabilities may differ in the last
bit), so these are compared by value, not by bytes."""


def _assert_close(path: Path, reference: Path) -> None:
    if path.suffix == ".mrc":
        values, _ = read_mrc(path)
        expected, _ = read_mrc(reference)
        assert np.allclose(
            np.asarray(values, np.float64), np.asarray(expected, np.float64), atol=2e-3
        ), path.name
    elif path.suffix == ".star":
        table = read_star(path)[""]
        expected_table = read_star(reference)[""]
        assert len(table) == len(expected_table), path.name
        assert np.allclose(
            table.to_numpy(np.float64), expected_table.to_numpy(np.float64), atol=1e-2
        )
    elif path.suffix == ".png":
        assert path.stat().st_size > 0
    else:  # the picking JSON: same counts and settings
        document, expected_doc = json.loads(path.read_text()), json.loads(reference.read_text())
        assert document["n_picks"] == expected_doc["n_picks"], path.name
        assert document["settings"] == expected_doc["settings"]
