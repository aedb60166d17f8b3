"""Denoising benchmark (issue 9): how close to the clean image are raw, deconvolved and denoised
micrographs, and how long does each take.

**Data.** Held-out simulated micrographs with known clean images
(:func:`cryowarp.simulate.odd_even_pairs.simulated_pairs`, seed :data:`SEED`, other than the
default model's training seed 0 and its held-out check seed 1 000 000; default population:
512² at 4 Å/px, varied species, defocus, dose, ice, artefacts, phase plate on some; 12
micrographs, 4 of 256² with ``--quick``). Each has odd/even half-averages with independent
Poisson noise and their common expectation ``clean`` (docs/denoising_training.md). The
simulated pairs are cached under ``$CRYOWARP_BENCH_CACHE`` (default
``<tmp>/cryowarp_bench_cache``), keyed by their settings.

**Methods**, all at the working pixel size 4 Å/px, each on every micrograph:

* ``raw`` — the average ``(odd + even)/2``; reference: ``clean``;
* ``deconvolved`` — the average deconvolved with the true CTF and the denoiser-input filter
  (:data:`~cryowarp.preprocess.denoise.deconvolution.DENOISER_INPUT_DECONVOLUTION`: what the
  denoiser sees, "deconvolution alone"); reference: ``clean`` through the same filter;
* ``deconvolved_display`` — the same with the display filter (``DeconvolutionSettings()``
  defaults); reference: ``clean`` through that filter;
* ``denoised_default`` — each half deconvolved as for ``deconvolved``, denoised with the
  shipped model ``n2n_micrograph_v1`` and averaged
  (:func:`~cryowarp.preprocess.denoise.n2n_inference.denoise_pair`); reference: as for
  ``deconvolved``;
* ``denoised_retrained`` — the same with a model retrained by Noise2Noise on this data set's
  own odd/even pairs (fine-tuned from the default model, :data:`RETRAIN_STEPS` steps; the
  clean images are never used); reference: as for ``deconvolved``.

So every processed image is compared with the clean image through the same linear filter
(a denoiser's ideal output is the expectation of its input). Reported per method, as means
over micrographs: the Pearson correlation with the reference, the PSNR
(``10·log10(range(reference)² / MSE)``, no rescaling), the correlation in the particle band
1/50–1/8 Å⁻¹ (Fourier coefficients), seconds per micrograph (deconvolution and denoising of the
halves included; ``raw`` costs nothing), and ratios to ``raw``; the time of the retraining.
Speed on a display-size field (a K3 micrograph at 4 Å/px: 1199 × 848 px) is measured too.
The issue's check: the retrained denoiser clearly better than deconvolution alone (higher
correlation and particle-band correlation, PSNR at least 1 dB higher).
"""

from __future__ import annotations

import hashlib
import json
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

SEED = 2024
N_MICROGRAPHS = 12
QUICK_MICROGRAPHS = 4
FIELD_PX = 512
QUICK_FIELD_PX = 256
RETRAIN_STEPS = 300
QUICK_RETRAIN_STEPS = 40
BAND_PER_A = (1 / 50, 1 / 8)
K3_DISPLAY_PX = (848, 1199)  # 4092 × 5760 px at 0.83 Å, at 4 Å/px
METHODS = ("raw", "deconvolved", "deconvolved_display", "denoised_default", "denoised_retrained")


def _cache_root() -> Path:
    default = Path(tempfile.gettempdir()) / "cryowarp_bench_cache"
    return Path(os.environ.get("CRYOWARP_BENCH_CACHE", default))


def _micrographs(n: int, field_px: int) -> tuple[list[Any], str]:
    """The held-out simulated micrographs, from the cache when present."""
    import dataclasses

    import torch

    from cryowarp.simulate.odd_even_pairs import (
        OddEvenSimulationSettings,
        SimulatedOddEven,
        simulated_pairs,
    )
    from cryowarp.simulate.sample_ctf import SampleCTF

    settings = OddEvenSimulationSettings(field_px=(field_px, field_px))
    key_text = json.dumps(
        {"settings": settings.model_dump(mode="json"), "n": n, "seed": SEED}, sort_keys=True
    )
    key = hashlib.sha256(key_text.encode()).hexdigest()[:16]
    path = _cache_root() / f"denoise_{key}.pt"
    if path.is_file():
        stored = torch.load(path, weights_only=True)
        return [
            SimulatedOddEven(**{**m, "ctf": SampleCTF.from_dict(json.loads(m["ctf"]))})
            for m in stored
        ], str(path)
    micrographs = simulated_pairs(n, seed=SEED, settings=settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = []
    for m in micrographs:
        row = {f.name: getattr(m, f.name) for f in dataclasses.fields(m)}
        row["ctf"] = json.dumps(m.ctf.to_dict())
        rows.append(row)
    staging = path.with_suffix(f".partial-{os.getpid()}")
    torch.save(rows, staging)
    staging.replace(path)
    return micrographs, str(path)


def _band_correlation(image: Any, reference: Any, *, pixel_size_a: float) -> float:
    import torch

    h, w = image.shape
    ky = torch.fft.fftfreq(h, dtype=torch.float64)
    kx = torch.fft.rfftfreq(w, dtype=torch.float64)
    k = (ky[:, None] ** 2 + kx[None] ** 2).sqrt() / pixel_size_a
    band = (k >= BAND_PER_A[0]) & (k <= BAND_PER_A[1])
    a = torch.fft.rfft2(image.to(torch.float64))[band]
    b = torch.fft.rfft2(reference.to(torch.float64))[band]
    return float((a * b.conj()).real.sum() / (a.abs().norm() * b.abs().norm()))


def _scores(image: Any, reference: Any, pixel_size_a: float) -> dict[str, float]:
    from cryowarp.pipeline.denoise_default import correlation, psnr_db

    return {
        "correlation": correlation(image, reference),
        "psnr_db": psnr_db(image, reference),
        "band_correlation": _band_correlation(image, reference, pixel_size_a=pixel_size_a),
    }


def _evaluate(micrographs: list[Any], models: dict[str, Any]) -> list[dict[str, Any]]:
    """Scores and seconds of every method on every micrograph."""
    from cryowarp.preprocess.denoise.deconvolution import (
        DENOISER_INPUT_DECONVOLUTION,
        DeconvolutionSettings,
        deconvolve,
    )
    from cryowarp.preprocess.denoise.n2n_inference import denoise_pair

    display = DeconvolutionSettings()
    rows = []
    for m in micrographs:
        px = m.pixel_size_a
        average = m.average
        row: dict[str, Any] = {"name": m.name, "n_particles": m.n_particles}
        row["raw"] = {**_scores(average, m.clean, px), "seconds": 0.0}
        reference = {
            s: deconvolve(m.clean, pixel_size_a=px, ctf=m.ctf, settings=f)
            for s, f in (("input", DENOISER_INPUT_DECONVOLUTION), ("display", display))
        }
        for method, settings, key in (
            ("deconvolved", DENOISER_INPUT_DECONVOLUTION, "input"),
            ("deconvolved_display", display, "display"),
        ):
            t0 = time.perf_counter()
            out = deconvolve(average, pixel_size_a=px, ctf=m.ctf, settings=settings)
            seconds = time.perf_counter() - t0
            row[method] = {**_scores(out, reference[key], px), "seconds": seconds}
        for method, model in models.items():
            t0 = time.perf_counter()
            odd, even = (
                deconvolve(x, pixel_size_a=px, ctf=m.ctf, settings=DENOISER_INPUT_DECONVOLUTION)
                for x in (m.odd, m.even)
            )
            out = denoise_pair(model, odd, even, pixel_size_a=px)
            seconds = time.perf_counter() - t0
            row[method] = {**_scores(out, reference["input"], px), "seconds": seconds}
        rows.append(row)
    return rows


def _retrain(micrographs: list[Any], default: Any, steps: int) -> tuple[Any, dict[str, Any]]:
    """Noise2Noise on the benchmark's own odd/even pairs, starting from the default model."""
    import copy

    from cryowarp.pipeline.denoise_default import training_pairs_from_simulation
    from cryowarp.preprocess.denoise.n2n_model_file import DenoiserModel
    from cryowarp.preprocess.denoise.n2n_training import DenoiserTrainingSettings, train_denoiser

    network = copy.deepcopy(default.network)
    pairs = training_pairs_from_simulation(micrographs)
    t0 = time.perf_counter()
    report = train_denoiser(network, pairs, settings=DenoiserTrainingSettings(steps=steps, seed=1))
    seconds = time.perf_counter() - t0
    model = DenoiserModel(network=network, name="benchmark_retrained", pixel_size_a=4.0)
    return model, {
        "steps": steps,
        "seconds": seconds,
        "initial_validation_loss": report.initial_validation_loss,
        "best_validation_loss": report.best_validation_loss,
        "input_validation_loss": report.input_validation_loss,
    }


def _k3_speed(model: Any) -> dict[str, float]:
    """Seconds to deconvolve (average) and to deconvolve and denoise (both halves) one
    display-size micrograph (content does not matter for the time)."""
    import torch

    from cryowarp.core.ctf_params import CTFParams
    from cryowarp.preprocess.denoise.deconvolution import (
        DENOISER_INPUT_DECONVOLUTION,
        deconvolve,
    )
    from cryowarp.preprocess.denoise.n2n_inference import denoise_pair

    generator = torch.Generator().manual_seed(0)
    odd, even = torch.rand((2, *K3_DISPLAY_PX), generator=generator)
    ctf = CTFParams.create(pixel_size_a=4.0, defocus_um=1.5, dtype=torch.float64)
    settings = DENOISER_INPUT_DECONVOLUTION
    t0 = time.perf_counter()
    deconvolve((odd + even) / 2, pixel_size_a=4.0, ctf=ctf, settings=settings)
    t1 = time.perf_counter()
    halves = [deconvolve(x, pixel_size_a=4.0, ctf=ctf, settings=settings) for x in (odd, even)]
    denoise_pair(model, halves[0], halves[1], pixel_size_a=4.0)
    t2 = time.perf_counter()
    return {"seconds_deconvolve": t1 - t0, "seconds_deconvolve_and_denoise": t2 - t1}


def _summary(rows: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    summary: dict[str, dict[str, float]] = {}
    for method in METHODS:
        present = [r[method] for r in rows if method in r]
        if not present:
            continue
        summary[method] = {
            key: statistics.mean(p[key] for p in present)
            for key in ("correlation", "psnr_db", "band_correlation", "seconds")
        }
    raw = summary["raw"]
    for values in summary.values():
        values["correlation_ratio_to_raw"] = values["correlation"] / raw["correlation"]
        values["psnr_ratio_to_raw"] = values["psnr_db"] / raw["psnr_db"]
        values["psnr_gain_db_vs_raw"] = values["psnr_db"] - raw["psnr_db"]
        values["band_correlation_ratio_to_raw"] = (
            values["band_correlation"] / raw["band_correlation"]
        )
    return summary


def run(*, quick: bool) -> dict[str, Any]:
    """Run the suite (``quick``: 4 micrographs of 256², 40 retraining steps); its report."""
    import torch

    from cryowarp.preprocess.denoise.n2n_model_file import (
        DEFAULT_DENOISER_MODEL,
        load_denoiser_model,
        resolve_denoiser_model,
    )

    n = QUICK_MICROGRAPHS if quick else N_MICROGRAPHS
    field = QUICK_FIELD_PX if quick else FIELD_PX
    steps = QUICK_RETRAIN_STEPS if quick else RETRAIN_STEPS
    t0 = time.perf_counter()
    micrographs, cache = _micrographs(n, field)
    seconds_data = time.perf_counter() - t0
    default = load_denoiser_model(resolve_denoiser_model(DEFAULT_DENOISER_MODEL))
    retrained, retraining = _retrain(micrographs, default, steps)
    rows = _evaluate(micrographs, {"denoised_default": default, "denoised_retrained": retrained})
    summary = _summary(rows)
    deconv, best = summary["deconvolved"], summary["denoised_retrained"]
    check = {
        "correlation_gain": best["correlation"] - deconv["correlation"],
        "band_correlation_gain": best["band_correlation"] - deconv["band_correlation"],
        "psnr_gain_db": best["psnr_db"] - deconv["psnr_db"],
    }
    check["passed"] = float(
        check["correlation_gain"] > 0
        and check["band_correlation_gain"] > 0
        and check["psnr_gain_db"] >= 1.0
    )
    return {
        "suite": "denoise",
        "quick": quick,
        "device": "cpu",
        "torch_threads": torch.get_num_threads(),
        "seed": SEED,
        "n_micrographs": n,
        "field_px": field,
        "pixel_size_a": 4.0,
        "cache": cache,
        "seconds_data": seconds_data,
        "default_model": DEFAULT_DENOISER_MODEL,
        "retraining": {**retraining, "n_pairs": n},
        "summary": summary,
        "check_retrained_vs_deconvolved": check,
        "k3_display_field": {"shape_px": list(K3_DISPLAY_PX), **_k3_speed(default)},
        "micrographs": rows,
    }


_LABELS = {
    "raw": ("raw average (odd + even)/2", "clean"),
    "deconvolved": ("deconvolved (denoiser-input filter)", "clean, same filter"),
    "deconvolved_display": ("deconvolved (display filter)", "clean, display filter"),
    "denoised_default": ("denoised, default model", "clean, denoiser-input filter"),
    "denoised_retrained": ("denoised, retrained model", "clean, denoiser-input filter"),
}


def markdown(report: dict[str, Any]) -> str:
    """The suite's section of benchmarks/results/README.md."""
    quick = " (quick run)" if report["quick"] else ""
    r, k3, c = (
        report["retraining"],
        report["k3_display_field"],
        report["check_retrained_vs_deconvolved"],
    )
    lines = [
        "## denoise",
        "",
        f"{report['n_micrographs']} held-out simulated micrographs{quick} "
        f"({report['field_px']}² at {report['pixel_size_a']:g} Å/px, seed {report['seed']}) "
        "with known clean images; every output compared with the clean image through the "
        "same deconvolution filter (true CTF). Means over micrographs; particle band "
        f"1/{1 / BAND_PER_A[0]:g}–1/{1 / BAND_PER_A[1]:g} Å⁻¹; seconds per micrograph on "
        f"{report['device']} with {report['torch_threads']} torch thread(s).",
        "",
        "| method | reference | correlation | ratio to raw | PSNR (dB) | Δ vs raw (dB) "
        "| band correlation | ratio to raw | s / micrograph |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for method, values in report["summary"].items():
        label, reference = _LABELS[method]
        lines.append(
            f"| {label} | {reference} | {values['correlation']:.4f} | "
            f"{values['correlation_ratio_to_raw']:.3f} | {values['psnr_db']:.2f} | "
            f"{values['psnr_gain_db_vs_raw']:+.2f} | {values['band_correlation']:.3f} | "
            f"{values['band_correlation_ratio_to_raw']:.3f} | {values['seconds']:.2f} |"
        )
    lines += [
        "",
        f"Retraining (Noise2Noise on the {r['n_pairs']} odd/even pairs, from the default "
        f"model): {r['steps']} steps in {r['seconds']:.0f} s; validation loss "
        f"{r['initial_validation_loss']:.4f} → {r['best_validation_loss']:.4f} (input as "
        f"prediction: {r['input_validation_loss']:.4f}). Check, retrained vs deconvolution "
        f"alone: correlation {c['correlation_gain']:+.4f}, band correlation "
        f"{c['band_correlation_gain']:+.3f}, PSNR {c['psnr_gain_db']:+.2f} dB — "
        f"{'passed' if c['passed'] else 'FAILED'}. A K3 field at 4 Å/px "
        f"({k3['shape_px'][1]}×{k3['shape_px'][0]} px): deconvolution "
        f"{k3['seconds_deconvolve']:.2f} s, deconvolution + denoising of both halves "
        f"{k3['seconds_deconvolve_and_denoise']:.1f} s.",
    ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(markdown(run(quick=True)))
