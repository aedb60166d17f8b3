"""SerialEM .mdoc: every real fixture (tilt series, frame sets, montages) and malformed input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from cryowarp.errors import FileFormatError
from cryowarp.io.mdoc import read_mdoc


@pytest.fixture
def mdocs(shared_data: Path) -> Path:
    return shared_data / "metadata" / "serialem_mdoc_teamtomo"


def test_tilt_series(mdocs: Path) -> None:
    mdoc = read_mdoc(mdocs / "tilt_series.mdoc")
    assert mdoc.pixel_size_a == 5.4
    assert mdoc.image_file == "TS_01.mrc"
    assert mdoc.image_size_px == (924, 958)
    assert mdoc.tilt_axis_angle_deg == 85.3
    assert len(mdoc.titles) == 2
    assert "EMBL Krios" in mdoc.titles[0]
    assert len(mdoc.z_values) == 41
    assert [s.index for s in mdoc.z_values] == list(range(41))
    first, second, last = mdoc.z_values[0], mdoc.z_values[1], mdoc.z_values[-1]
    assert first.tilt_angle_deg == 0.000999877
    assert second.tilt_angle_deg == 3.00113
    assert last.tilt_angle_deg == 60.0006
    assert first.stage_position_um == (20.7936, 155.287)
    assert first.stage_z_um == 163.803
    assert first.microscope_defocus_um == 2.68083
    assert first.target_defocus_um == -4.0
    assert first.image_shift == (-0.0108126, -0.121079)
    assert first.magnification == 105000
    assert first.exposure_time_s == 0.8
    assert first.binning == 4
    assert first.min_max_mean == (5, 1403, 623.699)
    assert first.num_sub_frames == 8
    assert first.date_time == "30-Nov-15  15:21:38"
    assert first.sub_frame_path == "D:\\DATA\\Flo\\HGK149_20151130\\frames\\TS_01_000_0.0.mrc"
    assert first.frame_file_name == "TS_01_000_0.0.mrc"
    assert last.frame_file_name == "TS_01_040_60.0.mrc"
    angles = mdoc.tilt_angles_deg
    assert angles.shape == (41,)
    # dose-symmetric-like acquisition from 0° out to ±60° in 3° steps
    np.testing.assert_allclose(np.sort(np.round(angles)), np.arange(-60, 61, 3))
    np.testing.assert_array_equal(mdoc.exposure_doses_e_per_a2, 0.0)


def test_frame_set_single(mdocs: Path) -> None:
    mdoc = read_mdoc(mdocs / "frame_set_single.mdoc")
    assert mdoc.voltage_kv == 300
    assert mdoc.titles[0].startswith("SerialEM: UMass_Krios")
    assert mdoc.z_values == ()
    (frames,) = mdoc.frame_sets
    assert frames.index == 0
    assert frames.tilt_angle_deg == 32.984
    assert frames.exposure_dose_e_per_a2 == 7.65892
    assert frames.pixel_size_a == 1.2827
    assert frames.binning == 0.5
    assert frames.num_sub_frames == 12
    assert frames.frame_doses_and_number == (0.63824, 12)
    assert frames.frame_file_name == "s_mmm_00993_33.0_Oct08_07.39.05.tif"
    assert frames.entries["GainReference"] == "SuperRef_s_mmm_00000_-15.0_Oct08_01.59.24.dm4"


def test_frame_set_multiple(mdocs: Path) -> None:
    mdoc = read_mdoc(mdocs / "frame_set_multiple.mdoc")
    assert len(mdoc.frame_sets) == 1
    assert mdoc.frame_sets[0].num_sub_frames == 243
    assert len(mdoc.z_values) == 20
    np.testing.assert_array_equal(mdoc.tilt_angles_deg, 33.0)
    last = mdoc.z_values[-1]
    assert last.index == 19
    assert last.prior_record_dose_e_per_a2 == 145.817
    assert last.exposure_dose_e_per_a2 == 7.66184
    assert last.entries["FrameTSStartEndFrames"] == "419 431"
    # prior dose is the running sum of the earlier exposures (to SerialEM's 6 digits)
    doses = mdoc.exposure_doses_e_per_a2
    prior = mdoc.column("prior_record_dose_e_per_a2")
    np.testing.assert_allclose(prior[1:], np.cumsum(doses)[:-1], rtol=1e-4)


@pytest.mark.parametrize(
    ("name", "n_pieces", "n_sections", "pixel_size_a", "axis_deg"),
    [
        ("montage_section.mdoc", 62, 1, 656.139, -86.7),
        ("montage_section_multiple.mdoc", 90, 10, 76.8, 85.5),
    ],
)
def test_montages(
    mdocs: Path, name: str, n_pieces: int, n_sections: int, pixel_size_a: float, axis_deg: float
) -> None:
    mdoc = read_mdoc(mdocs / name)
    assert len(mdoc.z_values) == n_pieces
    assert len(mdoc.montage_sections) == n_sections
    assert mdoc.pixel_size_a == pixel_size_a
    assert mdoc.tilt_axis_angle_deg == axis_deg
    assert mdoc.header["Montage"] == "1"
    assert all(s.piece_coordinates_px is not None for s in mdoc.z_values)


def test_montage_values(mdocs: Path) -> None:
    mdoc = read_mdoc(mdocs / "montage_section.mdoc")
    assert mdoc.z_values[1].piece_coordinates_px == (0, 3400, 0)
    assert mdoc.z_values[61].piece_coordinates_px == (26928, 27200, 0)
    assert mdoc.z_values[0].microscope_defocus_um == -350.513
    section = mdoc.montage_sections[0]
    assert section.stage_position_um == (0.0, 0.0)
    assert section.dose_rate == 6.3311


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("", "empty file"),
        ("PixelSpacing = 1\n[ZValue = 0\n", "line 2: malformed section"),
        ("[ZValue = zero]\nTiltAngle = 1\n", "line 1: section index"),
        ("[ZValue = 0]\nTiltAngle 1\n", "line 2: expected 'Key = value'"),
        ("[ZValue = 0]\nTiltAngle = 1\nStagePosition = 1 two\n", "line 3: StagePosition"),
        ("[ZValue = 0]\nStagePosition = 1\n", "line 2: StagePosition needs 2"),
        ("[ZValue = 0]\nNumSubFrames = 1.5\n", "line 2: NumSubFrames"),
    ],
)
def test_malformed(tmp_path: Path, text: str, match: str) -> None:
    path = tmp_path / "bad.mdoc"
    path.write_text(text)
    with pytest.raises(FileFormatError, match=match) as info:
        read_mdoc(path)
    assert info.value.path == path
