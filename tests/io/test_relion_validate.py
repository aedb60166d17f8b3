"""The RELION 5 STAR validator: each rule fails on a table broken for it, and real files pass."""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from cryowarp.errors import FileFormatError
from cryowarp.io.mrc import write_mrc
from cryowarp.io.relion import read_micrographs, read_particles, write_micrographs, write_particles
from cryowarp.io.relion_motion import RelionMotion, write_relion_motion
from cryowarp.io.relion_validate import (
    KNOWN_RELION_LABELS,
    REQUIRED_COLUMNS,
    StarProblem,
    check_relion_star,
    validate_relion_star,
)
from cryowarp.io.star import StarBlock, read_star, write_star

Blocks = dict[str, StarBlock]
Key = tuple[str | None, str | None, int | None, str]


def _keys(problems: list[StarProblem]) -> list[Key]:
    return [(p.block, p.column, p.row, p.severity) for p in problems]


def _optics(**columns: list[Any]) -> pd.DataFrame:
    base: dict[str, list[Any]] = {
        "rlnOpticsGroup": [1, 2],
        "rlnOpticsGroupName": ["opticsGroup1", "opticsGroup2"],
        "rlnVoltage": [300.0, 200.0],
        "rlnSphericalAberration": [2.7, 2.7],
        "rlnAmplitudeContrast": [0.1, 0.07],
    }
    return pd.DataFrame({**base, **columns})


def _particles(n: int = 3) -> Blocks:
    optics = _optics(rlnImagePixelSize=[1.5, 1.5], rlnImageSize=[64, 64],
                     rlnImageDimensionality=[2, 2])  # fmt: skip
    table = pd.DataFrame(
        {
            "rlnImageName": [f"{i + 1:06d}@Extract/a.mrcs" for i in range(n)],
            "rlnMicrographName": ["MotionCorr/a.mrc"] * n,
            "rlnCoordinateX": np.linspace(100.0, 300.0, n),
            "rlnCoordinateY": np.linspace(50.0, 250.0, n),
            "rlnDefocusU": np.full(n, 15000.0),
            "rlnDefocusV": np.full(n, 14000.0),
            "rlnDefocusAngle": np.full(n, 30.0),
            "rlnOpticsGroup": [1 + i % 2 for i in range(n)],
        }
    )
    return {"optics": optics, "particles": table}


def _micrographs(corrected: bool = False) -> Blocks:
    pixels = {"rlnMicrographPixelSize": [1.0, 1.0]}
    columns: dict[str, list[Any]] = {"rlnMicrographName": ["a.mrc", "b.mrc"]}
    columns["rlnOpticsGroup"] = [1, 2]
    if corrected:
        pixels["rlnMicrographOriginalPixelSize"] = [0.5, 0.5]
        columns["rlnMicrographMetadata"] = ["a.star", "b.star"]
        columns["rlnAccumMotionTotal"] = [12.0, 3.5]
        columns["rlnAccumMotionEarly"] = [8.0, 2.0]
        columns["rlnAccumMotionLate"] = [4.0, 1.5]
    else:
        columns["rlnDefocusU"] = [15000.0, 9000.0]
        columns["rlnDefocusV"] = [14000.0, 8800.0]
        columns["rlnDefocusAngle"] = [10.0, -80.0]
        columns["rlnCtfMaxResolution"] = [3.5, 4.1]
    return {"optics": _optics(**pixels), "micrographs": pd.DataFrame(columns)}


def _validate(blocks: Blocks, kind: Any = "particles") -> list[Key]:
    return _keys(validate_relion_star(blocks, kind=kind))


def test_valid_tables_have_no_problems() -> None:
    assert _validate(_particles()) == []
    assert _validate(_micrographs(), "micrographs") == []
    assert _validate(_micrographs(corrected=True), "corrected_micrographs") == []
    assert {c for cs in REQUIRED_COLUMNS.values() for c in cs} <= KNOWN_RELION_LABELS


def _set(block: str, column: str, values: list[Any]) -> Callable[[Blocks], None]:
    def change(blocks: Blocks) -> None:
        frame = blocks[block]
        assert isinstance(frame, pd.DataFrame)
        text = any(isinstance(v, str) for v in values)
        frame[column] = pd.Series(values, dtype=object) if text else values

    return change


def _drop(block: str, column: str | None = None) -> Callable[[Blocks], None]:
    def change(blocks: Blocks) -> None:
        if column is None:
            del blocks[block]
        else:
            frame = blocks[block]
            assert isinstance(frame, pd.DataFrame)
            blocks[block] = frame.drop(columns=[column])

    return change


def _both(*changes: Callable[[Blocks], None]) -> Callable[[Blocks], None]:
    def change(blocks: Blocks) -> None:
        for one in changes:
            one(blocks)

    return change


_SAME_GROUP = _set("particles", "rlnOpticsGroup", [2, 2, 2])
_BROKEN_PARTICLES: list[tuple[str, Callable[[Blocks], None], list[Key], str]] = [
    ("no optics", _drop("optics"), [("optics", None, None, "error")], "RELION 3.0"),
    ("no particles", _drop("particles"), [("particles", None, None, "error")], "no data_"),
    ("unknown label", _set("particles", "rlnFooBar", [1.0, 2.0, 3.0]),
     [("particles", "rlnFooBar", None, "warning")], "unknown"),
    ("duplicate group", _both(_set("optics", "rlnOpticsGroup", [2, 2]), _SAME_GROUP),
     [("optics", "rlnOpticsGroup", 1, "error"), ("optics", "rlnOpticsGroup", None, "warning")],
     "twice"),
    ("group 0", _both(_set("optics", "rlnOpticsGroup", [0, 2]), _SAME_GROUP),
     [("optics", "rlnOpticsGroup", 0, "error")], ">= 1"),
    ("group 1.5", _both(_set("optics", "rlnOpticsGroup", [1.5, 2.0]), _SAME_GROUP),
     [("optics", "rlnOpticsGroup", 0, "error")], "integer"),
    ("groups out of order", _set("optics", "rlnOpticsGroup", [2, 1]),
     [("optics", "rlnOpticsGroup", None, "warning")], "renumbers"),
    ("duplicate name", _set("optics", "rlnOpticsGroupName", ["g", "g"]),
     [("optics", "rlnOpticsGroupName", 1, "error")], "twice"),
    ("pixel size 0", _set("optics", "rlnImagePixelSize", [0.0, 1.5]),
     [("optics", "rlnImagePixelSize", 0, "error")], "> 0"),
    ("voltage < 0", _set("optics", "rlnVoltage", [300.0, -1.0]),
     [("optics", "rlnVoltage", 1, "error")], "> 0"),
    ("amplitude contrast 1", _set("optics", "rlnAmplitudeContrast", [1.0, 0.1]),
     [("optics", "rlnAmplitudeContrast", 0, "error")], "[0, 1)"),
    ("box 63.5", _set("optics", "rlnImageSize", [64.0, 63.5]),
     [("optics", "rlnImageSize", 1, "error")], "integer"),
    ("dimensionality 4", _set("optics", "rlnImageDimensionality", [2, 4]),
     [("optics", "rlnImageDimensionality", 1, "error")], "2 or 3"),
    ("group not in optics", _set("particles", "rlnOpticsGroup", [1, 2, 3]),
     [("particles", "rlnOpticsGroup", 2, "error")], "no such group"),
    ("bad image names", _set("particles", "rlnImageName", ["1@a.mrcs", "a.mrcs", "0@a.mrcs"]),
     [("particles", "rlnImageName", 1, "error"), ("particles", "rlnImageName", 2, "error")],
     "NNNNNN@"),
    ("defocus < 0", _set("particles", "rlnDefocusV", [14000.0, -5.0, 14000.0]),
     [("particles", "rlnDefocusV", 1, "error")], "> 0"),
    ("NaN", _set("particles", "rlnCoordinateX", [np.nan, 1.0, np.inf]),
     [("particles", "rlnCoordinateX", 0, "error"), ("particles", "rlnCoordinateX", 2, "error")],
     "finite"),
    ("text for a number", _set("particles", "rlnCoordinateY", ["12", "abc", "3.5"]),
     [("particles", "rlnCoordinateY", 1, "error")], "not a number"),
    ("empty micrograph name", _set("particles", "rlnMicrographName", ["a.mrc", " ", "b.mrc"]),
     [("particles", "rlnMicrographName", 1, "error")], "empty"),
]  # fmt: skip


_CASES = [pytest.param(*case[1:], id=case[0]) for case in _BROKEN_PARTICLES]


@pytest.mark.parametrize(("change", "expected", "text"), _CASES)
def test_each_rule_fails_on_a_table_broken_for_it(
    change: Callable[[Blocks], None], expected: list[Key], text: str
) -> None:
    blocks = copy.deepcopy(_particles())
    change(blocks)
    problems = validate_relion_star(blocks, kind="particles")
    assert _keys(problems) == expected
    assert text in problems[0].message


@pytest.mark.parametrize(
    "column",
    ["rlnOpticsGroupName", "rlnVoltage", "rlnSphericalAberration", "rlnAmplitudeContrast",
     "rlnImagePixelSize", "rlnImageSize", "rlnImageDimensionality"],
)  # fmt: skip
def test_required_optics_columns(column: str) -> None:
    blocks = _particles()
    _drop("optics", column)(blocks)
    assert _validate(blocks) == [("optics", column, None, "error")]


@pytest.mark.parametrize("column", REQUIRED_COLUMNS["particles"])
def test_required_particle_columns(column: str) -> None:
    blocks = _particles()
    _drop("particles", column)(blocks)
    assert _validate(blocks) == [("particles", column, None, "error")]


@pytest.mark.parametrize(
    "column", ["rlnOriginX", "rlnOriginY", "rlnMagnification", "rlnDetectorPixelSize", "rlnVoltage"]
)
def test_relion30_columns_are_refused_in_31_tables(column: str) -> None:
    blocks = _particles()
    _set("particles", column, [1.0, 2.0, 3.0])(blocks)
    problems = validate_relion_star(blocks, kind="particles")
    assert _keys(problems) == [("particles", column, None, "error")]
    assert "RELION 3.0" in problems[0].message


def test_many_bad_rows_are_summarised() -> None:
    blocks = _particles(n=8)
    _set("particles", "rlnDefocusU", [-1.0] * 8)(blocks)
    problems = validate_relion_star(blocks, kind="particles")
    assert [p.row for p in problems] == [0, 1, 2, 3, 4, None]
    assert problems[-1].message == "must be > 0 in 3 more rows"
    assert str(problems[0]) == "data_particles, row 0, rlnDefocusU: must be > 0"


def test_micrograph_rules() -> None:
    blocks = _micrographs()
    _drop("optics", "rlnMicrographPixelSize")(blocks)
    _set("optics", "rlnImagePixelSize", [1.0, 1.0])(blocks)
    _set("micrographs", "rlnCtfMaxResolution", [3.5, 0.0])(blocks)
    assert _validate(blocks, "micrographs") == [
        ("optics", "rlnMicrographPixelSize", None, "error"),
        ("optics", "rlnImagePixelSize", None, "warning"),
        ("micrographs", "rlnCtfMaxResolution", 1, "error"),
    ]
    corrected = _micrographs(corrected=True)
    _drop("optics", "rlnMicrographOriginalPixelSize")(corrected)
    _drop("micrographs", "rlnMicrographMetadata")(corrected)
    _set("micrographs", "rlnAccumMotionLate", [4.0, -0.5])(corrected)
    assert _validate(corrected, "corrected_micrographs") == [
        ("optics", "rlnMicrographOriginalPixelSize", None, "error"),
        ("micrographs", "rlnMicrographMetadata", None, "error"),
        ("micrographs", "rlnAccumMotionLate", 1, "error"),
    ]
    # a micrograph table is not a particle table
    assert ("particles", None, None, "error") in _validate(_micrographs(), "particles")


# ---------------------------------------------------------------------------- files


def _written(tmp_path: Path) -> Path:
    """The valid particle table, read back and written by cryowarp's RELION writer."""
    raw = tmp_path / "raw.star"
    write_star(raw, _particles())
    optics, table = read_particles(raw)
    path = tmp_path / "particles.star"
    write_particles(path, optics, table)
    return path


def test_written_file_passes_and_version_line_is_checked(tmp_path: Path) -> None:
    path = _written(tmp_path)
    assert path.read_text().count("# version 50001\n\ndata_") == 2
    assert validate_relion_star(path, kind="particles") == []
    check_relion_star(path, kind="particles", allow_warnings=False)
    bare = tmp_path / "bare.star"
    write_star(bare, _particles())
    problems = validate_relion_star(bare, kind="particles")
    assert _keys(problems) == [(None, None, None, "warning")]
    assert "30000" in problems[0].message
    old = tmp_path / "old.star"
    old.write_text(path.read_text().replace("# version 50001", "# version 30000"))
    assert _keys(validate_relion_star(old, kind="particles")) == [(None, None, None, "warning")]


def test_write_star_puts_a_version_line_before_each_block_only(tmp_path: Path) -> None:
    """``relion_version=`` adds RELION's line before every ``data_`` block, never before a
    row whose first value starts with ``data_`` (such values are quoted)."""
    blocks: Blocks = {
        "general": {"rlnTomoSubTomosAre2DStacks": 1},
        "micrographs": pd.DataFrame({"rlnMicrographName": ["data_x.mrc", "b.mrc"]}),
    }
    path = tmp_path / "v.star"
    write_star(path, blocks, relion_version=50001)
    lines = path.read_text().splitlines()
    starts = [i for i, line in enumerate(lines) if line.startswith("data_")]
    assert [lines[i] for i in starts] == ["data_general", "data_micrographs"]
    assert [lines[i - 2 : i] for i in starts] == [["# version 50001", ""]] * 2
    assert sum(line.startswith("# version") for line in lines) == 2
    back = read_star(path)
    assert back["general"] == {"rlnTomoSubTomosAre2DStacks": 1}
    micrographs = back["micrographs"]
    assert isinstance(micrographs, pd.DataFrame)
    assert micrographs["rlnMicrographName"].tolist() == ["data_x.mrc", "b.mrc"]


def test_empty_line_inside_a_loop_is_an_error(tmp_path: Path) -> None:
    lines = _written(tmp_path).read_text().splitlines()
    first_row = next(i for i, line in enumerate(lines) if "000001@" in line)
    lines.insert(first_row + 1, "")
    cut = tmp_path / "cut.star"
    cut.write_text("\n".join(lines) + "\n")
    problems = validate_relion_star(cut, kind="particles")
    assert _keys(problems) == [("particles", None, None, "error")]
    assert f"empty line {first_row + 2}" in problems[0].message


def test_unreadable_file_is_one_problem(tmp_path: Path) -> None:
    missing = validate_relion_star(tmp_path / "nowhere.star", kind="particles")
    assert _keys(missing) == [(None, None, None, "error")]
    assert "cannot be read" in missing[0].message


def test_check_raises_a_file_format_error_naming_the_file(tmp_path: Path) -> None:
    path = tmp_path / "p.star"
    blocks = _particles()
    _set("particles", "rlnDefocusU", [1.0, 0.0, 1.0])(blocks)
    write_star(path, blocks)
    with pytest.raises(FileFormatError, match=r"row 1, rlnDefocusU: must be > 0") as caught:
        check_relion_star(path, kind="particles")
    assert caught.value.path == path
    assert "version" not in str(caught.value)  # warnings are allowed by default
    write_star(path, _particles())
    check_relion_star(path, kind="particles")
    with pytest.raises(FileFormatError, match="30000"):
        check_relion_star(path, kind="particles", allow_warnings=False)


def test_referenced_files_and_stack_indices_under_root(tmp_path: Path) -> None:
    (tmp_path / "Extract").mkdir()
    write_mrc(tmp_path / "Extract/a.mrcs", np.zeros((3, 8, 8), np.float32), voxel_size_a=1.5)
    blocks = _particles(n=3)
    assert validate_relion_star(blocks, kind="particles", root=tmp_path) == []
    _set("particles", "rlnImageName", ["1@Extract/a.mrcs", "4@Extract/a.mrcs", "1@b.mrcs"])(blocks)
    problems = validate_relion_star(blocks, kind="particles", root=tmp_path)
    assert _keys(problems) == [("particles", "rlnImageName", 1, "error"),
                               ("particles", "rlnImageName", 2, "error")]  # fmt: skip
    assert "past the last image" in problems[0].message
    assert "(3 images)" in problems[0].message
    assert "b.mrcs" in problems[1].message
    micrographs = _micrographs(corrected=True)
    for name in ("a.mrc", "b.mrc", "a.star"):
        (tmp_path / name).write_text("x")
    problems = validate_relion_star(micrographs, kind="corrected_micrographs", root=tmp_path)
    assert _keys(problems) == [("micrographs", "rlnMicrographMetadata", 1, "error")]


# ---------------------------------------------------------------------------- motion


def _motion_file(tmp_path: Path) -> Path:
    motion = RelionMotion(
        image_size_xyz=(4096, 4096, 6),
        movie_name="Movies/m.tif",
        global_shifts_px=np.cumsum(np.full((6, 2), 0.5), axis=0) - 0.5,
        original_pixel_size_a=0.8,
        voltage_kv=300.0,
        local_model_coefficients=np.linspace(-1e-3, 1e-3, 36),
    )
    path = tmp_path / "m.star"
    write_relion_motion(path, motion)
    return path


def _broken_motion(tmp_path: Path, change: Callable[[Blocks], None]) -> list[Key]:
    blocks = read_star(_motion_file(tmp_path))
    change(blocks)
    return _validate(blocks, "motion")


def test_motion_rules(tmp_path: Path) -> None:
    assert validate_relion_star(_motion_file(tmp_path), kind="motion", root=None) == []

    def general(key: str, value: Any | None) -> Callable[[Blocks], None]:
        def change(blocks: Blocks) -> None:
            block = blocks["general"]
            assert isinstance(block, dict)
            if value is None:
                del block[key]
            else:
                block[key] = value

        return change

    assert _broken_motion(tmp_path, general("rlnMicrographMovieName", None)) == [
        ("general", "rlnMicrographMovieName", None, "error")
    ]
    assert _broken_motion(tmp_path, general("rlnImageSizeZ", 7)) == [
        ("global_shift", "rlnMicrographFrameNumber", None, "error")
    ]
    assert _broken_motion(tmp_path, general("rlnMicrographStartFrame", 7)) == [
        ("general", "rlnMicrographStartFrame", None, "error")
    ]
    assert _broken_motion(tmp_path, general("rlnMicrographBinning", 0.0)) == [
        ("general", "rlnMicrographBinning", None, "error")
    ]
    assert _broken_motion(tmp_path, general("rlnMotionModelVersion", 2)) == [
        ("general", "rlnMotionModelVersion", None, "error")
    ]
    assert _broken_motion(tmp_path, _drop("local_motion_model")) == [
        ("local_motion_model", None, None, "error")
    ]
    assert _broken_motion(tmp_path, _set("global_shift", "rlnMicrographShiftY",
                                         [0.0, 1.0, np.nan, 1.0, 2.0, 3.0])) == [
        ("global_shift", "rlnMicrographShiftY", 2, "error")
    ]  # fmt: skip
    assert _broken_motion(tmp_path, _drop("general")) == [("general", None, None, "error")]


# ---------------------------------------------------------------------------- real files

_SKELETON = "metadata/relion5_tomo_tutorial_empiar10164_skeleton"


@pytest.mark.parametrize(
    ("relative", "kind", "warnings"),
    [
        ("particles/cryodrgn_relion31_5ptcl/relion31.star", "particles", 0),
        ("particles/cryodrgn_relion31_5ptcl/relion31.v2.star", "particles", 0),
        ("particles/cryodrgn_relion31_5ptcl/relion31.6opticsgroups.star", "particles", 1),
        ("metadata/star_examples_cryodrgn/relion5.star", "particles", 0),
        (f"{_SKELETON}/MotionCorr/job002/frames_TS_01_subset/TS_01_000_0_0.star", "motion", 0),
    ],
)
def test_real_relion_files_pass(shared_data: Path, relative: str, kind: Any, warnings: int) -> None:
    """RELION's own 3.1 and 5 files have no errors; relion31.6opticsgroups.star lacks the
    ``# version`` line (RELION reads it as 30000, which it accepts with data_optics)."""
    path = shared_data / relative
    root = path.parent if relative.endswith("relion31.star") else None  # its stack is bundled
    problems = validate_relion_star(path, kind=kind, root=root)
    assert [p for p in problems if p.severity == "error"] == []
    assert len(problems) == warnings
    assert all("version" in p.message for p in problems)


def test_real_files_that_are_not_relion5(shared_data: Path) -> None:
    """What RELION 5 would not take as it is: RELION 3.0 tables (it converts them), and the
    cryojax TRPV1 file (no micrograph names or coordinates, one optics group numbered 7)."""
    legacy = validate_relion_star(
        shared_data / "particles/aspire_sample_17ptcl/sample_relion_data.star", kind="particles"
    )
    assert _keys(legacy) == [(None, None, None, "warning"), ("optics", None, None, "error"),
                             ("particles", None, None, "error")]  # fmt: skip
    trpv1 = validate_relion_star(
        shared_data / "particles/cryojax_trpv1_10ptcl/trpv1_small_stack.star", kind="particles"
    )
    assert _keys(trpv1) == [
        (None, None, None, "warning"),
        ("optics", "rlnOpticsGroup", None, "warning"),
        ("particles", "rlnMicrographName", None, "error"),
        ("particles", "rlnCoordinateX", None, "error"),
        ("particles", "rlnCoordinateY", None, "error"),
    ]


@pytest.mark.parametrize(
    ("relative", "missing"),
    [
        ("particles/cryodrgn_empiar10076_7ptcl/empiar_10076_7.star",
         ["rlnImageSize", "rlnImageDimensionality", "rlnCoordinateX", "rlnCoordinateY"]),
        ("particles/aspire_sample_17ptcl/sample_relion_data.star",
         ["rlnImageSize", "rlnImageDimensionality"]),
        ("particles/cryodrgn_relion31_5ptcl/relion31.6opticsgroups.star", []),
        ("metadata/star_examples_cryodrgn/relion5.star", []),
    ],
)  # fmt: skip
def test_cryowarp_rewrites_of_real_files_pass(
    shared_data: Path, tmp_path: Path, relative: str, missing: list[str]
) -> None:
    """Read (RELION 3.0 files are converted) and written by cryowarp: no problem but the
    columns the source lacks (a RELION 3.0 file does not record the box size)."""
    optics, table = read_particles(shared_data / relative)
    out = tmp_path / "out.star"
    write_particles(out, optics, table)
    problems = validate_relion_star(out, kind="particles")
    assert [p.column for p in problems] == missing
    assert all(p.message == "required column is missing" for p in problems)


def test_cryowarp_rewrite_of_real_ctf_table(shared_data: Path, tmp_path: Path) -> None:
    optics, table = read_micrographs(
        shared_data / "metadata/topaz_empiar10025_picks_ctf/ctf_params.star"
    )
    out = tmp_path / "micrographs_ctf.star"
    write_micrographs(out, optics, table)
    assert _keys(validate_relion_star(out, kind="micrographs")) == [
        ("micrographs", "rlnCtfMaxResolution", None, "error")  # not in the source
    ]
