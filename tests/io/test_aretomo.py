"""AreTomo .aln: the v1.2 and v1.3 fixtures, dark frames and local alignment, bad input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from cryowarp.errors import FileFormatError, InvalidValuesError
from cryowarp.io.aretomo import read_aln

_COLUMNS = (
    "# SEC     ROT         GMAG       TX          TY      SMEAN     SFIT    SCALE     BASE     TILT"
)


@pytest.fixture
def aln_dir(shared_data: Path) -> Path:
    return shared_data / "metadata" / "aretomo_aln_examples"


def test_v1_2(aln_dir: Path) -> None:
    aln = read_aln(aln_dir / "example_v1_2_0.aln")
    assert aln.n_sections == 41
    assert aln.raw_size_px is None  # v1.2 has no RawSize line
    assert aln.n_patches == 0
    assert aln.dark_frames == ()
    assert aln.local is None
    assert "41  0" in aln.comments
    np.testing.assert_array_equal(aln.section_index, np.arange(41))
    assert (aln.tilt_angle_deg[0], aln.tilt_angle_deg[-1]) == (-51.98, 68.0)
    assert (aln.shift_x_px[0], aln.shift_y_px[0]) == (155.235, 708.75)
    assert aln.rotation_deg[0] == -93.7196
    # the reference section (TX = TY = 0) is the one nearest 0° tilt
    assert aln.shift_x_px[17] == aln.shift_y_px[17] == 0.0
    assert aln.tilt_angle_deg[17] == -0.99
    np.testing.assert_array_equal(aln.magnification, 1.0)


def test_v1_3(aln_dir: Path) -> None:
    aln = read_aln(aln_dir / "example_v1_3_0.aln")
    assert aln.n_sections == 41
    assert aln.raw_size_px == (5760, 4092, 41)
    assert aln.n_patches == 0
    np.testing.assert_array_equal(aln.rotation_deg, -93.6692)
    assert (aln.shift_x_px[-1], aln.shift_y_px[-1]) == (44.463, -809.333)
    # same tilt angles as v1.2 (same data set, re-aligned)
    np.testing.assert_array_equal(
        aln.tilt_angle_deg, read_aln(aln_dir / "example_v1_2_0.aln").tilt_angle_deg
    )


def _synthetic_aln(n_patches: int = 2, n_local_rows: int | None = None) -> str:
    lines = [
        "# AreTomo Alignment / Priism bprmMn",
        "# RawSize = 4096 4096 5",
        f"# NumPatches = {n_patches}",
        "# DarkFrame =     0    0   -60.00",
        "# DarkFrame =     4    4    60.00",
        "# AlphaOffset =     1.50",
        "# Thickness = 1200",
        _COLUMNS,
        "  0  84.4  1.00000   13.382   21.802  1.00  1.00  1.00  0.00  -30.00",
        "  1  84.4  1.00000    0.000    0.000  1.00  1.00  1.00  0.00    0.00",
        "  2  84.4  0.99000   -7.293 -103.694  1.00  1.00  1.00  0.00   30.00",
        "# Local Alignment",
    ]
    rows = [
        f"{sec:4d}{patch:4d} {-1000.0 + 2000 * patch:9.2f} {-500.0:9.2f} {0.5 * sec:8.2f}"
        f" {-0.25 * patch:8.2f} {1.0 if (sec, patch) != (2, 1) else 0.0:5.1f}"
        for sec in range(3)
        for patch in range(n_patches)
    ]
    return "\n".join(lines + rows[:n_local_rows]) + "\n"


def test_dark_frames_and_local_alignment(tmp_path: Path) -> None:
    path = tmp_path / "local.aln"
    path.write_text(_synthetic_aln())
    aln = read_aln(path)
    assert aln.raw_size_px == (4096, 4096, 5)
    assert aln.n_patches == 2
    assert [(d.raw_index, d.second_index, d.tilt_angle_deg) for d in aln.dark_frames] == [
        (0, 0, -60.0),
        (4, 4, 60.0),
    ]
    assert aln.header["AlphaOffset"] == "1.50"
    assert aln.header["Thickness"] == "1200"
    assert aln.n_sections == 3
    assert aln.magnification[2] == 0.99
    local = aln.local
    assert local is not None
    np.testing.assert_array_equal(local.section_index, [0, 0, 1, 1, 2, 2])
    np.testing.assert_array_equal(local.patch_index, [0, 1, 0, 1, 0, 1])
    np.testing.assert_array_equal(local.center_x_px, [-1000, 1000] * 3)
    np.testing.assert_array_equal(local.shift_x_px, [0, 0, 0.5, 0.5, 1, 1])
    np.testing.assert_array_equal(local.shift_y_px, [0, -0.25] * 3)
    np.testing.assert_array_equal(local.reliable, [True] * 5 + [False])


def test_local_alignment_row_count_checked(tmp_path: Path) -> None:
    path = tmp_path / "short.aln"
    path.write_text(_synthetic_aln(n_local_rows=5))
    with pytest.raises(FileFormatError, match="local alignment has 5 rows, expected"):
        read_aln(path)


@pytest.mark.parametrize(
    ("body", "error", "match"),
    [
        ("", FileFormatError, "no alignment rows"),
        (f"# AreTomo Alignment\n{_COLUMNS}\n", FileFormatError, "no alignment rows"),
        (
            f"{_COLUMNS}\n    0   84.4  1.0  0.0  0.0  1.0  1.0  1.0  0.0\n",
            FileFormatError,
            "line 2: expected 10 columns",
        ),
        (
            f"{_COLUMNS}\n    0   84.4  1.0  x  0.0  1.0  1.0  1.0  0.0  0.0\n",
            FileFormatError,
            "line 2: non-numeric",
        ),
        (
            f"{_COLUMNS}\n    0   84.4  1.0  nan  0.0  1.0  1.0  1.0  0.0  0.0\n",
            InvalidValuesError,
            "line 2",
        ),
        (
            f"# DarkFrame = 0 -60\n{_COLUMNS}\n    0 84.4 1 0 0 1 1 1 0 0\n",
            FileFormatError,
            "line 1: DarkFrame",
        ),
        (
            f"# RawSize = 4096 4096\n{_COLUMNS}\n    0 84.4 1 0 0 1 1 1 0 0\n",
            FileFormatError,
            "line 1: RawSize",
        ),
        (f"{_COLUMNS}\n  0.5 84.4 1 0 0 1 1 1 0 0\n", FileFormatError, "SEC column"),
    ],
)
def test_malformed(tmp_path: Path, body: str, error: type[Exception], match: str) -> None:
    path = tmp_path / "bad.aln"
    path.write_text(body)
    with pytest.raises(error, match=match):
        read_aln(path)
