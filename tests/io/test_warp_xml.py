"""Warp item XML: the three warpylib tilt-series files, grid value order, the .xf import
relation, a synthetic Movie item, and malformed input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from cryowarp.errors import FileFormatError
from cryowarp.io.imod import read_tlt, read_xf
from cryowarp.io.warp_xml import read_warp_xml


def test_tilt_series_00254(warp_reference: Path) -> None:
    item = read_warp_xml(warp_reference / "00254.xml")
    assert item.kind == "TiltSeries"
    assert item.attributes["AreAnglesInverted"] == "True"
    assert item.attributes["PlaneNormal"] == "-0.041061223, -0.074988976, 0.99633867"
    assert item.unselect_filter is False
    assert item.unselect_manual is None  # UnselectManual=""
    assert item.ctf_resolution_estimate_a == 6.3
    ctf = item.ctf
    assert ctf is not None
    assert ctf.pixel_size_a == 1.7005
    assert (ctf.voltage_kv, ctf.cs_mm, ctf.amplitude) == (300.0, 2.7, 0.1)
    assert ctf.defocus_um == 1.835082
    assert ctf.defocus_delta_um == 0.0153119565014766
    assert ctf.defocus_angle_deg == 69.0
    assert ctf.phase_shift_pi == 0.0
    assert ctf.zernike_coeffs_odd == ()
    assert ctf.distortion == (1.0, 0.0, 0.0, 1.0)
    assert item.param_blocks["OptionsCTF"]["Window"] == "512"
    assert item.param_blocks["OptionsCTF"]["GridDims"] == "5,5,1"

    tilts = item.tilts
    assert tilts is not None
    assert tilts.n_tilts == 41
    assert (tilts.angles_deg[0], tilts.angles_deg[-1]) == (-60.01, 59.98)
    assert tilts.dose_e_per_a2[0] == 117.0
    # dose-symmetric scheme: the tilt nearest 0° was exposed first
    assert tilts.dose_e_per_a2[np.argmin(np.abs(tilts.angles_deg))] == 0.0
    assert tilts.use_tilt.all()
    assert tilts.axis_angle_deg[0] == -4.2999988
    assert (tilts.axis_offset_x_a[0], tilts.axis_offset_y_a[0]) == (262.72888, -19.614283)
    assert tilts.movie_paths[0] == "../2/TS_01_041_-60.0.tif"
    assert tilts.movie_paths[-1] == "../2/TS_01_042_60.0.tif"
    assert tilts.fov_fraction is not None
    assert tilts.fov_fraction[0] == 0.9207

    grid = item.grids["GridCTF"]
    assert grid.dims == (1, 1, 41)
    assert grid.values[0] == 1.5701942
    assert grid.values[20] == 1.9049848
    assert grid.as_array().shape == (41, 1, 1)
    assert item.grids["GridVolumeWarpX"].dims == (1, 1, 1, 1)
    assert item.grids["GridDoseWeights"].values[0] == 1.0
    # the item's CTF defocus is the mean of the per-tilt defocus grid
    assert grid.values.mean() == pytest.approx(ctf.defocus_um, abs=1e-6)

    assert item.curves["PS1D"].shape == (256, 2)
    np.testing.assert_array_equal(item.curves["PS1D"][1], [0.001953125, 6238.763])
    assert len(item.tilt_curves["TiltPS1D"]) == 41
    assert item.tilt_curves["TiltPS1D"][3][0, 1] == 15526.596
    assert item.other == ()


def test_tilt_series_ts1_grid_order(warp_reference: Path) -> None:
    item = read_warp_xml(warp_reference / "TS_1.xml")
    assert (
        item.attributes["MagnificationCorrection"]
        == "1.0062196, 0.00422745, 0.004283654, 1.0009562"
    )
    ctf = item.ctf
    assert ctf is not None
    assert ctf.pixel_size_a == 0.834
    assert ctf.cs_mm == 3.27283443186616
    assert ctf.zernike_coeffs_odd[:2] == (3.4192607, -11.709824)
    assert len(ctf.zernike_coeffs_odd) == 12
    assert ctf.zernike_coeffs_even[0] == 0.85632384
    assert item.tilts is not None
    assert (item.tilts.angles_deg[0], item.tilts.angles_deg[-1]) == (40.01, -39.98)
    assert item.tilts.dose_e_per_a2[0] == 120.0

    movement = item.grids["GridMovementX"]
    assert movement.dims == (6, 4, 41)  # (width, height, depth) = nodes along X, Y, Z
    assert movement.margins == (0.0, 0.0, 0.0)
    # flat order: X fastest, then Y, then Z (the order Warp lists the nodes)
    assert movement.values[:3].tolist() == [-1.3210737, -0.3384567, -3.072738]
    assert movement.values[6] == -4.029536  # X=0, Y=1, Z=0
    assert movement.values[24] == -4.5789914  # X=0, Y=0, Z=1
    volume = movement.as_array()  # (depth, height, width)
    assert volume.shape == (41, 4, 6)
    assert volume[0, 1, 0] == -4.029536
    assert volume[1, 0, 0] == -4.5789914
    assert volume[40, 3, 5] == 3.588982
    assert item.grids["GridMovementY"].values[0] == 5.059104
    assert item.grids["GridDoseBfacs"].values[0] == -275.2759
    assert item.grids["GridAngleZ"].values[1] == -0.55211157


def test_xf_import_relation(warp_reference: Path) -> None:
    """Warp's IMOD import (xf_import/00254.*): the tilt angles are the .tlt, AxisAngle is
    minus the .xf rotation, and the axis offset in Å is −A⁻¹·(DX, DY) times the .xf pixel
    size (10 Å here)."""
    folder = warp_reference / "xf_import"
    item = read_warp_xml(folder / "00254.xml")
    xf = read_xf(folder / "00254.xf")
    tilts = item.tilts
    assert tilts is not None
    np.testing.assert_array_equal(tilts.angles_deg, read_tlt(folder / "00254.tlt"))
    np.testing.assert_allclose(tilts.axis_angle_deg, -xf.rotation_deg, atol=1e-5)
    offsets_px = -np.einsum("nij,nj->ni", np.linalg.inv(xf.matrices), xf.shifts_px)
    offsets_a = np.stack([tilts.axis_offset_x_a, tilts.axis_offset_y_a], axis=-1)
    np.testing.assert_allclose(offsets_a, 10.0 * offsets_px, atol=1e-3)
    assert item.ctf is not None
    assert item.ctf.pixel_size_a == 1.0
    assert item.grids["GridCTF"].dims == (1, 1, 1)
    np.testing.assert_array_equal(item.curves["SimulatedScale"], [[0, 1], [1, 1]])
    assert "OptionsCTF" not in item.param_blocks


_MOVIE = """\ufeff<?xml version="1.0" encoding="utf-8"?>
<Movie DataDirectory="" UnselectFilter="True" UnselectManual="False"
       CTFResolutionEstimate="3.1" MeanFrameMovement="1.25" MaskPercentage="2">
  <PS1D>0|1.5;0.25|2.5</PS1D>
  <OptionsMovement><Param Name="Bfactor" Value="-500" /></OptionsMovement>
  <CTF>
    <Param Name="PixelSize" Value="0.834" /><Param Name="Voltage" Value="300" />
    <Param Name="Cs" Value="2.7" /><Param Name="Amplitude" Value="0.07" />
    <Param Name="Defocus" Value="1.5" /><Param Name="DefocusDelta" Value="0.05" />
    <Param Name="DefocusAngle" Value="-30" /><Param Name="PhaseShift" Value="0.5" />
  </CTF>
  <GridLocalX Width="2" Height="1" Depth="2">
    <Node X="1" Y="0" Z="1" Value="4" /><Node X="0" Y="0" Z="0" Value="1" />
    <Node X="1" Y="0" Z="0" Value="2" /><Node X="0" Y="0" Z="1" Value="3" />
  </GridLocalX>
  <Future Kind="new"><Inner>text</Inner></Future>
</Movie>
"""


def test_movie_item_and_unknown_elements(tmp_path: Path) -> None:
    path = tmp_path / "movie.xml"
    path.write_text(_MOVIE, encoding="utf-8")
    item = read_warp_xml(path)
    assert item.kind == "Movie"
    assert item.tilts is None
    assert (item.unselect_filter, item.unselect_manual) == (True, False)
    assert item.mean_frame_movement_a == 1.25
    assert item.attributes["MaskPercentage"] == "2"
    assert item.ctf is not None
    assert (item.ctf.defocus_um, item.ctf.defocus_angle_deg) == (1.5, -30.0)
    assert item.ctf.phase_shift_pi == 0.5
    assert item.ctf.cc_mm is None
    assert item.param_blocks["OptionsMovement"] == {"Bfactor": "-500"}
    # nodes written out of order are placed by their explicit indices
    local = item.grids["GridLocalX"]
    assert local.values.tolist() == [1.0, 2.0, 3.0, 4.0]
    assert local.margins is None
    np.testing.assert_array_equal(item.curves["PS1D"], [[0, 1.5], [0.25, 2.5]])
    (future,) = item.other
    assert (future.tag, future.attributes) == ("Future", {"Kind": "new"})
    assert future.children[0].tag == "Inner"
    assert future.children[0].text == "text"


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("", "line 1, column 0: not well-formed"),
        ("<Movie><CTF></Movie>", "not well-formed"),
        ("<Particles />", "neither <Movie> nor <TiltSeries>"),
        (
            '<Movie><GridCTF Width="2" Height="1" Depth="1"><Node X="0" Y="0" Z="0" Value="1"/>'
            "</GridCTF></Movie>",
            "<GridCTF>: 1 nodes for a 2×1×1 grid",
        ),
        (
            '<Movie><GridCTF Width="1" Height="1" Depth="1"><Node X="0" Y="0" Z="0" '
            'Value="abc"/></GridCTF></Movie>',
            "'abc' is not a number",
        ),
        (
            '<Movie><GridCTF Width="1" Height="1" Depth="1"><Node X="1" Y="0" Z="0" '
            'Value="1"/></GridCTF></Movie>',
            "outside the grid",
        ),
        (
            "<TiltSeries><Angles>1\n2</Angles><Dose>0\n1\n2</Dose><UseTilt>True\nTrue</UseTilt>"
            "<AxisAngle>0\n0</AxisAngle></TiltSeries>",
            "2 Angles but per-tilt lists of sizes",
        ),
        (
            "<TiltSeries><Angles>1</Angles><Dose>0</Dose><UseTilt>Yes</UseTilt>"
            "<AxisAngle>0</AxisAngle></TiltSeries>",
            "'Yes' is not True/False",
        ),
        ('<Movie><CTF><Param Name="Voltage" Value="300"/></CTF></Movie>', "PixelSize is missing"),
    ],
)
def test_malformed(tmp_path: Path, text: str, match: str) -> None:
    path = tmp_path / "bad.xml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(FileFormatError, match=match) as info:
        read_warp_xml(path)
    assert info.value.path == path
