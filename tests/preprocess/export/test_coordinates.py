"""Coordinate import: real RELION 3.0/3.1/5 and topaz files, coordinate and Warp STAR files,
cryoSPARC .cs (positions, y origin, poses) and .box files, with Å positions checked against the
files' pixels and round trips through the writers."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.spatial.transform import Rotation

from cryowarp.core.rotations import euler_to_matrix, random_rotations
from cryowarp.errors import CryowarpInputError, FileFormatError, MissingColumnError
from cryowarp.io.cryosparc import cs_from_columns, location_fractions, write_cs
from cryowarp.io.eman_box import BoxCoordinates, write_box
from cryowarp.io.relion import read_particles, write_particles
from cryowarp.io.star import write_star
from cryowarp.preprocess.export.coordinates import (
    cs_pose_to_euler,
    euler_to_cs_pose,
    guess_coordinate_kind,
    micrograph_key,
    read_coordinates,
)

RELION31_MICROGRAPH = "18aug10a_MC2_FoilHole_10984848_Data_10985376_10985377_20180810_2123-144102"


@pytest.fixture
def relion31(shared_data: Path) -> Path:
    return shared_data / "particles" / "cryodrgn_relion31_5ptcl" / "relion31.star"


@pytest.fixture
def topaz(shared_data: Path) -> Path:
    return shared_data / "metadata" / "topaz_empiar10025_picks_ctf"


# ---------------------------------------------------------------------------- RELION


def test_relion31_needs_the_micrograph_pixel_size(relion31: Path) -> None:
    """The optics group gives the particle (2.806 Å) and movie (1.403 Å) pixel sizes but not
    the micrographs': the error names the file and suggests the movies' pixel size."""
    with pytest.raises(MissingColumnError, match=r"relion31\.star.*rlnMicrographPixelSize.*1\.403"):
        read_coordinates(relion31)


def test_relion31_positions_poses_origins_and_extra(relion31: Path) -> None:
    sets = read_coordinates(relion31, pixel_size_a=1.403)
    assert [s.micrograph for s in sets] == [RELION31_MICROGRAPH]  # _DW.mrc stripped
    (particles,) = sets
    assert len(particles) == 5
    # first row: 3277 983 ... rot −102.30296 tilt 82.318041 psi 124.706463
    torch.testing.assert_close(
        particles.positions_a[0], torch.tensor([3277 * 1.403, 983 * 1.403], dtype=torch.float64)
    )
    assert particles.euler_deg is not None
    torch.testing.assert_close(
        particles.euler_deg[0],
        torch.tensor([-102.30296, 82.318041, 124.706463], dtype=torch.float64),
    )
    _, table = read_particles(relion31)
    assert particles.origins_a is not None
    np.testing.assert_array_equal(particles.origins_a.numpy(), table.origins_a())
    np.testing.assert_allclose(particles.positions_px(1.403).numpy(), table.coordinates_px())
    assert particles.extra is not None
    columns = set(particles.extra.columns)
    assert {"rlnClassNumber", "rlnRandomSubset", "rlnNormCorrection"} <= columns
    assert not columns & {"rlnImageName", "rlnDefocusU", "rlnOpticsGroup", "rlnCoordinateX"}
    np.testing.assert_array_equal(particles.extra["rlnRandomSubset"], table.random_subset())


def test_micrograph_pixel_size_in_the_optics_group_wins(relion31: Path, tmp_path: Path) -> None:
    optics, table = read_particles(relion31)
    optics = [dataclasses.replace(g, micrograph_pixel_size_a=1.403) for g in optics]
    path = tmp_path / "with_micrograph_pixel.star"
    write_particles(path, optics, table)
    (from_file,) = read_coordinates(path)
    (given_too,) = read_coordinates(path, pixel_size_a=9.9)
    expected = torch.from_numpy(table.coordinates_px() * 1.403)
    torch.testing.assert_close(from_file.positions_a, expected)
    torch.testing.assert_close(given_too.positions_a, expected)


def test_relion30_topaz_picks_match_their_text_coordinates(topaz: Path) -> None:
    """RELION 3.0 particles of 30 EMPIAR-10025 micrographs (0.6575 Å/px; the STAR's own pixel
    size, 3.7333 µm / 38023× = 0.9819 Å, is the particle images'): every position in pixels
    equals topaz' particles.txt, micrograph by micrograph and in file order."""
    with pytest.raises(MissingColumnError, match=r"particles\.star.*0\.981862"):
        read_coordinates(topaz / "particles.star")
    sets = read_coordinates(topaz / "particles.star", pixel_size_a=0.6575)
    text = pd.read_csv(topaz / "particles.txt", sep="\t")
    assert [s.micrograph for s in sets] == sorted(set(text["image_name"]))
    assert sum(len(s) for s in sets) == 1500
    for particles in sets:
        expected = text.loc[text["image_name"] == particles.micrograph, ["x_coord", "y_coord"]]
        np.testing.assert_allclose(
            particles.positions_px(0.6575).numpy(), expected.to_numpy(), rtol=0, atol=1e-9
        )
    first = sets[0]
    assert first.micrograph == "14sep05c_c_00003gr_00014sq_00004hl_00004es_c"
    assert first.positions_a[0].tolist() == pytest.approx([6924 * 0.6575, 2481 * 0.6575])
    # legacy pixel origins become Å with the particle pixel size
    assert first.origins_a is not None
    assert first.extra is not None
    assert "rlnGroupName" in first.extra.columns


def test_relion5_two_micrographs_in_name_order(shared_data: Path) -> None:
    path = shared_data / "metadata" / "star_examples_cryodrgn" / "relion5.star"
    _, table = read_particles(path)
    sets = read_coordinates(path, pixel_size_a=0.89)
    assert [s.micrograph for s in sets] == [
        "FoilHole_353510_Data_342200_1_20250401_174947_EER",
        "FoilHole_353511_Data_342200_6_20250401_175002_EER",
    ]
    assert sum(len(s) for s in sets) == len(table)
    np.testing.assert_allclose(sets[0].positions_a[0].numpy(), [1736 * 0.89, 228 * 0.89])
    assert sets[0].extra is not None
    assert sets[0].extra["rlnAutopickFigureOfMerit"][0] == pytest.approx(16.459581)


def _autopick(path: Path, n: int = 3) -> pd.DataFrame:
    frame = pd.DataFrame(
        {
            "rlnCoordinateX": [100.0, 2000.5, 31.0][:n],
            "rlnCoordinateY": [50.0, 10.0, 3999.0][:n],
            "rlnAutopickFigureOfMerit": [1.5, 0.25, 2.0][:n],
            "rlnAnglePsi": [-999.0, -999.0, -999.0][:n],
        }
    )
    write_star(path, {"": frame})
    return frame


def test_relion_coordinate_star(tmp_path: Path) -> None:
    path = tmp_path / "movie_007_autopick.star"
    frame = _autopick(path)
    assert guess_coordinate_kind(path) == "relion"
    with pytest.raises(MissingColumnError, match=r"movie_007_autopick\.star.*no pixel size"):
        read_coordinates(path)
    (particles,) = read_coordinates(path, pixel_size_a=1.5)
    assert particles.micrograph == "movie_007"
    expected = frame[["rlnCoordinateX", "rlnCoordinateY"]].to_numpy() * 1.5
    np.testing.assert_array_equal(particles.positions_a.numpy(), expected)
    assert particles.euler_deg is None
    assert particles.origins_a is None
    assert particles.extra is not None
    assert list(particles.extra.columns) == ["rlnAutopickFigureOfMerit", "rlnAnglePsi"]
    (renamed,) = read_coordinates(path, pixel_size_a=1.5, micrograph="other")
    assert renamed.micrograph == "other"
    empty = tmp_path / "movie_008_manualpick.star"
    _autopick(empty, n=0)
    (nothing,) = read_coordinates(empty, pixel_size_a=1.5)
    assert (nothing.micrograph, len(nothing)) == ("movie_008", 0)


def test_warp_star_pixel_size_from_magnification(tmp_path: Path) -> None:
    """Warp 1.x writes RELION 3.0 tables with rlnMagnification 10000 and the pixel size (Å) as
    rlnDetectorPixelSize (µm): 1.05 × 10⁴ / 10⁴ = 1.05 Å per pixel of the averages."""
    frame = pd.DataFrame(
        {
            "rlnCoordinateX": [10.0, 20.0, 30.0],
            "rlnCoordinateY": [40.0, 50.0, 60.0],
            "rlnMicrographName": ["average/m2.mrc", "average/m1.mrc", "average/m2.mrc"],
            "rlnMagnification": [10000.0] * 3,
            "rlnDetectorPixelSize": [1.05] * 3,
            "rlnAutopickFigureOfMerit": [3.0, 2.0, 1.0],
        }
    )
    path = tmp_path / "goodparticles_BoxNet2Mask_20180918.star"
    write_star(path, {"": frame})
    assert guess_coordinate_kind(path) == "warp"
    m1, m2 = read_coordinates(path)
    assert (m1.micrograph, m2.micrograph) == ("m1", "m2")
    np.testing.assert_allclose(m1.positions_a.numpy(), [[21.0, 52.5]])
    np.testing.assert_allclose(m2.positions_a.numpy(), [[10.5, 42.0], [31.5, 63.0]])
    assert m2.extra is not None
    assert m2.extra["rlnAutopickFigureOfMerit"].tolist() == [3.0, 1.0]
    bare = tmp_path / "bare.star"
    write_star(bare, {"": frame.drop(columns=["rlnMagnification", "rlnDetectorPixelSize"])})
    with pytest.raises(MissingColumnError, match=r"bare\.star.*Warp's averages"):
        read_coordinates(bare)
    (m1_again, _) = read_coordinates(bare, pixel_size_a=2.0)
    np.testing.assert_allclose(m1_again.positions_a.numpy(), [[40.0, 100.0]])
    with pytest.raises(ValueError, match="names its micrographs"):
        read_coordinates(path, micrograph="m1")


# ---------------------------------------------------------------------------- cryoSPARC


def _cs_file(
    path: Path,
    positions_a: np.ndarray,
    *,
    pixel_a: float,
    shape_hw: tuple[int, int],
    paths: list[str],
    extra: dict[str, np.ndarray] | None = None,
) -> None:
    fractions = location_fractions(positions_a / pixel_a, shape_hw)
    n = len(positions_a)
    columns: dict[str, np.ndarray] = {
        "uid": np.arange(n, dtype=np.uint64),
        "location/micrograph_path": np.array(paths, dtype=np.str_),
        "location/micrograph_shape": np.tile(np.array(shape_hw, dtype=np.uint32), (n, 1)),
        "location/center_x_frac": fractions[:, 0].astype(np.float32),
        "location/center_y_frac": fractions[:, 1].astype(np.float32),
        **(extra or {}),
    }
    write_cs(path, cs_from_columns(columns))


@settings(max_examples=25, deadline=None)
@given(
    xy=st.lists(st.tuples(st.floats(0, 1), st.floats(0, 1)), min_size=1, max_size=6),
    pixel_a=st.floats(0.5, 3.0),
)
def test_cs_positions_round_trip(
    tmp_path_factory: pytest.TempPathFactory, xy: list[tuple[float, float]], pixel_a: float
) -> None:
    """Å positions → cryoSPARC fractions (float32) → .cs → read_coordinates: the same Å
    positions to float32 precision of the fractions."""
    shape_hw = (4092, 5760)
    positions_a = np.array(xy) * [shape_hw[1] * pixel_a, shape_hw[0] * pixel_a]
    path = tmp_path_factory.mktemp("cs") / "particles.cs"
    uid_path = (
        "J5/motioncorrected/012345678901234567_FoilHole_1_fractions_patch_aligned_doseweighted.mrc"
    )
    _cs_file(path, positions_a, pixel_a=pixel_a, shape_hw=shape_hw, paths=[uid_path] * len(xy))
    (particles,) = read_coordinates(path, pixel_size_a=pixel_a)
    assert particles.micrograph == "FoilHole_1_fractions"
    tolerance = 2 * np.finfo(np.float32).eps * shape_hw[1] * pixel_a
    np.testing.assert_allclose(particles.positions_a.numpy(), positions_a, rtol=0, atol=tolerance)


def test_cs_pixel_size_field_wins_and_is_needed(tmp_path: Path) -> None:
    path = tmp_path / "picks.cs"
    positions = np.array([[1000.0, 500.0]])
    shape = (3000, 4000)
    extra = {"location/micrograph_psize_A": np.array([0.8], dtype=np.float32)}
    _cs_file(path, positions, pixel_a=0.8, shape_hw=shape, paths=["a.mrc"], extra=extra)
    (particles,) = read_coordinates(path, pixel_size_a=5.0)
    np.testing.assert_allclose(particles.positions_a.numpy(), positions, atol=1e-3)
    bare = tmp_path / "bare.cs"
    _cs_file(bare, positions, pixel_a=0.8, shape_hw=shape, paths=["a.mrc"])
    with pytest.raises(MissingColumnError, match=r"bare\.cs.*micrograph_psize_A"):
        read_coordinates(bare)
    with pytest.raises(ValueError, match="names its micrographs"):
        read_coordinates(bare, pixel_size_a=0.8, micrograph="a")


def test_real_cs_without_locations_is_refused(shared_data: Path) -> None:
    path = shared_data / "particles" / "cryodrgn_empiar10076_7ptcl" / "empiar_10076_7.cs"
    with pytest.raises(MissingColumnError, match=r"empiar_10076_7\.cs.*location/center_x_frac"):
        read_coordinates(path, pixel_size_a=1.31)


def test_cs_pose_worked_examples() -> None:
    """``A = exp([v]ₓ)ᵀ`` (cryoDRGN parse_pose_csparc, pyem csparc2star): a rotation vector
    about z gives an in-plane angle psi (A = Rz(psi), passive); about y a tilt; about x by
    +90° the view (rot, tilt, psi) = (−90, 90, 90), whose third row (viewing direction) is
    (0, −1, 0)."""
    half_pi = math.pi / 2
    poses = torch.tensor(
        [[0, 0, half_pi], [0, half_pi, 0], [half_pi, 0, 0], [0, 0, 0]], dtype=torch.float64
    )
    expected = torch.tensor([[0, 0, 90], [0, 90, 0], [-90, 90, 90], [0, 0, 0]], dtype=torch.float64)
    torch.testing.assert_close(cs_pose_to_euler(poses), expected, atol=1e-9, rtol=0)
    assert euler_to_matrix(expected[2])[2].tolist() == pytest.approx([0, -1, 0], abs=1e-12)


def test_cs_pose_is_scipy_intrinsic_zyz_of_the_relion_angles() -> None:
    """The rotation vector is the rotation ``from_euler("ZYZ", [rot, tilt, psi])`` whose
    transpose is RELION's A (docs/conventions.md §8); euler → pose → euler round trips."""
    generator = torch.Generator().manual_seed(3)
    matrices = random_rotations(50, generator=generator, dtype=torch.float64)
    euler = torch.from_numpy(Rotation.from_matrix(matrices.numpy()).as_euler("ZYZ", degrees=True))
    pose = euler_to_cs_pose(euler)
    scipy_matrices = Rotation.from_euler("ZYZ", euler.numpy(), degrees=True).as_matrix()
    np.testing.assert_allclose(
        Rotation.from_rotvec(pose.numpy()).as_matrix(), scipy_matrices, atol=1e-12
    )
    torch.testing.assert_close(
        euler_to_matrix(cs_pose_to_euler(pose)), euler_to_matrix(euler), atol=1e-12, rtol=0
    )
    assert float(pose.norm(dim=-1).max()) <= math.pi + 1e-12


def test_cs_poses_origins_and_flipped_micrographs(tmp_path: Path) -> None:
    """Poses and shifts are read (origin = shift × blob/psize_A); on Patch Motion micrographs
    (upside down) the y position is mirrored, the pose becomes diag(1, −1, −1)·A (the
    projection mirrored in y) and the origin's y changes sign."""
    euler = torch.tensor([[30.0, 60.0, -45.0], [170.0, 20.0, 10.0]], dtype=torch.float64)
    shape_hw = (1000, 2000)
    positions = np.array([[100.0, 300.0], [1500.0, 900.0]])
    extra = {
        "alignments3D/pose": euler_to_cs_pose(euler).numpy().astype(np.float32),
        "alignments3D/shift": np.array([[1.5, -2.0], [0.0, 3.0]], dtype=np.float32),
        "blob/psize_A": np.array([2.0, 2.0], dtype=np.float32),
    }
    path = tmp_path / "refined.cs"
    _cs_file(path, positions, pixel_a=1.0, shape_hw=shape_hw, paths=["m.mrc"] * 2, extra=extra)
    (same,) = read_coordinates(path, pixel_size_a=1.0)
    (flipped,) = read_coordinates(path, pixel_size_a=1.0, cryosparc_flipped_micrographs=True)
    assert same.euler_deg is not None
    assert flipped.euler_deg is not None
    assert same.origins_a is not None
    assert flipped.origins_a is not None
    torch.testing.assert_close(
        euler_to_matrix(same.euler_deg), euler_to_matrix(euler), atol=1e-6, rtol=0
    )
    np.testing.assert_allclose(same.origins_a.numpy(), [[3.0, -4.0], [0.0, 6.0]])
    np.testing.assert_allclose(same.positions_a.numpy(), positions, atol=1e-3)
    np.testing.assert_allclose(flipped.positions_a[:, 0].numpy(), positions[:, 0], atol=1e-3)
    np.testing.assert_allclose(flipped.positions_a[:, 1].numpy(), 1000 - positions[:, 1], atol=1e-3)
    np.testing.assert_allclose(flipped.origins_a.numpy(), [[3.0, 4.0], [0.0, -6.0]])
    mirror = torch.tensor([1.0, -1.0, -1.0], dtype=torch.float64)[:, None]
    torch.testing.assert_close(
        euler_to_matrix(flipped.euler_deg),
        mirror * euler_to_matrix(same.euler_deg),
        atol=1e-9,
        rtol=0,
    )
    # a reference point's image position is mirrored in y by the flipped pose
    point = torch.tensor([12.0, -5.0, 7.0], dtype=torch.float64)
    image = euler_to_matrix(same.euler_deg) @ point
    image_flipped = euler_to_matrix(flipped.euler_deg) @ point
    torch.testing.assert_close(
        image_flipped[:, :2], image[:, :2] * torch.tensor([1.0, -1.0], dtype=torch.float64)
    )


# ---------------------------------------------------------------------------- .box


@settings(max_examples=25, deadline=None)
@given(
    xy=st.lists(st.tuples(st.integers(0, 4000), st.integers(0, 4000)), min_size=1, max_size=6),
    pixel_a=st.floats(0.5, 3.0),
    size=st.integers(16, 400),
)
def test_box_positions_round_trip(
    tmp_path_factory: pytest.TempPathFactory,
    xy: list[tuple[int, int]],
    pixel_a: float,
    size: int,
) -> None:
    centres = np.array(xy, dtype=np.float64)
    path = tmp_path_factory.mktemp("box") / "FoilHole_9_DW.box"
    write_box(path, BoxCoordinates(centres_px=centres, sizes_px=np.full(centres.shape, size)))
    (particles,) = read_coordinates(path, pixel_size_a=pixel_a)
    assert particles.micrograph == "FoilHole_9"
    np.testing.assert_array_equal(particles.positions_a.numpy(), centres * pixel_a)


def test_box_scores_pixel_size_and_empty_files(tmp_path: Path) -> None:
    path = tmp_path / "mic_001.box"
    path.write_text("100 200 64 64 0.9\n300 400 64 64 0.4\n")
    with pytest.raises(CryowarpInputError, match=r"mic_001\.box.*no pixel size"):
        read_coordinates(path)
    (particles,) = read_coordinates(path, pixel_size_a=2.0, micrograph="mic")
    assert particles.micrograph == "mic"
    np.testing.assert_array_equal(particles.positions_a.numpy(), [[264.0, 464.0], [664.0, 864.0]])
    assert particles.extra is not None
    assert particles.extra["rlnAutopickFigureOfMerit"].tolist() == [0.9, 0.4]
    empty = tmp_path / "mic_002.box"
    empty.write_text("")
    (nothing,) = read_coordinates(empty, pixel_size_a=2.0)
    assert (nothing.micrograph, len(nothing)) == ("mic_002", 0)


# ---------------------------------------------------------------------------- names, kinds


@pytest.mark.parametrize(
    ("path", "cryosparc", "key"),
    [
        ("MotionCorr/job002/Movies/abc_DW.mrc", False, "abc"),
        ("average/abc.mrc", False, "abc"),
        ("Picks/abc_autopick.star", False, "abc"),
        ("abc_noDW.mrc", False, "abc"),
        ("movie_000.tif", False, "movie_000"),
        ("x/abc.mrc.bz2", False, "abc"),
        ("J3/motioncorrected/0123456789012_abc_patch_aligned_doseweighted.mrc", True, "abc"),
        ("J3/imported/0123456789012_abc_EER.mrc", True, "abc_EER"),
        ("0123456789012_abc.mrc", False, "0123456789012_abc"),
        ("_DW.mrc", False, "_DW"),
    ],
)
def test_micrograph_key(path: str, cryosparc: bool, key: str) -> None:
    assert micrograph_key(path, cryosparc=cryosparc) == key


def test_unknown_extension_and_bad_arguments(tmp_path: Path) -> None:
    path = tmp_path / "coords.txt"
    path.write_text("x y\n")
    with pytest.raises(FileFormatError, match=r"coords\.txt.*extension"):
        read_coordinates(path, pixel_size_a=1.0)
    box = tmp_path / "a.box"
    box.write_text("1 2 3 4\n")
    with pytest.raises(ValueError, match="positive"):
        read_coordinates(box, pixel_size_a=-1.0)
    boxes_as_text = tmp_path / "picks.txt"
    boxes_as_text.write_text("10 20 4 4\n")
    (particles,) = read_coordinates(boxes_as_text, pixel_size_a=1.0, kind="box")
    assert particles.micrograph == "picks"
    np.testing.assert_array_equal(particles.positions_a.numpy(), [[12.0, 22.0]])
