"""Particle-export benchmark (issue 6): reconstruction accuracy and extraction speed.

**Accuracy.** A simulated dataset (``tiny`` preset enlarged: 1024² at 2.0 Å/px, 10 frames ×
5 e⁻/Å², up to 120 particles of one 150 kDa species per movie, 5 movies, local motion grid
3 × 3 × 2; ``--quick``: the sizes of ``tests/preprocess/export/test_export_reconstruct.py``,
512², 8 frames, 40 particles, 4 movies, grid 2 × 2 × 2) goes through the whole chain:
``correct_movies`` → ``estimate_ctf`` on each average → ``scan_processing_folder`` →
particles from the truth (picks off by up to ±8 Å, the true offset written as the RELION
origin, the true Euler angles) → ``export_particles`` (box 48 at 2 Å) →
``reconstruct_from_star``. Reported: the FSC-0.143 (and FSC-0.5) resolution (Å) of the full
map against the noise-free species map for

* ``ours`` — extracted from the raw frames with the fitted motion and our CTF;
* ``average`` — the same from the motion-corrected averages (``source="average"``);
* ``perfect`` — cut from the clean micrograph (no motion, damage, MTF or noise) at the true
  centres, with each particle's true CTF;

the half-map FSC-0.143 of each, the ratios to ``perfect``, and the RMS error (Å) of the
exported ``rlnDefocusU/V`` against each particle's true defocus (which includes its height in
the ice) and of the mean defocus against the truth's mid-plane defocus at the particle.

**Speed.** On the ``small`` movies of the motion benchmark (40 frames × 1024², 1.2 Å/px;
the first 2 of its 3-movie dataset, its 1-movie dataset with ``--quick``; the same cache),
motion correction (default settings) and CTF estimation run once, untimed; then, per movie
and interleaved, the median over repeats of

* ``export`` — ``export_particles`` of 60 particles from the frames (box 128 at 1.2 Å,
  default settings: dose weighting, odd/even half stacks, normalisation, writing);
* ``export_average`` — the same from the motion-corrected average;
* ``read`` — the baseline: reading the movie once, ``load_movie`` and ``corrected_frames``
  over all frames (what any extraction from frames must do).

Reported: particles per second and ``export / read`` per movie. No timing is asserted.
"""

from __future__ import annotations

import json
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks import motion


@dataclass(frozen=True)
class AccuracyCase:
    """The simulated dataset and processing settings of the accuracy part."""

    overrides: dict[str, Any]  # of the ``tiny`` preset
    n_movies: int
    motion_local_grid: tuple[int, int, int]
    ctf_window_px: int


_PHYSICS: dict[str, Any] = {
    "pixel_size_a": 2.0,
    "dose_per_frame_e_per_a2": 5.0,
    "particle_spacing": 1.2,
    "defocus_range_um": (1.5, 2.5),
    "astigmatism_range_um": (0.25, 0.4),
}
ACCURACY = AccuracyCase(
    {**_PHYSICS, "shape_px": (1024, 1024), "n_frames": 10, "n_particles": 120},
    n_movies=5,
    motion_local_grid=(3, 3, 2),
    ctf_window_px=256,
)
QUICK_ACCURACY = AccuracyCase(  # the sizes of tests/preprocess/export/test_export_reconstruct.py
    {**_PHYSICS, "shape_px": (512, 512), "n_frames": 8, "n_particles": 40},
    n_movies=4,
    motion_local_grid=(2, 2, 2),
    ctf_window_px=256,
)
ACCURACY_SEED = 3
ACCURACY_BOX_PX = 48  # 96 Å at 2 Å/px for a ~70 Å particle; Nyquist 4 Å
PARTICLE_DIAMETER_A = 70.0
PICK_ERROR_A = 8.0

SPEED_DATASET_MOVIES = 3  # the motion benchmark's small dataset (and cache key)
SPEED_MOVIES = 2  # of which this many are processed and timed (1 with --quick)
SPEED_CTF_WINDOW_PX = 512
SPEED_BOX_PX = 128
SPEED_PIXEL_A = 1.2
SPEED_PARTICLES = 60
SPEED_REPEATS = 3


# -- shared steps ---------------------------------------------------------------------------


def _process(
    truths: list[Any], proc: Path, *, motion_settings: Any, ctf_window_px: int, device: str
) -> None:
    """Motion-correct the movies into ``proc`` and estimate each average's CTF."""
    import numpy as np
    import torch

    from cryowarp.io.files import write_text_atomically
    from cryowarp.io.mrc import read_mrc
    from cryowarp.preprocess.ctf.estimate import estimate_ctf
    from cryowarp.preprocess.ctf.settings import CtfSettings
    from cryowarp.preprocess.motion.correct import correct_movies
    from cryowarp.preprocess.motion.settings import MovieInputSettings

    s = truths[0].settings
    inputs = MovieInputSettings(
        pixel_size_a=s.pixel_size_a,
        dose_per_frame_e_per_a2=s.dose_per_frame_e_per_a2,
        gain_path=str(truths[0].gain_path),
    )
    outcomes = correct_movies(
        [t.movie_path for t in truths],
        input_settings=inputs,
        settings=motion_settings,
        out_dir=proc,
        device=device,
        relion_voltage_kv=s.voltage_kv,
    )
    failed = [o.error for o in outcomes if not o.ok]
    if failed:
        raise RuntimeError(f"motion correction failed: {failed}")
    (proc / "ctf").mkdir()
    for truth in truths:
        stem = truth.movie_path.stem
        average, _ = read_mrc(proc / "average" / f"{stem}.mrc")
        image = torch.from_numpy(np.array(average, np.float32))
        result = estimate_ctf(
            image,
            pixel_size_a=s.pixel_size_a,
            voltage_kv=s.voltage_kv,
            cs_mm=s.cs_mm,
            amplitude_contrast=s.amplitude_contrast,
            settings=CtfSettings(window_size_px=ctf_window_px),
        )
        if result.failed:
            raise RuntimeError(f"{stem}: CTF fit failed ({result.failure_reason})")
        write_text_atomically(proc / "ctf" / f"{stem}_ctf.json", json.dumps(result.to_dict()))


def _particle_sets(
    truths: list[Any], *, pick_error_a: float, max_particles: int | None = None
) -> dict[str, Any]:
    """Particles from the truth, picks off by up to ``±pick_error_a`` in x and y; the offset
    is the RELION origin (the particle sits at box centre − origin, docs/conventions.md §4)."""
    import torch

    from cryowarp.preprocess.export.particle_set import ParticleSet

    generator = torch.Generator().manual_seed(0)
    sets = {}
    for truth in truths:
        positions = truth.particles.positions_a[:max_particles, :2]
        error = (torch.rand(positions.shape, generator=generator, dtype=torch.float64) - 0.5) * (
            2 * pick_error_a
        )
        sets[truth.movie_path.stem] = ParticleSet(
            truth.movie_path.stem,
            positions + error,
            euler_deg=truth.particles.euler_deg[:max_particles].clone(),
            origins_a=error,
        )
    return sets


def _device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


# -- accuracy -------------------------------------------------------------------------------


def _perfect_star(truths: list[Any], out: Path, optics_star: Path) -> Path:
    """Particles cut from each clean micrograph at the true centres, with the true CTF."""
    import numpy as np
    import pandas as pd

    from cryowarp.io.mrc import write_mrc
    from cryowarp.io.relion import ParticleTable, read_particles, write_particles
    from cryowarp.preprocess.export.extract import extract_from_images, finish_particles

    out.mkdir(parents=True)
    pixel_a = truths[0].settings.pixel_size_a
    frames = []
    for truth in truths:
        stem, particles = truth.movie_path.stem, truth.particles
        boxes = extract_from_images(
            [truth.read_clean_micrograph()],
            particles.positions_a[:, :2],
            image_pixel_size_a=pixel_a,
            box_size_px=ACCURACY_BOX_PX,
        )[0]
        stack = finish_particles(boxes, box_size_px=ACCURACY_BOX_PX)
        write_mrc(out / f"{stem}.mrcs", stack.numpy(), voxel_size_a=pixel_a)
        n = len(particles)
        columns = {
            "rlnImageName": [f"{i + 1:06d}@{stem}.mrcs" for i in range(n)],
            "rlnMicrographName": [stem] * n,
            "rlnCoordinateX": particles.positions_a[:, 0].numpy() / pixel_a,
            "rlnCoordinateY": particles.positions_a[:, 1].numpy() / pixel_a,
            "rlnOpticsGroup": np.ones(n, dtype=np.int64),
            "rlnDefocusU": particles.defocus_u_a.numpy(),
            "rlnDefocusV": particles.defocus_v_a.numpy(),
            "rlnDefocusAngle": particles.defocus_angle_deg.numpy(),
        }
        for i, name in enumerate(("rlnAngleRot", "rlnAngleTilt", "rlnAnglePsi")):
            columns[name] = particles.euler_deg[:, i].numpy()
        frames.append(pd.DataFrame(columns))
    optics, _ = read_particles(optics_star)  # the optics group our export wrote
    star = out / "particles.star"
    write_particles(star, optics, ParticleTable(pd.concat(frames, ignore_index=True), optics))
    return star


def _reconstruct(star: Path, reference: Any, out: Path, device: str) -> dict[str, float]:
    """FSC-0.143 (and 0.5) of the full map against ``reference``, FSC-0.143 between the
    unmasked half-maps (Å)."""
    import torch

    from cryowarp.core.fsc import fsc, fsc_resolution_a
    from cryowarp.refine.reconstruction.reconstruct import reconstruct_from_star

    result = reconstruct_from_star(star, out_dir=out, device=device)
    curve = fsc(result.full.cpu().to(torch.float64), reference.to(torch.float64))
    box, pixel_a = ACCURACY_BOX_PX, result.pixel_size_a
    return {
        "resolution_vs_truth_a": fsc_resolution_a(curve, box, pixel_a),
        "resolution_vs_truth_05_a": fsc_resolution_a(curve, box, pixel_a, threshold=0.5),
        "half_map_resolution_a": float(result.resolution_a),
        "n_particles": int(sum(result.n_particles)),
    }


def defocus_errors(star: Path, truths: list[Any], sets: dict[str, Any]) -> dict[str, float]:
    """RMS errors (Å) of the exported per-particle defocus against the truth.

    ``defocus_rms_error_a``: ``rlnDefocusU/V`` against each particle's true U/V (which
    includes its height in the ice); ``mean_defocus_rms_error_a``: ``(U + V)/2`` against the
    truth's mid-plane defocus at the particle's (x, y). Rows are matched to particles by
    micrograph and nearest pick (``rlnCoordinateX/Y``).
    """
    import torch

    from cryowarp.io.relion import read_particles

    _, table = read_particles(star)
    frame = table.frame
    pixel_a = truths[0].settings.pixel_size_a
    by_name = {t.movie_path.stem: t for t in truths}
    du, dv, dmean = [], [], []
    for name, group in frame.groupby(frame["rlnMicrographName"].map(lambda n: Path(n).stem)):
        truth, picks = by_name[str(name)], sets[str(name)].positions_a
        xy = torch.tensor(group[["rlnCoordinateX", "rlnCoordinateY"]].to_numpy()) * pixel_a
        distance, index = torch.cdist(xy, picks).min(dim=1)
        if float(distance.max()) > 0.1 * pixel_a:
            raise RuntimeError(f"{name}: exported coordinates do not match the picks")
        u = torch.tensor(group["rlnDefocusU"].to_numpy())
        v = torch.tensor(group["rlnDefocusV"].to_numpy())
        p = truth.particles
        du.append(u - p.defocus_u_a[index])
        dv.append(v - p.defocus_v_a[index])
        mid_um = truth.defocus_at(p.positions_a[index, :2])
        dmean.append((u + v) / 2 - mid_um * 1e4)
    uv = torch.cat(du + dv)
    return {
        "defocus_rms_error_a": float(uv.square().mean().sqrt()),
        "mean_defocus_rms_error_a": float(torch.cat(dmean).square().mean().sqrt()),
    }


def _accuracy(quick: bool, device: str) -> dict[str, Any]:
    from cryowarp.core.resize import crop_or_pad
    from cryowarp.preprocess.export.export_particles import export_particles
    from cryowarp.preprocess.export.settings import ExtractionSettings
    from cryowarp.preprocess.export.sources import scan_processing_folder
    from cryowarp.preprocess.motion.settings import MotionSettings
    from cryowarp.simulate.ground_truth import load_ground_truth

    case = QUICK_ACCURACY if quick else ACCURACY
    n_movies = case.n_movies
    folder = motion.dataset("tiny", case.overrides, n_movies=n_movies, seed=ACCURACY_SEED)
    truths = [load_ground_truth(folder, m) for m in range(n_movies)]
    s = truths[0].settings
    report: dict[str, Any] = {
        "shape_px": list(s.shape_px),
        "pixel_size_a": s.pixel_size_a,
        "n_frames": s.n_frames,
        "dose_per_frame_e_per_a2": s.dose_per_frame_e_per_a2,
        "n_movies": n_movies,
        "box_size_px": ACCURACY_BOX_PX,
        "pick_error_a": PICK_ERROR_A,
        "motion_local_grid": list(case.motion_local_grid),
        "ctf_window_px": case.ctf_window_px,
        "cache": str(folder),
    }
    species = truths[0].species[0].name
    reference = crop_or_pad(truths[0].read_species_map(species), (ACCURACY_BOX_PX,) * 3)
    with tempfile.TemporaryDirectory() as work_dir:
        work = Path(work_dir)
        started = time.perf_counter()
        _process(
            truths,
            work / "proc",
            motion_settings=MotionSettings(local_grid=case.motion_local_grid),
            ctf_window_px=case.ctf_window_px,
            device=device,
        )
        report["seconds_motion_and_ctf"] = time.perf_counter() - started
        sources, problems = scan_processing_folder(work / "proc")
        if problems:
            raise RuntimeError(f"unreadable items: {problems}")
        sets = _particle_sets(truths, pick_error_a=PICK_ERROR_A)
        settings = ExtractionSettings(
            box_size_px=ACCURACY_BOX_PX, particle_diameter_a=PARTICLE_DIAMETER_A
        )
        stars = {}
        for method, source in (("ours", "frames"), ("average", "average")):
            started = time.perf_counter()
            export = export_particles(
                sources,
                sets,
                settings.model_copy(update={"source": source}),
                out_dir=work / method,
                device=device,
            )
            report[f"seconds_export_{method}"] = time.perf_counter() - started
            if export.star is None or export.failures:
                raise RuntimeError(f"{method}: export failed: {export.failures}")
            stars[method] = export.star
        stars["perfect"] = _perfect_star(truths, work / "perfect", stars["ours"])
        for method, star in stars.items():
            report[method] = _reconstruct(star, reference, work / f"rec_{method}", device)
        report["ours"].update(defocus_errors(stars["ours"], truths, sets))
    perfect = report["perfect"]["resolution_vs_truth_a"]
    for method in ("ours", "average"):
        report[method]["ratio_to_perfect"] = report[method]["resolution_vs_truth_a"] / perfect
    return report


# -- speed ----------------------------------------------------------------------------------


def _read_once(source: Any, device: str) -> None:
    """The baseline: read the movie as extraction must (gain, defects), every frame once."""
    from cryowarp.preprocess.motion.frames import load_movie

    movie = load_movie(source.movie_path, source.input_settings)
    step = movie.frames_per_chunk()
    for start in range(0, movie.n_frames, step):
        frames = movie.corrected_frames(start, min(start + step, movie.n_frames), device=device)
        float(frames[0, 0, 0])  # synchronise


def _speed(quick: bool, device: str) -> dict[str, Any]:
    from cryowarp.preprocess.export.export_particles import export_particles
    from cryowarp.preprocess.export.settings import ExtractionSettings
    from cryowarp.preprocess.export.sources import scan_processing_folder
    from cryowarp.preprocess.motion.settings import MotionSettings
    from cryowarp.simulate.ground_truth import load_ground_truth

    n_dataset = 1 if quick else SPEED_DATASET_MOVIES
    n_movies = 1 if quick else SPEED_MOVIES
    repeats = 1 if quick else SPEED_REPEATS
    folder = motion.dataset("small", motion.SMALL_OVERRIDES, n_movies=n_dataset, seed=motion.SEED)
    truths = [load_ground_truth(folder, m) for m in range(n_movies)]
    settings = ExtractionSettings(box_size_px=SPEED_BOX_PX, pixel_size_a=SPEED_PIXEL_A)
    rows = []
    with tempfile.TemporaryDirectory() as work_dir:
        work = Path(work_dir)
        started = time.perf_counter()
        _process(
            truths,
            work / "proc",
            motion_settings=MotionSettings(),
            ctf_window_px=SPEED_CTF_WINDOW_PX,
            device=device,
        )
        seconds_processing = time.perf_counter() - started
        sources, problems = scan_processing_folder(work / "proc")
        if problems:
            raise RuntimeError(f"unreadable items: {problems}")
        sets = _particle_sets(truths, pick_error_a=0.0, max_particles=SPEED_PARTICLES)
        for source in sources:
            one = {source.name: sets[source.name]}
            _read_once(source, device)  # warm the page cache and the code paths (untimed)
            times: dict[str, list[float]] = {"read": [], "export": [], "export_average": []}
            n_exported = 0
            for repeat in range(repeats):
                t0 = time.perf_counter()
                _read_once(source, device)
                times["read"].append(time.perf_counter() - t0)
                for key, kind in (("export", "frames"), ("export_average", "average")):
                    t0 = time.perf_counter()
                    export = export_particles(
                        [source],
                        one,
                        settings.model_copy(update={"source": kind}),
                        out_dir=work / f"{key}_{source.name}_{repeat}",
                        reuse=False,
                        device=device,
                    )
                    times[key].append(time.perf_counter() - t0)
                    if export.failures:
                        raise RuntimeError(f"{source.name}: {export.failures}")
                    n_exported = export.n_particles
            row: dict[str, Any] = {"movie": source.name, "n_particles": n_exported}
            for key, values in times.items():
                row[f"seconds_{key}"] = statistics.median(values)
            for key in ("export", "export_average"):
                row[f"particles_per_s_{key}"] = n_exported / row[f"seconds_{key}"]
                row[f"ratio_{key}_to_read"] = row[f"seconds_{key}"] / row["seconds_read"]
            rows.append(row)
    s = truths[0].settings
    summary = {
        key: statistics.mean(r[key] for r in rows)
        for key in rows[0]
        if key.startswith(("seconds_", "particles_per_s_", "ratio_"))
    }
    return {
        "shape_px": list(s.shape_px),
        "n_frames": s.n_frames,
        "pixel_size_a": s.pixel_size_a,
        "n_movies": n_movies,
        "repeats": repeats,
        "box_size_px": SPEED_BOX_PX,
        "output_pixel_size_a": SPEED_PIXEL_A,
        "particles_per_movie": SPEED_PARTICLES,
        "seconds_motion_and_ctf": seconds_processing,
        "cache": str(folder),
        "movies": rows,
        "summary": summary,
    }


# -- suite ----------------------------------------------------------------------------------


def run(*, quick: bool) -> dict[str, Any]:
    """Run the suite (``quick``: the test's sizes and one ``small`` movie); its report."""
    import torch

    device = _device()
    return {
        "suite": "export",
        "quick": quick,
        "device": device,
        "torch_threads": torch.get_num_threads(),
        "accuracy": _accuracy(quick, device),
        "speed": _speed(quick, device),
    }


def _f(value: Any, spec: str) -> str:
    return "–" if value is None else format(value, spec)


def markdown(report: dict[str, Any]) -> str:
    """The suite's section of benchmarks/results/README.md."""
    a, sp = report["accuracy"], report["speed"]
    quick = " (quick run)" if report["quick"] else ""
    lines = [
        "## export",
        "",
        f"**Accuracy**{quick}: {a['n_movies']} simulated movies of {a['n_frames']} frames × "
        f"{a['shape_px'][1]}×{a['shape_px'][0]} px at {a['pixel_size_a']} Å/px, "
        f"{a['dose_per_frame_e_per_a2']} e⁻/Å² per frame; motion (local grid "
        f"{tuple(a['motion_local_grid'])}) and CTF ({a['ctf_window_px']}-px windows) fitted; "
        f"picks off by up to ±{a['pick_error_a']:g} Å with the offset as origin, true poses; "
        f"box {a['box_size_px']} px (Nyquist {2 * a['pixel_size_a']:g} Å). Resolution where "
        "the FSC of the full map against the noise-free species map falls below 0.143 (and "
        "0.5, the truth-FSC equivalent of the half-map 0.143 criterion); `perfect` = clean "
        "micrograph, true centres, true CTF; half-map FSC unmasked.",
        "",
        "| particles from | FSC-0.143 vs truth (Å) | ratio to perfect | FSC-0.5 vs truth (Å) "
        "| half-map FSC-0.143 (Å) | number |",
        "|---|---|---|---|---|---|",
    ]
    for method, label in (
        ("ours", "ours: frames, fitted motion and CTF"),
        ("average", "ours: the averages"),
        ("perfect", "perfect: clean micrograph, true CTF"),
    ):
        r = a[method]
        lines.append(
            f"| {label} | {r['resolution_vs_truth_a']:.2f} | "
            f"{_f(r.get('ratio_to_perfect', 1.0), '.3f')} | {r['resolution_vs_truth_05_a']:.2f} | "
            f"{r['half_map_resolution_a']:.2f} | {r['n_particles']} |"
        )
    o = a["ours"]
    lines += [
        "",
        f"Exported defocus vs truth: RMS error of DefocusU/V {o['defocus_rms_error_a']:.0f} Å "
        f"(includes the particles' heights in the ice), of the mean defocus vs the mid-plane "
        f"truth {o['mean_defocus_rms_error_a']:.0f} Å.",
        "",
        f"**Speed**{quick}: {sp['n_movies']} `small` movie(s), {sp['n_frames']} frames × "
        f"{sp['shape_px'][1]}×{sp['shape_px'][0]} px at {sp['pixel_size_a']} Å/px; "
        f"{sp['particles_per_movie']} particles per movie, box {sp['box_size_px']} at "
        f"{sp['output_pixel_size_a']} Å, default extraction settings (dose weighting, odd/even "
        f"halves); median of {sp['repeats']} interleaved run(s) per movie, device "
        f"{report['device']}, {report['torch_threads']} torch threads. Baseline `read` = "
        "`load_movie` + `corrected_frames` over all frames.",
        "",
        "| movie | particles | read (s) | export from frames (s) | particles/s | ratio to read "
        "| export from average (s) | particles/s | ratio to read |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in [*sp["movies"], {"movie": "mean", "n_particles": "", **sp["summary"]}]:
        lines.append(
            f"| {r['movie']} | {r['n_particles']} | {r['seconds_read']:.2f} | "
            f"{r['seconds_export']:.2f} | {r['particles_per_s_export']:.1f} | "
            f"{r['ratio_export_to_read']:.2f} | {r['seconds_export_average']:.2f} | "
            f"{r['particles_per_s_export_average']:.1f} | "
            f"{r['ratio_export_average_to_read']:.2f} |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(markdown(run(quick=True)))
