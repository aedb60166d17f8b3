"""Which micrographs are exported: quality filters, manual include/exclude, the latest N particles.

:class:`ExportFilters` holds the criteria (every one optional; the defaults accept everything
except failed CTF fits); :func:`apply_filters` decides for every
:class:`~cryowarp.preprocess.export.sources.MicrographSource` and says why an item was
rejected, naming each failed criterion with its value and limit. A criterion that is set but
cannot be evaluated (no CTF estimate, no particle count …) rejects the item.
:func:`latest_particles` picks the most recently acquired accepted items that hold a given
number of particles (for streaming downstream processing). CTF conventions:
docs/conventions.md §6; page: docs/relion_export_filters.md.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePath

from pydantic import BaseModel, ConfigDict, Field, model_validator

from cryowarp.errors import CorruptFileError
from cryowarp.io.files import require_file
from cryowarp.preprocess.export._coordinates_names import micrograph_key
from cryowarp.preprocess.export.sources import MicrographSource

__all__ = [
    "ExportFilters",
    "FilterDecision",
    "FilterValues",
    "apply_filters",
    "decide_filters",
    "item_name",
    "latest_particles",
    "read_name_list",
    "source_values",
]

_CTF_OUTPUTS = ("_ctf.json", "_ctf.png")  # the per-item outputs of CTF estimation


class ExportFilters(BaseModel):
    """Criteria a micrograph must meet to be exported (unset: not checked; limits are finite
    numbers)."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    defocus_min_um: float | None = Field(
        default=None, description="Lowest mean defocus (U+V)/2 in µm (underfocus positive)."
    )
    defocus_max_um: float | None = Field(
        default=None, description="Highest mean defocus (U+V)/2 in µm (underfocus positive)."
    )
    astigmatism_max_um: float | None = Field(
        default=None, ge=0, description="Highest astigmatism |U−V|/2 in µm."
    )
    ctf_resolution_max_a: float | None = Field(
        default=None,
        gt=0,
        description="Reject items whose CTF fit resolution (Å) is worse (larger) than this.",
    )
    total_drift_max_a: float | None = Field(
        default=None, ge=0, description="Highest path length of the global motion track in Å."
    )
    early_motion_max_a_per_frame: float | None = Field(
        default=None,
        ge=0,
        description="Highest mean motion per frame in the first fifth of the exposure, in Å "
        "per frame (Warp's early motion).",
    )
    particles_min: int | None = Field(
        default=None, ge=0, description="Fewest particles an item must hold."
    )
    particles_max: int | None = Field(
        default=None, ge=0, description="Most particles an item may hold."
    )
    masked_fraction_max: float | None = Field(
        default=None,
        ge=0,
        le=1,
        description="Largest fraction (0–1) of the micrograph that may be masked out.",
    )
    include: tuple[str, ...] | None = Field(
        default=None,
        description="Only these items pass (names or file names; unset: all items).",
    )
    exclude: tuple[str, ...] = Field(
        default=(), description="These items never pass (names or file names; wins over include)."
    )
    force_include: tuple[str, ...] = Field(
        default=(),
        description="These items pass whatever the quality criteria say (the dashboard's "
        "manual include; the include and exclude lists still apply).",
    )
    reject_failed_ctf: bool = Field(default=True, description="Reject items whose CTF fit failed.")

    @model_validator(mode="after")
    def _ranges(self) -> ExportFilters:
        pairs = (
            ("defocus_min_um", "defocus_max_um"),
            ("particles_min", "particles_max"),
        )
        for low, high in pairs:
            lo, hi = getattr(self, low), getattr(self, high)
            if lo is not None and hi is not None and lo > hi:
                raise ValueError(f"{low} ({lo}) is larger than {high} ({hi})")
        return self


@dataclass(frozen=True)
class FilterDecision:
    """Whether an item is exported and, if not, every reason (empty when accepted)."""

    name: str
    accepted: bool
    reasons: tuple[str, ...] = ()


@dataclass(frozen=True)
class FilterValues:
    """The figures of one item that the filters judge (``None``: not known).

    ``ctf_failed`` is ``None`` when the item has no CTF estimate; the CTF figures are ignored
    when it is true. Units as in :class:`ExportFilters`.
    """

    name: str
    ctf_failed: bool | None = None
    ctf_failure_reason: str | None = None
    defocus_um: float | None = None
    astigmatism_um: float | None = None
    ctf_resolution_a: float | None = None
    total_drift_a: float | None = None
    early_motion_a_per_frame: float | None = None
    particles: int | None = None
    masked_fraction: float | None = None


def source_values(source: MicrographSource, particles: int | None = None) -> FilterValues:
    """The :class:`FilterValues` of a micrograph (``particles``: its particle count, if known)."""
    ctf = source.ctf
    return FilterValues(
        name=source.name,
        ctf_failed=None if ctf is None else ctf.failed,
        ctf_failure_reason=None if ctf is None else ctf.failure_reason,
        defocus_um=None if ctf is None else ctf.defocus_um,
        astigmatism_um=None if ctf is None else abs(ctf.astigmatism_um),
        ctf_resolution_a=None if ctf is None else ctf.resolution_a,
        total_drift_a=source.motion_summary.get("total_drift_a"),
        early_motion_a_per_frame=source.motion_summary.get("early_motion_a_per_frame"),
        particles=particles,
        masked_fraction=source.masked_fraction,
    )


def apply_filters(
    sources: Sequence[MicrographSource],
    filters: ExportFilters,
    *,
    particle_counts: Mapping[str, int] | None = None,
) -> list[FilterDecision]:
    """Decide for every source (in the given order) whether it passes ``filters``.

    Parameters
    ----------
    sources:
        The items (:func:`~cryowarp.preprocess.export.sources.scan_processing_folder`).
    filters:
        The criteria.
    particle_counts:
        Particles per item name, needed only by ``particles_min``/``particles_max``; an item
        without a count is rejected by them.
    """
    counts = particle_counts or {}
    return decide_filters([source_values(s, counts.get(s.name)) for s in sources], filters)


def decide_filters(values: Sequence[FilterValues], filters: ExportFilters) -> list[FilterDecision]:
    """Decide for every item's figures (in the given order) whether it passes ``filters``
    (what :func:`apply_filters` does for micrographs; the dashboard calls it on the figures in
    the item records)."""
    include = None if filters.include is None else {item_name(n) for n in filters.include}
    exclude = {item_name(n) for n in filters.exclude}
    forced = {item_name(n) for n in filters.force_include}
    decisions = []
    for item in values:
        reasons: list[str] = []
        if item.name not in forced:
            reasons = _ctf_reasons(item, filters) + _motion_reasons(item, filters)
            reasons += _particle_reasons(item, filters)
            if filters.masked_fraction_max is not None:
                reasons += _above(
                    "masked fraction", item.masked_fraction, filters.masked_fraction_max, "",
                    missing="no masked fraction",
                )  # fmt: skip
        if include is not None and item.name not in include:
            reasons.append("not in the include list")
        if item.name in exclude:
            reasons.append("in the exclude list")
        decisions.append(FilterDecision(item.name, not reasons, tuple(reasons)))
    return decisions


def latest_particles(
    sources: Sequence[MicrographSource],
    decisions: Sequence[FilterDecision],
    particle_counts: Mapping[str, int],
    n_particles: int,
) -> list[str]:
    """Names of the most recently acquired accepted items that together hold at least
    ``n_particles`` particles (all accepted items when they hold fewer), oldest first.

    Items are ordered by :attr:`~MicrographSource.acquired_at` (then name); items without
    particles (no count, or 0) are left out.
    """
    if n_particles < 0:
        raise ValueError(f"n_particles must be ≥ 0, got {n_particles}")
    accepted = {d.name for d in decisions if d.accepted}
    candidates = [s for s in sources if s.name in accepted and particle_counts.get(s.name, 0) > 0]
    candidates.sort(key=lambda s: (s.acquired_at, s.name))
    chosen: list[str] = []
    total = 0
    for source in reversed(candidates):
        if total >= n_particles:
            break
        chosen.append(source.name)
        total += particle_counts[source.name]
    return chosen[::-1]


def read_name_list(path: Path) -> list[str]:
    """Item names from a text file: one per line, ``#`` starts a comment, blank lines are
    skipped; file names and paths become item names (:func:`item_name`). Order is kept and
    repeats are dropped."""
    file = require_file(path)
    try:
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise CorruptFileError(file, f"cannot be read as a text list of names ({error})") from error
    names: list[str] = []
    for line in text.splitlines():
        entry = line.split("#", 1)[0].strip()
        if entry and item_name(entry) not in names:
            names.append(item_name(entry))
    return names


def item_name(text: str) -> str:
    """The item name in a name, file name or path, as coordinate files are matched to items
    (:func:`~._coordinates_names.micrograph_key`: folder, file endings and motion-correction
    suffixes such as ``_DW`` taken off), and ``_ctf`` before ``.json``/``.png``:
    ``movie_000.mrc``, ``average/movie_000.mrc``, ``ctf/movie_000_ctf.png`` → ``movie_000``.
    Other dots are kept (``grid1.sq2_0001`` stays as it is)."""
    name = PurePath(text.strip()).name
    lower = name.lower()
    ending = next((e for e in _CTF_OUTPUTS if lower.endswith(e) and len(name) > len(e)), None)
    if ending is not None:
        name = name[: -len(ending)]
    return micrograph_key(name)


# -- criteria --------------------------------------------------------------------------------


def _ctf_reasons(item: FilterValues, filters: ExportFilters) -> list[str]:
    failed = item.ctf_failed
    if failed and filters.reject_failed_ctf:
        return [f"CTF fit failed ({item.ctf_failure_reason or 'no reason given'})"]
    usable = failed is False  # a failed fit's values are NaN: the criteria cannot be evaluated
    values = {
        "defocus": item.defocus_um,
        "astigmatism": item.astigmatism_um,
        "CTF resolution": item.ctf_resolution_a,
    }
    checks = (
        ("defocus", filters.defocus_min_um, filters.defocus_max_um, " µm"),
        ("astigmatism", None, filters.astigmatism_max_um, " µm"),
        ("CTF resolution", None, filters.ctf_resolution_max_a, " Å"),
    )
    missing = "no CTF estimate" if failed is None else "no CTF estimate (the fit failed)"
    reasons: list[str] = []
    for label, low, high, unit in checks:
        if low is None and high is None:
            continue
        value = values[label] if usable else None
        if value is None or math.isnan(value):
            reasons.append(missing if not usable else f"no {label} in the CTF estimate")
            continue
        reasons += _below(label, value, low, unit) + _above(label, value, high, unit)
    return reasons


def _motion_reasons(item: FilterValues, filters: ExportFilters) -> list[str]:
    checks = (
        ("total drift", item.total_drift_a, filters.total_drift_max_a, " Å"),
        ("early motion", item.early_motion_a_per_frame, filters.early_motion_max_a_per_frame,
         " Å/frame"),
    )  # fmt: skip
    reasons: list[str] = []
    for label, value, limit, unit in checks:
        if limit is not None:
            reasons += _above(label, value, limit, unit, missing="no motion estimate")
    return reasons


def _particle_reasons(item: FilterValues, filters: ExportFilters) -> list[str]:
    if filters.particles_min is None and filters.particles_max is None:
        return []
    count = item.particles
    if count is None:
        return ["no particle count"]
    return _below("particles", count, filters.particles_min, "") + _above(
        "particles", count, filters.particles_max, ""
    )


def _below(label: str, value: float, limit: float | None, unit: str) -> list[str]:
    if limit is None or value >= limit:
        return []
    return [f"{label} {_number(value)}{unit} < {_number(limit)}{unit}"]


def _above(
    label: str, value: float | None, limit: float | None, unit: str, *, missing: str | None = None
) -> list[str]:
    if limit is None:
        return []
    if value is None or math.isnan(value):
        return [missing or f"no {label}"]
    if value <= limit:
        return []
    return [f"{label} {_number(value)}{unit} > {_number(limit)}{unit}"]


def _number(value: float) -> str:
    """3.4213 → '3.421', 3.0 → '3.0', 142 → '142'."""
    if isinstance(value, int):
        return str(value)
    text = f"{value:.4g}"
    return text if any(c in text for c in ".e") or "inf" in text else f"{text}.0"
