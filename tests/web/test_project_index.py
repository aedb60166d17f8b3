"""The dashboard's project index: rows agree with the records and the export decisions, only
changed records are re-read, damaged records never break it, settings changes are seen."""

from __future__ import annotations

from pathlib import Path

import pytest

from cryowarp.pipeline import runner
from cryowarp.pipeline.export import project_sources
from cryowarp.pipeline.items import read_item_record, write_item_record
from cryowarp.pipeline.project import open_project, save_settings
from cryowarp.pipeline.settings import set_setting
from cryowarp.preprocess.export.filters import ExportFilters, apply_filters
from cryowarp.web import project_index
from cryowarp.web.overview import decisions, overview_document
from cryowarp.web.project_index import ProjectIndex

pytestmark = pytest.mark.slow  # the processed project takes ~30 s to make once


@pytest.fixture
def folder(processed_project: object, tmp_path: Path) -> Path:
    return processed_project.copy_to(tmp_path / "proj")  # type: ignore[attr-defined]


def _change(folder: Path, key: str, value: str) -> None:
    project = open_project(folder)
    save_settings(project.settings_path, set_setting(project.settings, key, value))


def test_rows_agree_with_records_and_with_export(folder: Path) -> None:
    snapshot = ProjectIndex(folder).refresh()
    project = open_project(folder)
    names = sorted(p.stem for p in project.items_folder.glob("*.json"))
    assert sorted(snapshot.positions) == names
    times = [row.acquired_at for row in snapshot.rows]
    assert times == sorted(times)
    for row in snapshot.rows:
        assert (row.state, row.reason) == runner.item_state(row.record, project)
        ctf = row.record.steps["ctf"].results
        assert row.figures.defocus_um == ctf["defocus_um"]
        assert row.figures.astigmatism_um == pytest.approx(
            abs(ctf["defocus_u_um"] - ctf["defocus_v_um"]) / 2  # type: ignore[operator]
        )
        assert row.figures.particles == row.record.steps["picking"].results["n_picks"]
    # The dashboard's decisions are the export's, for a filter that splits the items.
    defocus = sorted(row.figures.defocus_um for row in snapshot.rows)  # type: ignore[type-var]
    cut = (defocus[0] + defocus[1]) / 2
    _change(folder, "filters.defocus_min_um", str(cut))
    snapshot = ProjectIndex(folder).refresh()
    ours = {d.name: d.accepted for d in decisions(snapshot) if d is not None}
    sources = project_sources(open_project(folder)).sources
    filters = ExportFilters(defocus_min_um=cut)
    assert ours == {d.name: d.accepted for d in apply_filters(sources, filters)}
    assert sum(ours.values()) == len(ours) - 1
    document = overview_document(snapshot)
    assert document["counts"]["accepted"] == len(ours) - 1
    assert document["counts"]["filtered"] == 1


def test_only_changed_records_are_read_again(folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    reads: list[str] = []
    real = project_index.read_item_record

    def counting(path: Path):  # type: ignore[no-untyped-def]
        reads.append(Path(path).stem)
        return real(path)

    monkeypatch.setattr(project_index, "read_item_record", counting)
    index = ProjectIndex(folder, min_interval_s=0.0)
    first = index.refresh()
    assert sorted(reads) == sorted(first.positions)
    reads.clear()
    assert index.refresh().version == first.version
    assert reads == []
    name = first.rows[1].name
    record = read_item_record(folder / "items" / f"{name}.json")
    write_item_record(
        folder / "items" / f"{name}.json", record.model_copy(update={"complete_at": 1.0})
    )
    second = index.refresh()
    assert reads == [name]
    assert second.version != first.version
    reads.clear()
    _change(folder, "filters.particles_min", "3")  # no step depends on filters: no re-read
    third = index.refresh()
    assert reads == []
    assert third.project.settings.filters.particles_min == 3
    assert third.version != second.version
    _change(folder, "ctf.defocus_max_um", "4.5")  # the CTF step and later are stale now
    fourth = index.refresh()
    assert sorted(reads) == sorted(first.positions)
    assert {row.state for row in fourth.rows} == {"pending"}


def test_a_damaged_record_keeps_its_last_row_and_is_reported(folder: Path) -> None:
    index = ProjectIndex(folder, min_interval_s=0.0)
    before = index.refresh()
    name = before.rows[0].name
    path = folder / "items" / f"{name}.json"
    good = path.read_text()
    path.write_text(good[: len(good) // 2])  # torn
    (folder / "items" / "stray.json").write_text("not json")  # never readable
    during = index.refresh()
    assert during.row(name) == before.row(name)
    assert set(during.problems) == {f"{name}.json", "stray.json"}
    assert "stray" not in during.positions
    assert len(overview_document(during)["problems"]) == 2
    path.write_text(good)
    (folder / "items" / "stray.json").unlink()
    after = index.refresh()
    assert after.problems == {}
    assert after.row(name) == before.row(name)
