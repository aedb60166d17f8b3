"""A synthetic processed project for the dashboard's tests and benchmark (issue 10).

:func:`write_synthetic_project` writes a project folder (docs/pipeline.md, "Project folder")
that looks like a finished session of ``n_items`` movies, without running any step:

* ``cryowarp.json`` — default settings, raw pattern ``raw/*.mrc``, ``pixel_size_a``, 40 frames
  of 1 e⁻/Å², picking diameter :data:`PICKING_DIAMETER_A`;
* ``raw/<name>.mrc`` — small fake raw files (not MRC) whose modification times increase in
  acquisition order, one every :data:`INTERVAL_S` s from :data:`START_TIME_S`; the records hold
  their real identity (size, SHA-256), so discovery knows them;
* ``items/<name>.json`` — item records with the real settings hashes
  (:func:`~cryowarp.pipeline.steps.settings_hashes`), so that done items count as done:
  motion, CTF, picking and display done with plausible figures (mean defocus 0.5–3 µm,
  astigmatism, CTF resolution 3–10 Å, early motion, picks, masked fraction), about 3 % failed
  CTF fits, a few quarantined movies and optionally the newest ``n_pending`` items waiting for
  their CTF;
* every output the records list, with the recorded sizes. Per item, the motion metadata
  (``motion/<name>.json``: a global track whose summary is the one in the record, no local
  motion), the CTF estimate (``ctf/<name>_ctf.json``, with a 5 × 5 defocus grid), its 1-D
  spectrum curves and the picking metadata are written; the images and maps are the same for
  every item (hard links to one set made once under ``.cryowarp/synthetic/``), except the
  picking maps, one of :data:`N_PICK_VARIANTS` whose picks at the project's threshold are the
  item's ``n_picks``;
* ``logs/events.jsonl`` — the events a watch-mode run writes (discovery, file complete, each
  step, item done with its latency).

Everything is decided by ``seed``: two calls give identical records and files (apart from the
folder's own path in them). 5,000 items take about 30 s on two busy cores and
250 MB on disk (many small files). Conventions: docs/conventions.md.

Example::

    from benchmarks.dashboard_project import write_synthetic_project
    project = write_synthetic_project(tmp_path / "proj", n_items=30, seed=1)
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmarks._dashboard_templates import N_FRAMES, N_PICK_VARIANTS, Templates
from cryowarp.pipeline.items import (
    ItemRecord,
    OutputFile,
    RawIdentity,
    Scalar,
    StepRecord,
    StepStatus,
    write_item_record,
)
from cryowarp.pipeline.project import Project, init_project
from cryowarp.pipeline.settings import ProjectSettings
from cryowarp.pipeline.steps import ctf_output_paths, settings_hashes
from cryowarp.preprocess.ctf.spectrum_files import SPECTRUM_FORMAT

__all__ = [
    "INTERVAL_S",
    "N_FRAMES",
    "N_PICK_VARIANTS",
    "PICKING_DIAMETER_A",
    "START_TIME_S",
    "item_names",
    "write_synthetic_project",
]

START_TIME_S = 1_763_790_000.0
"""Acquisition time (Unix seconds) of the first movie."""
INTERVAL_S = 36.0
"""Seconds between two movies (100 per hour)."""
DOSE_PER_FRAME_E_PER_A2 = 1.0
PICKING_DIAMETER_A = 80.0
_FOLDERS = ("raw", "inputs", "average/odd", "average/even", "motion", "ctf", "picking", "display")
_STEPS_RUN = {
    "done": ("motion", "ctf", "picking", "display"),
    "failed": ("motion", "ctf"),  # the CTF fit fails
    "quarantined": ("motion",),  # the movie cannot be read
    "pending": ("motion",),  # the CTF is still to run
}
_STEP_SECONDS = {"motion": 9.0, "ctf": 2.5, "picking": 0.6, "display": 2.2}  # typical
_FAILED_REASON = (
    "the fitted CTF does not match the Thon rings (score {score:.2f}, rings not resolved at "
    "the start of the fit range)"
)


def item_names(n_items: int) -> list[str]:
    """The item names of a synthetic project, in acquisition order (``movie_000``, …; at
    least three digits)."""
    width = max(3, len(str(max(n_items - 1, 0))))
    return [f"movie_{i:0{width}d}" for i in range(n_items)]


def write_synthetic_project(
    folder: str | os.PathLike[str],
    *,
    n_items: int,
    seed: int = 0,
    pixel_size_a: float = 1.0,
    n_failed: int | None = None,
    n_quarantined: int | None = None,
    n_pending: int = 0,
    image_size_px: int = 1024,
) -> Project:
    """Write a synthetic processed project of ``n_items`` movies into ``folder`` (module
    docstring) and return it.

    Parameters
    ----------
    folder:
        Created; must not hold a project yet.
    n_items:
        Movies (items), named by :func:`item_names`.
    seed:
        Decides every figure and which items fail.
    pixel_size_a:
        Pixel size of the movies and averages in Å.
    n_failed:
        Items whose CTF fit failed (default: 3 % of ``n_items``, rounded).
    n_quarantined:
        Items whose movie was quarantined (default: 1 per 1,000 items plus 1 from 10 items).
    n_pending:
        The newest items have only their motion done (the CTF is still to run).
    image_size_px:
        Side of the square averages in pixels (the field is ``image_size_px · pixel_size_a``
        Å wide).
    """
    n_failed = round(0.03 * n_items) if n_failed is None else n_failed
    n_quarantined = (
        (n_items // 1000 + 1 if n_items >= 10 else 0) if n_quarantined is None else n_quarantined
    )
    if min(n_items, n_failed, n_quarantined, n_pending) < 0:
        raise ValueError("item counts must be ≥ 0")
    if n_failed + n_quarantined + n_pending > n_items:
        raise ValueError(
            f"{n_failed} failed + {n_quarantined} quarantined + {n_pending} pending items are "
            f"more than the {n_items} items"
        )
    root = Path(os.path.abspath(folder))
    settings = ProjectSettings.model_validate(
        {
            "data": {
                "pattern": "raw/*.mrc",
                "movie": {
                    "pixel_size_a": pixel_size_a,
                    "dose_per_frame_e_per_a2": DOSE_PER_FRAME_E_PER_A2,
                },
            },
            "picking": {"diameter_a": PICKING_DIAMETER_A},
        }
    )
    project = init_project(root, settings)
    for sub in _FOLDERS:
        (root / sub).mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    names = item_names(n_items)
    states = _states(rng, n_items, n_failed, n_quarantined, n_pending)
    figures = _figures(rng, n_items, pixel_size_a)
    template = Templates(project, rng, image_size_px=image_size_px, pixel_size_a=pixel_size_a)
    variants = rng.integers(0, len(template.picking), n_items)
    hashes = settings_hashes(project)
    writer = _ItemWriter(project, template, hashes, seed, figures)
    events = [_event(START_TIME_S - 10.0, "run_started", workers=1, cluster=None, watch=True)]
    for index, name in enumerate(names):
        events += writer.write(index, name, states[index], figures[index], int(variants[index]))
    n_done = states.count("done")
    events.append(_event(events[-1]["time"] + 1.0, "run_finished", n_done=n_done,
                         n_failed=n_items - n_done))  # fmt: skip
    lines = "".join(json.dumps(e, ensure_ascii=False) + "\n" for e in events)
    project.events_path.write_text(lines, encoding="utf-8")
    return project


# -- what happens to each item -------------------------------------------------------------


def _states(
    rng: np.random.Generator, n: int, n_failed: int, n_quarantined: int, n_pending: int
) -> list[str]:
    states = ["done"] * n
    for i in range(n - n_pending, n):
        states[i] = "pending"
    chosen = rng.permutation(n - n_pending)[: n_failed + n_quarantined]
    for i in chosen[:n_failed]:
        states[int(i)] = "failed"
    for i in chosen[n_failed:]:
        states[int(i)] = "quarantined"
    return states


def _figures(rng: np.random.Generator, n: int, pixel_size_a: float) -> list[dict[str, Any]]:
    """Per item: CTF figures and the global motion track (Å, (x, y) per frame)."""
    defocus = rng.uniform(0.5, 3.0, n)
    delta = np.minimum(rng.exponential(0.04, n), 0.4)
    angle = rng.uniform(0.0, 180.0, n)
    nyquist_a = 2.0 * pixel_size_a
    resolution = np.clip(3.0 + rng.gamma(2.0, 0.9, n), max(3.0, nyquist_a), 10.0)
    score = np.clip(1.02 - 0.025 * resolution + rng.normal(0, 0.01, n), 0.3, 0.999)
    tilt = rng.normal(0.0, 0.05, (n, 2))
    early = rng.lognormal(math.log(2.0), 0.45, n)  # Å per frame in the first steps
    drift = rng.uniform(0.05, 0.5, n)
    heading = rng.uniform(0, 2 * math.pi, n)
    turn = rng.normal(0, 0.08, (n, N_FRAMES - 1))
    frames = np.arange(N_FRAMES - 1)
    jitter = rng.uniform(-0.2, 0.2, n) * INTERVAL_S  # acquisition times stay increasing
    speed = rng.lognormal(0.0, 0.1, n)
    out = []
    for i in range(n):
        lengths = early[i] * np.exp(-frames / 6.0) + drift[i]
        angles = heading[i] + np.cumsum(turn[i])
        steps = np.stack([lengths * np.cos(angles), lengths * np.sin(angles)], axis=-1)
        track = np.concatenate([np.zeros((1, 2)), np.cumsum(steps, axis=0)])
        track = np.round(track * 1024) / 1024  # exact in float32, as the model stores it
        out.append(
            {
                "defocus_u_um": float(defocus[i] + delta[i]),
                "defocus_v_um": float(defocus[i] - delta[i]),
                "astigmatism_angle_deg": float(angle[i]),
                "resolution_a": float(resolution[i]),
                "fit_score": float(score[i]),
                "tilt_um": (float(tilt[i, 0]), float(tilt[i, 1])),
                "track_a": track,
                "failed_score": float(rng.uniform(0.02, 0.14)),
                "jitter_s": float(jitter[i]),
                "speed": float(speed[i]),
                "spectrum_noise": rng.normal(0.0, 0.04, 1024),
            }
        )
    return out


def _motion_summary(track: np.ndarray) -> dict[str, float | int]:  # track: (n, 2)
    """:class:`~cryowarp.preprocess.motion.summary.MotionSummary` of a global track without
    local motion (a constant dose: the first ⌊n/5⌋ steps are early)."""
    steps = np.linalg.norm(np.diff(track, axis=0), axis=-1)
    n_early = max(1, len(track) // 5)
    return {
        "n_frames": len(track),
        "early_steps": n_early,
        "early_motion_a_per_frame": float(steps[:n_early].mean()),
        "total_drift_a": float(steps.sum()),
        "net_drift_a": float(np.linalg.norm(track[-1] - track[0])),
        "max_local_motion_a": 0.0,
        "rms_local_motion_a": 0.0,
    }


# -- one item -------------------------------------------------------------------------------


class _ItemWriter:
    """Writes one item's raw file, outputs and record; returns its events."""

    def __init__(
        self,
        project: Project,
        template: Templates,
        hashes: dict[str, str],
        seed: int,
        figures: list[dict[str, Any]],
    ) -> None:
        from cryowarp.core.ctf import ctf_1d
        from cryowarp.core.ctf_params import CTFParams

        self.project, self.t, self.hashes, self.seed = project, template, hashes, seed
        self.root = str(project.folder)
        settings = project.settings
        self.input_settings = settings.data.movie.model_dump(mode="json")
        self.motion_settings = settings.motion.model_dump(mode="json")
        field = template.field_a
        self.patch_positions = [[field * x / 3, field * y / 3] for y in (1, 2) for x in (1, 2)]
        self.sizes: dict[Path, int] = {}
        # 1-D spectrum curves of every item at its mean defocus (one batched evaluation)
        optics = settings.optics
        frequencies = torch.from_numpy(template.spectrum_frequencies)
        mean = torch.tensor([0.5 * (f["defocus_u_um"] + f["defocus_v_um"]) for f in figures])
        params = CTFParams.create(
            pixel_size_a=template.pixel_size_a,
            defocus_um=mean.double(),
            voltage_kv=optics.voltage_kv,
            cs_mm=optics.cs_mm,
            amplitude_contrast=optics.amplitude_contrast,
        )
        self.simulated = (
            ctf_1d(params, frequencies).abs() * torch.exp(-40 * frequencies**2)
        ).numpy()
        self.frequencies = np.round(template.spectrum_frequencies, 6).tolist()

    def _link(self, source: Path, relative: str) -> OutputFile:
        size = self.sizes.get(source)
        if size is None:
            size = self.sizes[source] = source.stat().st_size
        os.link(source, os.path.join(self.root, relative))
        return OutputFile(path=relative, size_bytes=size)

    def _write(self, relative: str, text: str) -> OutputFile:
        data = text.encode("utf-8")
        with open(os.path.join(self.root, relative), "wb") as handle:
            handle.write(data)
        return OutputFile(path=relative, size_bytes=len(data))

    def write(
        self, index: int, name: str, state: str, fig: dict[str, Any], variant: int
    ) -> list[dict[str, Any]]:
        from cryowarp.errors import TruncatedFileError

        root = self.project.folder
        acquired = START_TIME_S + index * INTERVAL_S + fig["jitter_s"]
        raw = root / "raw" / f"{name}.mrc"
        content = f"cryowarp synthetic movie {name}, seed {self.seed}\n".encode()
        content += hashlib.sha256(content).digest() * 4
        raw.write_bytes(content)
        mtime_ns = round(acquired * 1e6) * 1000
        os.utime(raw, ns=(mtime_ns, mtime_ns))
        os.symlink(raw, self.project.input_link(name, ".mrc"))
        complete = acquired + 2.0
        record = ItemRecord(
            name=name,
            raw_path=str(raw),
            raw_mtime_ns=mtime_ns,
            identity=RawIdentity(
                size_bytes=len(content), head_sha256=hashlib.sha256(content).hexdigest()
            ),
            first_seen_at=acquired + 0.5,
            complete_at=complete,
        )
        events: list[dict[str, Any]] = [
            _event(acquired + 0.5, "item_discovered", item=name, path=str(raw)),
            _event(
                complete,
                "file_complete",
                item=name,
                path=str(raw),
                size_bytes=len(content),
                complete_at=complete,
            ),
        ]
        clock = complete + 0.3
        for step in _STEPS_RUN[state]:
            seconds = _STEP_SECONDS[step] * fig["speed"]
            status: StepStatus = "done"
            reason: str | None = None
            outputs: dict[str, OutputFile] = {}
            results: dict[str, Scalar] = {}
            if step == "motion" and state == "quarantined":
                status = "quarantined"
                reason = str(
                    TruncatedFileError(
                        raw,
                        f"{len(content)} bytes, the movie needs {2 * len(content)}",
                        "copy the movie again",
                    )
                )
            elif step == "motion":
                outputs, results = self._motion(name, fig)
            elif step == "ctf":
                outputs, results, reason = self._ctf(index, name, fig, failed=state == "failed")
                status = "failed" if reason else "done"
            elif step == "picking":
                outputs, results = self._picking(name, variant)
            else:
                outputs = {k: self._link(self.t.display[k], p) for k, p in _display_paths(name)}
                results = {
                    "denoiser_model": self.project.settings.display.denoiser_model,
                    "display_pixel_size_a": self.t.display_pixel_size_a,
                }
            events.append(_event(clock, "step_started", item=name, step=step, worker="1:cpu"))
            record = record.with_step(
                step,
                StepRecord(
                    status=status,
                    settings_hash=self.hashes[step],
                    outputs=outputs,
                    results=results,
                    reason=reason,
                    started_at=clock,
                    finished_at=clock + seconds,
                    seconds=seconds,
                ),
            )
            clock += seconds
            if status == "done":
                events.append(
                    _event(clock, "step_finished", item=name, step=step, duration_s=seconds)
                )
            elif status == "quarantined":
                events.append(
                    _event(clock, "item_quarantined", item=name, step=step, reason=reason)
                )
            else:
                events.append(
                    _event(clock, "step_failed", item=name, step=step, error=reason, status=status)
                )
        if state == "done":
            events.append(_event(clock, "item_done", item=name, latency_s=clock - complete))
        write_item_record(self.project.record_path(name), record)
        return events

    def _motion(self, name: str, fig: dict[str, Any]) -> tuple[dict[str, OutputFile], dict]:
        from cryowarp.preprocess.motion import FrameMotion, motion_output_paths

        t = self.t
        track = fig["track_a"]
        summary = _motion_summary(track)
        paths = motion_output_paths(Path("."), name, aligned_stack=False).relative_to(Path("."))
        motion = FrameMotion(
            torch.from_numpy(np.ascontiguousarray(track.T)),
            torch.zeros(2, 2, 2, 2),
            (t.field_a, t.field_a),
            N_FRAMES,
        )
        shape = list(t.shape_px)
        document = {
            "schema_version": 1,
            "generator": "cryowarp benchmarks.dashboard_project (synthetic)",
            "movie": str(self.project.input_link(name, ".mrc")),
            "input_settings": self.input_settings,
            "settings": self.motion_settings,
            "n_frames": N_FRAMES,
            "frame_shape_px": shape,
            "output_shape_px": shape,
            "field_size_a": [t.field_a, t.field_a],
            "raw_pixel_size_a": t.pixel_size_a,
            "alignment_pixel_size_a": t.pixel_size_a,
            "output_pixel_size_a": t.pixel_size_a,
            "dose": {
                "dose_per_frame_e_per_a2": DOSE_PER_FRAME_E_PER_A2,
                "pre_exposure_e_per_a2": 0.0,
                "accumulated_dose_e_per_a2": [
                    (i + 0.5) * DOSE_PER_FRAME_E_PER_A2 for i in range(N_FRAMES)
                ],
                "dose_weighted": True,
            },
            "motion": motion.to_dict(),
            "global_track_a": track.tolist(),
            "patch_tracks": {
                "positions_a": self.patch_positions,
                "patch_size_a": 2 * t.field_a / 3,
                "shifts_a": [track.tolist()] * len(self.patch_positions),
            },
            "summary": summary,
            "fit": {
                "final_cost": None,
                "initial_track_a": track.tolist(),
                "stages": [],
                "deformation_groups": N_FRAMES,
                "relion_local_model_max_error_px": 0.0,
            },
            "seconds": {
                "load": 0.5,
                "alignment_frames": 0.3,
                "fit": 6.0,
                "average": 0.8,
                "write": 0.4,
            },
            "files": paths,
        }
        sources = {
            "average": t.average,
            "odd": t.average,
            "even": t.average,
            "star": t.motion_star,
            "png": t.motion_png,
        }
        outputs: dict[str, OutputFile] = {}
        for key, relative in paths.items():
            if relative is None:
                continue
            if key == "metadata":
                text = json.dumps(document, allow_nan=False) + "\n"
                outputs[key] = self._write(relative, text)
            else:
                outputs[key] = self._link(sources[key], relative)
        outputs["metadata"] = outputs.pop("metadata")  # written last, as the real step
        results = {
            **summary,
            "raw_pixel_size_a": t.pixel_size_a,
            "output_pixel_size_a": t.pixel_size_a,
        }
        return outputs, results

    def _ctf(
        self, index: int, name: str, fig: dict[str, Any], *, failed: bool
    ) -> tuple[dict[str, OutputFile], dict, str | None]:
        from cryowarp.preprocess.ctf.result import CtfResult

        t = self.t
        optics = self.project.settings.optics
        u, v = fig["defocus_u_um"], fig["defocus_v_um"]
        mean, (tx, ty) = 0.5 * (u + v), fig["tilt_um"]
        grid = tuple(
            tuple(mean + tx * (x / 4 - 0.5) + ty * (y / 4 - 0.5) for x in range(5))
            for y in range(5)
        )
        score = fig["failed_score"] if failed else fig["fit_score"]
        reason = _FAILED_REASON.format(score=score) if failed else None
        result = CtfResult(
            defocus_u_um=u,
            defocus_v_um=v,
            astigmatism_angle_deg=fig["astigmatism_angle_deg"],
            phase_shift_deg=0.0,
            defocus_grid_um=grid,
            image_size_xy_a=(t.field_a, t.field_a),
            resolution_a=math.nan if failed else fig["resolution_a"],
            fit_score=score,
            pixel_size_a=t.pixel_size_a,
            voltage_kv=optics.voltage_kv,
            cs_mm=optics.cs_mm,
            amplitude_contrast=optics.amplitude_contrast,
            failed=failed,
            failure_reason=reason,
        )
        outputs: dict[str, OutputFile] = {}
        for key, relative in ctf_output_paths(name).items():
            if key == "json":
                text = json.dumps(result.to_dict()) + "\n"
                outputs[key] = self._write(relative, text)
            elif failed:
                continue
            elif key == "spectrum_json":
                outputs[key] = self._write(relative, self._spectrum(index, fig))
            elif key in ("png", "spectrum_png"):
                outputs[key] = self._link(t.ctf_png if key == "png" else t.spectrum_png, relative)
            else:
                raise ValueError(f"the synthetic project cannot make the CTF output {key!r}")
        results = {
            "defocus_um": mean,
            "defocus_u_um": u,
            "defocus_v_um": v,
            "astigmatism_angle_deg": fig["astigmatism_angle_deg"],
            "phase_shift_deg": 0.0,
            "resolution_a": None if failed else fig["resolution_a"],
            "fit_score": score,
        }
        return outputs, results, reason

    def _spectrum(self, index: int, fig: dict[str, Any]) -> str:
        """The 1-D curves (:mod:`cryowarp.preprocess.ctf.spectrum_files` format)."""
        simulated = self.simulated[index]
        frequencies = self.t.spectrum_frequencies
        spectrum = simulated + fig["spectrum_noise"][: len(simulated)]
        correlation = 1.0 / (1.0 + np.exp((frequencies - 1 / fig["resolution_a"]) * 200))
        document = {
            "format": SPECTRUM_FORMAT,
            "format_version": 1,
            "frequencies_per_a": self.frequencies,
            "spectrum": np.round(spectrum, 6).tolist(),
            "simulated": np.round(simulated, 6).tolist(),
            "correlation": np.round(correlation, 6).tolist(),
            "fit_range_per_a": [1 / 30.0, 1 / max(fig["resolution_a"], 4.0)],
            "resolution_a": fig["resolution_a"],
        }
        return json.dumps(document) + "\n"

    def _picking(self, name: str, variant: int) -> tuple[dict[str, OutputFile], dict]:
        from cryowarp.pipeline.picking_step import picking_output_paths

        chosen = self.t.picking[variant]
        outputs: dict[str, OutputFile] = {}
        for key, relative in picking_output_paths(name).items():
            if key == "metadata":
                files = {k: Path(p).name for k, p in picking_output_paths(name).items()}
                metadata = {**chosen["metadata"], "micrograph": name, "files": files}
                outputs[key] = self._write(relative, json.dumps(metadata) + "\n")
            else:
                outputs[key] = self._link(chosen[key], relative)
        results = {
            "n_picks": chosen["n_picks"],
            "masked_fraction": chosen["masked_fraction"],
            "picking_model": self.project.settings.picking.model,
        }
        return outputs, results


def _display_paths(name: str) -> list[tuple[str, str]]:
    from cryowarp.preprocess.denoise.display import display_file_names

    return list(display_file_names(name, denoised=True).items())


def _event(time_s: float, kind: str, **fields: Any) -> dict[str, Any]:
    return {"time": time_s, "pid": 1, "kind": kind, **fields}
