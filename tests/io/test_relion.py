"""RELION particle/micrograph STAR files as typed tables: real fixtures, errors, round trips."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st

from cryowarp.errors import FileFormatError, InvalidValuesError, MissingColumnError
from cryowarp.io.relion import (
    ImageLocation,
    MicrographTable,
    OpticsGroup,
    ParticleTable,
    parse_image_name,
    read_micrographs,
    read_particles,
    read_tomo_particles,
    write_micrographs,
    write_particles,
)
from cryowarp.io.star import read_star

SKELETON = "metadata/relion5_tomo_tutorial_empiar10164_skeleton"


def test_parse_image_name() -> None:
    root = Path("/data/project")
    assert parse_image_name("000012@Extract/a.mrcs", root=root) == ImageLocation(
        12, root / "Extract/a.mrcs"
    )
    assert parse_image_name("stack.mrcs") == ImageLocation(None, Path("stack.mrcs"))
    assert parse_image_name("3@/abs/s.mrcs", root=root) == ImageLocation(3, Path("/abs/s.mrcs"))
    for bad in ("x@a.mrcs", "0@a.mrcs", "5@", ""):
        with pytest.raises(ValueError, match="image name"):
            parse_image_name(bad)


# ------------------------------------------------------------------ RELION 3.0 (legacy)


def test_relion30_empiar10076(shared_data: Path) -> None:
    path = shared_data / "particles/cryodrgn_empiar10076_7ptcl/empiar_10076_7.star"
    optics, table = read_particles(path)
    assert len(table) == 7
    assert len(optics) == 1
    group = optics[0]
    assert group.pixel_size_a == pytest.approx(5.0e4 / 38168)  # 5 µm detector pixel / 38168x
    assert (group.voltage_kv, group.cs_mm, group.amplitude_contrast) == (300.0, 2.7, 0.07)
    np.testing.assert_allclose(table.defocus_u_a()[:2], [15301.1, 15303.0])
    np.testing.assert_allclose(table.defocus_v_a()[-1], 14792.7)
    np.testing.assert_allclose(table.defocus_angle_deg(), 5.28)
    assert table.micrograph_names() == [str(i) for i in range(1, 8)]  # stays text
    locations = table.image_locations()
    assert [loc.stack_index for loc in locations] == list(range(1, 8))
    assert all(loc.path == path.parent / "empiar_10076_7.mrc" for loc in locations)
    assert locations[0].path.is_file()
    np.testing.assert_array_equal(table.origins_a(), np.zeros((7, 2)))  # absent → 0
    np.testing.assert_array_equal(table.pixel_size_a(), group.pixel_size_a)
    assert "rlnMagnification" not in table.frame.columns  # folded into the optics group


def test_relion30_origins_pixels_become_angstrom(shared_data: Path) -> None:
    path = (
        shared_data / "metadata/star_examples_cryodrgn/FinalRefinement-OriginalParticles-PfCRT.star"
    )
    with pytest.raises(MissingColumnError, match="rlnAmplitudeContrast"):
        read_particles(path)
    optics, table = read_particles(path, amplitude_contrast_if_missing=0.1)
    assert len(table) == 5
    assert optics[0].pixel_size_a == pytest.approx(1.035)  # 1.035 µm / 10000x
    # first row: rlnOriginX -0.14063 px, rlnOriginY -0.04688 px
    np.testing.assert_allclose(table.origins_a()[0], [-0.14063 * 1.035, -0.04688 * 1.035])
    np.testing.assert_allclose(table.euler_deg()[0], [16.093530, 86.352776, 98.225690])
    assert table.defocus_u_a()[0] == pytest.approx(15686.0)
    assert "rlnOriginX" not in table.frame.columns


def test_relion30_aspire_sample(shared_data: Path) -> None:
    optics, table = read_particles(
        shared_data / "particles/aspire_sample_17ptcl/sample_relion_data.star"
    )
    assert len(table) == 17
    pixel_a = 5.0e4 / 37369.207031
    assert optics[0].pixel_size_a == pytest.approx(pixel_a)
    np.testing.assert_allclose(table.coordinates_px()[0], [2158.111921, 3073.912046])
    np.testing.assert_allclose(table.origins_a()[0], [0.1996 * pixel_a, 0.1996 * pixel_a])
    np.testing.assert_allclose(table.euler_deg()[0], [109.186640, 122.200343, 71.118492])
    assert table.defocus_u_a()[0] == pytest.approx(21186.804688)
    assert table.random_subset()[0] == 2
    assert table.class_number().tolist() == [1] * 17


def test_relion30_subtilts_and_topaz(shared_data: Path) -> None:
    sta = "subtomo_particle_tiltseries/cryodrgn_sta_ribo_subtilts/sta_testing_bin8.star"
    optics, table = read_particles(shared_data / sta)
    assert len(table) == 219
    assert optics[0].pixel_size_a == pytest.approx(1.96)  # 1.96 µm / 10000x
    assert table.ctf_bfactor_a2()[0] == pytest.approx(-13.0)  # Warp dose B-factor
    assert table.ctf_scale()[0] == pytest.approx(1.0)
    topaz = shared_data / "metadata/topaz_empiar10025_picks_ctf"
    optics, table = read_particles(topaz / "particles.star")
    assert len(table) == 1500
    assert optics[0].pixel_size_a == pytest.approx(3.733333e4 / 38023)
    np.testing.assert_allclose(
        table.origins_a()[0], np.array([15.624062, -2.375938]) * 3.733333e4 / 38023
    )
    mic_optics, micrographs = read_micrographs(topaz / "ctf_params.star")
    assert len(micrographs) == 30
    assert mic_optics[0].pixel_size_a == pytest.approx(2.5e4 / 38023)
    assert micrographs.defocus_u_a()[0] == pytest.approx(14905.809570)
    assert micrographs.defocus_angle_deg()[0] == pytest.approx(-0.22)
    assert micrographs.ctf_figure_of_merit()[0] == pytest.approx(0.251670)
    name = "14sep05c_c_00003gr_00014sq_00004hl_00004es_c.mrc"
    assert micrographs.micrograph_names()[0] == name


# ------------------------------------------------------------------ RELION 3.1 / 5


def test_relion31_single_group(shared_data: Path) -> None:
    optics, table = read_particles(shared_data / "particles/cryodrgn_relion31_5ptcl/relion31.star")
    assert len(table) == 5
    group = optics[0]
    assert group == OpticsGroup(
        optics_group=1,
        name="opticsGroup1",
        pixel_size_a=2.806,
        voltage_kv=300.0,
        cs_mm=0.01,
        amplitude_contrast=0.1,
        image_size_px=256,
        image_dimensionality=2,
        micrograph_original_pixel_size_a=1.403,
    )
    np.testing.assert_allclose(table.origins_a()[0], [0.019324, -0.64686])
    np.testing.assert_allclose(table.euler_deg()[0], [-102.30296, 82.318041, 124.706463])
    np.testing.assert_allclose(table.coordinates_px()[0], [3277.0, 983.0])
    assert table.defocus_u_a()[0] == pytest.approx(13108.082418)
    assert table.defocus_angle_deg()[0] == pytest.approx(-160.39)
    assert table.ctf_scale()[0] == 1.0
    assert table.image_locations()[0].path.is_file()


def test_relion31_block_order_variant_reads_the_same(shared_data: Path) -> None:
    folder = shared_data / "particles/cryodrgn_relion31_5ptcl"
    assert list(read_star(folder / "relion31.v2.star")) == ["particles", "optics"]
    optics_a, a = read_particles(folder / "relion31.star")
    optics_b, b = read_particles(folder / "relion31.v2.star")
    assert optics_a == optics_b
    pd.testing.assert_frame_equal(a.frame, b.frame)


def test_column_order_does_not_matter(tmp_path: Path) -> None:
    rows = "data_particles\nloop_\n_rlnImageName #1\n_rlnOpticsGroup #2\n_rlnDefocusU #3\n"
    (tmp_path / "a.star").write_text(_OPTICS + rows + "1@s.mrcs 1 12000.5\n")
    swapped = rows.replace("_rlnImageName #1", "_rlnDefocusU #1").replace(
        "_rlnDefocusU #3", "_rlnImageName #3"
    )
    (tmp_path / "b.star").write_text(_OPTICS + swapped + "12000.5 1 1@s.mrcs\n")
    _, a = read_particles(tmp_path / "a.star")
    _, b = read_particles(tmp_path / "b.star")
    assert a.defocus_u_a().tolist() == b.defocus_u_a().tolist() == [12000.5]
    assert a.image_locations() == b.image_locations() == [ImageLocation(1, tmp_path / "s.mrcs")]


def test_relion31_six_optics_groups(shared_data: Path) -> None:
    path = shared_data / "particles/cryodrgn_relion31_5ptcl/relion31.6opticsgroups.star"
    optics, table = read_particles(path)
    assert len(table) == 139
    assert [g.optics_group for g in optics] == [1, 2, 3, 4, 5, 6]
    first = optics[0]
    assert first.name == "opticsGroup5"
    assert (first.beam_tilt_x_mrad, first.beam_tilt_y_mrad) == (0.657334, 0.884982)
    assert first.odd_zernike is not None
    assert len(first.odd_zernike) == 6
    assert first.odd_zernike[0] == pytest.approx(1.70554063513)
    assert first.ctf_premultiplied is False
    assert optics[3].cs_mm == 2.6
    assert first.micrograph_pixel_size_a is not None
    # first particle: optics group 6 (pixel 1.25 Å), origin (13.284554, -3.21701) Å
    assert table.optics_group_ids()[0] == 6
    assert table.optics_per_row()[0] is optics[5]
    assert table.pixel_size_a()[0] == 1.25
    np.testing.assert_allclose(table.origins_a()[0], [13.284554, -3.21701])
    ids = table.optics_group_ids()
    expected_cs = np.array([{g.optics_group: g.cs_mm for g in optics}[i] for i in ids])
    np.testing.assert_array_equal(table.cs_mm(), expected_cs)
    np.testing.assert_array_equal(table.voltage_kv(), 200.0)


def test_relion5_aberrations(shared_data: Path) -> None:
    optics, table = read_particles(shared_data / "metadata/star_examples_cryodrgn/relion5.star")
    assert len(table) == 17
    group = optics[0]
    assert group.voltage_kv == 100.0
    assert group.cs_mm == 1.6
    assert group.pixel_size_a == 0.89
    assert group.image_size_px == 448
    assert group.mag_matrix == ((1.001833, -0.000704404), (-0.000823335, 1.000381))
    assert (group.beam_tilt_x_mrad, group.beam_tilt_y_mrad) == (0.043489, 0.014097)
    assert group.odd_zernike is not None
    assert group.even_zernike is not None
    assert len(group.odd_zernike) == 6
    assert len(group.even_zernike) == 9
    assert group.even_zernike[0] == pytest.approx(45.4677386628)
    names = {loc.path.name for loc in table.image_locations()}
    assert names == {"toy_images_a.mrcs", "toy_images_b.mrcs"}
    assert table.defocus_u_a()[0] == pytest.approx(11949.061330)


def test_cryojax_trpv1(shared_data: Path) -> None:
    optics, table = read_particles(
        shared_data / "particles/cryojax_trpv1_10ptcl/trpv1_small_stack.star"
    )
    assert len(table) == 10
    assert optics[0].optics_group == 7
    assert optics[0].pixel_size_a == 4.88
    np.testing.assert_allclose(table.euler_deg()[0], [-30.073301, 137.509323, 167.963364])
    np.testing.assert_allclose(table.origins_a()[0], [-8.149219, -6.120969])
    assert table.random_subset().tolist() == [2, 1] * 5
    assert table.phase_shift_deg().tolist() == [0.0] * 10
    with pytest.raises(MissingColumnError, match="rlnCoordinateX"):
        table.coordinates_px()


# ------------------------------------------------------------------ tomography


def test_warptools_tomo_particles(shared_data: Path) -> None:
    path = (
        shared_data
        / "subtomo_particle_tiltseries/tomodrgn_warptools_4tomos_40ptcl"
        / "warptools_test_4-tomos_10-ptcls_box-32_angpix-12.star"
    )
    optics, table = read_tomo_particles(path)
    assert len(table) == 40
    assert len(optics) == 4
    assert optics[0].pixel_size_a == 12.0
    assert optics[0].extra["rlnTomoTiltSeriesPixelSize"] == 1.667
    assert table.tomo_names()[0] == "Unt_083.tomostar"
    np.testing.assert_allclose(table.coordinates_px()[0], [494.521, 564.065, 28.146])
    np.testing.assert_array_equal(table.origins_a(), np.zeros((40, 3)))
    first = table.image_locations()[0]
    assert first.stack_index is None  # a whole 2D tilt stack
    assert first.path.is_file()


def test_relion5_tomo_picks_and_refinement(shared_data: Path) -> None:
    optics, picks = read_tomo_particles(shared_data / SKELETON / "Picks/job019/particles.star")
    assert optics == []
    assert len(picks) == 9442
    assert picks.tomo_names()[0] == "TS_54"
    np.testing.assert_allclose(
        picks.centered_coordinates_a()[0], [-485.896912, 1974.646743, 588.853933]
    )
    for job in ("Refine3D/job074/run_data.star", "Polish/job070/particles.star"):
        optics, table = read_tomo_particles(shared_data / SKELETON / job)
        assert len(table) == 9053
        assert optics[0].name == "optics1"
        assert optics[0].pixel_size_a == 1.35
        assert optics[0].image_size_px == 192
        assert table.tomo_names()[0] == "TS_01"
        assert table.origins_a().shape == (9053, 3)
    with pytest.raises(MissingColumnError, match="rlnImageName"):
        read_particles(shared_data / SKELETON / "Picks/job019/particles.star")


def test_tomo_particles_need_coordinates(tmp_path: Path) -> None:
    path = tmp_path / "tomo.star"
    path.write_text("data_particles\nloop_\n_rlnTomoName #1\n_rlnCoordinateX #2\nTS_1 1.0\n")
    with pytest.raises(MissingColumnError, match="rlnCenteredCoordinateX/Y/ZAngst"):
        read_tomo_particles(path)


# ------------------------------------------------------------------ errors


def test_particles_without_image_name(shared_data: Path) -> None:
    path = (
        shared_data
        / "micrographs/micrograph_cleaner_Ucsf_stack_1142/Ucsf_stack_1142_DW_autopick.star"
    )
    with pytest.raises(
        MissingColumnError, match=r"Ucsf_stack_1142_DW_autopick\.star.*rlnImageName"
    ):
        read_particles(path)


_OPTICS = (
    "data_optics\nloop_\n_rlnOpticsGroup #1\n_rlnOpticsGroupName #2\n_rlnImagePixelSize #3\n"
    "_rlnVoltage #4\n_rlnSphericalAberration #5\n_rlnAmplitudeContrast #6\n"
    "1 og1 1.0 300 2.7 0.1\n\n"
)


def test_particle_with_unknown_optics_group(tmp_path: Path) -> None:
    path = tmp_path / "p.star"
    path.write_text(
        _OPTICS + "data_particles\nloop_\n_rlnImageName #1\n_rlnOpticsGroup #2\n1@a 3\n"
    )
    with pytest.raises(
        MissingColumnError, match=r"p\.star: no data_optics row for rlnOpticsGroup \[3\]"
    ):
        read_particles(path)


def test_optics_without_voltage(tmp_path: Path) -> None:
    path = tmp_path / "p.star"
    text = _OPTICS.replace("_rlnVoltage #4\n", "").replace(" 300 ", " ")
    path.write_text(text + "data_particles\nloop_\n_rlnImageName #1\n_rlnOpticsGroup #2\n1@a 1\n")
    with pytest.raises(MissingColumnError, match="rlnVoltage"):
        read_particles(path)


def test_optics_with_text_for_a_number(tmp_path: Path) -> None:
    path = tmp_path / "p.star"
    text = _OPTICS.replace(
        "_rlnAmplitudeContrast #6\n", "_rlnAmplitudeContrast #6\n_rlnImageSize #7\n"
    )
    path.write_text(
        text.replace("0.1\n", "0.1 big\n")
        + "data_particles\nloop_\n_rlnImageName #1\n_rlnOpticsGroup #2\n1@a 1\n"
    )
    with pytest.raises(InvalidValuesError, match=r"p\.star: data_optics"):
        read_particles(path)


def test_legacy_without_pixel_size(tmp_path: Path) -> None:
    path = tmp_path / "p.star"
    path.write_text(
        "data_\nloop_\n_rlnImageName #1\n_rlnVoltage #2\n_rlnSphericalAberration #3\n"
        "_rlnAmplitudeContrast #4\n1@a 300 2.7 0.1\n"
    )
    with pytest.raises(MissingColumnError, match="pixel size"):
        read_particles(path)


def test_bad_zernike_and_bad_image_name(tmp_path: Path) -> None:
    path = tmp_path / "z.star"
    optics = _OPTICS.replace(
        "_rlnAmplitudeContrast #6\n", "_rlnAmplitudeContrast #6\n_rlnOddZernike #7\n"
    )
    optics = optics.replace("0.1\n", "0.1 1,2\n")
    path.write_text(optics + "data_particles\nloop_\n_rlnImageName #1\n_rlnOpticsGroup #2\n1@a 1\n")
    with pytest.raises(FileFormatError, match="rlnOddZernike"):
        read_particles(path)
    path.write_text(
        _OPTICS + "data_particles\nloop_\n_rlnImageName #1\n_rlnOpticsGroup #2\nx@a 1\n"
    )
    _, table = read_particles(path)
    with pytest.raises(InvalidValuesError, match=r"z\.star: image name 'x@a'"):
        table.image_locations()


def test_write_refuses_missing_optics_group(tmp_path: Path, shared_data: Path) -> None:
    _, table = read_particles(shared_data / "particles/cryodrgn_relion31_5ptcl/relion31.star")
    with pytest.raises(MissingColumnError, match=r"rlnOpticsGroup \[1\]"):
        write_particles(tmp_path / "out.star", [], table)


# ------------------------------------------------------------------ round trips


def _assert_tables_equal(a: pd.DataFrame, b: pd.DataFrame) -> None:
    assert list(a.columns) == list(b.columns)
    for column in a.columns:
        if pd.api.types.is_numeric_dtype(a[column]):
            np.testing.assert_allclose(
                b[column].to_numpy(np.float64), a[column].to_numpy(np.float64), rtol=1e-6, atol=1e-6
            )
        else:
            assert b[column].astype(str).tolist() == a[column].astype(str).tolist(), column


def _assert_optics_equal(a: list[OpticsGroup], b: list[OpticsGroup]) -> None:
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        assert x.optics_group == y.optics_group
        assert x.name == y.name
        for attribute in ("pixel_size_a", "voltage_kv", "cs_mm", "amplitude_contrast"):
            assert getattr(y, attribute) == pytest.approx(getattr(x, attribute), rel=1e-6, abs=1e-6)
        assert x.image_size_px == y.image_size_px
        assert (x.mag_matrix is None) == (y.mag_matrix is None)
        if x.mag_matrix is not None and y.mag_matrix is not None:
            np.testing.assert_allclose(y.mag_matrix, x.mag_matrix, rtol=1e-6, atol=1e-6)
        for attribute in ("odd_zernike", "even_zernike"):
            np.testing.assert_allclose(
                getattr(y, attribute) or (), getattr(x, attribute) or (), rtol=1e-11
            )
        assert set(x.extra) == set(y.extra)


@pytest.mark.parametrize(
    "relative",
    [
        "particles/cryodrgn_relion31_5ptcl/relion31.6opticsgroups.star",
        "metadata/star_examples_cryodrgn/relion5.star",
        "particles/aspire_sample_17ptcl/sample_relion_data.star",
    ],
)
def test_real_particles_round_trip(shared_data: Path, tmp_path: Path, relative: str) -> None:
    optics, table = read_particles(shared_data / relative)
    out = tmp_path / "out.star"
    write_particles(out, optics, table)
    assert set(read_star(out)) == {"optics", "particles"}  # always the 3.1+ layout
    optics_back, back = read_particles(out)
    _assert_optics_equal(optics, optics_back)
    _assert_tables_equal(table.frame, back.frame)
    np.testing.assert_allclose(back.origins_a(), table.origins_a(), atol=1e-6)


def test_micrographs_round_trip(tmp_path: Path, shared_data: Path) -> None:
    optics, table = read_micrographs(
        shared_data / "metadata/topaz_empiar10025_picks_ctf/ctf_params.star"
    )
    out = tmp_path / "micrographs_ctf.star"
    write_micrographs(out, optics, table)
    blocks = read_star(out)
    assert set(blocks) == {"optics", "micrographs"}
    assert "rlnMicrographPixelSize" in blocks["optics"].columns  # type: ignore[union-attr]
    optics_back, back = read_micrographs(out)
    _assert_optics_equal(optics, optics_back)
    _assert_tables_equal(table.frame, back.frame)
    metadata = pd.DataFrame({"rlnMicrographName": ["a.mrc"], "rlnOpticsGroup": [1],
                             "rlnMicrographMetadata": ["MotionCorr/a.star"]})  # fmt: skip
    micrographs = MicrographTable(metadata, optics, source=out)
    assert micrographs.metadata_paths() == [tmp_path / "MotionCorr/a.star"]


_name = st.text(
    alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-.",
    min_size=1,
    max_size=200,
)
_number = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False, allow_infinity=False)


@st.composite
def _particles(draw: st.DrawFn) -> tuple[list[OpticsGroup], ParticleTable]:
    n_groups = draw(st.integers(1, 4))
    optics = [
        OpticsGroup(
            optics_group=g + 1,
            name=draw(_name),
            pixel_size_a=draw(st.floats(0.3, 20.0)),
            voltage_kv=draw(st.sampled_from([100.0, 200.0, 300.0])),
            cs_mm=draw(st.floats(0.0, 5.0)),
            amplitude_contrast=draw(st.floats(0.0, 0.5)),
            image_size_px=draw(st.integers(8, 1024)),
            image_dimensionality=2,
            beam_tilt_x_mrad=draw(_number),
            beam_tilt_y_mrad=draw(_number),
            odd_zernike=tuple(draw(st.lists(_number, min_size=6, max_size=6))),
            mag_matrix=((draw(_number), draw(_number)), (draw(_number), draw(_number))),
        )
        for g in range(n_groups)
    ]
    n = draw(st.integers(1, 12))
    column = st.lists(_number, min_size=n, max_size=n)
    frame = pd.DataFrame(
        {
            "rlnImageName": [f"{i + 1:06d}@{draw(_name)}.mrcs" for i in range(n)],
            "rlnMicrographName": draw(st.lists(_name, min_size=n, max_size=n)),
            "rlnOpticsGroup": draw(st.lists(st.integers(1, n_groups), min_size=n, max_size=n)),
            "rlnAngleRot": draw(column),
            "rlnAngleTilt": draw(column),
            "rlnAnglePsi": draw(column),
            "rlnOriginXAngst": draw(column),
            "rlnOriginYAngst": draw(column),
            "rlnDefocusU": draw(column),
            "rlnDefocusV": draw(column),
            "rlnRandomSubset": draw(st.lists(st.integers(1, 2), min_size=n, max_size=n)),
        }
    )
    return optics, ParticleTable(frame, optics)


@given(data=_particles())
def test_particles_write_read_round_trip(
    tmp_path_factory: pytest.TempPathFactory, data: tuple[list[OpticsGroup], ParticleTable]
) -> None:
    optics, table = data
    out = tmp_path_factory.mktemp("rt") / "particles.star"
    write_particles(out, optics, table)
    optics_back, back = read_particles(out)
    _assert_optics_equal(optics, optics_back)
    for x, y in zip(optics, optics_back, strict=True):
        assert y.beam_tilt_x_mrad == pytest.approx(x.beam_tilt_x_mrad, rel=1e-6, abs=1e-6)
    _assert_tables_equal(table.frame, back.frame)
    np.testing.assert_allclose(back.euler_deg(), table.euler_deg(), rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(back.optics_group_ids(), table.optics_group_ids())
    assert back.micrograph_names() == table.micrograph_names()
