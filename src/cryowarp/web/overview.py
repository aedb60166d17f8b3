"""The overview document of the dashboard (docs/dashboard_api.md, ``GET /api/overview``):
per-item figures as columns, filter decisions, counts, throughput and latency."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from cryowarp.pipeline.events import latency_summary, latest_productive_run, throughput_per_hour
from cryowarp.preprocess.export.filters import (
    ExportFilters,
    FilterDecision,
    decide_filters,
    item_name,
)
from cryowarp.web.project_index import IndexSnapshot

__all__ = ["METRICS", "RANGE_KEYS", "Metric", "decisions", "overview_document", "selection_of"]


@dataclass(frozen=True)
class Metric:
    """One overview plot: the figure's key, its label and unit, and the filter bounds."""

    key: str
    label: str
    unit: str
    min_key: str | None
    max_key: str | None


METRICS = (
    Metric("defocus_um", "Defocus", "µm", "defocus_min_um", "defocus_max_um"),
    Metric("astigmatism_um", "Astigmatism", "µm", None, "astigmatism_max_um"),
    Metric("ctf_resolution_a", "CTF resolution", "Å", None, "ctf_resolution_max_a"),
    Metric(
        "early_motion_a_per_frame", "Early motion", "Å/frame", None, "early_motion_max_a_per_frame"
    ),
    Metric("particles", "Particles", "", "particles_min", "particles_max"),
    Metric("masked_fraction", "Masked fraction", "", None, "masked_fraction_max"),
)
"""The overview plots, in order; each figure is an attribute of
:class:`~cryowarp.preprocess.export.filters.FilterValues`."""

RANGE_KEYS = (
    "defocus_min_um",
    "defocus_max_um",
    "astigmatism_max_um",
    "ctf_resolution_max_a",
    "total_drift_max_a",
    "early_motion_max_a_per_frame",
    "particles_min",
    "particles_max",
    "masked_fraction_max",
)
"""The filter keys the dashboard may set (``PUT /api/filters``)."""


def selection_of(name: str, filters: ExportFilters) -> str:
    """``exclude`` (in the exclude list), ``include`` (forced in) or ``auto``."""
    if name in {item_name(n) for n in filters.exclude}:
        return "exclude"
    if name in {item_name(n) for n in filters.force_include}:
        return "include"
    return "auto"


def decisions(snapshot: IndexSnapshot) -> list[FilterDecision | None]:
    """The export decision of every row (``None`` for items that are not done: not exported)."""
    filters = snapshot.project.settings.filters
    done = [row for row in snapshot.rows if row.state == "done"]
    decided = iter(decide_filters([row.figures for row in done], filters))
    return [next(decided) if row.state == "done" else None for row in snapshot.rows]


def _rounded(value: float | int | None) -> float | int | None:
    if value is None or isinstance(value, int):
        return value
    if not math.isfinite(value):
        return None
    return float(f"{value:.5g}")


def _last_export(events: Sequence[Mapping[str, Any]]) -> dict[str, Any] | None:
    for event in reversed(events):
        if event.get("kind") == "export_finished":
            return {
                "time": event.get("time"),
                "what": event.get("what"),
                "out": event.get("out"),
                "n_micrographs": event.get("n_micrographs"),
                "n_particles": event.get("n_particles"),
            }
    return None


def overview_document(snapshot: IndexSnapshot) -> dict[str, Any]:
    """The overview of ``snapshot`` as a JSON-ready document."""
    settings = snapshot.project.settings
    filters = settings.filters
    rows = snapshot.rows
    decided = decisions(snapshot)
    excluded = {item_name(n) for n in filters.exclude}
    forced = {item_name(n) for n in filters.force_include}
    columns: dict[str, list[Any]] = {
        "name": [row.name for row in rows],
        "acquired_at": [round(row.acquired_at, 3) for row in rows],
        "state": [row.state for row in rows],
    }
    for metric in METRICS:
        columns[metric.key] = [_rounded(getattr(row.figures, metric.key)) for row in rows]
    columns["accepted"] = [d is not None and d.accepted for d in decided]
    columns["selection"] = [
        "exclude" if row.name in excluded else "include" if row.name in forced else "auto"
        for row in rows
    ]
    columns["reason"] = [
        row.reason if d is None else ("; ".join(d.reasons) or None)
        for row, d in zip(rows, decided, strict=True)
    ]
    states = columns["state"]
    n_done = states.count("done")
    n_accepted = sum(columns["accepted"])
    last_export = _last_export(snapshot.events)
    latency = {k: _rounded(v) for k, v in latency_summary(snapshot.events).items()}
    return {
        "version": snapshot.version,
        "project": {"name": snapshot.project.folder.name, "folder": str(snapshot.project.folder)},
        "metrics": [dataclasses.asdict(m) for m in METRICS],
        "items": columns,
        "filters": filters.model_dump(mode="json"),
        "counts": {
            "items": len(rows),
            "done": n_done,
            "failed": sum(states.count(s) for s in ("failed", "quarantined", "error")),
            "pending": states.count("pending"),
            "accepted": n_accepted,
            "filtered": n_done - n_accepted,
            "excluded_manually": sum(s == "exclude" for s in columns["selection"]),
            "exported": None if last_export is None else last_export["n_micrographs"],
        },
        "throughput_movies_per_hour": _rounded(
            throughput_per_hour(latest_productive_run(snapshot.events))
        ),
        "latency_s": latency,
        "last_export": last_export,
        "picking": {
            "threshold": settings.picking.threshold,
            "diameter_a": settings.picking.diameter_a,
        },
        "problems": [{"file": f, "problem": p} for f, p in sorted(snapshot.problems.items())],
    }
