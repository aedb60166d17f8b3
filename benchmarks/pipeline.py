"""Pipeline throughput benchmark: movies per hour end to end, where the time goes, and the
latency of watch mode (issue 7; docs/pipeline.md, docs/pipeline_workers.md).

Everything goes through the public API: a fresh project per measurement
(:func:`~cryowarp.pipeline.project.init_project` with the default motion and CTF settings),
:func:`~cryowarp.pipeline.runner.run_project` with
``make_executor(workers=N)`` (one spawned worker process per worker, each with
``cpu_count // N`` torch threads), and the project's item records, motion JSON and event log
afterwards.

* **Throughput** — ``small`` movies (``frame_series_preset("small")``: 1024², 20 frames of
  2 e⁻/Å², 1.2 Å/px; 4 movies, 2 with ``--quick``) with 1 and 2 workers, and in the full run
  one ``k3`` movie (4092 × 5760, 40 frames) with 1 worker. Movies per hour = movies done ×
  3600 / wall time of ``run_project`` (worker start-up included). The same run measures the
  **read baseline**: ``load_movie`` + ``corrected_frames`` over every frame of each movie
  once, in a fresh process with the threads of one worker; "ratio to read" = wall seconds
  per movie / read seconds per movie. K3 is measured only while the suite stays within
  :data:`TIME_BUDGET_S` (its expected time comes from the motion suite's K3 result when
  there, else :data:`K3_EXPECTED_S`); otherwise the report says it was not measured and why.
* **Where the time goes** — the worker time (workers × wall) split into the motion stages of
  each movie's motion JSON (``load``, ``alignment_frames``, ``fit``, ``average``, ``write``),
  the rest of the motion step (moving outputs into place), the CTF step (with
  ``spectrum_source = "frames"`` it reads the movie again), the item's own overhead (lock,
  records, events) and the idle rest (worker start-up, waiting for the last item).
* **Watch mode** — a project whose pattern points at an empty folder runs
  ``run_project(watch=True, stop=event.is_set)`` in a thread while movies are written into
  the folder in 8 chunks, one movie every :data:`WATCH_INTERVAL_S` s (``tiny`` movies in
  ``--quick``, ``small`` in the full run); once every item is done the event is set. The
  latency (file complete → item done) comes from the event log
  (:func:`~cryowarp.pipeline.events.latency_summary`), split into the wait for a worker
  (file complete → first step started) and the processing.

With CUDA, every measurement is repeated on the GPU (workers on ``cuda``, the CPU rows pinned
to ``cpu``); the watch run then uses the GPU.
"""

from __future__ import annotations

import json
import os
import statistics
import tempfile
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path
from typing import Any

from benchmarks.motion import cache_root, dataset

AIM_K3_PER_HOUR = 90.0
SEED = 0
N_SMALL = 4
N_SMALL_QUICK = 2
N_WATCH = 3
WORKERS = (1, 2)
WATCH_WORKERS = 2
TIME_BUDGET_S = 25 * 60.0
K3_EXPECTED_S = 900.0  # one K3 movie through motion + CTF on 2 CPU cores, when no result says
WATCH_INTERVAL_S = 5.0
WATCH_CHUNKS = 8
WATCH_TIMEOUT_S = 1800.0
MOTION_STAGES = ("load", "alignment_frames", "fit", "average", "write")


# -- measurements ---------------------------------------------------------------------------


def _project_settings(raw: Path, pattern: str) -> Any:
    from cryowarp.pipeline.settings import ProjectSettings
    from cryowarp.simulate.ground_truth import load_ground_truth

    truth = load_ground_truth(raw, 0)
    return ProjectSettings.model_validate(
        {
            "data": {
                "pattern": pattern,
                "movie": {
                    "pixel_size_a": truth.settings.pixel_size_a,
                    "dose_per_frame_e_per_a2": truth.settings.dose_per_frame_e_per_a2,
                    "gain_path": str(truth.gain_path),
                },
            }
        }
    )


def read_child(movies: list[str], settings_json: str, device: str) -> list[float]:
    """Seconds to read each movie once: ``load_movie`` + ``corrected_frames`` of every frame."""
    import torch

    from cryowarp.pipeline._tasks import cpu_count
    from cryowarp.preprocess.motion.frames import load_movie
    from cryowarp.preprocess.motion.settings import MovieInputSettings

    torch.set_num_threads(cpu_count())  # a single worker's threads
    settings = MovieInputSettings.model_validate_json(settings_json)
    seconds = []
    for path in movies:
        started = time.perf_counter()
        movie = load_movie(path, settings)
        frames = movie.corrected_frames(0, movie.n_frames, device=device)
        float(frames[-1, 0, 0])  # synchronise
        seconds.append(time.perf_counter() - started)
        del movie, frames
    return seconds


def _read_seconds(raw: Path, n_movies: int, device: str) -> list[float]:
    settings = _project_settings(raw, "").data.movie
    movies = [str(raw / f"movie_{i:03d}.mrc") for i in range(n_movies)]
    with ProcessPoolExecutor(1, mp_context=get_context("spawn")) as pool:
        return pool.submit(read_child, movies, settings.model_dump_json(), device).result()


def _executor(workers: int, device: str) -> Any:
    from cryowarp.pipeline.executors import make_executor

    return make_executor(workers=workers, devices=None if device == "cuda" else [device])


def _throughput(raw: Path, preset: str, n_movies: int, workers: int, device: str) -> dict[str, Any]:
    """Run a fresh project of the dataset's first ``n_movies`` (≤ 10) movies; movies per
    hour and where the time goes."""
    from cryowarp.pipeline._tasks import cpu_count
    from cryowarp.pipeline.events import EventLog, throughput_per_hour
    from cryowarp.pipeline.project import init_project
    from cryowarp.pipeline.runner import run_project

    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(dir=cache_root()) as work:
        pattern = str(raw / f"movie_00[0-{n_movies - 1}].mrc")
        project = init_project(Path(work) / "proj", _project_settings(raw, pattern))
        executor = _executor(workers, device)
        try:
            summary = run_project(project, executor=executor)
        finally:
            executor.shutdown()
        outcomes = list(summary.outcomes)
        events = EventLog.read(project.events_path)
        row: dict[str, Any] = {
            "preset": preset,
            "device": device,
            "workers": workers,
            "n_movies": len(outcomes),
            "n_done": sum(o.state == "done" for o in outcomes),
            "failures": [f"{o.name}: {o.state}: {o.reason}" for o in outcomes if o.state != "done"],
            "wall_s": summary.seconds,
            "events_movies_per_hour": throughput_per_hour(events),
            "load_average_1min": [load_before, os.getloadavg()[0]],  # before, after
            "threads_per_worker": max(1, cpu_count() // workers),
        }
        row["movies_per_hour"] = row["n_done"] * 3600.0 / summary.seconds
        row["seconds_per_movie"] = summary.seconds / max(1, row["n_done"])
        row.update(_time_shares(project, outcomes, workers * summary.seconds))
    return row


def _time_shares(project: Any, outcomes: list[Any], worker_s: float) -> dict[str, Any]:
    """Seconds per movie in each part of the work and the shares of the worker time."""
    from cryowarp.pipeline.items import read_item_record

    parts = dict.fromkeys([*(f"motion.{s}" for s in MOTION_STAGES), "motion.other", "ctf"], 0.0)
    item_s = 0.0
    for outcome in outcomes:
        record = read_item_record(project.record_path(outcome.name))
        item_s += outcome.seconds
        motion = record.steps.get("motion")
        if motion is not None and motion.status == "done":
            stages = json.loads((project.folder / motion.outputs["metadata"].path).read_text())
            for stage in MOTION_STAGES:
                parts[f"motion.{stage}"] += stages["seconds"].get(stage, 0.0)
            parts["motion.other"] += motion.seconds - sum(
                stages["seconds"].get(stage, 0.0) for stage in MOTION_STAGES
            )
        if "ctf" in record.steps:
            parts["ctf"] += record.steps["ctf"].seconds
    parts["item_overhead"] = item_s - sum(parts.values())
    parts["idle"] = worker_s - item_s
    n = max(1, len(outcomes))
    return {
        "stage_seconds_per_movie": {k: v / n for k, v in parts.items()},
        "shares": {k: v / worker_s for k, v in parts.items()},
    }


def _k3_expected_s() -> tuple[float, str]:
    """Expected seconds of one K3 movie: the motion suite's K3 total plus 15 % for the CTF."""
    path = Path(__file__).resolve().parent / "results" / "motion.json"
    try:
        summary = json.loads(path.read_text())["summary"]["k3"]["ours"]
        return 1.15 * float(summary["seconds_total"]), "motion suite's K3 result + 15 %"
    except (OSError, KeyError, TypeError, ValueError):
        return K3_EXPECTED_S, "default estimate"


# -- watch mode -----------------------------------------------------------------------------


def _write_in_chunks(source: Path, target: Path) -> None:
    content = source.read_bytes()
    step = -(-len(content) // WATCH_CHUNKS)
    with target.open("wb") as handle:
        for start in range(0, len(content), step):
            handle.write(content[start : start + step])
            handle.flush()
            time.sleep(0.1)


def _watch(raw: Path, preset: str, n_movies: int, workers: int, device: str) -> dict[str, Any]:
    from cryowarp.pipeline.events import EventLog, latency_summary
    from cryowarp.pipeline.project import init_project
    from cryowarp.pipeline.runner import run_project

    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(dir=cache_root()) as work:
        session = Path(work) / "session"
        session.mkdir()
        project = init_project(Path(work) / "proj", _project_settings(raw, str(session / "*.mrc")))
        stop = threading.Event()
        done: list[str] = []
        result: dict[str, Any] = {}

        def runner() -> None:
            executor = _executor(workers, device)
            try:
                run_project(
                    project,
                    watch=True,
                    executor=executor,
                    progress=lambda outcome, n, known: done.append(outcome.name),
                    stop=stop.is_set,
                )
            except Exception as error:  # reported, never hangs the suite
                result["error"] = f"{type(error).__name__}: {error}"
                stop.set()
            finally:
                executor.shutdown()

        thread = threading.Thread(target=runner, daemon=True)
        thread.start()
        deadline = time.monotonic() + WATCH_TIMEOUT_S
        for index in range(n_movies):
            started = time.monotonic()
            name = f"movie_{index:03d}.mrc"
            _write_in_chunks(raw / name, session / name)
            time.sleep(max(0.0, WATCH_INTERVAL_S - (time.monotonic() - started)))
        while len(done) < n_movies and not stop.is_set() and time.monotonic() < deadline:
            time.sleep(0.2)
        stop.set()
        thread.join()
        events = EventLog.read(project.events_path)
    latency = latency_summary(events)
    return {
        "preset": preset,
        "device": device,
        "workers": workers,
        "n_movies": n_movies,
        "interval_s": WATCH_INTERVAL_S,
        "chunks": WATCH_CHUNKS,
        "n_done": sum(e["kind"] == "item_done" for e in events),
        "error": result.get("error"),
        "latency_s": latency,
        "load_average_1min": [load_before, os.getloadavg()[0]],
        **_latency_parts(events),
    }


def _latency_parts(events: list[dict[str, Any]]) -> dict[str, Any]:
    """Median seconds from file complete to the item's first step (waiting for a worker) and
    from there to the item being done (processing)."""
    complete = {e["item"]: e["complete_at"] for e in events if e["kind"] == "file_complete"}
    first_step: dict[str, float] = {}
    for e in events:
        if e["kind"] == "step_started":
            first_step.setdefault(e["item"], e["time"])
    done = {e["item"]: e["time"] for e in events if e["kind"] == "item_done"}
    items = [i for i in done if i in complete and i in first_step]
    if not items:
        return {"median_wait_s": None, "median_processing_s": None}
    return {
        "median_wait_s": statistics.median(first_step[i] - complete[i] for i in items),
        "median_processing_s": statistics.median(done[i] - first_step[i] for i in items),
    }


# -- suite ----------------------------------------------------------------------------------


def _describe(preset: str, folder: Path, n_movies: int) -> dict[str, Any]:
    from cryowarp.simulate.presets import frame_series_preset

    s = frame_series_preset(preset)
    return {
        "shape_px": list(s.shape_px),
        "n_frames": s.n_frames,
        "pixel_size_a": s.pixel_size_a,
        "dose_per_frame_e_per_a2": s.dose_per_frame_e_per_a2,
        "n_movies": n_movies,
        "cache": str(folder),
    }


def _with_read(row: dict[str, Any], read_s: list[float]) -> dict[str, Any]:
    row["read_seconds_per_movie"] = statistics.mean(read_s)
    row["ratio_to_read"] = row["seconds_per_movie"] / row["read_seconds_per_movie"]
    return row


def run(*, quick: bool) -> dict[str, Any]:
    """Run the suite (``quick``: no K3, ``tiny`` movies in watch mode) and return its report."""
    import torch

    from cryowarp.pipeline._tasks import cpu_count

    started = time.monotonic()
    cache_root().mkdir(parents=True, exist_ok=True)
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    n_small = N_SMALL_QUICK if quick else N_SMALL
    small = dataset("small", {}, n_movies=N_SMALL, seed=SEED)  # the first n_small are used
    watch_preset = "tiny" if quick else "small"
    watch_raw = dataset(watch_preset, {}, n_movies=N_SMALL, seed=SEED)  # the first N_WATCH
    report: dict[str, Any] = {
        "suite": "pipeline",
        "quick": quick,
        "aim_k3_movies_per_hour": AIM_K3_PER_HOUR,
        "cpu_cores": cpu_count(),
        "datasets": {"small": _describe("small", small, n_small)},
        "throughput": [],
    }
    for device in devices:
        read_s = _read_seconds(small, n_small, device)
        for workers in WORKERS:
            row = _throughput(small, "small", n_small, workers, device)
            report["throughput"].append(_with_read(row, read_s))
    report["watch"] = [_watch(watch_raw, watch_preset, N_WATCH, WATCH_WORKERS, devices[-1])]
    report["datasets"]["watch"] = _describe(watch_preset, watch_raw, N_WATCH)
    report["k3"] = _k3(report, devices, quick=quick, started=started)
    report["elapsed_s"] = time.monotonic() - started
    return report


def _k3(report: dict[str, Any], devices: list[str], *, quick: bool, started: float) -> Any:
    if quick:
        return {"measured": False, "reason": "skipped in --quick"}
    expected_s, source = _k3_expected_s()
    k3 = dataset("k3", {}, n_movies=1, seed=SEED)
    report["datasets"]["k3"] = _describe("k3", k3, 1)
    rows: list[dict[str, Any]] = []
    for device in reversed(devices):  # the GPU first: it is the one that can keep up
        elapsed = time.monotonic() - started
        if device == "cpu" and elapsed + expected_s > TIME_BUDGET_S:
            return {
                "measured": bool(rows),
                "rows": rows,
                "reason": f"CPU not measured: {elapsed / 60:.0f} min spent and one K3 movie is "
                f"expected to take {expected_s / 60:.0f} min ({source}), over the "
                f"{TIME_BUDGET_S / 60:.0f}-min budget of the suite",
                "expected_cpu_s": expected_s,
            }
        read_s = _read_seconds(k3, 1, device)
        row = _with_read(_throughput(k3, "k3", 1, 1, device), read_s)
        row["gap_to_aim"] = AIM_K3_PER_HOUR / row["movies_per_hour"]
        report["throughput"].append(row)
        rows.append(row)
    return {"measured": True, "rows": rows}


# -- report ---------------------------------------------------------------------------------


def _f(value: Any, spec: str = ".3g") -> str:
    return "–" if value is None else format(value, spec)


def markdown(report: dict[str, Any]) -> str:
    """The suite's section of benchmarks/results/README.md."""
    small = report["datasets"]["small"]
    lines = [
        "## pipeline",
        "",
        f"End to end (`run_project`: motion + CTF, default settings, fresh project per row) on "
        f"{report['cpu_cores']} CPU cores" + (" (quick run)" if report["quick"] else "") + ". "
        f"`small`: {small['n_movies']} movies of {small['n_frames']} frames × "
        f"{small['shape_px'][1]}×{small['shape_px'][0]} px; `k3`: 1 movie of 40 frames × "
        "5760×4092 px. Movies/hour = movies done × 3600 / wall time (worker start-up "
        "included); ratio to read = seconds per movie / seconds to read the movie once "
        "(`load_movie` + `corrected_frames`); the 1-min load average shows how busy the "
        "machine was (other jobs share it). Aim: ≥ "
        f"{report['aim_k3_movies_per_hour']:g} K3 movies per hour.",
        "",
        "| movies | device | workers × threads | movies/hour | s per movie | read s per movie "
        "| ratio to read | done | load average before → after |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in report["throughput"]:
        lines.append(
            f"| {r['preset']} | {r['device']} | {r['workers']} × "
            f"{r.get('threads_per_worker', '?')} | {_f(r['movies_per_hour'])} | "
            f"{_f(r['seconds_per_movie'])} | {_f(r['read_seconds_per_movie'])} | "
            f"{_f(r['ratio_to_read'])} | {r['n_done']}/{r['n_movies']} | "
            + " → ".join(f"{x:.1f}" for x in r.get("load_average_1min", []))
            + " |"
        )
    k3 = report["k3"]
    lines.append("")
    for r in k3.get("rows", []):
        lines.append(
            f"K3 on {r['device']}: {_f(r['movies_per_hour'])} movies/hour, "
            f"{_f(r['gap_to_aim'])}× short of the aim of {report['aim_k3_movies_per_hour']:g}."
        )
    if "reason" in k3:
        lines.append(f"K3: {k3['reason']}.")
    keys = list(report["throughput"][0]["shares"]) if report["throughput"] else []
    lines += [
        "",
        "Where the time goes (share of workers × wall time; motion stages from the motion "
        "JSON, `ctf` includes reading the movie again, `idle` = worker start-up and waiting):",
        "",
        "| movies | device | workers | " + " | ".join(keys) + " |",
        "|---|---|---|" + "---|" * len(keys),
    ]
    for r in report["throughput"]:
        shares = " | ".join(f"{100 * r['shares'][k]:.0f} %" for k in keys)
        lines.append(f"| {r['preset']} | {r['device']} | {r['workers']} | {shares} |")
    lines += ["", "Watch mode (file complete → item done, seconds):", ""]
    lines += [
        "| movies | device | workers | one every (s) | done | median | p90 | max | "
        "median wait | median processing | load average before → after |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for w in report["watch"]:
        lat = w["latency_s"]
        lines.append(
            f"| {w['preset']} | {w['device']} | {w['workers']} | {w['interval_s']:g} | "
            f"{w['n_done']}/{w['n_movies']} | {_f(lat['median'])} | {_f(lat['p90'])} | "
            f"{_f(lat['max'])} | {_f(w['median_wait_s'])} | {_f(w['median_processing_s'])} | "
            + " → ".join(f"{x:.1f}" for x in w.get("load_average_1min", []))
            + " |"
            + (f" error: {w['error']}" if w.get("error") else "")
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(json.dumps(run(quick=True), indent=2))
