"""CTF benchmark: defocus, astigmatism, phase shift and tilt recovered from simulated movies.

Movies with known CTF come from the simulator (``small`` preset; ``tiny`` with ``--quick``):
flat samples at several defoci with astigmatism, a phase plate (90°) and a 30° tilted sample.
Each movie is fitted twice in the same run: by cryowarp's estimate (spatial defocus grid,
Warp's procedure) and by the baseline, the same fit with a constant defocus (1 × 1 grid).
Errors are against ``FrameSeriesTruth.defocus_at`` on a 5 × 5 grid of field positions
(median and 95th percentile, nm), the astigmatism vector ``(δ cos 2θ, δ sin 2θ)`` (nm), the
phase shift (degrees) and, for tilted data, the tilt angle and axis of the plane through the
fitted defocus surface. Phase-plate data are searched over 0.3–1.5 µm and 0–180°. A K3-sized
micrograph (4092 × 5760, 0.834 Å/px: CTF-modulated noise of known defocus, not the 6-minute
simulator) is timed too. The first L-BFGS of a process imports ``torch._dynamo`` (seconds):
it is imported before anything is timed. CTFFIND4/5 are not installable with pip or apt here
and teamtomo's ``torch-ctf-estimation`` is not installed, so neither is compared.
"""

from __future__ import annotations

import json
import math
import statistics
import tempfile
import time
from typing import Any

import torch

_UM_PER_A_HEIGHT = 1.0e-4  # defocus change (µm) per Å of specimen height (conventions §9)


def _cases(quick: bool) -> list[tuple[str, dict[str, Any], int]]:
    """``(case, preset overrides, seed)``: flat at several defoci, phase plate, tilted."""
    preset = "tiny" if quick else "small"
    flat = [
        (f"flat {d:.1f} µm", {"defocus_range_um": (d, d), "astigmatism_range_um": (0.05, 0.1)})
        for d in ((1.0, 2.5) if quick else (0.8, 1.6, 2.4, 3.2))
    ]
    cases: list[tuple[str, dict[str, Any]]] = [
        *flat,
        ("phase plate 90°", {"phase_shift_deg": 90.0, "defocus_range_um": (0.6, 0.9)}),
        ("tilted 30°", {"sample_tilt_range_deg": (30.0, 30.0)}),
    ]
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


def _fit(frames: torch.Tensor, truth: Any, settings: Any) -> tuple[Any, float]:
    from cryowarp.preprocess.ctf.estimate import estimate_ctf

    s = truth.settings
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


def _k3_case() -> dict[str, Any]:
    from cryowarp.preprocess.ctf.estimate import estimate_ctf
    from cryowarp.preprocess.ctf.settings import CtfSettings

    image, pixel, defocus, delta, angle = _k3_micrograph()
    out: dict[str, Any] = {"case": "K3-sized micrograph (synthetic)", "shape_px": [4092, 5760]}
    for method, settings in (
        ("cryowarp", CtfSettings()),
        ("constant_defocus", CtfSettings(spatial_grid=(1, 1))),
    ):
        t0 = time.perf_counter()
        result = estimate_ctf(image, pixel_size_a=pixel, settings=settings)
        seconds = time.perf_counter() - t0
        fx, fy = _astig_vector_nm(result.astigmatism_um, result.astigmatism_angle_deg)
        tx, ty = _astig_vector_nm(delta, angle)
        out[method] = {
            "failed": result.failed,
            "defocus_error_nm": abs(result.defocus_um - defocus) * 1e3,
            "astigmatism_error_nm": math.hypot(fx - tx, fy - ty),
            "seconds": seconds,
        }
    return out


def run(*, quick: bool) -> dict[str, Any]:
    import torch._dynamo  # noqa: F401  (imported by the first L-BFGS; not timed)

    rows = [_one_case(name, overrides, seed) for name, overrides, seed in _cases(quick)]
    summary: dict[str, Any] = {}
    for method in ("cryowarp", "constant_defocus"):
        ok = [r[method] for r in rows if not r[method]["failed"]]
        flat = [r[method] for r in rows if r["case"].startswith("flat") and not r[method]["failed"]]
        summary[method] = {
            "failed": sum(r[method]["failed"] for r in rows),
            "flat_median_defocus_error_nm": (
                statistics.median(m["defocus_median_error_nm"] for m in flat) if flat else None
            ),
            "median_seconds": statistics.median(m["seconds"] for m in ok) if ok else None,
        }
    t_ours, t_base = (summary[m]["median_seconds"] for m in ("cryowarp", "constant_defocus"))
    if t_ours and t_base:
        summary["time_ratio_to_constant_defocus"] = t_ours / t_base
    k3 = None if quick else _k3_case()
    return {"suite": "ctf", "quick": quick, "cases": rows, "k3": k3, "summary": summary}


def _cell(scores: dict[str, Any], key: str, fmt: str) -> str:
    value = scores.get(key)
    return "—" if value is None else format(value, fmt)


def markdown(report: dict[str, Any]) -> str:
    lines = [
        "## ctf",
        "",
        "Simulated movies with known CTF; cryowarp (spatial grid) against the same fit with a "
        "constant defocus (baseline, same run). Defocus errors over a 5 × 5 grid of field "
        "positions. CTFFIND and torch-ctf-estimation: not installed, not compared.",
        "",
        "| case | method | median / p95 defocus error (nm) | astig. error (nm) | phase error (°) "
        "| tilt (°) | resolution (Å) | seconds |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in report["cases"]:
        for method in ("cryowarp", "constant_defocus"):
            s = row[method]
            if s["failed"]:
                lines.append(f"| {row['case']} | {method} | failed: {s['reason']} | | | | | |")
                continue
            lines.append(
                f"| {row['case']} | {method} | {_cell(s, 'defocus_median_error_nm', '.1f')} / "
                f"{_cell(s, 'defocus_p95_error_nm', '.1f')} | "
                f"{_cell(s, 'astigmatism_error_nm', '.1f')} | "
                f"{_cell(s, 'phase_shift_error_deg', '.1f')} | "
                f"{_cell(s, 'tilt_deg', '.1f')} (true {row['true_tilt_deg']:.0f}) | "
                f"{_cell(s, 'resolution_a', '.2f')} | {_cell(s, 'seconds', '.2f')} |"
            )
    k3 = report.get("k3")
    if k3:
        lines += ["", "| K3-sized micrograph | defocus error (nm) | astig. error (nm) | seconds |"]
        lines += ["|---|---|---|---|"]
        for method in ("cryowarp", "constant_defocus"):
            s = k3[method]
            lines.append(
                f"| {method} | {s['defocus_error_nm']:.1f} | {s['astigmatism_error_nm']:.1f} | "
                f"{s['seconds']:.1f} |"
            )
    summary = report["summary"]
    lines += ["", f"Summary: `{json.dumps(summary)}`"]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(markdown(run(quick=True)))
