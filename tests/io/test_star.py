"""STAR blocks: typed errors, deterministic atomic writing, every real STAR fixture parses."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st

from cryowarp.errors import (
    CryowarpInputError,
    FileFormatError,
    InvalidValuesError,
    TruncatedFileError,
)
from cryowarp.io.star import format_star_float, read_star, write_star

# ------------------------------------------------------------------ errors


# missing files and folders: tests/io/test_missing_files.py


def test_empty_file_is_truncated(tmp_path: Path) -> None:
    path = tmp_path / "empty.star"
    path.write_bytes(b"")
    with pytest.raises(TruncatedFileError, match="empty"):
        read_star(path)


def test_binary_file_is_not_star(tmp_path: Path) -> None:
    path = tmp_path / "movie.star"
    path.write_bytes(b"MRC\x00\x00\x01" * 100)
    with pytest.raises(FileFormatError, match="binary"):
        read_star(path)


@pytest.mark.parametrize("text", ["hello world\nfoo bar\n", "# only a comment\n\n"])
def test_text_without_data_block_is_not_star(tmp_path: Path, text: str) -> None:
    path = tmp_path / "notes.star"
    path.write_text(text)
    with pytest.raises(FileFormatError, match=r"notes\.star: not a STAR file: no 'data_'"):
        read_star(path)


def test_ragged_row_names_its_line(tmp_path: Path) -> None:
    path = tmp_path / "ragged.star"
    path.write_text("data_x\n\nloop_\n_rlnA #1\n_rlnB #2\n1 2\n3 4 5\n6 7\n")
    with pytest.raises(FileFormatError, match="line 7: row has 3 values but the loop declares 2"):
        read_star(path)


def test_row_cut_short_names_its_line(tmp_path: Path) -> None:
    """A file cut mid-row (interrupted copy) would otherwise be padded with NaN silently."""
    path = tmp_path / "cut.star"
    path.write_text("data_particles\nloop_\n_rlnA #1\n_rlnB #2\n_rlnC #3\n1 2 3\n4 5\n")
    with pytest.raises(FileFormatError, match="line 7: row has 2 values"):
        read_star(path)


def test_key_without_value_names_its_line(tmp_path: Path) -> None:
    path = tmp_path / "pairs.star"
    path.write_text("data_general\n_rlnA 1\n_rlnB\n")
    with pytest.raises(FileFormatError, match="line 3: key '_rlnB' has no value"):
        read_star(path)


def test_unterminated_quote_names_its_line(tmp_path: Path) -> None:
    path = tmp_path / "quote.star"
    path.write_text('data_x\nloop_\n_rlnA #1\n"abc\n')
    with pytest.raises(FileFormatError, match="line 4"):
        read_star(path)


# ------------------------------------------------------------------ reading details


def test_name_columns_stay_text_and_quotes_are_read(tmp_path: Path) -> None:
    path = tmp_path / "names.star"
    path.write_text(
        'data_\nloop_\n_rlnMicrographName #1\n_rlnValue #2\n_rlnNote #3\n1 2.5 "a b"\n02 3 x\n'
    )
    block = read_star(path)[""]
    assert isinstance(block, pd.DataFrame)
    assert block["rlnMicrographName"].tolist() == ["1", "02"]
    assert block["rlnNote"].tolist() == ["a b", "x"]
    np.testing.assert_array_equal(block["rlnValue"].to_numpy(), [2.5, 3.0])


def test_loop_without_rows_is_an_empty_table(tmp_path: Path) -> None:
    path = tmp_path / "norows.star"
    path.write_text("data_x\n\nloop_\n_rlnA #1\n_rlnB #2\n")
    block = read_star(path)["x"]
    assert isinstance(block, pd.DataFrame)
    assert list(block.columns) == ["rlnA", "rlnB"]
    assert len(block) == 0


# ------------------------------------------------------------------ writing


def test_float_format_golden() -> None:
    assert format_star_float(1.0) == "1.000000"
    assert format_star_float(-123.4567891) == "-123.456789"
    assert format_star_float(0.0) == "0.000000"
    assert format_star_float(-0.0) == "0.000000"
    assert format_star_float(-0.000704404) == "-7.044040e-04"
    assert format_star_float(2.5e12) == "2.500000e+12"
    assert format_star_float(float("nan")) == "nan"
    assert format_star_float(float("-inf")) == "-inf"


def _blocks() -> dict[str, pd.DataFrame | dict[str, object]]:
    return {
        "general": {"rlnTomoSubTomosAre2DStacks": 1, "rlnName": "x y"},
        "particles": pd.DataFrame(
            {
                "rlnA": [1.0, -0.000704404, 1e12, 0.0],
                "rlnB": [1, 2, 3, 4],
                "rlnC": ["a b", "x", "", "1"],
                "rlnD": [True, False, True, False],
            }
        ),
    }


def test_write_is_deterministic_and_reads_back(tmp_path: Path) -> None:
    first, second = tmp_path / "a.star", tmp_path / "b.star"
    write_star(first, _blocks())
    write_star(second, _blocks())
    assert first.read_bytes() == second.read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.star", "b.star"]  # no temp files
    blocks = read_star(first, parse_as_string=["rlnC"])
    assert blocks["general"] == {"rlnTomoSubTomosAre2DStacks": 1, "rlnName": "x y"}
    table = blocks["particles"]
    assert isinstance(table, pd.DataFrame)
    np.testing.assert_allclose(table["rlnA"], [1.0, -0.000704404, 1e12, 0.0], rtol=1e-6)
    assert table["rlnB"].tolist() == [1, 2, 3, 4]
    assert table["rlnC"].tolist() == ["a b", "x", "", "1"]
    assert table["rlnD"].tolist() == [1, 0, 1, 0]


@pytest.mark.parametrize(
    "name", ["_", "_rlnImageName", "#1", "a#b", "$x", ";x", "data_x", "LOOP_", "save_1", ""]
)
@pytest.mark.parametrize("first_column", [True, False])
def test_values_that_look_like_star_syntax_round_trip(
    tmp_path: Path, name: str, first_column: bool
) -> None:
    """A bare ``_x`` at the start of a row reads as a label and ``#`` starts a comment: such
    values (and the empty string) must be quoted on writing."""
    names = {"rlnMicrographName": [name, "b"]}
    numbers = {"rlnDefocusU": [1.0, 2.0]}
    frame = pd.DataFrame({**names, **numbers} if first_column else {**numbers, **names})
    path = tmp_path / "odd.star"
    write_star(path, {"micrographs": frame, "general": {"rlnMicrographName": name}})
    blocks = read_star(path)
    table = blocks["micrographs"]
    assert isinstance(table, pd.DataFrame)
    assert table["rlnMicrographName"].tolist() == [name, "b"]
    assert table["rlnDefocusU"].tolist() == [1.0, 2.0]
    general = blocks["general"]
    assert isinstance(general, dict)
    assert general["rlnMicrographName"] == name


def test_failed_write_leaves_old_file_untouched(tmp_path: Path) -> None:
    path = tmp_path / "keep.star"
    write_star(path, _blocks())
    before = path.read_bytes()
    bad = {"particles": pd.DataFrame({"rlnName": ["tab\there"]})}
    with pytest.raises(InvalidValuesError, match="tab or newline"):
        write_star(path, bad)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["keep.star"]


def test_write_refuses_overwrite_and_missing_folder(tmp_path: Path) -> None:
    path = tmp_path / "x.star"
    write_star(path, _blocks())
    with pytest.raises(CryowarpInputError, match="overwrite=False"):
        write_star(path, _blocks(), overwrite=False)
    with pytest.raises(CryowarpInputError, match="does not exist"):
        write_star(tmp_path / "nowhere" / "x.star", _blocks())


_finite = st.floats(allow_nan=False, allow_infinity=False, min_value=-1e15, max_value=1e15)


@given(
    values=st.lists(_finite, min_size=1, max_size=20),
    integers=st.integers(min_value=-(2**40), max_value=2**40),
)
def test_generic_round_trip_to_printed_precision(
    tmp_path_factory: pytest.TempPathFactory, values: list[float], integers: int
) -> None:
    path = tmp_path_factory.mktemp("rt") / "t.star"
    frame = pd.DataFrame({"rlnF": values, "rlnI": [integers] * len(values)})
    write_star(path, {"t": frame})
    table = read_star(path)["t"]
    assert isinstance(table, pd.DataFrame)
    assert table["rlnF"].dtype == np.float64
    # fixed notation: |error| <= 5e-7; scientific: relative error <= 5e-7
    np.testing.assert_allclose(table["rlnF"], values, rtol=5.1e-7, atol=5.1e-7)
    assert table["rlnI"].tolist() == [integers] * len(values)


# ------------------------------------------------------------------ every real fixture


@pytest.mark.slow  # about 120 files, two of 4 MB: 2.5-5 s on 2 shared cores
def test_every_shared_star_file_parses(shared_data: Path) -> None:
    files = sorted(shared_data.rglob("*.star"))
    assert len(files) >= 100
    shapes: dict[str, dict[str, tuple[int, ...] | int]] = {}
    for file in files:
        blocks = read_star(file)
        assert blocks, file
        shapes[str(file.relative_to(shared_data))] = {
            name: (block.shape if isinstance(block, pd.DataFrame) else len(block))
            for name, block in blocks.items()
        }
    tomo = "subtomo_particle_tiltseries/tomodrgn_warptools_4tomos_40ptcl/"
    tomograms = shapes[tomo + "warptools_test_4-tomos_10-ptcls_box-32_angpix-12_tomograms.star"]
    assert tomograms == {
        "global": (4, 13),
        "Unt_083.tomostar": (37, 9),
        "Unt_050.tomostar": (37, 9),
        "Unt_076.tomostar": (37, 9),
        "Unt_088.tomostar": (37, 9),
    }
    assert shapes[
        "micrographs/micrograph_cleaner_Ucsf_stack_1142/Ucsf_stack_1142_DW_autopick.star"
    ] == {"": (45, 5)}
    skeleton = "metadata/relion5_tomo_tutorial_empiar10164_skeleton/"
    assert shapes[skeleton + "Refine3D/job074/run_data.star"] == {
        "general": 1,
        "optics": (1, 11),
        "particles": (9053, 26),
    }
    assert shapes[skeleton + "Picks/job019/particles.star"] == {"particles": (9442, 4)}


def test_real_values_in_generic_blocks(shared_data: Path) -> None:
    autopick = read_star(
        shared_data
        / "micrographs/micrograph_cleaner_Ucsf_stack_1142/Ucsf_stack_1142_DW_autopick.star"
    )[""]
    assert isinstance(autopick, pd.DataFrame)
    assert autopick["rlnCoordinateX"].iloc[0] == pytest.approx(839.125024)
    assert autopick["rlnAutopickFigureOfMerit"].iloc[0] == pytest.approx(0.624705)
    skeleton = shared_data / "metadata/relion5_tomo_tutorial_empiar10164_skeleton"
    job = read_star(skeleton / "CtfRefine/job067/job.star")
    assert job["job"]["rlnJobTypeLabel"] == "relion.ctfrefinetomo"
    options = job["joboptions_values"]
    assert isinstance(options, pd.DataFrame)
    values = dict(zip(options["rlnJobOptionVariable"], options["rlnJobOptionValue"], strict=True))
    assert values["box_size"] == "512"
    assert values["in_particles"] == ""
    tomograms = read_star(skeleton / "Polish/job070/tomograms.star")["global"]
    assert isinstance(tomograms, pd.DataFrame)
    assert tomograms["rlnTomoName"].tolist() == ["TS_01", "TS_03", "TS_43", "TS_45", "TS_54"]
    assert tomograms["rlnTomoTiltSeriesPixelSize"].iloc[0] == pytest.approx(1.35)
    series = read_star(skeleton / "CtfFind/job003/tilt_series/TS_01.star")["TS_01"]
    assert isinstance(series, pd.DataFrame)
    assert series["rlnMicrographMovieName"].iloc[0] == "frames/TS_01_000_0.0.mrc"
    assert series["rlnTomoNominalStageTiltAngle"].iloc[1] == pytest.approx(3.00113)
