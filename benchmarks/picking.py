"""Particle-picking benchmark (issue 8): BoxNet, retrained BoxNet and baselines.

**Held-out micrographs.** Species the generic model never saw: of
``heldout_species_pool(seed=0, n=8)`` (``cryowarp.pipeline.picking_species_pool``, the
``heldout`` seed namespace; training uses ``train``) the three with the smallest, median
and largest diameter. Each micrograph holds one of them. Fields of 2048 × 2048 Å are
simulated with ``simulate_training_field`` (the generic data's physics: random defocus
0.5–4 µm or a phase plate, ice 150–900 Å, sample tilt, carbon / ethane drops / aggregates
on ~70 %; particles covering 10–40 % of the field) at **4 Å/px (512²)** and recorded as
Poisson counts of the detected dose at that pixel size — the way the generic data's fast
path makes training data, at 4 Å instead of 8 Å: no motion blur, MTF or radiation damage;
4 Å/px because every picker here works at ≥ 4 Å/px. The truth is the simulator's: particle
centres (those whose centre lies on an artefact are dropped, as the training labels do) and
the artefact mask. 10 test micrographs (4/3/3 per species; ``--quick``: 3) and 3 more (one
per species) to retrain on.

**Methods.**

* ``boxnet`` — the generic model: ``$CRYOWARP_BOXNET_MODEL`` (a path), else the shipped
  ``boxnet_generic_v1``, else a **stand-in** trained here with ``train_boxnet`` on a small
  generic dataset (say so in the report; cached in ``$CRYOWARP_BENCH_CACHE``), with
  ``PickingSettings(diameter_a=<species diameter>)`` defaults (threshold 0.5).
* ``boxnet_retrained`` — ``retrain_boxnet`` from the generic model on the 3 retraining
  micrographs (all particles marked, artefacts painted, as a user would: through
  ``labelled_from_micrograph``), diluted 1:1 with generic data, default
  ``RetrainingSettings``.
* ``log`` — ``pick_log`` with diameters from 0.5× to 1× the species diameter (its longest
  dimension), default threshold (0).
* ``template`` — ``pick_templates`` with projections of the **true** map every 30°
  (symmetry-reduced) and the true defocus, astigmatism and phase shift: an upper-bound
  baseline, default threshold (0).
* ``topaz`` — Topaz's pretrained general model through ``$CRYOWARP_TOPAZ`` (the ``topaz``
  executable of a separate environment), else "not available".

**Metrics.** A pick matches a true particle within 20 % of its diameter, one-to-one
(``preprocess.picking.metrics``). Precision, recall and F1 pooled over the test micrographs
at each method's default threshold, and the best F1 over one threshold shared by all
micrographs (BoxNet: thresholds 0.05–0.95 by 0.05 via ``PickResult.rethreshold``; the
baselines: every score); F1 per species; artefact-mask IoU at 8 Å/px (BoxNet; pooled
intersection over pooled union, and the mean per micrograph with "both empty" = 1);
seconds per micrograph (templates: plus the one-off projection per species); F1 ratio to LoG.

**Real micrograph** (``../shared/data/micrographs/micrograph_cleaner_Ucsf_stack_1142``,
header pixel size 1.0 = unknown): picked and masked with the generic model at an
**assumed 5 Å/px** (8 × a K2 super-resolution pixel of ~0.6 Å; the micrograph is the
K2 super-resolution frame binned 8×) and an assumed diameter of 100 Å (= the 20-px
minimum spacing of its RELION autopicks at 5 Å/px). Reported: IoU of our artefact mask with
MicrographCleaner's mask thresholded at 0.5 (at 8 Å/px), the fraction of each mask the other
covers, and the fraction of the 45 RELION picks we also pick within 20 % of the diameter.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import statistics
import subprocess
import tempfile
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks import motion

HELDOUT_SEED = 0
HELDOUT_POOL_SIZE = 8
SIMULATION_SEED = 8008  # of simulate_training_field: other draws than the generic data's
SIM_PIXEL_A = 4.0
FIELD_PX_AT_8A = (256, 256)  # 2048 Å
ARTEFACT_FRACTION = 0.7
COVERAGE_RANGE = (0.1, 0.4)  # fraction of the field covered by particles
N_TEST = 10
N_TEST_QUICK = 3
RETRAIN_INDEX_OFFSET = 1000
LOG_RANGE = (0.5, 1.0)  # × the species diameter
TEMPLATE_STEP_DEG = 30.0
BOXNET_THRESHOLDS = tuple(round(0.05 * i, 2) for i in range(1, 20))
GENERIC_DATA_SEED = 1
N_GENERIC = 16  # generic micrographs for retraining dilution (and the stand-in model)
STANDIN_STEPS = 300
REAL_PIXEL_A = 5.0
REAL_DIAMETER_A = 100.0
SHARED = Path(
    os.environ.get("CRYOWARP_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data")
)
REAL_FOLDER = SHARED / "micrographs" / "micrograph_cleaner_Ucsf_stack_1142"


@dataclass
class Micrograph:
    """One held-out micrograph with its truth."""

    image: Any  # (H, W) float32 counts at SIM_PIXEL_A
    positions_a: Any  # (n, 2) true centres not on artefacts
    artefact_mask: Any  # (H, W) bool
    species: int  # index into the chosen species
    diameter_a: float
    ctf: Any  # SampleCTF
    source: str


@dataclass
class MethodResult:
    """Picks of one method on every test micrograph."""

    positions: list[Any] = field(default_factory=list)  # per micrograph (n, 2) Å
    scores: list[Any] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)
    masks: list[Any] = field(default_factory=list)  # BoxNet only: (h', w') bool at 8 Å
    curve_picks: list[tuple[Any, Any]] = field(default_factory=list)  # all candidates
    by_threshold: dict[float, list[Any]] = field(default_factory=dict)  # BoxNet
    setup_seconds: float = 0.0


# -- data ------------------------------------------------------------------------------------


def _chosen_species() -> list[Any]:
    from cryowarp.pipeline.picking_species_pool import heldout_species_pool

    pool = heldout_species_pool(HELDOUT_SEED, HELDOUT_POOL_SIZE, pixel_size_a=SIM_PIXEL_A)
    ordered = sorted(pool, key=lambda s: s.diameter_a)
    return [ordered[0], ordered[len(ordered) // 2], ordered[-1]]


def _settings() -> Any:
    from cryowarp.preprocess.picking.training_data import GenericTrainingSettings

    return GenericTrainingSettings(
        micrograph_size_px=FIELD_PX_AT_8A,
        simulation_pixel_size_a=SIM_PIXEL_A,
        species_per_micrograph=(1, 1),
        artefact_fraction=ARTEFACT_FRACTION,
        coverage_range=COVERAGE_RANGE,
    )


def _micrograph(index: int, species: list[Any], which: int) -> Micrograph:
    import torch

    from cryowarp.pipeline.picking_training_data import simulate_training_field

    entry = species[which]
    result = simulate_training_field(
        index, settings=_settings(), seed=SIMULATION_SEED, species_pool=[entry]
    )
    sim = result.simulation
    g = torch.Generator().manual_seed(zlib.crc32(f"picking-bench/{index}/noise".encode()))
    expected = sim.clean_micrograph.clamp(min=0) * (result.detected_dose_e_per_a2 * SIM_PIXEL_A**2)
    image = torch.poisson(expected.to(torch.float32), generator=g)
    positions = sim.particles.positions_a[:, :2].to(torch.float64)
    mask = sim.artefact_mask.to(torch.bool)
    h, w = mask.shape
    px = (positions / SIM_PIXEL_A).round().long()
    px[:, 0].clamp_(0, w - 1)
    px[:, 1].clamp_(0, h - 1)
    on_artefact = mask[px[:, 1], px[:, 0]]
    ctf = sim.ctf
    source = (
        f"index={index} species={entry.name} particles={len(positions)} "
        f"on_artefacts={int(on_artefact.sum())} defocus_um={ctf.defocus_um:.2f} "
        f"phase_shift_deg={ctf.phase_shift_deg:.0f} ice_a={result.settings.ice_thickness_a:.0f} "
        f"detected_e_per_a2={result.detected_dose_e_per_a2:.1f} "
        f"carbon={int(result.settings.carbon_edge)} drops={result.settings.n_ethane_drops} "
        f"aggregates={result.settings.n_aggregates} masked={float(mask.float().mean()):.3f}"
    )
    return Micrograph(
        image=image,
        positions_a=positions[~on_artefact],
        artefact_mask=mask,
        species=which,
        diameter_a=float(entry.diameter_a),
        ctf=ctf,
        source=source,
    )


def _generic_data(cache: Path) -> list[Any]:
    from cryowarp.pipeline.picking_training_data import build_generic_dataset
    from cryowarp.preprocess.picking.labels import load_labelled
    from cryowarp.preprocess.picking.training_data import GenericTrainingSettings

    settings = GenericTrainingSettings(n_micrographs=N_GENERIC, n_procedural_species=8)
    files = build_generic_dataset(settings, seed=GENERIC_DATA_SEED, out_dir=cache / "generic")
    return [load_labelled(f) for f in files]


# -- models ----------------------------------------------------------------------------------


def _generic_model(cache: Path, generic: list[Any]) -> tuple[Any, dict[str, Any]]:
    """The model to benchmark and how it was found (module docstring)."""
    from cryowarp.preprocess.picking.model_file import (
        DEFAULT_BOXNET_MODEL,
        BoxNetModel,
        load_boxnet_model,
        resolve_boxnet_model,
        save_boxnet_model,
        shipped_model_names,
    )
    from cryowarp.preprocess.picking.network import BoxNet
    from cryowarp.preprocess.picking.training import TrainingSettings, train_boxnet

    given = os.environ.get("CRYOWARP_BOXNET_MODEL")
    if given:
        model = load_boxnet_model(given)
        return model, {"source": f"$CRYOWARP_BOXNET_MODEL={given}", "stand_in": False}
    if DEFAULT_BOXNET_MODEL in shipped_model_names():
        model = load_boxnet_model(resolve_boxnet_model(DEFAULT_BOXNET_MODEL))
        return model, {"source": f"shipped {DEFAULT_BOXNET_MODEL}", "stand_in": False}
    settings = TrainingSettings(steps=STANDIN_STEPS, eval_every_steps=STANDIN_STEPS, seed=0)
    key = hashlib.sha256(
        json.dumps([settings.model_dump(mode="json"), N_GENERIC, GENERIC_DATA_SEED]).encode()
    ).hexdigest()[:10]
    path = cache / f"standin_{key}.boxnet.pt"
    info = {
        "source": f"stand-in: train_boxnet, {STANDIN_STEPS} steps on {N_GENERIC} generic "
        "micrographs (no shipped model yet)",
        "stand_in": True,
        "file": str(path),
    }
    if path.is_file():
        return load_boxnet_model(path), info
    import torch

    torch.manual_seed(0)
    network = BoxNet()
    started = time.perf_counter()
    train_boxnet(network, generic[2:], generic[:2], settings=settings)
    info["training_seconds"] = time.perf_counter() - started
    model = BoxNetModel(network=network, name="boxnet_benchmark_standin", metadata=info)
    save_boxnet_model(model, path)
    return load_boxnet_model(path), info


def _retrained(base: Any, retrain: list[Micrograph], generic: list[Any]) -> tuple[Any, Any]:
    from cryowarp.preprocess.picking.labels import labelled_from_micrograph
    from cryowarp.preprocess.picking.retraining import RetrainingSettings, retrain_boxnet

    user = [
        labelled_from_micrograph(
            m.image,
            pixel_size_a=SIM_PIXEL_A,
            positions_a=m.positions_a,
            diameter_a=m.diameter_a,
            painted_artefacts=m.artefact_mask,
            source=m.source,
        )
        for m in retrain
    ]
    return retrain_boxnet(
        base, user, generic, name="boxnet_heldout_retrained", settings=RetrainingSettings()
    )


# -- methods ---------------------------------------------------------------------------------


def _run_boxnet(model: Any, tests: list[Micrograph]) -> MethodResult:
    import torch

    from cryowarp.preprocess.picking.inference import pick_micrograph
    from cryowarp.preprocess.picking.settings import PickingSettings

    out = MethodResult()
    for m in tests:
        settings = PickingSettings(diameter_a=m.diameter_a)
        started = time.perf_counter()
        with torch.no_grad():
            result = pick_micrograph(
                m.image, pixel_size_a=SIM_PIXEL_A, model=model, settings=settings
            )
        out.seconds.append(time.perf_counter() - started)
        out.positions.append(result.positions_a)
        out.scores.append(result.scores)
        out.masks.append(result.artefact_mask)
        for t in BOXNET_THRESHOLDS:
            out.by_threshold.setdefault(t, []).append(result.rethreshold(t).positions_a)
    return out


def _run_log(tests: list[Micrograph]) -> MethodResult:
    from cryowarp.preprocess.picking.log_picker import pick_log

    out = MethodResult()
    for m in tests:
        started = time.perf_counter()
        picks = pick_log(
            m.image,
            pixel_size_a=SIM_PIXEL_A,
            diameter_min_a=LOG_RANGE[0] * m.diameter_a,
            diameter_max_a=LOG_RANGE[1] * m.diameter_a,
            threshold_sigma=-math.inf,
        )
        out.seconds.append(time.perf_counter() - started)
        default = picks.above(0.0)
        out.positions.append(default.positions_a)
        out.scores.append(default.scores)
        out.curve_picks.append((picks.positions_a, picks.scores))
    return out


def _run_templates(tests: list[Micrograph], species: list[Any]) -> MethodResult:
    from cryowarp.preprocess.picking.template_picker import (
        TEMPLATE_PIXELS_PER_DIAMETER,
        pick_templates,
        templates_from_map,
    )

    out = MethodResult()
    templates: dict[int, tuple[Any, float]] = {}
    for m in tests:
        if m.species not in templates:
            started = time.perf_counter()
            entry = species[m.species].species
            templates[m.species] = templates_from_map(
                entry.potential_v,
                pixel_size_a=entry.pixel_size_a,
                angular_step_deg=TEMPLATE_STEP_DEG,
                symmetry=entry.symmetry,
                output_pixel_size_a=m.diameter_a / TEMPLATE_PIXELS_PER_DIAMETER,
            )
            out.setup_seconds += time.perf_counter() - started
        stack, stack_pixel_a = templates[m.species]
        ctf = m.ctf
        started = time.perf_counter()
        picks = pick_templates(
            m.image,
            pixel_size_a=SIM_PIXEL_A,
            templates=stack,
            template_pixel_size_a=stack_pixel_a,
            diameter_a=m.diameter_a,
            defocus_um=ctf.defocus_um,
            astigmatism_um=ctf.astigmatism_um,
            astigmatism_angle_deg=ctf.astigmatism_angle_deg,
            voltage_kv=ctf.voltage_kv,
            cs_mm=ctf.cs_mm,
            amplitude_contrast=ctf.amplitude_contrast,
            phase_shift_deg=ctf.phase_shift_deg,
            threshold=-math.inf,
        )
        out.seconds.append(time.perf_counter() - started)
        default = picks.above(0.0)
        out.positions.append(default.positions_a)
        out.scores.append(default.scores)
        out.curve_picks.append((picks.positions_a, picks.scores))
    return out


def _run_topaz(executable: str, tests: list[Micrograph]) -> MethodResult:
    """Topaz's pretrained general model (``topaz extract``, default model) through a
    subprocess; scores are Topaz's log-likelihood ratios, default threshold 0 (p = 0.5).
    Untested here: Topaz did not install as a CPU build in this environment."""
    import numpy as np
    import torch

    from cryowarp.io.mrc import write_mrc

    out = MethodResult()
    with tempfile.TemporaryDirectory() as work_dir:
        work = Path(work_dir)
        for i, m in enumerate(tests):
            scale = max(1, round(m.diameter_a / 16 / SIM_PIXEL_A))
            radius_px = max(1, round(m.diameter_a / 2 / SIM_PIXEL_A / scale))
            source = work / f"mic{i:03d}.mrc"
            write_mrc(source, m.image.numpy(), voxel_size_a=SIM_PIXEL_A)
            started = time.perf_counter()
            subprocess.run(
                [executable, "preprocess", "-s", str(scale), "-o", str(work / "pre"), str(source)],
                check=True,
                capture_output=True,
            )
            table = work / f"picks{i:03d}.txt"
            subprocess.run(
                [executable, "extract", "-r", str(radius_px), "-x", str(scale), "-t", "-20",
                 "-o", str(table), str(work / "pre" / source.name)],
                check=True,
                capture_output=True,
            )  # fmt: skip
            out.seconds.append(time.perf_counter() - started)
            rows = [line.split("\t") for line in table.read_text().splitlines()[1:] if line]
            xy = np.array([[float(r[1]), float(r[2])] for r in rows]).reshape(-1, 2)
            score = np.array([float(r[3]) for r in rows])
            positions = torch.from_numpy(xy * SIM_PIXEL_A)
            scores = torch.from_numpy(score)
            out.curve_picks.append((positions, scores))
            keep = scores > 0
            out.positions.append(positions[keep])
            out.scores.append(scores[keep])
    return out


# -- scoring ---------------------------------------------------------------------------------


def _pooled(positions: list[Any], tests: list[Micrograph]) -> dict[str, Any]:
    from cryowarp.preprocess.picking.metrics import match_picks, pooled_summary

    matches = [
        match_picks(picks, m.positions_a, diameter_a=m.diameter_a)
        for picks, m in zip(positions, tests, strict=True)
    ]
    species = sorted({m.species for m in tests})
    return {
        **pooled_summary(matches),
        "f1_per_species": {
            str(k): pooled_summary(
                x for x, m in zip(matches, tests, strict=True) if m.species == k
            )["f1"]
            for k in species
        },
    }


def _best_from_curve(result: MethodResult, tests: list[Micrograph]) -> dict[str, Any]:
    import numpy as np

    from cryowarp.preprocess.picking.metrics import match_picks, precision_recall_curve

    scores, matched, n_true = [], [], 0
    for (positions, values), m in zip(result.curve_picks, tests, strict=True):
        match = match_picks(positions, m.positions_a, diameter_a=m.diameter_a)
        scores.append(values.numpy())
        matched.append(match.matched_picks())
        n_true += match.n_true
    curve = precision_recall_curve(np.concatenate(scores), np.concatenate(matched), n_true=n_true)
    threshold, precision, recall, f1 = curve.best()
    return {"threshold": threshold, "precision": precision, "recall": recall, "f1": f1}


def _best_boxnet(result: MethodResult, tests: list[Micrograph]) -> dict[str, Any]:
    best: dict[str, Any] = {"f1": -1.0}
    for t, positions in result.by_threshold.items():
        scored = _pooled(positions, tests)
        if scored["f1"] > best["f1"]:
            best = {"threshold": t, **{k: scored[k] for k in ("precision", "recall", "f1")}}
    return best


def _mask_scores(result: MethodResult, tests: list[Micrograph]) -> dict[str, Any]:
    import torch

    from cryowarp.preprocess.picking.labels import downsample_mask
    from cryowarp.preprocess.picking.metrics import mask_iou

    intersection = union = 0
    ious = []
    for predicted, m in zip(result.masks, tests, strict=True):
        truth = downsample_mask(m.artefact_mask, tuple(predicted.shape))
        predicted = predicted.to(torch.bool).cpu()
        intersection += int((predicted & truth).sum())
        union += int((predicted | truth).sum())
        ious.append(mask_iou(predicted, truth))
    return {
        "iou_pooled": intersection / union if union else 1.0,
        "iou_mean_per_micrograph": statistics.mean(ious),
        "n_with_artefacts": sum(bool(m.artefact_mask.any()) for m in tests),
    }


def _summary(
    name: str, result: MethodResult, tests: list[Micrograph], *, curve: bool
) -> dict[str, Any]:
    row: dict[str, Any] = {"method": name, "available": True}
    row["default"] = _pooled(result.positions, tests)
    row["best"] = _best_from_curve(result, tests) if curve else _best_boxnet(result, tests)
    row["seconds_per_micrograph"] = statistics.mean(result.seconds)
    row["setup_seconds"] = result.setup_seconds
    if result.masks:
        row["mask"] = _mask_scores(result, tests)
    return row


# -- real micrograph --------------------------------------------------------------------------


def _real(model: Any) -> dict[str, Any]:
    import numpy as np
    import torch

    from cryowarp.io.mrc import read_mrc
    from cryowarp.preprocess.export.coordinates import read_coordinates
    from cryowarp.preprocess.picking.inference import pick_micrograph
    from cryowarp.preprocess.picking.labels import downsample_mask
    from cryowarp.preprocess.picking.metrics import mask_iou, match_picks
    from cryowarp.preprocess.picking.settings import PickingSettings

    name = "Ucsf_stack_1142_DW"
    if not REAL_FOLDER.is_dir():
        return {"available": False, "reason": f"{REAL_FOLDER} not found"}
    image, _ = read_mrc(REAL_FOLDER / "mics" / f"{name}.mrc")
    theirs, _ = read_mrc(REAL_FOLDER / "masks" / f"{name}.mrc")
    (particles,) = read_coordinates(
        REAL_FOLDER / f"{name}_autopick.star", pixel_size_a=REAL_PIXEL_A
    )
    settings = PickingSettings(diameter_a=REAL_DIAMETER_A)
    started = time.perf_counter()
    with torch.no_grad():
        result = pick_micrograph(
            torch.from_numpy(np.asarray(image, np.float32)),
            pixel_size_a=REAL_PIXEL_A,
            model=model,
            settings=settings,
        )
    seconds = time.perf_counter() - started
    ours = result.artefact_mask.to(torch.bool).cpu()
    their_mask = downsample_mask(
        torch.from_numpy(np.asarray(theirs) > 0.5), (int(ours.shape[0]), int(ours.shape[1]))
    )
    overlap = int((ours & their_mask).sum())
    match = match_picks(result.positions_a, particles.positions_a, diameter_a=REAL_DIAMETER_A)
    return {
        "available": True,
        "assumed_pixel_size_a": REAL_PIXEL_A,
        "assumed_diameter_a": REAL_DIAMETER_A,
        "shape_px": list(image.shape),
        "seconds": seconds,
        "n_picks": result.n_picks,
        "mask_iou": mask_iou(ours, their_mask),
        "our_masked_fraction": float(ours.float().mean()),
        "their_masked_fraction": float(their_mask.float().mean()),
        "fraction_of_theirs_covered": overlap / max(int(their_mask.sum()), 1),
        "fraction_of_ours_in_theirs": overlap / max(int(ours.sum()), 1),
        "n_their_picks": match.n_true,
        "fraction_of_their_picks_we_pick": match.recall,
    }


# -- suite -----------------------------------------------------------------------------------


def run(*, quick: bool) -> dict[str, Any]:
    """Run the suite (module docstring); ``quick``: 3 test micrographs."""
    import torch

    cache = motion.cache_root() / "picking"
    cache.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    species = _chosen_species()
    n_test = N_TEST_QUICK if quick else N_TEST
    tests = [_micrograph(i, species, i % len(species)) for i in range(n_test)]
    retrain = [_micrograph(RETRAIN_INDEX_OFFSET + k, species, k) for k in range(len(species))]
    seconds_data = time.perf_counter() - started
    generic = _generic_data(cache)
    model, model_info = _generic_model(cache, generic)
    started = time.perf_counter()
    retrained, report = _retrained(model, retrain, generic)
    seconds_retraining = time.perf_counter() - started

    rows = [
        _summary("boxnet", _run_boxnet(model, tests), tests, curve=False),
        _summary("boxnet_retrained", _run_boxnet(retrained, tests), tests, curve=False),
        _summary("log", _run_log(tests), tests, curve=True),
        _summary("template", _run_templates(tests, species), tests, curve=True),
    ]
    topaz = os.environ.get("CRYOWARP_TOPAZ")
    if topaz and shutil.which(topaz):
        try:
            rows.append(_summary("topaz", _run_topaz(topaz, tests), tests, curve=True))
        except (subprocess.CalledProcessError, OSError, ValueError, IndexError) as error:
            rows.append({"method": "topaz", "available": False, "reason": repr(error)})
    else:
        rows.append(
            {
                "method": "topaz",
                "available": False,
                "reason": "not available: set $CRYOWARP_TOPAZ to a topaz executable (it did "
                "not install as a CPU build here: its torchvision wheel needs CUDA)",
            }
        )
    log = next(r for r in rows if r["method"] == "log")
    for row in rows:
        if row.get("available"):
            for key in ("default", "best"):
                base = log[key]["f1"]
                row[key]["f1_ratio_to_log"] = row[key]["f1"] / base if base else None
    return {
        "suite": "picking",
        "quick": quick,
        "torch_threads": torch.get_num_threads(),
        "simulation": {
            "pixel_size_a": SIM_PIXEL_A,
            "shape_px": [2 * n for n in FIELD_PX_AT_8A],
            "n_test": n_test,
            "n_retrain": len(retrain),
            "seconds_simulating": seconds_data,
            "species": [
                {
                    "name": s.name,
                    "diameter_a": s.diameter_a,
                    "mass_kda": s.mass_kda,
                    "symmetry": s.species.symmetry,
                }
                for s in species
            ],
            "test_micrographs": [m.source for m in tests],
            "n_true": sum(len(m.positions_a) for m in tests),
        },
        "model": model_info | {"name": model.name},
        "retraining": {
            "seconds": seconds_retraining,
            "accuracies": {
                k: (v if math.isfinite(v) else None) for k, v in report.accuracies().items()
            },
            "epochs": len(report.epochs),
        },
        "methods": rows,
        "real_micrograph": _real(model),
    }


def _f(value: Any, spec: str) -> str:
    return "–" if value is None else format(value, spec)


def markdown(report: dict[str, Any]) -> str:
    """The suite's section of benchmarks/results/README.md."""
    sim, model = report["simulation"], report["model"]
    quick = " (quick run)" if report["quick"] else ""
    species = ", ".join(
        f"{s['name']} ({s['diameter_a']:.0f} Å, {s['mass_kda']:.0f} kDa)" for s in sim["species"]
    )
    lines = [
        "## picking",
        "",
        f"**Held-out simulated micrographs**{quick}: {sim['n_test']} fields of "
        f"{sim['shape_px'][1]}×{sim['shape_px'][0]} px at {sim['pixel_size_a']} Å/px "
        f"({sim['n_true']} particles not on artefacts) of species the generic model never saw: "
        f"{species}. Model: {model['source']}"
        + (" — **a stand-in, not the shipped model**" if model.get("stand_in") else "")
        + f". Retrained on {sim['n_retrain']} micrographs in "
        f"{report['retraining']['seconds']:.0f} s. A pick matches within 20 % of the diameter "
        "(one-to-one). Default = each method's default threshold; best = the best single "
        "threshold over all micrographs.",
        "",
        "| method | precision | recall | F1 | F1 ratio to LoG | best F1 (threshold) "
        "| best F1 ratio to LoG | F1 per species | mask IoU | s / micrograph |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in report["methods"]:
        if not r.get("available"):
            lines.append(f"| {r['method']} | {r.get('reason', 'not available')} |||||||||")
            continue
        d, b = r["default"], r["best"]
        per_species = " / ".join(f"{v:.2f}" for v in d["f1_per_species"].values())
        mask = r.get("mask")
        iou = f"{mask['iou_pooled']:.2f}" if mask else "–"
        setup = f" (+{r['setup_seconds']:.1f} setup)" if r["setup_seconds"] else ""
        lines.append(
            f"| {r['method']} | {d['precision']:.3f} | {d['recall']:.3f} | {d['f1']:.3f} | "
            f"{_f(d.get('f1_ratio_to_log'), '.2f')} | {b['f1']:.3f} ({b['threshold']:.3g}) | "
            f"{_f(b.get('f1_ratio_to_log'), '.2f')} | {per_species} | {iou} | "
            f"{r['seconds_per_micrograph']:.2f}{setup} |"
        )
    acc = report["retraining"]["accuracies"]
    lines += [
        "",
        "Retraining accuracies (mean pixel F1 of particle and artefact): old model on old "
        f"data {_f(acc['old_on_old'], '.3f')}, on new {_f(acc['old_on_new'], '.3f')}; new "
        f"model on old {_f(acc['new_on_old'], '.3f')}, on new {_f(acc['new_on_new'], '.3f')}.",
    ]
    real = report["real_micrograph"]
    if real.get("available"):
        lines += [
            "",
            f"**Real micrograph** (MicrographCleaner test data, {real['shape_px'][1]}×"
            f"{real['shape_px'][0]} px, pixel size assumed {real['assumed_pixel_size_a']} Å, "
            f"diameter {real['assumed_diameter_a']:.0f} Å): {real['n_picks']} picks in "
            f"{real['seconds']:.2f} s; artefact-mask IoU with MicrographCleaner's mask (> 0.5) "
            f"{real['mask_iou']:.2f} (ours covers {real['fraction_of_theirs_covered']:.0%} of "
            f"theirs; {real['fraction_of_ours_in_theirs']:.0%} of ours lies in theirs; masked "
            f"{real['our_masked_fraction']:.0%} vs {real['their_masked_fraction']:.0%}); we "
            f"pick {real['fraction_of_their_picks_we_pick']:.0%} of their "
            f"{real['n_their_picks']} RELION autopicks within 20 % of the diameter.",
        ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(markdown(run(quick=True)))
