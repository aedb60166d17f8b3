"""CTF benchmark: defocus, astigmatism, phase shift and tilt recovered from simulated movies.

Movies with known CTF come from the simulator (``small`` preset, 1024², 1.2 Å/px; ``tiny``
with ``--quick``): flat samples at 0.5–3.5 µm with astigmatism (0.03–0.08 µm), a phase plate
(90°) and a 40° tilted sample. Each movie is fitted, in the same run, by cryowarp's estimate
(spatial defocus grid, Warp's procedure), by the same fit with a constant defocus (1 × 1 grid),
and by a 1-D-only estimate (the exhaustive 1-D search of the rotational average with its
background and envelope re-estimation, no 2-D fit: no astigmatism). Errors are against
``FrameSeriesTruth.defocus_at`` on a 5 × 5 grid of field positions (median and 95th
percentile, nm), the astigmatism vector ``(δ cos 2θ, δ sin 2θ)`` (nm), the phase shift
(degrees) and, for tilted data, the tilt angle and axis of the plane through the fitted
defocus surface. Phase-plate data are searched over 0.3–1.5 µm and 0–180°.

K3 size: the sum of the frames of the simulated K3 movie cached by the motion benchmark
(``$CRYOWARP_BENCH_CACHE/motion_k3_*``), aligned by the true global motion, when it is
there; else a synthetic K3-sized micrograph (CTF-modulated noise of known defocus). The
first L-BFGS of a process imports ``torch._dynamo`` (seconds): it is imported before anything
is timed. teamtomo's ``torch-ctf-estimation`` imports torchvision, which this project keeps
out of its environment (no CPU build here): not run. CTFFIND4/5 are not installable with pip
or apt here.
"""

from __future__ import annotations

import json
import math
import os
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

_UM_PER_A_HEIGHT = 1.0e-4  # defocus change (µm) per Å of specimen height (conventions §9)


def _cases(quick: bool) -> list[tuple[str, dict[str, Any], int]]:
    """``(case, preset overrides, seed)``: flat at several defoci, phase plate, tilted."""
    preset = "tiny" if quick else "small"
    flat = [
        (f"flat {d:.1f} µm", {"defocus_range_um": (d, d), "astigmatism_range_um": (0.03, 0.08)})
        for d in ((1.0, 2.5) if quick else (0.5, 1.5, 2.5, 3.5))
    ]
    cases: list[tuple[str, dict[str, Any]]] = [
        *flat,
        (
            "phase plate 90°",
            {
                "phase_shift_deg": 90.0,
                "defocus_range_um": (0.6, 0.9),
                "astigmatism_range_um": (0.03, 0.08),
            },
        ),
        ("tilted 40°", {"sample_tilt_range_deg": (40.0, 40.0)}),
    ]
    if not quick:  # a 1024² field is small for measuring a tilt to 2°: a 2048² one too
        cases.append(
            (
                "tilted 40° (2048²)",
                {"sample_tilt_range_deg": (40.0, 40.0), "shape_px": (2048, 2048)},
            )
        )
    return [(name, {"preset": preset, **o}, seed) for seed, (name, o) in enumerate(cases)]


def _field_positions(truth: Any) -> torch.Tensor:  # (25, 2) Å
    h, w = truth.settings.shape_px
    pixel = truth.settings.pixel_size_a
    fractions = torch.linspace(0.1, 0.9, 5, dtype=torch.float64)
    y, x = torch.meshgrid(fractions * h * pixel, fractions * w * pixel, indexing="ij")
    return torch.stack([x, y], dim=-1).reshape(-1, 2)


def _tilt_of_surface(positions: torch.Tensor, defocus_um: torch.Tensor) -> tuple[float, float]:
    """Tilt angle and axis (degrees, axis from +x towards +y, conventions §9) of the least-
    squares plane through the defocus at ``positions`` (Å)."""
    design = torch.cat([positions, torch.ones_like(positions[:, :1])], dim=1)
    coefficients = torch.linalg.lstsq(design, defocus_um[:, None]).solution[:, 0]
    gx, gy = float(coefficients[0]), float(coefficients[1])  # µm of defocus per Å
    tilt = math.degrees(math.atan(math.hypot(gx, gy) / _UM_PER_A_HEIGHT))
    # underfocus grows away from the axis on the side a positive tilt lowers: axis = grad + 90°
    axis = (math.degrees(math.atan2(gy, gx)) + 90.0) % 180.0
    return tilt, axis


def _astig_vector_nm(delta_um: float, angle_deg: float) -> tuple[float, float]:
    two = math.radians(2 * angle_deg)
    return 1e3 * delta_um * math.cos(two), 1e3 * delta_um * math.sin(two)


def _scores(result: Any, truth: Any) -> dict[str, Any]:
    if result.failed:
        return {"failed": True, "reason": result.failure_reason}
    positions = _field_positions(truth)
    fitted = result.defocus_at(positions)
    true = truth.defocus_at(positions).to(torch.float64)
    errors_nm = (fitted - true).abs() * 1e3
    ctf = truth.ctf
    fx, fy = _astig_vector_nm(result.astigmatism_um, result.astigmatism_angle_deg)
    tx, ty = _astig_vector_nm(ctf.astigmatism_um, ctf.astigmatism_angle_deg)
    phase_error = (result.phase_shift_deg - ctf.phase_shift_deg + 180.0) % 360.0 - 180.0
    tilt, axis = _tilt_of_surface(positions, fitted)
    out = {
        "failed": False,
        "defocus_median_error_nm": float(errors_nm.median()),
        "defocus_p95_error_nm": float(torch.quantile(errors_nm, 0.95)),
        "astigmatism_error_nm": math.hypot(fx - tx, fy - ty),
        "phase_shift_error_deg": abs(phase_error),
        "resolution_a": result.resolution_a,
        "fit_score": result.fit_score,
        "tilt_deg": tilt,
    }
    if ctf.sample_tilt_deg > 0:
        axis_error = (axis - ctf.sample_tilt_axis_deg + 90.0) % 180.0 - 90.0
        out.update(
            tilt_error_deg=abs(tilt - ctf.sample_tilt_deg),
            tilt_axis_error_deg=abs(axis_error),
        )
    return out


def _fit(
    frames: torch.Tensor, truth: Any, settings: Any, *, one_d: bool = False
) -> tuple[Any, float]:
    from cryowarp.preprocess.ctf.estimate import estimate_ctf

    s = truth.settings
    if one_d:
        return _fit_1d(
            frames,
            pixel_size_a=s.pixel_size_a,
            voltage_kv=s.voltage_kv,
            cs_mm=s.cs_mm,
            amplitude_contrast=s.amplitude_contrast,
            settings=settings,
        )
    t0 = time.perf_counter()
    result = estimate_ctf(
        frames,
        pixel_size_a=s.pixel_size_a,
        voltage_kv=s.voltage_kv,
        cs_mm=s.cs_mm,
        amplitude_contrast=s.amplitude_contrast,
        settings=settings,
    )
    return result, time.perf_counter() - t0


METHODS = ("cryowarp", "constant_defocus", "one_d_only")
#: Estimators of the Python ecosystem that were considered and why they are not run.
NOT_RUN = {"torch-ctf-estimation": "not run: needs torchvision (kept out of this environment)"}


@dataclass(frozen=True)
class _OneDResult:
    """A 1-D-only estimate: one defocus (and phase shift), no astigmatism."""

    failed: bool
    failure_reason: str | None
    defocus_um: float
    phase_shift_deg: float
    fit_score: float
    astigmatism_um: float = 0.0
    astigmatism_angle_deg: float = 0.0
    resolution_a: float | None = None

    def defocus_at(self, positions_xy_a: torch.Tensor) -> torch.Tensor:  # (n, 2) -> (n,)
        return torch.full(positions_xy_a.shape[:1], self.defocus_um, dtype=torch.float64)


def _fit_1d(
    data: torch.Tensor,  # (h, w) or (n, h, w)
    *,
    pixel_size_a: float,
    voltage_kv: float,
    cs_mm: float,
    amplitude_contrast: float,
    settings: Any,
) -> tuple[_OneDResult, float]:
    """The exhaustive 1-D search (with background/envelope re-estimation) of the rotational
    average of all patch spectra: Warp's first step alone."""
    from cryowarp.preprocess.ctf.background import (
        profile_frequencies_per_a,
        rotational_profile,
    )
    from cryowarp.preprocess.ctf.procedure import ring_evidence_threshold
    from cryowarp.preprocess.ctf.search1d import Optics, search_defocus_1d
    from cryowarp.preprocess.ctf.spectra import patch_power_spectra

    t0 = time.perf_counter()
    if data.ndim == 3 and settings.spectrum_source == "average":
        data = data.sum(0)
    spectra = patch_power_spectra(
        data,
        window_size_px=settings.window_size_px,
        overlap=settings.patch_overlap,
        pixel_size_a=pixel_size_a,
    )
    optics = Optics(pixel_size_a, voltage_kv, cs_mm, amplitude_contrast)
    k = profile_frequencies_per_a(spectra.window_size_px, pixel_size_a)
    fit_range = settings.fit_range_per_a(pixel_size_a)
    phases = None
    if settings.fit_phase_shift:
        phases = torch.deg2rad(
            torch.arange(
                settings.phase_shift_min_deg,
                settings.phase_shift_max_deg + 1e-9,
                settings.phase_shift_step_deg,
                dtype=torch.float64,
            )
        )
    search = search_defocus_1d(
        rotational_profile(spectra.spectra).to(torch.float64).mean(0),
        k,
        optics,
        fit_range_per_a=fit_range,
        defocus_range_um=(settings.defocus_min_um, settings.defocus_max_um),
        defocus_step_um=settings.defocus_step_um,
        phase_shifts_rad=phases,
    )
    score = float(search.score)
    n = int(((k >= fit_range[0]) & (k <= fit_range[1])).sum())
    failed = not math.isfinite(score) or score < ring_evidence_threshold(n)
    result = _OneDResult(
        failed=failed,
        failure_reason=f"1-D correlation {score:.2f} too low" if failed else None,
        defocus_um=float(search.defocus_um),
        phase_shift_deg=math.degrees(float(search.phase_shift_rad)),
        fit_score=score,
    )
    return result, time.perf_counter() - t0


def _one_case(name: str, overrides: dict[str, Any], seed: int) -> dict[str, Any]:
    from cryowarp.io.gain import read_gain
    from cryowarp.io.movie import open_movie
    from cryowarp.preprocess.ctf.settings import CtfSettings
    from cryowarp.simulate.ground_truth import load_ground_truth
    from cryowarp.simulate.presets import frame_series_preset
    from cryowarp.simulate.write import write_frame_series_dataset

    options = dict(overrides)
    preset = options.pop("preset")
    with tempfile.TemporaryDirectory() as folder:
        dataset = write_frame_series_dataset(
            folder, frame_series_preset(preset, **options), n_movies=1, seed=seed
        )
        truth = load_ground_truth(dataset.folder, 0)
        with open_movie(dataset.movies[0]) as movie:
            frames = torch.from_numpy(movie.read_frames(0, movie.n_frames))
        frames = frames * torch.from_numpy(read_gain(dataset.gain))
    phase = truth.ctf.phase_shift_deg != 0.0
    window = 512 if min(truth.settings.shape_px) >= 1024 else 256
    base: dict[str, Any] = {"window_size_px": window, "fit_phase_shift": phase}
    if phase:
        base.update(defocus_min_um=0.3, defocus_max_um=1.5)
    ours, t_ours = _fit(frames, truth, CtfSettings(**base))
    constant, t_constant = _fit(frames, truth, CtfSettings(**base, spatial_grid=(1, 1)))
    one_d, t_one_d = _fit(frames, truth, CtfSettings(**base), one_d=True)
    return {
        "case": name,
        "preset": preset,
        "shape_px": list(truth.settings.shape_px),
        "true_defocus_um": truth.ctf.defocus_um,
        "true_astigmatism_um": truth.ctf.astigmatism_um,
        "true_phase_shift_deg": truth.ctf.phase_shift_deg,
        "true_tilt_deg": truth.ctf.sample_tilt_deg,
        "cryowarp": {**_scores(ours, truth), "seconds": t_ours},
        "constant_defocus": {**_scores(constant, truth), "seconds": t_constant},
        "one_d_only": {**_scores(one_d, truth), "seconds": t_one_d},
    }


def _k3_micrograph() -> tuple[torch.Tensor, float, float, float, float]:
    """A 4092 × 5760 float32 micrograph at 0.834 Å/px whose power spectrum is
    ``noise + E·CTF²`` (defocus 1.7 µm, δ = 0.05 µm at 20°); returns it with the pixel size,
    defocus, astigmatism (µm) and angle (degrees)."""
    from cryowarp.core.ctf import ctf_2d
    from cryowarp.core.ctf_params import CTFParams
    from cryowarp.core.fourier_grids import frequency_magnitude

    h, w, pixel, defocus, delta, angle = 4092, 5760, 0.834, 1.7, 0.05, 20.0
    generator = torch.Generator().manual_seed(0)
    two = math.radians(2 * angle)
    params = CTFParams.create(
        pixel_size_a=pixel,
        defocus_um=defocus,
        astig_x_um=delta * math.cos(two),
        astig_y_um=delta * math.sin(two),
        dtype=torch.float32,
    )
    spectrum = torch.fft.rfft2(torch.randn(h, w, generator=generator))
    k = frequency_magnitude((h, w)) / pixel
    spectrum *= ctf_2d(params, (h, w)) * torch.exp(-25 * k.square()) * 1.5
    image = torch.fft.irfft2(spectrum, s=(h, w)) + torch.randn(h, w, generator=generator) + 10
    return image, pixel, defocus, delta, angle


def _cached_k3_movie() -> Path | None:
    """Folder of the simulated K3 movie cached by the motion benchmark, if it is complete."""
    cache = Path(
        os.environ.get("CRYOWARP_BENCH_CACHE", Path(tempfile.gettempdir()) / "cryowarp_bench_cache")
    )
    for folder in sorted(cache.glob("motion_k3_*")):
        if (folder / "ground_truth" / "ground_truth.json").is_file() and (
            folder / "movie_000.mrc"
        ).is_file():
            return folder
    return None


def _k3_frame_sum(folder: Path) -> tuple[torch.Tensor, Any]:
    """Gain-corrected sum of the cached K3 movie's frames, each aligned by the true global
    motion (the shift at the field centre; conventions §4): the average motion correction
    would give. The raw sum is blurred by the 40 Å drift (rings lost beyond ~7 Å)."""
    from cryowarp.core.shift import shift_image
    from cryowarp.io.gain import read_gain
    from cryowarp.io.movie import open_movie
    from cryowarp.simulate.ground_truth import load_ground_truth

    truth = load_ground_truth(folder, 0)
    gain = torch.from_numpy(read_gain(folder / "gain.mrc"))
    h, w = gain.shape
    pixel = truth.settings.pixel_size_a
    centre = torch.tensor([[(w - 1) / 2 * pixel, (h - 1) / 2 * pixel]], dtype=torch.float64)
    shifts_px = truth.shifts_at(centre)[0] / pixel  # (n, 2) content motion in px
    with open_movie(folder / "movie_000.mrc") as movie:
        total = torch.zeros(gain.shape, dtype=torch.float32)
        for start in range(0, movie.n_frames, 4):
            stop = min(movie.n_frames, start + 4)
            frames = torch.from_numpy(movie.read_frames(start, stop)) * gain
            total += shift_image(frames, -shifts_px[start:stop].to(torch.float32)).sum(0)
    return total, truth


def _k3_case() -> dict[str, Any]:
    from cryowarp.preprocess.ctf.settings import CtfSettings

    folder = _cached_k3_movie()
    if folder is not None:
        image, truth = _k3_frame_sum(folder)
        source = (
            f"simulated K3 movie, sum of frames aligned by the true global motion ({folder.name})"
        )
    else:
        image, pixel, defocus, delta, angle = _k3_micrograph()
        truth = _SyntheticTruth(pixel, defocus, delta, angle, tuple(image.shape))
        source = "synthetic K3-sized micrograph (CTF-modulated noise)"
    out: dict[str, Any] = {"case": "K3 size", "source": source, "shape_px": list(image.shape)}
    for method, settings in (
        ("cryowarp", CtfSettings()),
        ("constant_defocus", CtfSettings(spatial_grid=(1, 1))),
        ("one_d_only", CtfSettings()),
    ):
        result, seconds = _fit(image, truth, settings, one_d=method == "one_d_only")
        out[method] = {**_scores(result, truth), "seconds": seconds}
    return out


@dataclass(frozen=True)
class _SyntheticCtf:
    defocus_um: float
    astigmatism_um: float
    astigmatism_angle_deg: float
    phase_shift_deg: float = 0.0
    sample_tilt_deg: float = 0.0
    sample_tilt_axis_deg: float = 0.0


@dataclass(frozen=True)
class _SyntheticSettings:
    pixel_size_a: float
    shape_px: tuple[int, int]
    voltage_kv: float = 300.0
    cs_mm: float = 2.7
    amplitude_contrast: float = 0.07


class _SyntheticTruth:
    """The truth of :func:`_k3_micrograph` in the shape of ``FrameSeriesTruth``."""

    def __init__(
        self, pixel: float, defocus: float, delta: float, angle: float, shape: tuple[int, ...]
    ) -> None:
        self.ctf = _SyntheticCtf(defocus, delta, angle)
        self.settings = _SyntheticSettings(pixel, (int(shape[0]), int(shape[1])))

    def defocus_at(self, positions_xy_a: torch.Tensor) -> torch.Tensor:  # (n, 2) -> (n,)
        return torch.full(positions_xy_a.shape[:1], self.ctf.defocus_um, dtype=torch.float64)


def run(*, quick: bool) -> dict[str, Any]:
    import torch._dynamo  # noqa: F401  (imported by the first L-BFGS; not timed)

    rows = [_one_case(name, overrides, seed) for name, overrides, seed in _cases(quick)]
    summary: dict[str, Any] = {}
    for method in METHODS:
        ok = [r[method] for r in rows if not r[method]["failed"]]
        flat = [r[method] for r in rows if r["case"].startswith("flat") and not r[method]["failed"]]
        tilted = [r[method] for r in rows if "tilt_error_deg" in r[method]]
        summary[method] = {
            "failed": sum(r[method]["failed"] for r in rows),
            "flat_median_defocus_error_nm": (
                statistics.median(m["defocus_median_error_nm"] for m in flat) if flat else None
            ),
            "flat_worst_p95_defocus_error_nm": (
                max(m["defocus_p95_error_nm"] for m in flat) if flat else None
            ),
            "tilt_error_deg": tilted[0]["tilt_error_deg"] if tilted else None,
            "median_seconds": statistics.median(m["seconds"] for m in ok) if ok else None,
        }
    t_ours, t_base = (summary[m]["median_seconds"] for m in ("cryowarp", "constant_defocus"))
    if t_ours and t_base:
        summary["time_ratio_to_constant_defocus"] = t_ours / t_base
    k3 = None if quick else _k3_case()
    return {
        "suite": "ctf",
        "quick": quick,
        "cases": rows,
        "k3": k3,
        "not_run": NOT_RUN,
        "summary": summary,
    }


def _cell(scores: dict[str, Any], key: str, fmt: str) -> str:
    value = scores.get(key)
    return "—" if value is None else format(value, fmt)


def _row(case: str, method: str, s: dict[str, Any], true_tilt_deg: float) -> str:
    if s["failed"]:
        return f"| {case} | {method} | failed: {s['reason']} | | | | | |"
    tilt = f"{_cell(s, 'tilt_deg', '.1f')} (true {true_tilt_deg:.0f})"
    if "tilt_axis_error_deg" in s:
        tilt += f", axis err. {s['tilt_axis_error_deg']:.1f}"
    return (
        f"| {case} | {method} | {_cell(s, 'defocus_median_error_nm', '.1f')} / "
        f"{_cell(s, 'defocus_p95_error_nm', '.1f')} | "
        f"{_cell(s, 'astigmatism_error_nm', '.1f')} | "
        f"{_cell(s, 'phase_shift_error_deg', '.1f')} | {tilt} | "
        f"{_cell(s, 'resolution_a', '.2f')} | {_cell(s, 'seconds', '.2f')} |"
    )


def markdown(report: dict[str, Any]) -> str:
    lines = [
        "## ctf",
        "",
        "Simulated movies with known CTF; cryowarp (spatial grid) against the same fit with a "
        "constant defocus and a 1-D-only estimate (no 2-D fit, no astigmatism), same run. "
        "Defocus errors over a 5 × 5 grid of field positions; the 1-D-only astigmatism error is "
        "the true astigmatism. "
        + "; ".join(f"{k}: {v}" for k, v in report.get("not_run", {}).items())
        + ". CTFFIND4/5: not installable here.",
        "",
        "| case | method | median / p95 defocus error (nm) | astig. error (nm) | phase error (°) "
        "| tilt (°) | resolution (Å) | seconds |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in report["cases"]:
        for method in METHODS:
            if method in row:
                lines.append(_row(row["case"], method, row[method], row["true_tilt_deg"]))
    k3 = report.get("k3")
    if k3:
        lines += ["", f"K3 size {k3['shape_px']}: {k3.get('source', 'synthetic')}.", ""]
        lines += [
            "| case | method | median / p95 defocus error (nm) | astig. error (nm) "
            "| phase error (°) | tilt (°) | resolution (Å) | seconds |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for method in METHODS:
            if method in k3 and "defocus_median_error_nm" in k3[method]:
                lines.append(_row("K3", method, k3[method], 0.0))
    summary = report["summary"]
    lines += ["", f"Summary: `{json.dumps(summary)}`"]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(markdown(run(quick=True)))
