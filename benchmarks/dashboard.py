"""Dashboard API benchmark (issue 10): response times of the API on a project of 5,000 items.

The project is :func:`benchmarks.dashboard_project.write_synthetic_project` (5,000 items, seed
0; 500 with ``--quick``), cached under ``$CRYOWARP_BENCH_CACHE`` (default
``<tmp>/cryowarp_bench_cache``) and put back as it was after the run (the benchmark rewrites
records and filters). The server is the real application (:func:`cryowarp.web.app.create_app`,
``min_refresh_interval_s=0`` so that every request rescans the project, as every poll of the
page does) under uvicorn on 127.0.0.1 in a thread, measured with ``httpx`` over real HTTP
(keep-alive). Each row is the median and 90th percentile (ms) over repeats and the response
size in bytes:

* ``overview cold`` — the first ``GET /api/overview`` of a fresh server (the index reads every
  record and computes every item's state);
* ``overview warm`` — again, nothing changed: the full body;
* ``overview since=`` — again with ``since=<version>``: ``{"unchanged": true}``;
* ``overview after 50 records rewritten`` — 50 records rewritten atomically (untimed) first;
* ``overview after a filter change`` — after a ``PUT /api/filters`` (untimed);
* ``item detail`` — ``GET /api/items/{name}`` of random done items;
* ``picks re-threshold`` — ``GET /api/items/{name}/picks?threshold=T``, T random in 0.3–0.7;
* ``filter PUT`` — ``PUT /api/filters`` alternating two defocus ranges.

The baseline, measured in the same run, is what ``cryowarp status`` does first: reading every
item record with :func:`cryowarp.pipeline.discovery.read_records`; "ratio" = median / baseline
median. The warm and ``since=`` overview are also measured in-process with FastAPI's
``TestClient`` (no sockets). No timing is asserted.

Run: ``python -m benchmarks.dashboard [--quick] [--items N]`` (writes
``benchmarks/results/dashboard.json`` and ``.md``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.dashboard_project import write_synthetic_project
from benchmarks.motion import cache_root
from cryowarp.web.background import start_dashboard

N_ITEMS = 5000
N_ITEMS_QUICK = 500
SEED = 0
REPEATS = 30
COLD_REPEATS = 3
N_REWRITTEN = 50
CACHE_FORMAT = 1  # bump when the synthetic project changes
RESULTS = Path(__file__).resolve().parent / "results"


# -- the project --------------------------------------------------------------------------


def _project(n_items: int) -> tuple[Path, float]:
    """The cached synthetic project (made when missing or left dirty); the seconds it took
    to make it (when it was made)."""
    folder = cache_root() / f"dashboard_{n_items}_seed{SEED}_v{CACHE_FORMAT}"
    marker = folder / "complete.json"
    if marker.is_file() and not (folder / "dirty").exists():
        return folder / "proj", float(json.loads(marker.read_text())["seconds"])
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    started = time.perf_counter()
    write_synthetic_project(folder / "proj", n_items=n_items, seed=SEED)
    seconds = time.perf_counter() - started
    marker.write_text(json.dumps({"n_items": n_items, "seed": SEED, "seconds": seconds}))
    return folder / "proj", seconds


@contextmanager
def _restored(folder: Path) -> Iterator[None]:
    """Put the settings and records back afterwards; mark the cache dirty meanwhile."""
    dirty = folder.parent / "dirty"
    dirty.touch()
    kept = {p: p.read_bytes() for p in [folder / "cryowarp.json", *folder.glob("items/*.json")]}
    try:
        yield
    finally:
        for path, data in kept.items():
            if path.read_bytes() != data:
                path.write_bytes(data)
        dirty.unlink()


# -- the server ---------------------------------------------------------------------------


@contextmanager
def _server(folder: Path) -> Iterator[str]:
    """A fresh dashboard of ``folder`` under uvicorn on 127.0.0.1 (rescanning the project on
    every request); its base URL without the final ``/``."""
    with start_dashboard(folder, min_refresh_interval_s=0.0) as dashboard:
        yield dashboard.url.rstrip("/")


def _timed(
    request: Callable[[], Any], repeats: int, before: Callable[[int], object] | None = None
) -> tuple[list[float], int]:
    """Milliseconds of ``request()`` per repeat (``before(i)`` runs untimed first) and the
    size of the last response body in bytes."""
    times: list[float] = []
    size = 0
    for i in range(repeats):
        if before is not None:
            before(i)
        started = time.perf_counter()
        response = request()
        times.append(1000 * (time.perf_counter() - started))
        if getattr(response, "status_code", 200) != 200:
            raise RuntimeError(f"HTTP {response.status_code}: {response.text[:300]}")
        size = len(getattr(response, "content", b""))
    return times, size


def _row(name: str, times: list[float], size: int, baseline_ms: float, via: str) -> dict[str, Any]:
    median = statistics.median(times)
    return {
        "request": name,
        "via": via,
        "repeats": len(times),
        "median_ms": median,
        "p90_ms": float(np.percentile(times, 90)),
        "ratio_to_baseline": median / baseline_ms,
        "bytes": size,
    }


# -- measurements -------------------------------------------------------------------------


def _baseline(folder: Path, repeats: int) -> list[float]:
    from cryowarp.pipeline.discovery import read_records
    from cryowarp.pipeline.project import open_project

    project = open_project(folder)
    times, _ = _timed(lambda: read_records(project), repeats)
    return times


def _rewrite(folder: Path, names: list[str], rng: np.random.Generator) -> None:
    from cryowarp.pipeline.items import read_item_record, write_item_record

    for name in rng.choice(names, N_REWRITTEN, replace=False):
        path = folder / "items" / f"{name}.json"
        record = read_item_record(path)
        motion = record.steps["motion"]
        results = {**motion.results, "total_drift_a": float(rng.uniform(5, 40))}
        write_item_record(
            path, record.with_step("motion", motion.model_copy(update={"results": results}))
        )


def _measure(folder: Path, repeats: int, baseline_ms: float) -> list[dict[str, Any]]:
    import httpx2 as httpx

    rng = np.random.default_rng(SEED)
    rows: list[dict[str, Any]] = []
    cold = []
    for _ in range(COLD_REPEATS):
        with _server(folder) as url, httpx.Client(base_url=url, timeout=600) as client:
            times, size = _timed(lambda: client.get("/api/overview"), 1)
            cold += times
    rows.append(_row("overview cold", cold, size, baseline_ms, "http"))
    with _server(folder) as url, httpx.Client(base_url=url, timeout=600) as client:
        overview = client.get("/api/overview").json()
        names = overview["items"]["name"]
        done = [n for n, s in zip(names, overview["items"]["state"], strict=True) if s == "done"]
        version = overview["version"]

        def get(path: str, **params: Any) -> Callable[[], Any]:
            return lambda: client.get(path, params=params)

        for label, request in (
            ("overview warm", get("/api/overview")),
            ("overview since=", get("/api/overview", since=version)),
        ):
            rows.append(_row(label, *_timed(request, repeats), baseline_ms, "http"))
        rows.append(
            _row(
                "overview after 50 records rewritten",
                *_timed(get("/api/overview"), repeats, lambda i: _rewrite(folder, done, rng)),
                baseline_ms,
                "http",
            )
        )
        ranges = (
            {"defocus_min_um": 0.8, "defocus_max_um": 2.8},
            {"defocus_min_um": 1.0, "defocus_max_um": 2.5},
        )
        rows.append(
            _row(
                "overview after a filter change",
                *_timed(
                    get("/api/overview"),
                    repeats,
                    lambda i: client.put("/api/filters", json=ranges[i % 2]),
                ),
                baseline_ms,
                "http",
            )
        )
        picked = list(rng.choice(done, repeats))
        thresholds = list(rng.uniform(0.3, 0.7, repeats))
        rows.append(
            _row(
                "item detail",
                *_timed(lambda: client.get(f"/api/items/{picked.pop()}"), repeats),
                baseline_ms,
                "http",
            )
        )
        picked = list(rng.choice(done, repeats))
        rows.append(
            _row(
                "picks re-threshold",
                *_timed(
                    lambda: client.get(
                        f"/api/items/{picked.pop()}/picks", params={"threshold": thresholds.pop()}
                    ),
                    repeats,
                ),
                baseline_ms,
                "http",
            )
        )
        bodies = [ranges[i % 2] for i in range(repeats)]
        rows.append(
            _row(
                "filter PUT",
                *_timed(lambda: client.put("/api/filters", json=bodies.pop()), repeats),
                baseline_ms,
                "http",
            )
        )
        client.put("/api/filters", json={"defocus_min_um": None, "defocus_max_um": None})
    rows += _in_process(folder, repeats, baseline_ms)
    return rows


def _in_process(folder: Path, repeats: int, baseline_ms: float) -> list[dict[str, Any]]:
    from fastapi.testclient import TestClient

    from cryowarp.web.app import create_app

    client = TestClient(create_app(folder, min_refresh_interval_s=0.0), base_url="http://localhost")
    version = client.get("/api/overview").json()["version"]
    return [
        _row(
            "overview warm",
            *_timed(lambda: client.get("/api/overview"), repeats),
            baseline_ms,
            "TestClient",
        ),
        _row(
            "overview since=",
            *_timed(lambda: client.get("/api/overview", params={"since": version}), repeats),
            baseline_ms,
            "TestClient",
        ),
    ]


def run(*, quick: bool, n_items: int | None = None) -> dict[str, Any]:
    """Run the suite (``quick``: 500 items, fewer repeats) and return its report."""
    n = n_items or (N_ITEMS_QUICK if quick else N_ITEMS)
    repeats = 10 if quick else REPEATS
    started = time.monotonic()
    folder, made_s = _project(n)
    load_before = os.getloadavg()[0]
    with _restored(folder):
        baseline = _baseline(folder, max(5, repeats // 3))
        baseline_ms = statistics.median(baseline)
        rows = _measure(folder, repeats, baseline_ms)
    return {
        "suite": "dashboard",
        "quick": quick,
        "n_items": n,
        "cpu_count": os.cpu_count(),
        "project": str(folder),
        "project_bytes_records": sum(p.stat().st_size for p in folder.glob("items/*.json")),
        "generation_s": made_s,
        "baseline": {
            "what": "read_records (every item record, as `cryowarp status`)",
            "repeats": len(baseline),
            "median_ms": baseline_ms,
            "p90_ms": float(np.percentile(baseline, 90)),
        },
        "rows": rows,
        "load_average_1min": [load_before, os.getloadavg()[0]],
        "elapsed_s": time.monotonic() - started,
    }


# -- report -------------------------------------------------------------------------------


def markdown(report: dict[str, Any]) -> str:
    """The suite's section of benchmarks/results/README.md."""
    base = report["baseline"]
    made = report.get("generation_s")
    lines = [
        "## dashboard",
        "",
        f"Dashboard API on a synthetic project of {report['n_items']} items "
        f"(`benchmarks/dashboard_project.py`; {report['cpu_count']} CPU cores"
        + (", quick run" if report["quick"] else "")
        + (f"; the project was generated in {made:.1f} s" if made is not None else "")
        + "). Real HTTP to uvicorn on 127.0.0.1 (`http`) or in-process (`TestClient`); the "
        "server rescans the project on every request, as on every 2-s poll of the page. "
        f"Baseline: reading every item record (`read_records`, what `cryowarp status` does): "
        f"median {base['median_ms']:.0f} ms, p90 {base['p90_ms']:.0f} ms. 1-min load average "
        + " → ".join(f"{x:.1f}" for x in report["load_average_1min"])
        + ".",
        "",
        "| request | via | repeats | median ms | p90 ms | ratio to baseline | bytes |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in report["rows"]:
        lines.append(
            f"| {r['request']} | {r['via']} | {r['repeats']} | {r['median_ms']:.1f} | "
            f"{r['p90_ms']:.1f} | {r['ratio_to_baseline']:.3g} | {r['bytes']:,} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.dashboard", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="500 items, fewer repeats")
    parser.add_argument("--items", type=int, default=None, help="items in the project")
    parser.add_argument("--out", type=Path, default=RESULTS, help="results folder")
    args = parser.parse_args()
    report = run(quick=args.quick, n_items=args.items)
    report["machine"] = {"platform": platform.platform(), "cpu_count": os.cpu_count()}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "dashboard.json").write_text(json.dumps(report, indent=2) + "\n")
    text = markdown(report)
    (args.out / "dashboard.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
