"""IMOD .xf / .tlt / .rawtlt / .xtilt / .edf: real etomo and Warp-import fixtures, round trips
and malformed input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from cryowarp.errors import FileFormatError, InvalidValuesError
from cryowarp.io.imod import XfTransforms, read_edf, read_tlt, read_xf, write_tlt, write_xf


@pytest.fixture
def etomo(shared_data: Path) -> Path:
    return shared_data / "metadata" / "imod_etomo_TS_001"


def test_read_xf_etomo_values(etomo: Path) -> None:
    xf = read_xf(etomo / "TS_001.xf")
    assert xf.n_views == 40
    # first line:  0.1020875   0.9947760  -0.9947760   0.1020875       2.395      -3.871
    np.testing.assert_array_equal(xf.matrices[0], [[0.1020875, 0.9947760], [-0.9947760, 0.1020875]])
    np.testing.assert_array_equal(xf.shifts_px[0], [2.395, -3.871])
    # line 20: ... 13.564 11.271 ; last line: ... -3.070 0.039
    np.testing.assert_array_equal(xf.shifts_px[19], [13.564, 11.271])
    np.testing.assert_array_equal(xf.shifts_px[-1], [-3.070, 0.039])


def test_xf_rotation_matches_etomo_tilt_axis(etomo: Path) -> None:
    """etomo's transforms rotate the tilt axis (ImageRotationA = 83.9° in the .edf) onto +y:
    the in-plane rotation of every view is about −83.9°, magnification about 1."""
    xf = read_xf(etomo / "TS_001.xf")
    edf = read_edf(etomo / "TS_001.edf")
    axis_deg = float(edf["Setup.ImageRotationA"])
    assert axis_deg == pytest.approx(83.9)
    assert np.all(np.abs(xf.rotation_deg + axis_deg) < 0.5)
    np.testing.assert_allclose(xf.magnification, 1.0, atol=1e-4)
    assert float(edf["Setup.PixelSize"]) == pytest.approx(0.6192)


def test_read_tlt_rawtlt_xtilt(etomo: Path) -> None:
    tlt = read_tlt(etomo / "TS_001.tlt")
    raw = read_tlt(etomo / "TS_001.rawtlt")
    xtilt = read_tlt(etomo / "TS_001.xtilt")
    assert tlt.shape == raw.shape == xtilt.shape == (40,)
    assert (tlt[0], tlt[19], tlt[-1]) == (-57.12, -0.16, 59.84)
    assert (raw[0], raw[-1]) == (-60.0, 56.99)
    assert xtilt[0] == -0.01
    # refined angles stay within a few degrees of the nominal ones, in the same order
    assert np.all(np.abs(tlt - raw) < 3.5)
    assert np.all(np.diff(tlt) > 0)


def test_read_warp_import_example(warp_reference: Path) -> None:
    xf = read_xf(warp_reference / "xf_import" / "00254.xf")
    tlt = read_tlt(warp_reference / "xf_import" / "00254.tlt")
    assert xf.n_views == tlt.shape[0] == 41
    np.testing.assert_array_equal(xf.shifts_px[0], [-27.094, -2.191])
    np.testing.assert_array_equal(xf.shifts_px[-1], [27.871, 4.705])
    assert (tlt[0], tlt[-1]) == (-60.01, 59.98)
    np.testing.assert_allclose(xf.rotation_deg, 4.29997, atol=1e-4)


finite = st.floats(-1e4, 1e4, allow_nan=False, allow_infinity=False)


@given(
    matrices=arrays(
        np.float64,
        st.tuples(st.integers(1, 8), st.just(2), st.just(2)),
        elements=st.floats(-2, 2, allow_nan=False),
    ),
    data=st.data(),
)
def test_xf_round_trip(
    tmp_path_factory: pytest.TempPathFactory, matrices: np.ndarray, data: st.DataObject
) -> None:
    shifts = data.draw(arrays(np.float64, (matrices.shape[0], 2), elements=finite))
    path = tmp_path_factory.mktemp("xf") / "a.xf"
    write_xf(path, XfTransforms(matrices, shifts))
    back = read_xf(path)
    np.testing.assert_allclose(back.matrices, matrices, atol=5.1e-8, rtol=0)
    np.testing.assert_allclose(back.shifts_px, shifts, atol=5.1e-4, rtol=0)


@given(angles=arrays(np.float64, st.integers(1, 60), elements=st.floats(-180, 180)))
def test_tlt_round_trip(tmp_path_factory: pytest.TempPathFactory, angles: np.ndarray) -> None:
    path = tmp_path_factory.mktemp("tlt") / "a.tlt"
    write_tlt(path, angles, decimals=3)
    np.testing.assert_allclose(read_tlt(path), angles, atol=5.1e-4, rtol=0)


def test_real_xf_survives_write_read(etomo: Path, tmp_path: Path) -> None:
    xf = read_xf(etomo / "TS_001.xf")
    write_xf(tmp_path / "copy.xf", xf)
    back = read_xf(tmp_path / "copy.xf")
    np.testing.assert_array_equal(back.matrices, xf.matrices)
    np.testing.assert_array_equal(back.shifts_px, xf.shifts_px)


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("", "empty file"),
        ("\n  \n", "empty file"),
        ("1 0 0 1 0 0\n1 0 0 1 0\n", "line 2: expected 6"),
        ("1 0 0 1 0 0\n1 0 zero 1 0 0\n", "line 2: non-numeric"),
    ],
)
def test_malformed_xf(tmp_path: Path, text: str, match: str) -> None:
    path = tmp_path / "bad.xf"
    path.write_text(text)
    with pytest.raises(FileFormatError, match=match) as info:
        read_xf(path)
    assert info.value.path == path


def test_malformed_tlt(tmp_path: Path) -> None:
    path = tmp_path / "bad.tlt"
    path.write_text("-3.0\n0.0 1.0\n")
    with pytest.raises(FileFormatError, match="line 2: expected 1"):
        read_tlt(path)
    path.write_text("-3.0\nnan\n")
    with pytest.raises(InvalidValuesError, match="line 2"):
        read_tlt(path)
    path.write_text("")
    with pytest.raises(FileFormatError, match="empty file"):
        read_tlt(path)


def test_malformed_edf(tmp_path: Path) -> None:
    path = tmp_path / "bad.edf"
    path.write_text("#comment\nSetup.PixelSize=1.0\nno equals sign here\n")
    with pytest.raises(FileFormatError, match="line 3"):
        read_edf(path)
