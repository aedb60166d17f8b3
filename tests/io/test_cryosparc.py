"""cryoSPARC .cs files: the real EMPIAR-10076 file (against its RELION STAR twin), exact write →
read round trips, particle locations and malformed files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from cryowarp.errors import (
    DimensionMismatchError,
    FileFormatError,
    MissingColumnError,
    MissingFileError,
    TruncatedFileError,
)
from cryowarp.io.cryosparc import (
    CsTable,
    cs_from_columns,
    location_fractions,
    location_px,
    read_cs,
    write_cs,
)
from cryowarp.io.relion import read_particles


@pytest.fixture
def empiar10076(shared_data: Path) -> Path:
    return shared_data / "particles" / "cryodrgn_empiar10076_7ptcl"


def test_real_file_fields_and_values(empiar10076: Path) -> None:
    table = read_cs(empiar10076 / "empiar_10076_7.cs")
    assert len(table) == 7
    assert len(table.fields) == 24
    assert table.fields[:3] == ("uid", "blob/path", "blob/idx")
    assert table.texts("blob/path") == ["empiar_10076_7.mrc"] * 7
    assert table.texts("ctf/type") == ["imported"] * 7
    np.testing.assert_array_equal(table.numbers("blob/idx"), np.arange(7))
    np.testing.assert_array_equal(table.numbers("blob/shape"), np.full((7, 2), 320.0))
    assert table.numbers("ctf/tetra_A").shape == (7, 4)
    # pixel = 5 µm / 38168× = 1.30999 Å, stored as float32
    np.testing.assert_allclose(table.numbers("blob/psize_A"), 5e4 / 38168, rtol=1e-6)
    assert table.numbers("ctf/df1_A")[0] == pytest.approx(15301.1, abs=1e-3)
    assert table.numbers("ctf/df2_A")[6] == pytest.approx(14792.7, abs=1e-3)


def test_ctf_agrees_with_the_relion_star_of_the_same_particles(empiar10076: Path) -> None:
    """The .cs and the RELION 3.0 .star describe the same 7 particles: defocus U/V (Å), the
    astigmatism angle (rad vs degrees), voltage, Cs, amplitude contrast and pixel size agree to
    float32 precision."""
    table = read_cs(empiar10076 / "empiar_10076_7.cs")
    _, star = read_particles(empiar10076 / "empiar_10076_7.star")
    np.testing.assert_allclose(table.numbers("ctf/df1_A"), star.defocus_u_a(), atol=2e-3)
    np.testing.assert_allclose(table.numbers("ctf/df2_A"), star.defocus_v_a(), atol=2e-3)
    np.testing.assert_allclose(
        np.degrees(table.numbers("ctf/df_angle_rad")), star.defocus_angle_deg(), atol=1e-5
    )
    np.testing.assert_allclose(
        np.degrees(table.numbers("ctf/phase_shift_rad")), star.phase_shift_deg()
    )
    np.testing.assert_allclose(table.numbers("ctf/accel_kv"), star.voltage_kv())
    np.testing.assert_allclose(table.numbers("ctf/cs_mm"), star.cs_mm(), rtol=1e-6)
    np.testing.assert_allclose(
        table.numbers("ctf/amp_contrast"), star.amplitude_contrast(), rtol=1e-6
    )
    np.testing.assert_allclose(table.numbers("blob/psize_A"), star.pixel_size_a(), rtol=1e-6)
    indices = [loc.stack_index for loc in star.image_locations()]
    np.testing.assert_array_equal(table.numbers("blob/idx") + 1, indices)


def test_real_file_round_trips_exactly(empiar10076: Path, tmp_path: Path) -> None:
    original = np.load(empiar10076 / "empiar_10076_7.cs")
    write_cs(tmp_path / "copy.cs", read_cs(empiar10076 / "empiar_10076_7.cs"))
    again = read_cs(tmp_path / "copy.cs").array
    assert again.dtype == original.dtype
    assert again.tobytes() == original.tobytes()


@settings(max_examples=25, deadline=None)
@given(
    n=st.integers(0, 6),
    names=st.lists(st.text("abc_/.0123456789µ", min_size=1, max_size=12), min_size=6, max_size=6),
    values=arrays(np.float32, (6, 2), elements=st.floats(-1e6, 1e6, width=32)),
)
def test_columns_round_trip_exactly(
    tmp_path_factory: pytest.TempPathFactory, n: int, names: list[str], values: np.ndarray
) -> None:
    table = cs_from_columns(
        {
            "uid": np.arange(n, dtype=np.uint64),
            "location/micrograph_path": np.array(names[:n], dtype=np.str_),
            "alignments3D/shift": values[:n],
            "blob/idx": np.arange(n, dtype=np.uint32),
        }
    )
    path = tmp_path_factory.mktemp("cs") / "t.cs"
    write_cs(path, table)
    again = read_cs(path)
    assert again.fields == ("uid", "location/micrograph_path", "alignments3D/shift", "blob/idx")
    assert again.texts("location/micrograph_path") == names[:n]
    np.testing.assert_array_equal(again.column("alignments3D/shift"), values[:n])
    assert again.array.tobytes() == table.array.tobytes()


def test_location_y_is_measured_from_the_bottom() -> None:
    """cryoSPARC's y fraction counts from the bottom of the micrograph as RELION reads it
    (pyem #81): a particle 10 % from cryoSPARC's bottom is 90 % down RELION's rows, unless the
    micrographs were cryoSPARC Patch Motion ones (upside down: the flips cancel)."""
    table = cs_from_columns(
        {
            "location/micrograph_path": ["a.mrc"],
            "location/micrograph_shape": np.array([[4000, 3000]], dtype=np.uint32),  # (H, W)
            "location/center_x_frac": np.array([0.25], dtype=np.float32),
            "location/center_y_frac": np.array([0.1], dtype=np.float32),
        }
    )
    np.testing.assert_allclose(location_px(table), [[750.0, 3600.0]], rtol=1e-6)
    np.testing.assert_allclose(location_px(table, y_up=False), [[750.0, 400.0]], rtol=1e-6)
    for y_up in (True, False):
        fractions = location_fractions(location_px(table, y_up=y_up), (4000, 3000), y_up=y_up)
        np.testing.assert_allclose(fractions, [[0.25, 0.1]], rtol=1e-6)


def test_missing_fields_are_named(empiar10076: Path) -> None:
    table = read_cs(empiar10076 / "empiar_10076_7.cs")
    with pytest.raises(MissingColumnError, match=r"empiar_10076_7\.cs.*location/center_x_frac"):
        location_px(table)
    with pytest.raises(MissingColumnError, match="alignments3D/pose"):
        table.numbers("alignments3D/pose")
    with pytest.raises(FileFormatError, match="not numeric"):
        table.numbers("blob/path")
    with pytest.raises(FileFormatError, match="not text"):
        table.texts("uid")


def test_malformed_files(tmp_path: Path, empiar10076: Path) -> None:
    text = tmp_path / "particles.cs"
    text.write_text("data_\nloop_\n_rlnImageName\n")
    with pytest.raises(FileFormatError, match=r"particles\.cs.*not a cryoSPARC"):
        read_cs(text)
    plain = tmp_path / "plain.cs"
    with plain.open("wb") as handle:
        np.save(handle, np.zeros((3, 2)))
    with pytest.raises(FileFormatError, match="structured"):
        read_cs(plain)
    objects = tmp_path / "objects.cs"
    with objects.open("wb") as handle:
        np.save(handle, np.array([(1, None)], dtype=[("a", "i4"), ("b", "O")]))
    with pytest.raises(FileFormatError, match="Python objects"):
        read_cs(objects)
    truncated = tmp_path / "cut.cs"
    truncated.write_bytes((empiar10076 / "empiar_10076_7.cs").read_bytes()[:-100])
    with pytest.raises(TruncatedFileError, match=r"cut\.cs"):
        read_cs(truncated)
    with pytest.raises(MissingFileError):
        read_cs(tmp_path / "absent.cs")


def test_columns_of_different_lengths_are_refused() -> None:
    with pytest.raises(DimensionMismatchError):
        cs_from_columns({"a": np.zeros(3), "b": np.zeros(2)})
    with pytest.raises(FileFormatError):
        CsTable(np.zeros(3))
