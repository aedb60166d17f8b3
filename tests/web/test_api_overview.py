"""``GET /api/overview``, ``PUT /api/filters`` and the selection against the item records of a
30-item synthetic project (:mod:`benchmarks.dashboard_project`), and the dashboard reading
records while they are written (docs/dashboard_api.md; issue 10).

The filter decisions are checked against ``cryowarp export``'s own path: the micrographs read
back from the motion and CTF files (:func:`~cryowarp.pipeline.export.project_sources`) judged
by :func:`~cryowarp.preprocess.export.filters.apply_filters`.
"""

from __future__ import annotations

import json
import math
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2 as httpx
import numpy as np
import pytest
import torch
from benchmarks.dashboard_project import item_names, write_synthetic_project
from fastapi.testclient import TestClient

from cryowarp.pipeline.discovery import read_records
from cryowarp.pipeline.export import project_sources
from cryowarp.pipeline.items import ItemRecord, read_item_record, write_item_record
from cryowarp.pipeline.project import SETTINGS_FILE, load_settings, open_project
from cryowarp.pipeline.runner import item_state
from cryowarp.preprocess.export.filters import ExportFilters, apply_filters
from cryowarp.preprocess.motion import FrameMotion
from cryowarp.preprocess.motion.summary import motion_summary
from cryowarp.web.app import create_app

N_ITEMS = 30
FILTERS = {
    "defocus_min_um": 0.9,
    "defocus_max_um": 2.6,
    "astigmatism_max_um": 0.08,
    "ctf_resolution_max_a": 6.0,
    "early_motion_max_a_per_frame": 2.3,
    "particles_min": 15,
    "masked_fraction_max": 0.2,
}


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> Path:
    project = write_synthetic_project(
        tmp_path_factory.mktemp("overview") / "proj",
        n_items=N_ITEMS,
        seed=7,
        pixel_size_a=2.0,
        image_size_px=256,
        n_failed=2,
        n_quarantined=1,
        n_pending=2,
    )
    return project.folder


@pytest.fixture
def folder(made: Path) -> Iterator[Path]:
    """The project; its settings and records are put back after the test."""
    kept = {path: path.read_bytes() for path in [made / SETTINGS_FILE, *made.glob("items/*")]}
    yield made
    for path in [made / SETTINGS_FILE, *made.glob("items/*")]:
        if path not in kept:
            path.unlink()
    for path, data in kept.items():
        path.write_bytes(data)


def _client(folder: Path) -> TestClient:
    return TestClient(create_app(folder, min_refresh_interval_s=0.0), base_url="http://localhost")


def _overview(client: TestClient, **params: str) -> dict[str, Any]:
    response = client.get("/api/overview", params=params)
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


# -- the generator ------------------------------------------------------------------------


def test_synthetic_project_is_what_it_says(made: Path) -> None:
    project = open_project(made)
    records = read_records(project)
    assert sorted(records) == item_names(N_ITEMS)
    states = [item_state(records[name], project)[0] for name in item_names(N_ITEMS)]
    assert states.count("done") == N_ITEMS - 5
    assert (states.count("failed"), states.count("quarantined")) == (2, 1)
    assert states[-2:] == ["pending", "pending"]  # the newest wait for their CTF
    mtimes = [records[name].raw_mtime_ns for name in item_names(N_ITEMS)]
    assert mtimes == sorted(mtimes)
    assert all(Path(r.raw_path).stat().st_mtime_ns == r.raw_mtime_ns for r in records.values())
    sources = project_sources(project)  # the export reads every done item's files back
    assert not sources.problems
    assert len(sources.sources) == N_ITEMS - 5
    for source in sources.sources:
        record = records[source.name]
        motion = record.steps["motion"].results
        assert source.motion is not None
        summary = motion_summary(source.motion, field_size_a=source.motion.field_size_a)
        assert summary.total_drift_a == pytest.approx(motion["total_drift_a"], rel=1e-6)
        assert summary.early_motion_a_per_frame == pytest.approx(
            motion["early_motion_a_per_frame"], rel=1e-6
        )
        assert source.ctf is not None
        assert source.ctf.defocus_um == pytest.approx(record.steps["ctf"].results["defocus_um"])
        assert 0.5 <= source.ctf.defocus_um <= 3.0
        assert 3.0 <= source.ctf.resolution_a <= 10.0


def test_synthetic_project_is_deterministic(
    made: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    root = tmp_path_factory.mktemp("overview")  # a path as long as the first one's
    assert len(str(root)) == len(str(made.parent))
    other = write_synthetic_project(
        root / "proj",
        n_items=N_ITEMS,
        seed=7,
        pixel_size_a=2.0,
        image_size_px=256,
        n_failed=2,
        n_quarantined=1,
        n_pending=2,
    ).folder
    for name in ("items/movie_007.json", "motion/movie_007.json", "ctf/movie_007_ctf.json"):
        ours = (made / name).read_text().replace(str(made), "<folder>")
        assert ours == (other / name).read_text().replace(str(other), "<folder>")
    events = (other / "logs" / "events.jsonl").read_text().replace(str(other), "<folder>")
    assert events == (made / "logs/events.jsonl").read_text().replace(str(made), "<folder>")


# -- overview numbers vs the records --------------------------------------------------------


def test_overview_columns_are_the_records(folder: Path) -> None:
    project = open_project(folder)
    records = read_records(project)
    document = _overview(_client(folder))
    items = document["items"]
    names = item_names(N_ITEMS)
    assert items["name"] == names  # acquisition order
    assert items["acquired_at"] == [round(records[n].raw_mtime_ns / 1e9, 3) for n in names]
    states = [item_state(records[n], project)[0] for n in names]
    assert items["state"] == states
    for i, name in enumerate(names):
        steps = records[name].steps
        ctf: dict[str, Any] = dict(steps["ctf"].results) if "ctf" in steps else {}
        expected = {
            "defocus_um": ctf.get("defocus_um"),
            "ctf_resolution_a": ctf.get("resolution_a"),
            "astigmatism_um": None
            if "defocus_u_um" not in ctf
            else abs(ctf["defocus_u_um"] - ctf["defocus_v_um"]) / 2,
            "early_motion_a_per_frame": steps["motion"].results.get("early_motion_a_per_frame"),
            "particles": steps["picking"].results["n_picks"] if "picking" in steps else None,
            "masked_fraction": steps["picking"].results["masked_fraction"]
            if "picking" in steps
            else None,
        }
        for key, value in expected.items():
            if value is None:
                assert items[key][i] is None, (name, key)
            else:
                assert items[key][i] == pytest.approx(value, rel=1e-4), (name, key)
    counts = document["counts"]
    assert counts["items"] == N_ITEMS
    assert counts["done"] == states.count("done") == N_ITEMS - 5
    assert counts["failed"] == 3
    assert counts["pending"] == 2
    assert counts["accepted"] + counts["filtered"] == counts["done"]
    assert counts["accepted"] == sum(items["accepted"])
    assert counts["exported"] is None
    assert document["latency_s"]["count"] == N_ITEMS - 5
    assert document["throughput_movies_per_hour"] == pytest.approx(100, rel=0.15)


def _export_decisions(folder: Path) -> dict[str, tuple[bool, str | None]]:
    """What ``cryowarp export`` would decide: sources read back from the files."""
    project = open_project(folder)
    sources = project_sources(project).sources
    records = read_records(project)
    counts: dict[str, int] = {}
    for name, record in records.items():
        if "picking" in record.steps:
            n_picks = record.steps["picking"].results["n_picks"]
            assert isinstance(n_picks, int)
            counts[name] = n_picks
    decided = apply_filters(sources, project.settings.filters, particle_counts=counts)
    return {d.name: (d.accepted, "; ".join(d.reasons) or None) for d in decided}


def test_filters_decide_as_the_export_does(folder: Path) -> None:
    client = _client(folder)
    before = _overview(client)
    assert before["counts"]["accepted"] == before["counts"]["done"]  # no filters yet
    response = client.put("/api/filters", json=FILTERS)
    assert response.status_code == 200, response.text
    assert response.json()["version"] != before["version"]
    saved = load_settings(folder / SETTINGS_FILE).filters
    assert saved == ExportFilters.model_validate(FILTERS)
    assert response.json()["filters"] == saved.model_dump(mode="json")
    after = _overview(client)
    assert after["version"] == response.json()["version"]
    assert after["filters"] == saved.model_dump(mode="json")
    expected = _export_decisions(folder)
    items = after["items"]
    for i, name in enumerate(items["name"]):
        if name in expected:
            assert (items["accepted"][i], items["reason"][i]) == expected[name], name
        else:
            assert items["accepted"][i] is False
    n_accepted = sum(accepted for accepted, _ in expected.values())
    assert 0 < n_accepted < len(expected)  # the filters matter, both ways
    assert after["counts"]["accepted"] == n_accepted
    assert after["counts"]["filtered"] == len(expected) - n_accepted


def test_filter_keys_not_sent_keep_their_value_and_null_clears(folder: Path) -> None:
    client = _client(folder)
    client.put("/api/filters", json=FILTERS)
    response = client.put("/api/filters", json={"ctf_resolution_max_a": None, "particles_max": 80})
    assert response.status_code == 200
    saved = load_settings(folder / SETTINGS_FILE).filters
    assert saved == ExportFilters.model_validate(
        {**FILTERS, "ctf_resolution_max_a": None, "particles_max": 80}
    )
    assert _overview(client)["filters"]["defocus_min_um"] == FILTERS["defocus_min_um"]


def test_selection_round_trip(folder: Path) -> None:
    client = _client(folder)
    client.put("/api/filters", json=FILTERS)
    items = _overview(client)["items"]
    done = [i for i, s in enumerate(items["state"]) if s == "done"]
    kept = items["name"][next(i for i in done if items["accepted"][i])]
    dropped = items["name"][next(i for i in done if not items["accepted"][i])]

    answer = client.put(f"/api/items/{kept}/selection", json={"selection": "exclude"}).json()
    assert (answer["name"], answer["selection"], answer["accepted"]) == (kept, "exclude", False)
    assert "in the exclude list" in answer["reasons"]
    answer = client.put(f"/api/items/{dropped}/selection", json={"selection": "include"}).json()
    assert (answer["selection"], answer["accepted"]) == ("include", True)
    filters = load_settings(folder / SETTINGS_FILE).filters
    assert (filters.exclude, filters.force_include) == ((kept,), (dropped,))
    overview = _overview(client)
    position = {name: i for i, name in enumerate(overview["items"]["name"])}
    assert overview["items"]["selection"][position[kept]] == "exclude"
    assert overview["items"]["selection"][position[dropped]] == "include"
    assert overview["items"]["accepted"][position[dropped]] is True
    assert overview["counts"]["excluded_manually"] == 1

    for name in (kept, dropped):
        answer = client.put(f"/api/items/{name}/selection", json={"selection": "auto"}).json()
        assert answer["selection"] == "auto"
    assert answer["accepted"] is False  # the filters decide again
    filters = load_settings(folder / SETTINGS_FILE).filters
    assert (filters.exclude, filters.force_include) == ((), ())
    assert _overview(client)["items"]["accepted"] == items["accepted"]

    before = (folder / SETTINGS_FILE).read_bytes()
    missing = client.put("/api/items/movie_999/selection", json={"selection": "exclude"})
    assert missing.status_code == 404
    assert (folder / SETTINGS_FILE).read_bytes() == before


# -- versions and live changes ---------------------------------------------------------------


def test_since_the_current_version_is_unchanged(folder: Path) -> None:
    client = _client(folder)
    version = _overview(client)["version"]
    assert _overview(client, since=version) == {"version": version, "unchanged": True}
    assert "items" in _overview(client, since="0" * 16)


def _rewritten(record: ItemRecord, defocus_um: float) -> ItemRecord:
    ctf = record.steps["ctf"]
    results = {**ctf.results, "defocus_um": defocus_um}
    return record.with_step("ctf", ctf.model_copy(update={"results": results}))


def test_rewritten_and_added_records_give_a_new_version(folder: Path) -> None:
    client = _client(folder)
    first = _overview(client)
    path = folder / "items" / "movie_004.json"
    write_item_record(path, _rewritten(read_item_record(path), 2.875))
    second = _overview(client, since=first["version"])
    assert second["version"] != first["version"]
    assert second["items"]["defocus_um"][4] == 2.875

    source = read_item_record(folder / "items" / "movie_005.json")
    raw = folder / "raw" / "movie_new.mrc"
    shutil.copy(source.raw_path, raw)
    added = source.model_copy(
        update={"name": "movie_new", "raw_path": str(raw), "raw_mtime_ns": 2 * 10**18}
    )
    try:
        write_item_record(folder / "items" / "movie_new.json", added)
        third = _overview(client, since=second["version"])
        assert third["version"] != second["version"]
        assert third["counts"]["items"] == N_ITEMS + 1
        assert third["items"]["name"][-1] == "movie_new"  # acquired last
        assert third["items"]["state"][-1] == "done"  # movie_005's outputs are in place
    finally:
        raw.unlink()


def test_damaged_records_are_reported_not_fatal(folder: Path) -> None:
    client = _client(folder)
    good = _overview(client)
    (folder / "items" / "movie_003.json").write_text('{"schema_version": 1, "name": "movie_0')
    (folder / "items" / "movie_zzz.json").write_bytes(b"\x00\xff garbage")
    damaged = _overview(client)
    assert damaged["counts"]["items"] == N_ITEMS  # the last good row stays, garbage is left out
    assert damaged["items"]["name"] == good["items"]["name"]
    assert {p["file"] for p in damaged["problems"]} == {"movie_003.json", "movie_zzz.json"}
    assert client.get("/api/items/movie_003").status_code == 200


def test_reading_while_records_are_written(folder: Path) -> None:
    """A writer rewrites records atomically (as the pipeline does) and tears one record in
    place while three clients poll the overview over HTTP: every answer is whole."""
    import uvicorn

    from cryowarp.web.app import create_app as make

    server = uvicorn.Server(
        uvicorn.Config(make(folder, min_refresh_interval_s=0.0), port=0, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    stop = threading.Event()
    answers: list[tuple[int, dict[str, Any] | str]] = []
    names = item_names(N_ITEMS)[:20]
    originals = {name: read_item_record(folder / "items" / f"{name}.json") for name in names}
    torn = folder / "items" / "movie_021.json"
    whole = torn.read_bytes()
    rng = np.random.default_rng(0)

    def write() -> None:
        count = 0
        while not stop.is_set():
            name = names[count % len(names)]
            if "ctf" in originals[name].steps and originals[name].steps["ctf"].status == "done":
                value = float(rng.uniform(0.5, 3.0))
                write_item_record(
                    folder / "items" / f"{name}.json", _rewritten(originals[name], value)
                )
            with torn.open("wb") as handle:  # in place, as a non-atomic writer would
                handle.write(whole[: int(rng.integers(1, len(whole)))])
                handle.flush()
                time.sleep(0.001)
                handle.write(whole[handle.tell() :])
            count += 1

    def read() -> None:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
            while not stop.is_set():
                response = client.get("/api/overview")
                try:
                    answers.append((response.status_code, response.json()))
                except json.JSONDecodeError:
                    answers.append((response.status_code, response.text[:200]))

    workers = [threading.Thread(target=write)] + [threading.Thread(target=read) for _ in range(3)]
    try:
        for worker in workers:
            worker.start()
        time.sleep(2.0)
    finally:
        stop.set()
        for worker in workers:
            worker.join(timeout=30)
        server.should_exit = True
        thread.join(timeout=10)
    assert len(answers) >= 6
    assert all(status == 200 and isinstance(body, dict) for status, body in answers), answers[:3]
    for _, body in answers:
        assert isinstance(body, dict)
        assert body["counts"]["items"] == N_ITEMS
        defocus = [v for v in body["items"]["defocus_um"] if v is not None]
        assert all(0.5 <= v <= 3.0 and math.isfinite(v) for v in defocus)
        assert {p["file"] for p in body["problems"]} <= {"movie_021.json"}
    torn.write_bytes(whole)
    assert _overview(_client(folder))["problems"] == []


def test_frame_motion_of_the_generator_is_its_track(made: Path) -> None:
    """The motion model written per item reproduces the recorded global track at the frames."""
    document = json.loads((made / "motion" / "movie_001.json").read_text())
    motion = FrameMotion.from_dict(document["motion"])
    track = motion.global_shifts_at(torch.arange(motion.n_frames)).double()
    expected = torch.tensor(document["global_track_a"], dtype=torch.float64)
    assert torch.allclose(track, expected, atol=1e-4)
