"""Micrograph sources read back from processing metadata (cryowarp.preprocess.export.sources).

One real run — the tiny simulated movie, motion-corrected and CTF-estimated once per module —
checks that what export reads equals what processing produced; hand-made metadata documents
check every error path and that one bad item does not stop the others.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from cryowarp.errors import CorruptFileError, FileFormatError, MissingFileError
from cryowarp.io.mrc import write_mrc
from cryowarp.preprocess.ctf.result import CtfResult
from cryowarp.preprocess.export.filters import ExportFilters, apply_filters
from cryowarp.preprocess.export.sources import (
    read_micrograph_source,
    scan_processing_folder,
    source_from_average,
)
from cryowarp.preprocess.motion import (
    MOTION_METADATA_VERSION,
    FrameMotion,
    MovieInputSettings,
)

# -- the real run ---------------------------------------------------------------------------


@pytest.fixture
def processed(tiny_processed: Any) -> Any:
    """The tiny movie processed once a session (``tests/conftest.py::tiny_processed``)."""
    return tiny_processed


def test_real_run_reads_back_what_processing_produced(processed: Any) -> None:
    sources, problems = scan_processing_folder(processed.folder)
    assert problems == []
    assert [s.name for s in sources] == [processed.movie.stem]
    source = sources[0]
    folder, stem = processed.folder, processed.movie.stem
    assert source.movie_path == processed.movie
    assert source.average_path == folder / "average" / f"{stem}.mrc"
    assert source.odd_path == folder / "average" / "odd" / f"{stem}.mrc"
    assert source.even_path == folder / "average" / "even" / f"{stem}.mrc"
    assert source.motion_metadata_path == folder / "motion" / f"{stem}.json"
    assert source.motion_star_path == folder / "motion" / f"{stem}.star"
    assert source.ctf_path == folder / "ctf" / f"{stem}_ctf.json"
    assert source.raw_pixel_size_a == source.output_pixel_size_a == 1.5
    assert source.frame_shape_px == source.output_shape_px == (256, 256)
    assert source.accumulated_dose_e_per_a2 == pytest.approx([0.5 + i for i in range(8)])
    assert source.motion_summary == processed.motion.summary.to_dict()
    assert source.input_settings is not None
    assert source.input_settings.gain_path == str(processed.movie.parent / "gain.mrc")
    assert source.acquired_at == processed.movie.stat().st_mtime
    assert source.masked_fraction is None
    # the motion and the CTF are the fitted ones, exactly
    assert source.motion is not None
    assert torch.equal(source.motion.global_nodes_a, processed.motion.motion.global_nodes_a.cpu())
    assert torch.equal(source.motion.local_nodes_a, processed.motion.motion.local_nodes_a.cpu())
    assert source.ctf is not None
    assert source.ctf.defocus_u_um == processed.ctf.defocus_u_um
    assert source.ctf.resolution_a == processed.ctf.resolution_a
    # ... and the CTF attached is this movie's: its defocus is the simulated one
    assert abs(source.ctf.defocus_um - processed.true_defocus_um) < 0.05


def test_real_run_filters_on_the_true_defocus(processed: Any) -> None:
    sources, _ = scan_processing_folder(processed.folder)
    true = processed.true_defocus_um
    keep = apply_filters(
        sources, ExportFilters(defocus_min_um=true - 0.1, defocus_max_um=true + 0.1)
    )
    drop = apply_filters(sources, ExportFilters(defocus_max_um=true - 0.2))
    assert keep[0].accepted
    assert not drop[0].accepted
    measured = processed.ctf.defocus_um
    assert drop[0].reasons == (f"defocus {measured:.4g} µm > {true - 0.2:.4g} µm",)


def test_a_moved_processing_folder_is_read_where_it_is_now(processed: Any, tmp_path: Path) -> None:
    moved = tmp_path / "elsewhere"
    shutil.copytree(processed.folder, moved)
    sources, problems = scan_processing_folder(moved)
    assert problems == []
    stem = processed.movie.stem
    assert sources[0].average_path == moved / "average" / f"{stem}.mrc"
    assert sources[0].motion_star_path == moved / "motion" / f"{stem}.star"
    assert sources[0].ctf_path == moved / "ctf" / f"{stem}_ctf.json"


def test_source_from_the_real_average(processed: Any) -> None:
    average = processed.motion.paths.average
    ctf_json = processed.folder / "ctf" / f"{processed.movie.stem}_ctf.json"
    source = source_from_average(average, ctf_json=ctf_json)
    assert source.name == processed.movie.stem
    assert source.average_path == average
    assert source.output_shape_px == (256, 256)
    assert source.output_pixel_size_a == 1.5
    assert source.motion is None
    assert source.movie_path is None
    assert source.motion_summary == {}
    assert source.accumulated_dose_e_per_a2 == ()
    assert source.ctf is not None
    assert source.ctf.defocus_v_um == processed.ctf.defocus_v_um
    assert source.acquired_at == average.stat().st_mtime


# -- hand-made metadata ---------------------------------------------------------------------


def _write_item(root: Path, name: str, *, movie: Path | None = None, **changes: Any) -> Path:
    """A minimal motion metadata document of a 3-frame movie with its average (16 × 24 px at
    2 Å/px) under ``root``; ``changes`` replace (or, when ``None``, remove) top-level keys."""
    motion = FrameMotion.zeros(3, field_size_a=(48.0, 32.0), global_nodes=3)
    document: dict[str, Any] = {
        "schema_version": MOTION_METADATA_VERSION,
        "movie": str(movie if movie is not None else root / "raw" / f"{name}.tif"),
        "input_settings": MovieInputSettings(dose_per_frame_e_per_a2=2.0).model_dump(mode="json"),
        "n_frames": 3,
        "frame_shape_px": [32, 48],
        "output_shape_px": [16, 24],
        "raw_pixel_size_a": 1.0,
        "output_pixel_size_a": 2.0,
        "dose": {"accumulated_dose_e_per_a2": [1.0, 3.0, 5.0]},
        "motion": motion.to_dict(),
        "summary": {"early_motion_a_per_frame": 0.5, "total_drift_a": 2.0},
        "files": {
            "average": f"average/{name}.mrc",
            "metadata": f"motion/{name}.json",
            "odd": None,
            "even": None,
            "star": f"motion/{name}.star",
        },
    }
    for key, value in changes.items():
        if value is None:
            document.pop(key)
        else:
            document[key] = value
    (root / "average").mkdir(parents=True, exist_ok=True)
    (root / "motion").mkdir(parents=True, exist_ok=True)
    write_mrc(root / "average" / f"{name}.mrc", np.zeros((16, 24), np.float32), voxel_size_a=2.0)
    path = root / "motion" / f"{name}.json"
    path.write_text(json.dumps(document))
    return path


def _ctf(defocus_u_um: float = 1.6, defocus_v_um: float = 1.4) -> CtfResult:
    return CtfResult(
        defocus_u_um=defocus_u_um, defocus_v_um=defocus_v_um, astigmatism_angle_deg=30.0,
        phase_shift_deg=0.0, defocus_grid_um=((1.5,),), image_size_xy_a=(48.0, 32.0),
        resolution_a=4.2, fit_score=0.9, pixel_size_a=2.0, voltage_kv=300.0, cs_mm=2.7,
        amplitude_contrast=0.07,
    )  # fmt: skip


def test_hand_made_item_reads_every_field(tmp_path: Path) -> None:
    movie = tmp_path / "raw" / "a.tif"
    movie.parent.mkdir()
    movie.write_bytes(b"x")
    os.utime(movie, (1000.0, 1234.5))
    path = _write_item(tmp_path, "a", movie=movie, masked_fraction=0.25)
    ctf_json = tmp_path / "a_ctf.json"
    ctf_json.write_text(json.dumps(_ctf().to_dict()))
    source = read_micrograph_source(path, ctf_json=ctf_json)
    assert source.name == "a"
    assert source.movie_path == movie
    assert source.acquired_at == 1234.5
    assert source.frame_shape_px == (32, 48)
    assert source.output_shape_px == (16, 24)
    assert (source.raw_pixel_size_a, source.output_pixel_size_a) == (1.0, 2.0)
    assert source.accumulated_dose_e_per_a2 == (1.0, 3.0, 5.0)
    assert source.motion_summary == {"early_motion_a_per_frame": 0.5, "total_drift_a": 2.0}
    assert source.input_settings == MovieInputSettings(dose_per_frame_e_per_a2=2.0)
    assert source.motion is not None
    assert source.motion.n_frames == 3
    assert source.masked_fraction == 0.25
    assert source.odd_path is None
    assert source.even_path is None
    assert source.motion_star_path is None  # recorded, but not on disk
    assert source.ctf is not None
    assert source.ctf.astigmatism_um == pytest.approx(0.1)
    assert source.ctf_path == ctf_json


def test_gone_movie_dates_the_item_by_its_metadata(tmp_path: Path) -> None:
    path = _write_item(tmp_path, "a")
    os.utime(path, (1000.0, 777.0))
    assert read_micrograph_source(path).acquired_at == 777.0


def test_without_recorded_files_the_standard_layout_is_used(tmp_path: Path) -> None:
    path = _write_item(tmp_path, "a", files=None)
    (tmp_path / "motion" / "a.star").write_text("data_general\n")
    source = read_micrograph_source(path)
    assert source.average_path == tmp_path / "average" / "a.mrc"
    assert source.motion_star_path == tmp_path / "motion" / "a.star"


@pytest.mark.parametrize(
    ("change", "error", "words"),
    [
        ({"motion": None, "dose": None}, FileFormatError, "lacks keys ['dose', 'motion']"),
        ({"schema_version": 99}, FileFormatError, "schema_version 99 is not supported"),
        ({"raw_pixel_size_a": -1.0}, FileFormatError, "raw_pixel_size_a must be a positive"),
        ({"dose": {"pre": 1}}, FileFormatError, "missing key 'accumulated_dose_e_per_a2'"),
        ({"input_settings": {"bin": 2}}, FileFormatError, "invalid input_settings"),
        ({"motion": {"version": 7}}, FileFormatError, "unsupported motion model version 7"),
        ({"masked_fraction": 1.5}, FileFormatError, "masked_fraction must lie in [0, 1]"),
    ],
)
def test_bad_metadata_raises_a_typed_error_naming_the_file(
    tmp_path: Path, change: dict[str, Any], error: type[Exception], words: str
) -> None:
    path = _write_item(tmp_path, "a", **change)
    with pytest.raises(error) as info:
        read_micrograph_source(path)
    assert str(info.value).startswith(f"{path}: ")
    assert words in str(info.value)


def test_undecodable_json_is_a_corrupt_file(tmp_path: Path) -> None:
    path = tmp_path / "motion" / "a.json"
    path.parent.mkdir()
    path.write_text('{"schema_version": 1, ')
    with pytest.raises(CorruptFileError, match="is not valid JSON"):
        read_micrograph_source(path)
    path.write_text("[1, 2]")
    with pytest.raises(FileFormatError, match="holds a JSON list, not an object"):
        read_micrograph_source(path)


def test_missing_average_and_ctf_files_are_named(tmp_path: Path) -> None:
    path = _write_item(tmp_path, "a")
    with pytest.raises(MissingFileError) as info:
        read_micrograph_source(path, ctf_json=tmp_path / "nope_ctf.json")
    assert info.value.path == tmp_path / "nope_ctf.json"
    (tmp_path / "average" / "a.mrc").unlink()
    with pytest.raises(MissingFileError, match="motion-corrected average is missing") as info:
        read_micrograph_source(path)
    assert info.value.path == tmp_path / "average" / "a.mrc"


def test_one_bad_item_is_a_problem_and_the_others_are_read(tmp_path: Path) -> None:
    for name in ("c", "a", "b", "d"):
        _write_item(tmp_path, name)
    (tmp_path / "motion" / "b.json").write_text("{ not json")
    ctf = tmp_path / "ctf"
    ctf.mkdir()
    (ctf / "a_ctf.json").write_text(json.dumps(_ctf(2.2, 2.0).to_dict()))
    (ctf / "d_ctf.json").write_text(json.dumps({"defocus_u_um": 1.0}))  # keys missing
    sources, problems = scan_processing_folder(tmp_path)
    assert [s.name for s in sources] == ["a", "c"]
    assert sources[0].ctf is not None
    assert sources[0].ctf.defocus_um == pytest.approx(2.1)
    assert sources[1].ctf is None
    assert sources[1].ctf_path is None
    assert [p.path for p in problems] == [tmp_path / "motion" / "b.json", ctf / "d_ctf.json"]
    assert "is not valid JSON" in problems[0].message
    assert "CTF result lacks keys" in problems[1].message


def test_ctf_folder_can_be_elsewhere(tmp_path: Path) -> None:
    _write_item(tmp_path, "a")
    other = tmp_path / "ctf_run2"
    other.mkdir()
    (other / "a_ctf.json").write_text(json.dumps(_ctf(3.1, 2.9).to_dict()))
    (sources, _) = scan_processing_folder(tmp_path, ctf_dir=other)
    assert sources[0].ctf is not None
    assert sources[0].ctf.defocus_um == pytest.approx(3.0)


def test_empty_and_missing_folders(tmp_path: Path) -> None:
    assert scan_processing_folder(tmp_path) == ([], [])
    with pytest.raises(MissingFileError):
        scan_processing_folder(tmp_path / "absent")


def test_source_from_average_header_and_override(tmp_path: Path) -> None:
    path = tmp_path / "mc2_0001.mrc"
    write_mrc(path, np.zeros((20, 36), np.float32), voxel_size_a=0.83)
    source = source_from_average(path)
    assert source.name == "mc2_0001"
    assert source.output_shape_px == source.frame_shape_px == (20, 36)
    assert source.output_pixel_size_a == pytest.approx(0.83, abs=1e-6)
    assert source_from_average(path, pixel_size_a=1.1).output_pixel_size_a == 1.1
    unknown = tmp_path / "nopx.mrc"
    write_mrc(unknown, np.zeros((8, 8), np.float32), voxel_size_a=0.0)
    with pytest.raises(FileFormatError, match="records no pixel size"):
        source_from_average(unknown)
    stack = tmp_path / "stack.mrcs"
    write_mrc(stack, np.zeros((3, 8, 8), np.float32), voxel_size_a=1.0)
    with pytest.raises(FileFormatError, match="holds 3 sections"):
        source_from_average(stack)
