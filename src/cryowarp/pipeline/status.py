"""Where a project stands: per-step counts, failures with reasons, throughput, latency and
the quality distribution (docs/pipeline.md, "Status").

Everything is read from the item records and the event log, so it can be asked at any time,
also while a run is going on, and by the dashboard.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from cryowarp.pipeline.discovery import read_records
from cryowarp.pipeline.events import (
    EventLog,
    latency_summary,
    latest_productive_run,
    throughput_per_hour,
)
from cryowarp.pipeline.items import ItemRecord
from cryowarp.pipeline.project import Project
from cryowarp.pipeline.runner import item_state
from cryowarp.pipeline.steps import STEP_STATES, STEPS, settings_hashes, step_states

__all__ = ["QUALITY_METRICS", "Failure", "ProjectStatus", "format_status", "project_status"]

QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95)

QUALITY_METRICS: dict[str, tuple[str, str]] = {
    "defocus_um": ("ctf", "defocus_um"),
    "ctf_resolution_a": ("ctf", "resolution_a"),
    "total_motion_a": ("motion", "total_drift_a"),
    "early_motion_a_per_frame": ("motion", "early_motion_a_per_frame"),
    "particles": ("picking", "n_picks"),
    "masked_fraction": ("picking", "masked_fraction"),
}
"""Name of each quality figure → (step, key of the step's results)."""


@dataclass(frozen=True)
class Failure:
    """An item that is not done, the step where it stopped, and why."""

    item: str
    step: str
    status: str
    reason: str


@dataclass(frozen=True)
class ProjectStatus:
    """What :func:`project_status` found.

    Attributes
    ----------
    n_items:
        Items known.
    items:
        Items per state (``done``, ``failed``, ``quarantined``, ``error``, ``pending``).
    steps:
        Per step, items per state; ``pending``: to be (re)done under the current settings;
        ``blocked``: an earlier step failed or was quarantined.
    failures:
        Every item that failed, was quarantined or hit an error, with its reason.
    throughput_movies_per_hour:
        Items finished per hour in the latest run that finished any (0 if none).
    latency_s:
        ``count``, ``median``, ``p90``, ``max`` of the time (s) from a movie being complete
        to its item being done (watch mode).
    seconds_per_step:
        Median wall time (s) of each step over the items where it is done.
    quality:
        Per metric (:data:`QUALITY_METRICS`), ``count`` and the quantiles ``p05`` … ``p95``
        over the items where the step is done.
    """

    n_items: int
    items: dict[str, int]
    steps: dict[str, dict[str, int]]
    failures: tuple[Failure, ...]
    throughput_movies_per_hour: float
    latency_s: dict[str, float]
    seconds_per_step: dict[str, float]
    quality: dict[str, dict[str, float]]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (NaN → ``None``)."""
        document: dict[str, Any] = _json_ready(asdict(self))
        return document


def project_status(project: Project) -> ProjectStatus:
    """The status of ``project`` under its current settings."""
    records = list(read_records(project).values())
    hashes = settings_hashes(project)
    items = dict.fromkeys(("done", "failed", "quarantined", "error", "pending"), 0)
    steps: dict[str, dict[str, int]] = {s.name: dict.fromkeys(STEP_STATES, 0) for s in STEPS}
    failures: list[Failure] = []
    for record in records:
        state, reason = item_state(record, project)
        items[state] = items.get(state, 0) + 1
        per_step = step_states(record, hashes, project.folder)
        for step_name, step_state in per_step.items():
            steps[step_name][step_state] += 1
        if state in ("failed", "quarantined", "error"):
            where = next(n for n, s in per_step.items() if s == state)
            failures.append(Failure(record.name, where, state, reason or ""))
    events = EventLog.read(project.events_path)
    return ProjectStatus(
        n_items=len(records),
        items=items,
        steps=steps,
        failures=tuple(failures),
        throughput_movies_per_hour=throughput_per_hour(latest_productive_run(events)),
        latency_s=latency_summary(events),
        seconds_per_step=_seconds_per_step(records),
        quality=_quality(records),
    )


def _seconds_per_step(records: Sequence[ItemRecord]) -> dict[str, float]:
    out: dict[str, float] = {}
    for step in STEPS:
        values = [
            r.steps[step.name].seconds
            for r in records
            if step.name in r.steps and r.steps[step.name].status == "done"
        ]
        out[step.name] = float(np.median(values)) if values else math.nan
    return out


def _quality(records: Sequence[ItemRecord]) -> dict[str, dict[str, float]]:
    quality: dict[str, dict[str, float]] = {}
    for metric, (step_name, key) in QUALITY_METRICS.items():
        values = []
        for record in records:
            step = record.steps.get(step_name)
            value = step.results.get(key) if step is not None and step.status == "done" else None
            if _is_number(value):
                values.append(float(value))  # type: ignore[arg-type]
        summary = {"count": float(len(values))}
        for q in QUANTILES:
            summary[f"p{round(q * 100):02d}"] = (
                float(np.quantile(values, q)) if values else math.nan
            )
        quality[metric] = summary
    return quality


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _json_ready(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): _json_ready(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_ready(v) for v in value]
    return value


def format_status(status: ProjectStatus) -> str:
    """A plain-text report of ``status`` (what ``cryowarp status`` prints)."""
    lines = [f"{status.n_items} items: " + ", ".join(f"{n} {s}" for s, n in status.items.items())]
    width = max([len(s.name) for s in STEPS] + [4])
    lines.append("step".ljust(width) + "".join(f"{s:>13}" for s in STEP_STATES) + "   median s")
    for step_name, counts in status.steps.items():
        seconds = status.seconds_per_step.get(step_name, math.nan)
        lines.append(
            step_name.ljust(width)
            + "".join(f"{counts[s]:>13}" for s in STEP_STATES)
            + f"   {seconds:9.2f}"
        )
    lines.append(f"throughput: {status.throughput_movies_per_hour:.1f} movies/hour (latest run)")
    latency = status.latency_s
    if latency.get("count", 0) > 0:
        lines.append(
            f"latency (complete → done): median {latency['median']:.1f} s, "
            f"p90 {latency['p90']:.1f} s, max {latency['max']:.1f} s over "
            f"{int(latency['count'])} movies"
        )
    lines.append("quality (p05 / p25 / median / p75 / p95):")
    for metric, summary in status.quality.items():
        if summary["count"] == 0:
            continue
        quantiles = " / ".join(f"{summary[f'p{round(q * 100):02d}']:.3g}" for q in QUANTILES)
        lines.append(f"  {metric}: {quantiles}  ({int(summary['count'])} items)")
    if status.failures:
        lines.append("failures:")
        lines.extend(f"  {f.item} [{f.step}, {f.status}]: {f.reason}" for f in status.failures)
    return "\n".join(lines)
