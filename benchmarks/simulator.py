"""Simulator benchmark: seconds and peak memory per movie for each preset.

Each preset runs in a fresh child process (so its peak resident memory is its own) and is
reported with a baseline measured in the same run: the minimum work of any simulator of the
same movie — drawing Poisson counts for every pixel of every frame (``torch.poisson`` on
``n_frames × h × w``) — as ``ratio_to_poisson = t_movie / t_poisson``.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import resource
import tempfile
import time
from typing import Any


def _simulate_one(preset: str, queue: Any) -> None:
    from cryowarp.simulate.presets import frame_series_preset
    from cryowarp.simulate.write import write_frame_series_dataset

    settings = frame_series_preset(preset)
    with tempfile.TemporaryDirectory() as folder:
        t0 = time.perf_counter()
        write_frame_series_dataset(folder, settings, n_movies=1, seed=0)
        seconds = time.perf_counter() - t0
    queue.put(
        {
            "seconds": seconds,
            "shape_px": list(settings.shape_px),
            "n_frames": settings.n_frames,
            "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2,
        }
    )


def _poisson_baseline(shape: tuple[int, int, int], queue: Any) -> None:
    import torch

    rates = torch.full(shape[1:], 0.5)
    generator = torch.Generator().manual_seed(0)
    t0 = time.perf_counter()
    for _ in range(shape[0]):  # frame by frame, as a simulator of a K3 movie must
        torch.poisson(rates, generator=generator)
    queue.put(time.perf_counter() - t0)


def _in_child(target: Any, *args: Any) -> Any:
    context = mp.get_context("spawn")
    queue = context.Queue()
    process = context.Process(target=target, args=(*args, queue))
    process.start()
    result = queue.get()
    process.join()
    return result


def run(*, quick: bool) -> dict[str, Any]:
    presets = ["tiny", "small"] if quick else ["tiny", "small", "k3"]
    rows = []
    for preset in presets:
        movie = _in_child(_simulate_one, preset)
        shape = (movie["n_frames"], *movie["shape_px"])
        t_poisson = _in_child(_poisson_baseline, shape)
        rows.append(
            {
                "preset": preset,
                **movie,
                "poisson_seconds": t_poisson,
                "ratio_to_poisson": movie["seconds"] / t_poisson,
            }
        )
    return {"suite": "simulator", "quick": quick, "movies": rows}


def markdown(report: dict[str, Any]) -> str:
    lines = [
        "## simulator",
        "",
        "One movie per preset in a fresh process; baseline: Poisson draws for every pixel of "
        "every frame.",
        "",
        "| preset | frames × size | seconds | peak memory (GB) | Poisson seconds | ratio |",
        "|---|---|---|---|---|---|",
    ]
    for r in report["movies"]:
        h, w = r["shape_px"]
        lines.append(
            f"| {r['preset']} | {r['n_frames']} × {w}×{h} | {r['seconds']:.3g} | "
            f"{r['peak_rss_gb']:.2f} | {r['poisson_seconds']:.3g} | {r['ratio_to_poisson']:.3g} |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(json.dumps(run(quick=True), indent=2))
