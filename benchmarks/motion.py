"""Motion-correction benchmark: accuracy against the simulator's ground truth, and speed.

Data: ``small`` movies at a realistic dose (``frame_series_preset("small", n_frames=40,
dose_per_frame_e_per_a2=1.0)``: 1024², 1.2 Å/px, 40 e⁻/Å²; 3 movies, 1 with ``--quick``) and,
in the full run only, one ``k3`` movie (speed). Datasets are cached under
``$CRYOWARP_BENCH_CACHE`` (default: ``<tmp>/cryowarp_bench_cache``) in a folder keyed by the
settings, the number of movies and the seed, so reruns skip the simulation.

Methods, each run in a fresh child process on the same gain-corrected, defect-filled frames
(``frames.load_movie``):

* ``ours`` — ``correct_movie`` with the default ``MotionSettings`` (global + local);
* ``ours_global`` — the same with ``local_grid = (1, 1, 1)``;
* ``xcorr`` — the classic iterative global alignment of :mod:`benchmarks._xcorr_motion` on
  the frames our fit sees (``alignment_frames``), same band and B-factor;
* ``teamtomo`` — teamtomo's ``torch-motion-correction`` (global cross-correlation + local
  patch optimisation) when it is installed; otherwise reported as not installed, with why.
* ``truth`` — the simulator's own motion (reference for the averages).

Accuracy. Every method's motion is evaluated at a 17 × 17 grid of positions spanning the
pixel centres of the field and at every frame; the spatial mean over the grid is its global
trajectory, the rest its local field, each gauged by subtracting frame 0. RMS errors (Å) are
taken over frames 1 … n−1 (frame 0 is zero by construction) and, for the local field and the
total, over the positions too (2-D error vector length). The dose-weighted average that
:func:`~cryowarp.preprocess.motion.average.average_frames` makes with each motion is compared
with the clean micrograph (``read_clean_micrograph``) by the FRC: the resolution is where the
FRC (smoothed over 5 shells) falls below **0.5** for the last time (a noise-free reference:
0.5 against the truth corresponds to 0.143 between half-maps; the *first* crossing would be
the first CTF zero of the clean micrograph, whatever the motion), reported as a ratio to
the same average made with the true motion (``resolution_ratio`` ≥ 1 is worse than the
truth), together with the mean FRC over the shells from 1/20 Å⁻¹ to Nyquist.

Speed: seconds per movie from the movie file to the motion model (``seconds_motion``: read,
prepare, fit) and to the average (``seconds_total``; for ``ours`` the whole ``correct_movie``
including writing its outputs), as a ratio to the **minimum work** measured in the same run —
reading/decoding every frame, one ``rfft2`` of every frame and one ``irfft2`` of the sum —
and the peak resident memory of our run (``resource.getrusage``).
"""

from __future__ import annotations

import hashlib
import importlib
import json
import multiprocessing as mp
import os
import resource
import shutil
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

AIMS = {"global_rms_a": 0.25, "local_rms_a": 0.5, "resolution_ratio": 1.05, "ratio_to_min_work": 3}
SMALL_OVERRIDES: dict[str, Any] = {"n_frames": 40, "dose_per_frame_e_per_a2": 1.0}
SEED = 0
GRID_SAMPLES = 17
FRC_THRESHOLD = 0.5
FRC_LOW_A = 20.0
FRC_SMOOTHING_SHELLS = 5
METHODS = ("ours", "ours_global", "xcorr", "teamtomo")
_METHOD_MODULES = (
    "benchmarks._teamtomo_motion",
    "benchmarks._xcorr_motion",
    "cryowarp.preprocess.motion.average",
    "cryowarp.preprocess.motion.correct",
)
TEAMTOMO_ITERATIONS = 100  # teamtomo's default (Adam)


# -- data -----------------------------------------------------------------------------------


def cache_root() -> Path:
    """Folder of the cached simulated datasets."""
    default = Path(tempfile.gettempdir()) / "cryowarp_bench_cache"
    return Path(os.environ.get("CRYOWARP_BENCH_CACHE", default))


def dataset(preset: str, overrides: dict[str, Any], *, n_movies: int, seed: int) -> Path:
    """A simulated dataset, from the cache when the same settings, count and seed exist."""
    from cryowarp.simulate.presets import frame_series_preset
    from cryowarp.simulate.write import write_frame_series_dataset

    settings = frame_series_preset(preset, **overrides)
    key_text = json.dumps(
        {"settings": settings.model_dump(mode="json"), "n_movies": n_movies, "seed": seed},
        sort_keys=True,
    )
    key = hashlib.sha256(key_text.encode()).hexdigest()[:16]
    folder = cache_root() / f"motion_{preset}_{key}"
    if (folder / "ground_truth" / "ground_truth.json").is_file():
        return folder
    staging = folder.with_name(folder.name + f".partial-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    write_frame_series_dataset(staging, settings, n_movies=n_movies, seed=seed)
    shutil.rmtree(folder, ignore_errors=True)
    staging.rename(folder)
    return folder


# -- child processes ------------------------------------------------------------------------


def _in_child(target: str, *args: Any) -> dict[str, Any]:
    """Run the module function ``target(*args)`` in a fresh process; its result or error."""
    context = mp.get_context("spawn")
    queue = context.Queue()
    process = context.Process(target=_child_entry, args=(target, args, queue))
    process.start()
    result: dict[str, Any] = queue.get()
    process.join()
    return result


def _child_entry(target: str, args: tuple[Any, ...], queue: Any) -> None:
    try:
        queue.put(globals()[target](*args))
    except Exception as error:
        queue.put(
            {
                "status": "error",
                "reason": f"{type(error).__name__}: {error}",
                "traceback": traceback.format_exc(limit=8),
            }
        )


def _peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2


def _device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def _input_settings(truth: Any) -> Any:
    from cryowarp.preprocess.motion.settings import MovieInputSettings

    return MovieInputSettings(
        pixel_size_a=truth.settings.pixel_size_a,
        dose_per_frame_e_per_a2=truth.settings.dose_per_frame_e_per_a2,
        gain_path=str(truth.gain_path),
    )


def min_work_child(folder: str, movie: int) -> dict[str, Any]:
    """Minimum work of any motion correction: decode every frame, one rfft2 of each, one
    irfft2 of the sum."""
    import torch

    from cryowarp.io.movie import open_movie
    from cryowarp.simulate.ground_truth import load_ground_truth

    truth = load_ground_truth(folder, movie)
    device = _device()
    started = time.perf_counter()
    with open_movie(truth.movie_path) as reader:
        total: torch.Tensor | None = None
        for start in range(0, reader.n_frames, 4):
            frames = reader.read_frames_tensor(
                start, min(reader.n_frames, start + 4), device=device
            )
            spectra = torch.fft.rfft2(frames).sum(0)
            total = spectra if total is None else total + spectra
        assert total is not None
        average = torch.fft.irfft2(total, s=reader.frame_shape)
        float(average[0, 0])  # synchronise
    return {"status": "ok", "seconds": time.perf_counter() - started}


def method_child(folder: str, movie: int, method: str, evaluate: bool) -> dict[str, Any]:
    """Run one method on one movie; time it, record the peak memory, then evaluate it."""
    # Import everything before the clock starts (imports are not the method's work).
    for name in _METHOD_MODULES:
        importlib.import_module(name)
    from cryowarp.preprocess.motion.frames import load_movie
    from cryowarp.simulate.ground_truth import load_ground_truth

    truth = load_ground_truth(folder, movie)
    device = _device()
    out: dict[str, Any] = {"status": "ok", "method": method}
    started = time.perf_counter()
    if method in ("ours", "ours_global"):
        motion, seconds = _run_ours(truth, device, global_only=method == "ours_global")
        out["stage_seconds"] = seconds
        out["seconds_motion"] = sum(
            seconds.get(k, 0.0) for k in ("load", "alignment_frames", "fit")
        )
        out["seconds_total"] = seconds["total"]
    elif method == "truth":
        motion = truth.motion
        out["seconds_motion"] = 0.0
    else:
        movie_frames = load_movie(truth.movie_path, _input_settings(truth))
        motion = _run_baseline(method, movie_frames, device)
        out["seconds_motion"] = time.perf_counter() - started
    out["peak_rss_gb"] = _peak_rss_gb()
    if not evaluate:
        return out
    movie_frames = load_movie(truth.movie_path, _input_settings(truth))
    started = time.perf_counter()
    average = _average(movie_frames, motion, device)
    if "seconds_total" not in out:
        out["seconds_total"] = out["seconds_motion"] + time.perf_counter() - started
    out.update(_frc_metrics(average.cpu(), truth))
    out.update(_trajectory_errors(motion, truth))
    return out


def _run_ours(truth: Any, device: str, *, global_only: bool) -> tuple[Any, dict[str, float]]:
    from cryowarp.preprocess.motion.correct import correct_movie
    from cryowarp.preprocess.motion.settings import MotionSettings

    settings = MotionSettings(local_grid=(1, 1, 1)) if global_only else MotionSettings()
    with tempfile.TemporaryDirectory() as out_dir:
        result = correct_movie(
            truth.movie_path,
            input_settings=_input_settings(truth),
            settings=settings,
            out_dir=out_dir,
            device=device,
        )
    return result.motion, dict(result.seconds)


def _run_baseline(method: str, movie: Any, device: str) -> Any:
    from benchmarks._teamtomo_motion import teamtomo_motion
    from benchmarks._xcorr_motion import xcorr_global_motion
    from cryowarp.preprocess.motion.correct import (
        alignment_patch_size_px,
        alignment_pixel_size_a,
    )
    from cryowarp.preprocess.motion.frames import alignment_frames
    from cryowarp.preprocess.motion.settings import MotionSettings

    settings = MotionSettings()
    band = {
        "min_resolution_a": settings.min_resolution_a,
        "max_resolution_a": settings.max_resolution_a,
        "bfactor_a2": settings.bfactor_a2,
    }
    target = alignment_pixel_size_a(movie.pixel_size_a, movie.frame_shape, settings)
    if method == "xcorr":
        frames, pixel_size_a = alignment_frames(movie, pixel_size_a=target, device=device)
        return xcorr_global_motion(frames, pixel_size_a=pixel_size_a, **band)
    if method == "teamtomo":
        # The same frames our fit sees (binned to the band limit): teamtomo's patch optimiser
        # is far too slow on full-size frames on a CPU.
        frames, pixel_size_a = alignment_frames(movie, pixel_size_a=target, device=device)
        patch_px = alignment_patch_size_px(
            settings, output_pixel_size_a=movie.pixel_size_a, alignment_pixel_size_a=pixel_size_a
        )
        return teamtomo_motion(
            frames,
            pixel_size_a=pixel_size_a,
            patch_size_px=patch_px,
            local_grid_xy=settings.local_grid[:2],
            max_iterations=TEAMTOMO_ITERATIONS,
            **band,
        )
    raise ValueError(f"unknown method {method!r}")


def _average(movie: Any, motion: Any, device: str) -> Any:
    from cryowarp.preprocess.motion.average import average_frames

    averages = average_frames(
        lambda start, stop: movie.corrected_frames(start, stop, device=device),
        motion,
        n_frames=movie.n_frames,
        frame_shape=movie.frame_shape,
        pixel_size_a=movie.pixel_size_a,
        accumulated_dose_e_per_a2=movie.accumulated_dose_e_per_a2(),
        odd_even=False,
        device=device,
    )
    return averages.average


# -- metrics --------------------------------------------------------------------------------


def grid_positions_a(frame_shape: tuple[int, int], pixel_size_a: float) -> Any:
    """``(17, 17, 2)`` positions (x, y) in Å spanning the pixel centres of the field."""
    import torch

    h, w = frame_shape
    xs = torch.linspace(0, (w - 1) * pixel_size_a, GRID_SAMPLES, dtype=torch.float64)
    ys = torch.linspace(0, (h - 1) * pixel_size_a, GRID_SAMPLES, dtype=torch.float64)
    yy, xx = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack([xx, yy], dim=-1)


def decompose(motion: Any, positions_a: Any, n_frames: int) -> tuple[Any, Any]:
    """Global ``(n, 2)`` (spatial mean) and local ``(..., n, 2)`` (the rest) parts of any
    motion's total shift, both gauged to frame 0 (Å)."""
    import torch

    frames = torch.arange(n_frames)
    total = motion.shifts_at(positions_a, frames).detach().cpu().double()  # (..., n, 2)
    total = total - total[..., :1, :]
    spatial = tuple(range(total.ndim - 2))
    global_part = total.mean(dim=spatial)
    return global_part, total - global_part


def _rms(error: Any) -> float:  # (..., 2) error vectors
    return float(error.square().sum(-1).mean().sqrt())


def _trajectory_errors(motion: Any, truth: Any) -> dict[str, float]:
    shape = truth.settings.shape_px
    positions = grid_positions_a(shape, truth.settings.pixel_size_a)
    n = truth.motion.n_frames
    g_est, l_est = decompose(motion, positions, n)
    g_true, l_true = decompose(truth.motion, positions, n)
    return {
        "global_rms_a": _rms((g_est - g_true)[1:]),
        "local_rms_a": _rms((l_est - l_true)[..., 1:, :]),
        "total_rms_a": _rms((g_est + l_est - g_true - l_true)[..., 1:, :]),
        "true_global_rms_a": _rms(g_true[1:]),
        "true_local_rms_a": _rms(l_true[..., 1:, :]),
    }


def frc_resolution_a(curve: Any, size: int, pixel_size_a: float) -> float:
    """Resolution (Å) of the **last** crossing of ``FRC_THRESHOLD`` by the FRC smoothed over
    ``FRC_SMOOTHING_SHELLS`` shells (linear interpolation between shells).

    The first crossing of an FRC against a CTF-modulated clean micrograph is the first CTF
    zero, whatever the motion; past the last crossing the average agrees with the truth
    nowhere. Nyquist when the curve never drops below the threshold.
    """
    import torch

    from cryowarp.core.fsc import shell_frequencies_a

    c = curve.detach().double().cpu()
    kernel = torch.ones(1, 1, FRC_SMOOTHING_SHELLS, dtype=c.dtype) / FRC_SMOOTHING_SHELLS
    pad = FRC_SMOOTHING_SHELLS // 2
    smooth = torch.nn.functional.conv1d(
        torch.nn.functional.pad(c[None, None], (pad, pad), mode="replicate"), kernel
    )[0, 0]
    freqs = shell_frequencies_a(size, pixel_size_a)
    above = torch.nonzero(smooth >= FRC_THRESHOLD).flatten()
    if above.numel() == 0:
        return float("inf")
    i = int(above[-1])
    if i == smooth.numel() - 1:
        return float(1.0 / freqs[-1])
    c0, c1 = float(smooth[i]), float(smooth[i + 1])
    t = (c0 - FRC_THRESHOLD) / (c0 - c1) if c0 != c1 else 0.0
    return float(1.0 / (freqs[i] + t * (freqs[i + 1] - freqs[i])))


def _frc_metrics(average: Any, truth: Any) -> dict[str, float]:
    from cryowarp.core.fsc import frc, shell_frequencies_a

    clean = truth.read_clean_micrograph()
    curve = frc(average.float(), clean.float())
    size = max(clean.shape)
    pixel_size_a = truth.settings.pixel_size_a
    freqs = shell_frequencies_a(size, pixel_size_a)
    band = freqs >= 1.0 / FRC_LOW_A
    return {
        "resolution_a": frc_resolution_a(curve, size, pixel_size_a),
        "frc_mean_high": float(curve.double()[band].mean()),
    }


# -- suite ----------------------------------------------------------------------------------


def _teamtomo_state() -> dict[str, Any]:
    from benchmarks._teamtomo_motion import teamtomo_status

    ok, text = teamtomo_status()
    return {"installed": ok, "version": text} if ok else {"installed": False, "reason": text}


def _movie_rows(
    folder: Path, preset: str, n_movies: int, methods: list[str], *, evaluate: bool
) -> list[dict[str, Any]]:
    rows = []
    for movie in range(n_movies):
        row: dict[str, Any] = {"preset": preset, "movie": movie}
        row["min_work_seconds"] = _in_child("min_work_child", str(folder), movie)["seconds"]
        results: dict[str, Any] = {}
        if evaluate:
            results["truth"] = _in_child("method_child", str(folder), movie, "truth", True)
        for method in methods:
            result = _in_child("method_child", str(folder), movie, method, evaluate)
            if result.get("status") == "ok":
                for key in ("seconds_motion", "seconds_total"):
                    if key in result:
                        result[key.replace("seconds", "ratio_to_min_work")] = (
                            result[key] / row["min_work_seconds"]
                        )
                truth_res = results.get("truth", {}).get("resolution_a")
                if truth_res and "resolution_a" in result:
                    result["resolution_ratio"] = result["resolution_a"] / truth_res
                    result["frc_mean_high_ratio"] = (
                        result["frc_mean_high"] / results["truth"]["frc_mean_high"]
                    )
            results[method] = result
        row["results"] = results
        rows.append(row)
    return rows


def run(*, quick: bool) -> dict[str, Any]:
    """Run the suite (``quick``: one small movie, no K3) and return its report."""
    from cryowarp.simulate.presets import frame_series_preset

    teamtomo = _teamtomo_state()
    methods = [m for m in METHODS if m != "teamtomo" or teamtomo["installed"]]
    n_small = 1 if quick else 3
    small = dataset("small", SMALL_OVERRIDES, n_movies=n_small, seed=SEED)
    settings = frame_series_preset("small", **SMALL_OVERRIDES)
    report: dict[str, Any] = {
        "suite": "motion",
        "quick": quick,
        "aims": AIMS,
        "teamtomo": teamtomo,
        "small": {
            "shape_px": list(settings.shape_px),
            "n_frames": settings.n_frames,
            "pixel_size_a": settings.pixel_size_a,
            "dose_per_frame_e_per_a2": settings.dose_per_frame_e_per_a2,
            "n_movies": n_small,
            "cache": str(small),
        },
        "movies": _movie_rows(small, "small", n_small, methods, evaluate=True),
    }
    if not quick:
        k3 = dataset("k3", {}, n_movies=1, seed=SEED)
        k3_methods = ["ours", "xcorr"]  # teamtomo's patch optimiser is far too slow at K3 size
        report["k3"] = {"cache": str(k3), "methods": k3_methods}
        report["movies"] += _movie_rows(k3, "k3", 1, k3_methods, evaluate=True)
    report["summary"] = _summary(report["movies"])
    return report


def _summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    keys = (
        "global_rms_a",
        "local_rms_a",
        "total_rms_a",
        "resolution_ratio",
        "frc_mean_high_ratio",
        "seconds_motion",
        "seconds_total",
        "ratio_to_min_work_motion",
        "ratio_to_min_work_total",
        "peak_rss_gb",
    )
    out: dict[str, Any] = {}
    for preset in sorted({r["preset"] for r in rows}):
        per_method: dict[str, Any] = {}
        for row in (r for r in rows if r["preset"] == preset):
            for method, result in row["results"].items():
                entry = per_method.setdefault(method, {"n": 0, "errors": []})
                if result.get("status") != "ok":
                    entry["errors"].append(result.get("reason"))
                    continue
                entry["n"] += 1
                for key in keys:
                    if key in result:
                        entry.setdefault(key, []).append(result[key])
        for entry in per_method.values():
            for key in keys:
                if key in entry:
                    entry[key] = sum(entry[key]) / len(entry[key])
        out[preset] = per_method
    return out


def _fmt(value: Any, spec: str = ".3g") -> str:
    return "–" if value is None else format(value, spec)


def markdown(report: dict[str, Any]) -> str:
    """The suite's section of benchmarks/results/README.md."""
    small = report["small"]
    teamtomo = report["teamtomo"]
    lines = [
        "## motion",
        "",
        f"`small` movies at a realistic dose: {small['n_frames']} frames × "
        f"{small['shape_px'][1]}×{small['shape_px'][0]} px, {small['pixel_size_a']} Å/px, "
        f"{small['dose_per_frame_e_per_a2']} e⁻/Å² per frame, {small['n_movies']} movie(s)"
        + (" (quick run)" if report["quick"] else "")
        + ". Errors vs the true motion (RMS over frames 1…n−1 and a 17×17 grid; global = "
        "spatial mean, local = the rest, both relative to frame 0); resolution of the "
        "dose-weighted average where its FRC with the clean micrograph falls below 0.5 "
        "(≈ 0.143 between half-maps), as a ratio to the average made with the true motion; "
        "seconds as a ratio to the minimum work (decode + rfft2 of every frame + one irfft2). "
        f"Aims: global < {AIMS['global_rms_a']} Å, local < {AIMS['local_rms_a']} Å, "
        f"resolution ratio ≤ {AIMS['resolution_ratio']}, time ratio < "
        f"{AIMS['ratio_to_min_work']}.",
        "",
        "teamtomo torch-motion-correction: "
        + (
            f"{teamtomo['version']}" if teamtomo["installed"] else f"not run — {teamtomo['reason']}"
        ),
        "",
    ]
    for preset, per_method in report["summary"].items():
        lines += [
            f"**{preset}** (truth-motion average: resolution "
            f"{_fmt(_truth_resolution(report, preset), '.3g')} Å)",
            "",
            "| method | global RMS (Å) | local RMS (Å) | total RMS (Å) | resolution ratio | "
            "high-FRC ratio | s to motion | s total | ratio to min work (total) | "
            "peak RSS (GB) |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        for method, e in per_method.items():
            if method == "truth":
                continue
            if e["n"] == 0:
                lines.append(f"| {method} | failed: {e['errors'][0]} |" + " |" * 8)
                continue
            lines.append(
                f"| {method} | {_fmt(e.get('global_rms_a'))} | {_fmt(e.get('local_rms_a'))} | "
                f"{_fmt(e.get('total_rms_a'))} | {_fmt(e.get('resolution_ratio'), '.4f')} | "
                f"{_fmt(e.get('frc_mean_high_ratio'), '.4f')} | "
                f"{_fmt(e.get('seconds_motion'))} | {_fmt(e.get('seconds_total'))} | "
                f"{_fmt(e.get('ratio_to_min_work_total'))} | {_fmt(e.get('peak_rss_gb'), '.2f')} |"
            )
        lines.append("")
    return "\n".join(lines) + "\n"


def _truth_resolution(report: dict[str, Any], preset: str) -> float | None:
    values = [
        r["results"]["truth"]["resolution_a"]
        for r in report["movies"]
        if r["preset"] == preset and r["results"].get("truth", {}).get("status") == "ok"
    ]
    return sum(values) / len(values) if values else None


if __name__ == "__main__":
    print(json.dumps(run(quick=True), indent=2))
