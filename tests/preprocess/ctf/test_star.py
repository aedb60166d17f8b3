"""micrographs_ctf.star from CTF results: RELION columns, units, optics groups, round trip."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cryowarp.errors import DimensionMismatchError
from cryowarp.io.relion import OpticsGroup, read_micrographs
from cryowarp.io.star import read_star
from cryowarp.preprocess.ctf.result import CtfResult
from cryowarp.preprocess.ctf.star import ctf_micrograph_table, write_micrographs_ctf_star


def _result(
    u_um: float,
    v_um: float,
    angle_deg: float,
    *,
    phase_deg: float = 0.0,
    pixel_size_a: float = 1.2,
    voltage_kv: float = 300.0,
    resolution_a: float = 3.8,
    score: float = 0.41,
) -> CtfResult:
    return CtfResult(
        defocus_u_um=u_um,
        defocus_v_um=v_um,
        astigmatism_angle_deg=angle_deg,
        phase_shift_deg=phase_deg,
        defocus_grid_um=((0.5 * (u_um + v_um),),),
        image_size_xy_a=(1000.0, 1000.0),
        resolution_a=resolution_a,
        fit_score=score,
        pixel_size_a=pixel_size_a,
        voltage_kv=voltage_kv,
        cs_mm=2.7,
        amplitude_contrast=0.07,
    )


def _failed() -> CtfResult:
    return CtfResult.failure(
        "the image is constant", pixel_size_a=1.2, voltage_kv=300.0, cs_mm=2.7,
        amplitude_contrast=0.07,
    )  # fmt: skip


def test_star_holds_relion_columns_in_angstrom_and_degrees(tmp_path: Path) -> None:
    results = [_result(1.8, 1.6, 35.0, phase_deg=88.0), _failed(), _result(2.5, 2.45, -20.0)]
    names = ["MotionCorr/a.mrc", "MotionCorr/b.mrc", "MotionCorr/c.mrc"]
    path = tmp_path / "micrographs_ctf.star"
    assert write_micrographs_ctf_star(path, names, results) == 2
    optics, table = read_micrographs(path)
    assert table.micrograph_names() == ["MotionCorr/a.mrc", "MotionCorr/c.mrc"]  # failed left out
    np.testing.assert_allclose(table.defocus_u_a(), [18000.0, 25000.0], atol=1e-5)
    np.testing.assert_allclose(table.defocus_v_a(), [16000.0, 24500.0], atol=1e-5)
    np.testing.assert_allclose(table.defocus_angle_deg(), [35.0, -20.0])
    np.testing.assert_allclose(table.phase_shift_deg(), [88.0, 0.0])
    np.testing.assert_allclose(table.ctf_max_resolution_a(), [3.8, 3.8])
    np.testing.assert_allclose(table.ctf_figure_of_merit(), [0.41, 0.41])
    np.testing.assert_allclose(table.frame["rlnCtfAstigmatism"].astype(float), [2000.0, 500.0])
    assert len(optics) == 1
    assert (optics[0].pixel_size_a, optics[0].voltage_kv, optics[0].cs_mm) == (1.2, 300.0, 2.7)
    assert optics[0].amplitude_contrast == 0.07
    blocks = read_star(path)
    assert set(blocks) == {"optics", "micrographs"}
    assert "rlnMicrographPixelSize" in blocks["optics"].columns  # type: ignore[union-attr]


def test_distinct_optics_get_their_own_groups() -> None:
    results = [_result(1.0, 1.0, 0.0), _result(1.0, 1.0, 0.0, pixel_size_a=0.83),
               _result(1.0, 1.0, 0.0, voltage_kv=200.0), _result(2.0, 2.0, 0.0)]  # fmt: skip
    optics, table = ctf_micrograph_table(["a", "b", "c", "d"], results)
    assert [g.optics_group for g in optics] == [1, 2, 3]
    assert table.optics_group_ids().tolist() == [1, 2, 3, 1]
    np.testing.assert_allclose(table.pixel_size_a(), [1.2, 0.83, 1.2, 1.2])
    np.testing.assert_allclose(table.voltage_kv(), [300.0, 300.0, 200.0, 300.0])


def test_given_optics_groups_are_matched_and_mismatches_raise() -> None:
    group = OpticsGroup(7, "krios", 1.2, 300.0, 2.7, 0.07)
    optics, table = ctf_micrograph_table(["a"], [_result(1.0, 0.9, 10.0)], optics=[group])
    assert optics == [group]
    assert table.optics_group_ids().tolist() == [7]
    with pytest.raises(DimensionMismatchError, match="no optics group matches"):
        ctf_micrograph_table(["a"], [_result(1.0, 0.9, 10.0, pixel_size_a=1.0)], optics=[group])
    with pytest.raises(DimensionMismatchError, match="2 micrograph names for 1 CTF results"):
        ctf_micrograph_table(["a", "b"], [_result(1.0, 0.9, 10.0)])


@settings(max_examples=20)  # each example writes and parses a file
@given(
    u_um=st.floats(0.2, 6.0),
    delta_um=st.floats(0.0, 0.3),
    angle_deg=st.floats(-90.0, 90.0),
    phase_deg=st.floats(0.0, 180.0),
)
def test_write_read_round_trip(
    u_um: float, delta_um: float, angle_deg: float, phase_deg: float
) -> None:
    import tempfile

    result = _result(u_um + delta_um, u_um, angle_deg, phase_deg=phase_deg)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "micrographs_ctf.star"
        write_micrographs_ctf_star(path, ["movie_000.mrc"], [result])
        _, table = read_micrographs(path)
    # six decimals in the file: |error| <= 5e-7 of the written unit
    assert abs(table.defocus_u_a()[0] - result.defocus_u_um * 1e4) <= 1e-6
    assert abs(table.defocus_v_a()[0] - result.defocus_v_um * 1e4) <= 1e-6
    assert abs(table.defocus_angle_deg()[0] - angle_deg) <= 1e-6
    assert abs(table.phase_shift_deg()[0] - phase_deg) <= 1e-6


def test_a_batch_without_success_writes_a_readable_empty_table(tmp_path: Path) -> None:
    path = tmp_path / "micrographs_ctf.star"
    assert write_micrographs_ctf_star(path, ["a.mrc"], [_failed()]) == 0
    optics, table = read_micrographs(path)
    assert len(table) == 0
    assert optics[0].pixel_size_a == 1.2
