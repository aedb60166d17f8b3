"""Export filters, include/exclude lists and the latest-N-particles selection
(cryowarp.preprocess.export.filters), on hand-made sources with known values."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from cryowarp.errors import MissingFileError
from cryowarp.preprocess.ctf.result import CtfResult
from cryowarp.preprocess.export.filters import (
    ExportFilters,
    FilterDecision,
    apply_filters,
    decide_filters,
    item_name,
    latest_particles,
    read_name_list,
    source_values,
)
from cryowarp.preprocess.export.sources import MicrographSource


def _ctf(u_um: float = 1.6, v_um: float = 1.4, resolution_a: float = 4.0) -> CtfResult:
    return CtfResult(
        defocus_u_um=u_um, defocus_v_um=v_um, astigmatism_angle_deg=10.0, phase_shift_deg=0.0,
        defocus_grid_um=((0.5 * (u_um + v_um),),), image_size_xy_a=(400.0, 400.0),
        resolution_a=resolution_a, fit_score=0.9, pixel_size_a=1.0, voltage_kv=300.0,
        cs_mm=2.7, amplitude_contrast=0.07,
    )  # fmt: skip


_FAILED = CtfResult.failure(
    "no Thon rings", pixel_size_a=1.0, voltage_kv=300.0, cs_mm=2.7, amplitude_contrast=0.07
)


def _source(name: str, **changes: Any) -> MicrographSource:
    """A 400 Å square micrograph with a CTF of defocus 1.5 µm (astigmatism 0.1 µm, 4 Å) and
    motion of 2 Å drift, 0.5 Å/frame early."""
    base = MicrographSource(
        name=name,
        movie_path=None,
        average_path=Path(f"average/{name}.mrc"),
        odd_path=None,
        even_path=None,
        motion_metadata_path=None,
        motion_star_path=None,
        motion=None,
        input_settings=None,
        raw_pixel_size_a=1.0,
        output_pixel_size_a=1.0,
        frame_shape_px=(400, 400),
        output_shape_px=(400, 400),
        accumulated_dose_e_per_a2=(),
        motion_summary={"total_drift_a": 2.0, "early_motion_a_per_frame": 0.5},
        ctf=_ctf(),
        masked_fraction=0.1,
    )
    return replace(base, **changes)


def _reasons(source: MicrographSource, counts: dict[str, int] | None = None, **f: Any) -> tuple:
    (decision,) = apply_filters([source], ExportFilters(**f), particle_counts=counts)
    assert decision.accepted == (decision.reasons == ())
    return decision.reasons


def test_defaults_accept_everything_but_failed_ctf_fits() -> None:
    sources = [
        _source("a"),
        _source("b", ctf=None, motion_summary={}, masked_fraction=None),
        _source("c", ctf=_FAILED),
    ]
    decisions = apply_filters(sources, ExportFilters())
    assert decisions == [
        FilterDecision("a", True),
        FilterDecision("b", True),
        FilterDecision("c", False, ("CTF fit failed (no Thon rings)",)),
    ]
    assert apply_filters(sources, ExportFilters(reject_failed_ctf=False))[2].accepted


@pytest.mark.parametrize(
    ("ctf", "filters", "reasons"),
    [
        (_ctf(3.5, 3.34), {"defocus_max_um": 3.0}, ("defocus 3.42 µm > 3.0 µm",)),
        (_ctf(3.0, 3.0), {"defocus_max_um": 3.0}, ()),  # the limit itself passes
        (_ctf(0.7, 0.5), {"defocus_min_um": 0.8}, ("defocus 0.6 µm < 0.8 µm",)),
        (_ctf(0.9, 0.7), {"defocus_min_um": 0.5, "defocus_max_um": 1.0}, ()),
        (_ctf(1.8, 1.2), {"astigmatism_max_um": 0.2}, ("astigmatism 0.3 µm > 0.2 µm",)),
        (_ctf(1.2, 1.8), {"astigmatism_max_um": 0.2}, ("astigmatism 0.3 µm > 0.2 µm",)),
        (_ctf(1.6, 1.4), {"astigmatism_max_um": 0.2}, ()),
        (_ctf(resolution_a=6.25), {"ctf_resolution_max_a": 5}, ("CTF resolution 6.25 Å > 5.0 Å",)),
        (_ctf(resolution_a=3.1), {"ctf_resolution_max_a": 5}, ()),
    ],
)
def test_each_ctf_criterion(ctf: CtfResult, filters: dict[str, Any], reasons: tuple) -> None:
    assert _reasons(_source("a", ctf=ctf), **filters) == reasons


@pytest.mark.parametrize(
    ("summary", "filters", "reasons"),
    [
        ({"total_drift_a": 12.5}, {"total_drift_max_a": 10}, ("total drift 12.5 Å > 10.0 Å",)),
        ({"total_drift_a": 9.5}, {"total_drift_max_a": 10}, ()),
        (
            {"early_motion_a_per_frame": 2.345},
            {"early_motion_max_a_per_frame": 1.5},
            ("early motion 2.345 Å/frame > 1.5 Å/frame",),
        ),
        ({"early_motion_a_per_frame": 1.0}, {"early_motion_max_a_per_frame": 1.5}, ()),
        ({}, {"total_drift_max_a": 10}, ("no motion estimate",)),
    ],
)
def test_each_motion_criterion(
    summary: dict[str, float], filters: dict[str, Any], reasons: tuple
) -> None:
    assert _reasons(_source("a", motion_summary=summary), **filters) == reasons


def test_particle_and_mask_criteria() -> None:
    a = _source("a", masked_fraction=0.45)
    assert _reasons(a, {"a": 12}, particles_min=20) == ("particles 12 < 20",)
    assert _reasons(a, {"a": 30}, particles_min=20, particles_max=25) == ("particles 30 > 25",)
    assert _reasons(a, {"a": 20}, particles_min=20, particles_max=20) == ()
    assert _reasons(a, masked_fraction_max=0.3) == ("masked fraction 0.45 > 0.3",)
    assert _reasons(a, masked_fraction_max=0.5) == ()


def test_missing_data_for_a_set_criterion_rejects() -> None:
    bare = _source("a", ctf=None, motion_summary={}, masked_fraction=None)
    assert _reasons(bare, defocus_max_um=3) == ("no CTF estimate",)
    assert _reasons(bare, early_motion_max_a_per_frame=1) == ("no motion estimate",)
    assert _reasons(bare, masked_fraction_max=0.5) == ("no masked fraction",)
    assert _reasons(bare, particles_min=1) == ("no particle count",)
    assert _reasons(bare, {"other": 5}, particles_max=9) == ("no particle count",)
    failed = _source("a", ctf=_FAILED)
    assert _reasons(failed, reject_failed_ctf=False, astigmatism_max_um=0.1) == (
        "no CTF estimate (the fit failed)",
    )


def test_every_failed_criterion_is_listed() -> None:
    source = _source(
        "bad", ctf=_ctf(4.2, 3.8, 8.0), motion_summary={"total_drift_a": 30.0}, masked_fraction=0.9
    )
    reasons = _reasons(
        source,
        {"bad": 3},
        defocus_max_um=3.0,
        astigmatism_max_um=0.1,
        ctf_resolution_max_a=5.0,
        total_drift_max_a=20.0,
        particles_min=10,
        masked_fraction_max=0.5,
        exclude=("bad",),
    )
    assert reasons == (
        "defocus 4.0 µm > 3.0 µm",
        "astigmatism 0.2 µm > 0.1 µm",
        "CTF resolution 8.0 Å > 5.0 Å",
        "total drift 30.0 Å > 20.0 Å",
        "particles 3 < 10",
        "masked fraction 0.9 > 0.5",
        "in the exclude list",
    )


def test_include_and_exclude() -> None:
    sources = [_source(n) for n in ("m1", "m2", "m3", "grid.sq2_04")]

    def accepted(**f: Any) -> list[str]:
        return [d.name for d in apply_filters(sources, ExportFilters(**f)) if d.accepted]

    assert accepted(exclude=("m2", "average/m3.mrc")) == ["m1", "grid.sq2_04"]
    assert accepted(include=("m1", "m2.tif", "grid.sq2_04")) == ["m1", "m2", "grid.sq2_04"]
    assert accepted(include=("m1", "m2"), exclude=("m2",)) == ["m1"]  # exclude wins
    assert accepted(include=()) == []
    decision = apply_filters(sources, ExportFilters(include=("m1",), exclude=("m2",)))
    assert decision[1].reasons == ("not in the include list", "in the exclude list")
    assert decision[2].reasons == ("not in the include list",)


def test_force_include_overrides_quality_criteria_not_the_lists() -> None:
    """The dashboard's manual include: the item passes a failed criterion (and a failed CTF
    fit), but the exclude and include lists still apply; the figures-only path
    (decide_filters, used by the dashboard) decides exactly as apply_filters."""
    sources = [_source("good"), _source("far", ctf=_ctf(4.2, 3.8)), _source("dud", ctf=_FAILED)]
    strict = {"defocus_max_um": 3.0}

    def accepted(**f: Any) -> list[str]:
        return [d.name for d in apply_filters(sources, ExportFilters(**strict, **f)) if d.accepted]

    assert accepted() == ["good"]
    assert accepted(force_include=("far", "dud")) == ["good", "far", "dud"]
    assert accepted(force_include=("far",), exclude=("far",)) == ["good"]
    assert accepted(force_include=("far",), include=("good",)) == ["good"]
    filters = ExportFilters(defocus_max_um=3.0, ctf_resolution_max_a=5.0, force_include=("far",))
    values = [source_values(s, particles=7) for s in sources]
    assert decide_filters(values, filters) == apply_filters(
        sources, filters, particle_counts={s.name: 7 for s in sources}
    )


def test_settings_are_validated_and_round_trip() -> None:
    filters = ExportFilters(defocus_min_um=0.5, defocus_max_um=2.5, include=("a", "b"))
    assert ExportFilters.model_validate(filters.model_dump(mode="json")) == filters
    with pytest.raises(ValidationError, match="defocus_min_um"):
        ExportFilters(defocus_min_um=3.0, defocus_max_um=2.0)
    with pytest.raises(ValidationError, match="particles_min"):
        ExportFilters(particles_min=30, particles_max=20)
    with pytest.raises(ValidationError, match="extra"):
        ExportFilters(defocus_maximum=3.0)  # type: ignore[call-arg]
    with pytest.raises(ValidationError):
        ExportFilters(masked_fraction_max=1.5)
    with pytest.raises(ValidationError, match="finite"):
        ExportFilters(defocus_max_um=float("nan"))
    for name, field in ExportFilters.model_fields.items():
        assert field.description, name


def test_read_name_list(tmp_path: Path) -> None:
    path = tmp_path / "exclude.txt"
    path.write_text(
        "# bad ice\n"
        "movie_003\n"
        "\n"
        "  raw/movie_007.tif   # drift\n"
        "average/movie_009.mrc\n"
        "ctf/movie_011_ctf.png\n"
        "motion/movie_012.json\n"
        "grid1.sq2_0001\n"
        "movie_003.eer\n"
    )
    assert read_name_list(path) == [
        "movie_003", "movie_007", "movie_009", "movie_011", "movie_012", "grid1.sq2_0001",
    ]  # fmt: skip
    with pytest.raises(MissingFileError):
        read_name_list(tmp_path / "absent.txt")


@pytest.mark.parametrize(
    ("text", "name"),
    [
        ("movie_000", "movie_000"),
        ("MOVIE_000.TIFF", "MOVIE_000"),
        ("/data/run/movie_000.mrcs", "movie_000"),
        ("movie_000_ctf.json", "movie_000"),
        ("movie_000_ctf", "movie_000_ctf"),  # a bare name is kept as it is
        ("FoilHole_1_Data_2.5_3", "FoilHole_1_Data_2.5_3"),
    ],
)
def test_item_name(text: str, name: str) -> None:
    assert item_name(text) == name


def _timed(name: str, t: float) -> MicrographSource:
    return _source(name, acquired_at=t)


def test_latest_particles_worked_by_hand() -> None:
    sources = [_timed("d", 40), _timed("a", 10), _timed("c", 30), _timed("b", 20), _timed("e", 50)]
    decisions = apply_filters(sources, ExportFilters(exclude=("d",)))
    counts = {"a": 100, "b": 50, "c": 70, "d": 1000, "e": 60}
    assert latest_particles(sources, decisions, counts, 60) == ["e"]
    assert latest_particles(sources, decisions, counts, 61) == ["c", "e"]  # d is excluded
    assert latest_particles(sources, decisions, counts, 130) == ["c", "e"]
    assert latest_particles(sources, decisions, counts, 131) == ["b", "c", "e"]
    assert latest_particles(sources, decisions, counts, 10_000) == ["a", "b", "c", "e"]
    assert latest_particles(sources, decisions, counts, 0) == []
    assert latest_particles(sources, decisions, {"a": 5, "c": 0}, 100) == ["a"]
    with pytest.raises(ValueError, match="n_particles"):
        latest_particles(sources, decisions, counts, -1)


@given(
    counts=st.lists(st.integers(0, 50), min_size=1, max_size=12),
    accepted=st.lists(st.booleans(), min_size=12, max_size=12),
    n=st.integers(0, 300),
)
def test_latest_particles_is_the_shortest_recent_run(
    counts: list[int], accepted: list[bool], n: int
) -> None:
    names = [f"m{i:02d}" for i in range(len(counts))]
    sources = [_timed(name, float(i)) for i, name in enumerate(names)]
    decisions = [FilterDecision(name, ok) for name, ok in zip(names, accepted, strict=False)]
    count_of = dict(zip(names, counts, strict=True))
    chosen = latest_particles(sources[::-1], decisions, count_of, n)
    eligible = [m for m, ok in zip(names, accepted, strict=False) if ok and count_of[m] > 0]
    assert chosen == eligible[len(eligible) - len(chosen) :]  # the newest, oldest first
    total = sum(count_of[m] for m in chosen)
    if chosen:
        assert total - count_of[chosen[0]] < n  # none more than needed
    assert total >= n or chosen == eligible
