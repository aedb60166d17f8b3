"""RELION motion STAR files: round trips, RELION's sign and units, its polynomial local model,
the RELION 5 tutorial files, and the errors bad files raise."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from cryowarp.core.shift import shift_image
from cryowarp.errors import (
    DimensionMismatchError,
    FileFormatError,
    InvalidValuesError,
    MissingColumnError,
    MissingFileError,
    TruncatedFileError,
)
from cryowarp.io.relion_motion import (
    RelionMotion,
    evaluate_relion_local_model,
    fit_relion_local_model,
    read_relion_motion,
    relion_global_shifts_px,
    relion_shifts_px_at,
    shifts_a_from_relion_px,
    write_relion_motion,
)
from cryowarp.simulate.motion import random_motion

TUTORIAL = (
    "metadata/relion5_tomo_tutorial_empiar10164_skeleton/MotionCorr/job002/frames_TS_01_subset"
)

_NAMES = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_./-]{0,20}( [A-Za-z0-9_.]{1,5})?", fullmatch=True)
_OPTIONAL_FLOAT = st.none() | st.floats(0.01, 1000.0)


@st.composite
def _motions(draw: st.DrawFn) -> RelionMotion:
    n_frames = draw(st.integers(1, 24))
    shifts = draw(hnp.arrays(np.float64, (n_frames, 2), elements=st.floats(-500, 500)))
    unobserved = draw(hnp.arrays(np.bool_, (n_frames,)))
    shifts[unobserved] = np.nan
    coefficients = draw(st.none() | hnp.arrays(np.float64, (36,), elements=st.floats(-1000, 1000)))
    hot = draw(
        st.none()
        | st.integers(0, 12).flatmap(
            lambda k: hnp.arrays(np.int64, (k, 2), elements=st.integers(0, 9999))
        )
    )
    return RelionMotion(
        image_size_xyz=(draw(st.integers(1, 12000)), draw(st.integers(1, 12000)), n_frames),
        movie_name=draw(_NAMES),
        global_shifts_px=shifts,
        gain_name=draw(st.none() | _NAMES),
        defect_file=draw(st.none() | _NAMES),
        binning=draw(st.floats(0.5, 8.0)),
        original_pixel_size_a=draw(_OPTIONAL_FLOAT),
        dose_per_frame_e_per_a2=draw(_OPTIONAL_FLOAT),
        pre_exposure_e_per_a2=draw(st.none() | st.just(0.0) | st.floats(0.01, 100.0)),
        voltage_kv=draw(st.none() | st.sampled_from([100.0, 200.0, 300.0])),
        start_frame=draw(st.integers(1, n_frames)),
        eer_upsampling=draw(st.none() | st.sampled_from([1, 2])),
        eer_grouping=draw(st.none() | st.integers(1, 100)),
        local_model_coefficients=coefficients,
        hot_pixels_xy=hot,
    )


def _assert_same(a: RelionMotion, b: RelionMotion) -> None:
    for name in ("image_size_xyz", "movie_name", "gain_name", "defect_file", "start_frame"):
        assert getattr(a, name) == getattr(b, name), name
    for name in ("eer_upsampling", "eer_grouping"):
        assert getattr(a, name) == getattr(b, name), name
    for name in (
        "binning",
        "original_pixel_size_a",
        "dose_per_frame_e_per_a2",
        "pre_exposure_e_per_a2",
        "voltage_kv",
    ):
        x, y = getattr(a, name), getattr(b, name)
        assert (x is None) == (y is None), name
        if x is not None:
            assert y == pytest.approx(x, rel=1e-6, abs=1e-6), name
    # Six decimals in the file: 5e-7 absolute, or 5e-7 relative in scientific notation.
    np.testing.assert_allclose(b.global_shifts_px, a.global_shifts_px, rtol=1e-6, atol=1e-6)
    assert (a.local_model_coefficients is None) == (b.local_model_coefficients is None)
    if a.local_model_coefficients is not None:
        np.testing.assert_allclose(
            b.local_model_coefficients, a.local_model_coefficients, rtol=1e-6, atol=1e-6
        )
    assert (a.hot_pixels_xy is None) == (b.hot_pixels_xy is None)
    if a.hot_pixels_xy is not None:
        np.testing.assert_array_equal(b.hot_pixels_xy, a.hot_pixels_xy)


@given(_motions())
def test_write_read_round_trip(motion: RelionMotion) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "movie.star"
        write_relion_motion(path, motion)
        _assert_same(motion, read_relion_motion(path))


def test_sign_and_units_worked_by_hand(device: torch.device) -> None:
    # Content moved by +1.35 Å in x and -2.7 Å in y; unbinned pixel 0.675 Å: RELION stores the
    # correction, (-2, +4) unbinned pixels.
    ours_a = torch.tensor([[0.0, 0.0], [1.35, -2.7]], dtype=torch.float64, device=device)
    relion_px = relion_global_shifts_px(ours_a, original_pixel_size_a=0.675)
    np.testing.assert_allclose(relion_px, [[0.0, 0.0], [-2.0, 4.0]], atol=1e-12)
    back_a = shifts_a_from_relion_px(relion_px, original_pixel_size_a=0.675)
    np.testing.assert_allclose(back_a, ours_a.cpu().numpy(), atol=1e-12)


def test_relion_correction_realigns_the_frame() -> None:
    # A frame whose content moved by s (cryowarp convention, core.shift_image) is realigned by
    # RELION's summation rule aligned[iy, ix] = frame[iy - sy, ix - sx] with its stored shift.
    rng = np.random.default_rng(5)
    reference = torch.as_tensor(rng.normal(size=(32, 40)))
    pixel_size_a = 1.5
    ours_a = np.array([4.5, -3.0])  # (3, -2) pixels
    frame = shift_image(reference, torch.as_tensor(ours_a / pixel_size_a)).numpy()
    sx, sy = np.rint(relion_global_shifts_px(ours_a, original_pixel_size_a=pixel_size_a))
    iy, ix = np.indices(frame.shape)
    aligned = frame[(iy - int(sy)) % 32, (ix - int(sx)) % 40]
    np.testing.assert_allclose(aligned, reference.numpy(), atol=1e-9)
    wrong = frame[(iy + int(sy)) % 32, (ix + int(sx)) % 40]
    assert np.abs(wrong - reference.numpy()).max() > 1.0


def test_local_model_worked_by_hand() -> None:
    # Monomials m = (1, x̂, x̂², ŷ, ŷ², x̂ŷ) times (z, z², z³): index 3i + j for x, 18 + 3i + j for y.
    # x: c0·z + c4·x̂·z² + c7·x̂²·z²;  y: c20·z³ + c27·ŷ·z + c31·ŷ²·z² + c33·x̂ŷ·z,
    # at x = 75 of 100 px (x̂ = 0.25), y = 50 of 200 px (ŷ = -0.25), frame index 2 → z = 2.
    c = np.zeros(36)
    c[[0, 4, 7]] = 2.0, 3.0, 16.0
    c[[20, 27, 31, 33]] = 0.5, 2.0, 4.0, 8.0
    shift = evaluate_relion_local_model(c, 75.0, 50.0, 2.0, image_size_xy=(100, 200), start_frame=1)
    x_hand = 2 * 2 + 3 * 0.25 * 4 + 16 * 0.25**2 * 4  # 4 + 3 + 4
    y_hand = 0.5 * 8 + 2 * -0.25 * 2 + 4 * 0.25**2 * 4 + 8 * (0.25 * -0.25) * 2  # 4 - 1 + 1 - 1
    np.testing.assert_allclose(shift, [x_hand, y_hand])
    np.testing.assert_allclose(shift, [11.0, 3.0])
    # The local model vanishes at the start frame, wherever the position.
    at_start = evaluate_relion_local_model(
        np.arange(36.0), [0.0, 99.0], [0.0, 199.0], 3.0, image_size_xy=(100, 200), start_frame=4
    )
    np.testing.assert_array_equal(at_start, np.zeros((2, 2)))


def test_fit_recovers_known_coefficients_exactly() -> None:
    rng = np.random.default_rng(11)
    truth = rng.normal(size=36) * np.repeat([1.0, 0.1, 0.01], 12)
    xs, ys = np.meshgrid(np.linspace(100, 3900, 5), np.linspace(100, 2900, 4))
    positions = np.stack([xs.ravel(), ys.ravel()], axis=-1)
    frames = np.arange(12.0)
    shifts = evaluate_relion_local_model(
        truth,
        positions[:, None, 0],
        positions[:, None, 1],
        frames,
        image_size_xy=(4000, 3000),
        start_frame=2,
    )
    fitted = fit_relion_local_model(
        positions, frames, shifts, image_size_xy=(4000, 3000), start_frame=2
    )
    np.testing.assert_allclose(fitted, truth, rtol=1e-8, atol=1e-10)


def test_simulated_motion_survives_export_to_relion(tmp_path: Path) -> None:
    # Ground truth whose local field RELION's polynomial represents exactly (bilinear in x, y,
    # linear in time): export global + fitted local model, write, read, and evaluate as
    # polishing does; converted back it must equal the truth at other positions.
    width, height, n_frames, pixel_size_a = 512, 384, 10, 1.2
    truth = random_motion(
        n_frames,
        field_size_a=(width * pixel_size_a, height * pixel_size_a),
        generator=torch.Generator().manual_seed(3),
        local_grid_shape=(2, 2, 2),
        local_amplitude_a=3.0,
        dtype=torch.float64,
    )
    xs, ys = np.meshgrid(np.linspace(32, 480, 4), np.linspace(32, 352, 4))
    patches_px = np.stack([xs.ravel(), ys.ravel()], axis=-1)
    frames = torch.arange(n_frames)
    local_a = truth.local_shifts_at(torch.as_tensor(patches_px * pixel_size_a), frames)
    motion = RelionMotion(
        image_size_xyz=(width, height, n_frames),
        movie_name="movie.tif",
        original_pixel_size_a=pixel_size_a,
        global_shifts_px=relion_global_shifts_px(
            truth.global_shifts_a, original_pixel_size_a=pixel_size_a
        ),
        local_model_coefficients=fit_relion_local_model(
            patches_px,
            frames,
            relion_global_shifts_px(local_a, original_pixel_size_a=pixel_size_a),
            image_size_xy=(width, height),
        ),
    )
    assert np.abs(motion.global_shifts_px).max() > 1.0  # the test moves something
    write_relion_motion(tmp_path / "movie.star", motion)
    read = read_relion_motion(tmp_path / "movie.star")
    np.testing.assert_array_equal(read.global_shifts_px[0], [0.0, 0.0])
    probe_px = np.random.default_rng(2).uniform(0, [width - 1, height - 1], size=(20, 2))
    back_a = shifts_a_from_relion_px(
        relion_shifts_px_at(read, probe_px), original_pixel_size_a=pixel_size_a
    )
    expected_a = truth.shifts_at(torch.as_tensor(probe_px * pixel_size_a), frames).numpy()
    assert truth.local_shifts_at(torch.as_tensor(probe_px * pixel_size_a)).abs().max() > 0.5
    np.testing.assert_allclose(back_a, expected_a, atol=1e-4)


def test_reads_the_relion5_tutorial_files(shared_data: Path) -> None:
    folder = shared_data / TUTORIAL
    files = sorted(folder.glob("*.star"))
    if not files:
        pytest.skip(f"no RELION motion STAR files in {folder}")
    for file in files:
        motion = read_relion_motion(file)
        assert motion.image_size_xyz == (7420, 7676, 8)
        assert motion.binning == 2.0
        assert motion.original_pixel_size_a == 0.675
        assert motion.start_frame == 1
        assert motion.local_model_coefficients is None
        np.testing.assert_array_equal(motion.global_shifts_px[0], [0.0, 0.0])
        text = file.read_text().split("data_hot_pixels")[1].splitlines()
        n_rows = sum(1 for line in text if line.strip() and line.split()[0][0].isdigit())
        assert motion.hot_pixels_xy is not None
        assert motion.hot_pixels_xy.shape == (n_rows, 2)
        assert (motion.hot_pixels_xy.max(axis=0) < [7420, 7676]).all()
    first = read_relion_motion(folder / "TS_01_000_0_0.star")
    assert first.movie_name == "frames/TS_01_000_0.0.mrc"
    assert first.dose_per_frame_e_per_a2 == 1.0
    assert first.voltage_kv == 300.0
    np.testing.assert_allclose(first.global_shifts_px[1], [-0.55116, 0.315925])
    np.testing.assert_allclose(first.global_shifts_px[7], [-0.69959, 1.089724])
    np.testing.assert_array_equal(first.hot_pixels_xy[0], [1534, 0])  # type: ignore[index]
    np.testing.assert_array_equal(first.hot_pixels_xy[-1], [2282, 7675])  # type: ignore[index]
    # In cryowarp's convention frame 2 moved by +0.372 Å in x and -0.213 Å in y.
    ours = shifts_a_from_relion_px(first.global_shifts_px, original_pixel_size_a=0.675)
    np.testing.assert_allclose(ours[1], [0.55116 * 0.675, -0.315925 * 0.675])


def test_tutorial_file_rewrites_identically(shared_data: Path, tmp_path: Path) -> None:
    file = shared_data / TUTORIAL / "TS_01_000_0_0.star"
    if not file.is_file():
        pytest.skip(f"{file} not found")
    motion = read_relion_motion(file)
    write_relion_motion(tmp_path / "copy.star", motion)
    _assert_same(motion, read_relion_motion(tmp_path / "copy.star"))


def test_unobserved_frames_and_start_frame(tmp_path: Path) -> None:
    shifts = np.array([[np.nan, np.nan], [0.0, 0.0], [1.5, -2.0]])
    motion = RelionMotion(
        image_size_xyz=(100, 80, 3),
        movie_name="m.mrc",
        global_shifts_px=shifts,
        start_frame=2,
        local_model_coefficients=np.arange(36.0) / 100,
    )
    write_relion_motion(tmp_path / "m.star", motion)
    assert "-9999" in (tmp_path / "m.star").read_text()
    read = read_relion_motion(tmp_path / "m.star")
    assert np.isnan(read.global_shifts_px[0]).all()
    assert read.start_frame == 2
    # Total shift = global + local; local vanishes at the start frame (index 1).
    total = relion_shifts_px_at(read, np.array([[10.0, 20.0]]), [1, 2])
    np.testing.assert_allclose(total[0, 0], [0.0, 0.0], atol=1e-12)
    local = evaluate_relion_local_model(
        read.local_model_coefficients,  # type: ignore[arg-type]
        10.0,
        20.0,
        2.0,
        image_size_xy=(100, 80),
        start_frame=2,
    )
    np.testing.assert_allclose(total[0, 1], np.array([1.5, -2.0]) + local)


# ---------------------------------------------------------------------------- error paths

_GOOD = """data_general

_rlnImageSizeX 100
_rlnImageSizeY 80
_rlnImageSizeZ 3
_rlnMicrographMovieName movie.mrc
_rlnMotionModelVersion {version}

data_global_shift

loop_
_rlnMicrographFrameNumber #1
_rlnMicrographShiftX #2
_rlnMicrographShiftY #3
1 0.0 0.0
2 1.0 2.0
3 1.5 2.5
"""

_LOCAL = (
    "\ndata_local_motion_model\n\nloop_\n_rlnMotionModelCoeffsIdx #1\n_rlnMotionModelCoeff #2\n"
)


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "bad.star"
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("text", "error", "words"),
    [
        (_GOOD.format(version=0).replace("data_general", "data_other"), FileFormatError, "general"),
        (_GOOD.format(version=0).replace("_rlnImageSizeZ 3\n", ""), MissingColumnError, "SizeZ"),
        (
            _GOOD.format(version=0).replace("_rlnMicrographMovieName movie.mrc\n", ""),
            MissingColumnError,
            "MovieName",
        ),
        (
            _GOOD.format(version=0).replace("_rlnMicrographShiftY #3", "_rlnOther #3"),
            MissingColumnError,
            "rlnMicrographShiftY",
        ),
        (_GOOD.format(version=0).split("data_global_shift")[0], FileFormatError, "global_shift"),
        (_GOOD.format(version=0).replace("3 1.5 2.5\n", ""), TruncatedFileError, "2 rows"),
        (_GOOD.format(version=0).replace("3 1.5 2.5\n", "3 1.5\n"), FileFormatError, "line"),
        (_GOOD.format(version=0).replace("3 1.5 2.5", "4 1.5 2.5"), InvalidValuesError, "Frame"),
        (_GOOD.format(version=0).replace("2 1.0 2.0", "2 one 2.0"), InvalidValuesError, "ShiftX"),
        (_GOOD.format(version=0).replace("SizeZ 3", "SizeZ 2.5"), InvalidValuesError, "SizeZ"),
        (_GOOD.format(version=2), InvalidValuesError, "rlnMotionModelVersion"),
        (_GOOD.format(version=1), FileFormatError, "local_motion_model"),
        (
            _GOOD.format(version=1) + _LOCAL + "".join(f"{i} 0.5\n" for i in range(30)),
            TruncatedFileError,
            "30 of 36",
        ),
        (
            _GOOD.format(version=1) + _LOCAL + "".join(f"{i + 1} 0.5\n" for i in range(36)),
            InvalidValuesError,
            "CoeffsIdx",
        ),
        (
            _GOOD.format(version=0).replace(
                "_rlnMotionModelVersion 0", "_rlnMicrographStartFrame 5"
            ),
            InvalidValuesError,
            "start_frame",
        ),
        ("", TruncatedFileError, "empty"),
    ],
)
def test_bad_files_raise_typed_errors_naming_the_file(
    tmp_path: Path, text: str, error: type[Exception], words: str
) -> None:
    path = _write(tmp_path, text)
    with pytest.raises(error, match=words) as info:
        read_relion_motion(path)
    assert str(path) in str(info.value)


def test_good_error_fixture_reads(tmp_path: Path) -> None:
    # The base text of the error cases is itself valid, so each case fails for its own reason.
    motion = read_relion_motion(_write(tmp_path, _GOOD.format(version=0)))
    np.testing.assert_array_equal(motion.global_shifts_px, [[0, 0], [1, 2], [1.5, 2.5]])
    assert motion.binning == 1.0
    assert motion.start_frame == 1
    assert motion.hot_pixels_xy is None
    with_local = _GOOD.format(version=1) + _LOCAL + "".join(f"{i} {i / 10}\n" for i in range(36))
    read = read_relion_motion(_write(tmp_path, with_local))
    np.testing.assert_allclose(read.local_model_coefficients, np.arange(36) / 10)  # type: ignore[arg-type]


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(MissingFileError, match="not found"):
        read_relion_motion(tmp_path / "absent.star")


def test_in_memory_checks() -> None:
    with pytest.raises(DimensionMismatchError, match="global_shifts_px"):
        RelionMotion(image_size_xyz=(10, 10, 3), movie_name="m", global_shifts_px=np.zeros((2, 2)))
    with pytest.raises(DimensionMismatchError, match="36"):
        RelionMotion(
            image_size_xyz=(10, 10, 1),
            movie_name="m",
            global_shifts_px=np.zeros((1, 2)),
            local_model_coefficients=np.zeros(18),
        )
    with pytest.raises(InvalidValuesError, match="pixel_size"):
        relion_global_shifts_px(np.zeros((2, 2)), original_pixel_size_a=0.0)
    with pytest.raises(DimensionMismatchError, match="shifts_a"):
        relion_global_shifts_px(np.zeros((2, 3)), original_pixel_size_a=1.0)
    motion = RelionMotion(
        image_size_xyz=(10, 10, 2), movie_name="m", global_shifts_px=np.zeros((2, 2))
    )
    with pytest.raises(ValueError, match="read-only"):
        motion.global_shifts_px[0, 0] = 1.0


def test_fit_needs_enough_samples() -> None:
    positions = np.array([[10.0, 10.0], [50.0, 50.0], [90.0, 90.0]])  # on one line
    frames = np.arange(6.0)
    with pytest.raises(InvalidValuesError, match="coefficients"):
        fit_relion_local_model(positions, frames, np.zeros((3, 6, 2)), image_size_xy=(100, 100))
    with pytest.raises(DimensionMismatchError, match="local_shifts_px"):
        fit_relion_local_model(positions, frames, np.zeros((3, 5, 2)), image_size_xy=(100, 100))


def test_shifts_at_takes_whole_frames_only() -> None:
    motion = RelionMotion(
        image_size_xyz=(10, 10, 3), movie_name="m", global_shifts_px=np.ones((3, 2))
    )
    assert relion_shifts_px_at(motion, np.zeros((4, 2))).shape == (4, 3, 2)
    with pytest.raises(InvalidValuesError, match="whole frame"):
        relion_shifts_px_at(motion, np.zeros((1, 2)), [0.5])
    with pytest.raises(InvalidValuesError, match="whole frame"):
        relion_shifts_px_at(motion, np.zeros((1, 2)), [3])
