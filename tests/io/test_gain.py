"""Gain references and defects (cryowarp.io.gain)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch

from cryowarp.errors import DimensionMismatchError, FileFormatError, InvalidValuesError
from cryowarp.io.gain import (
    correct_defects,
    detect_hot_pixels,
    orient_gain,
    prepare_gain,
    read_defect_mask,
    read_gain,
    read_serialem_defects,
)
from cryowarp.io.mrc import write_mrc


def _marker(n: int = 5) -> np.ndarray:
    gain = np.zeros((n, n), np.float32)
    gain[n // 2, n - 1] = 1  # centred coordinates (x, y) = (+2, 0)
    return gain


def test_rotation_is_counter_clockwise_with_y_up() -> None:
    out = orient_gain(_marker(), rotation_quarter_turns=1)
    # (x, y) = (2, 0) -> (0, 2): column 2, row 4 (y grows with the row index)
    assert np.argwhere(out).tolist() == [[4, 2]]
    out3 = orient_gain(_marker(), rotation_quarter_turns=3)
    assert np.argwhere(out3).tolist() == [[0, 2]]
    rng = np.random.default_rng(0)
    gain = rng.random((6, 4))
    np.testing.assert_array_equal(orient_gain(gain, rotation_quarter_turns=2), gain[::-1, ::-1])
    four = gain
    for _ in range(4):
        four = orient_gain(four, rotation_quarter_turns=1)
    np.testing.assert_array_equal(four, gain)


def test_flip_and_transpose_order() -> None:
    gain = np.arange(12, dtype=np.float32).reshape(3, 4)
    np.testing.assert_array_equal(orient_gain(gain, flip="y"), gain[::-1])
    np.testing.assert_array_equal(orient_gain(gain, flip=1), gain[::-1])  # MotionCor2 1
    np.testing.assert_array_equal(orient_gain(gain, flip=2), gain[:, ::-1])
    # transpose -> rotate -> flip
    expected = np.rot90(gain.T, k=-1)[:, ::-1]
    np.testing.assert_array_equal(
        orient_gain(gain, transpose=True, rotation_quarter_turns=1, flip="x"), expected
    )
    with pytest.raises(ValueError, match="flip"):
        orient_gain(gain, flip=3)


def test_shape_mismatch_names_both_files_and_hints(tmp_path: Path) -> None:
    gain = np.ones((40, 30), np.float32)
    with pytest.raises(DimensionMismatchError) as info:
        prepare_gain(gain, frame_shape=(30, 40), gain_path="gain.mrc", movie_path="movie.tif")
    message = str(info.value)
    assert "gain.mrc" in message
    assert "movie.tif" in message
    assert "(40, 30)" in message
    assert "(30, 40)" in message
    assert "--gain-transpose" in message
    with pytest.raises(DimensionMismatchError, match="super-resolution"):
        prepare_gain(np.ones((60, 80)), frame_shape=(30, 40), gain_path="g", movie_path="m")


def test_invalid_gain_pixels_become_defects() -> None:
    gain = np.full((20, 20), 1.5, np.float32)
    gain[1, 2], gain[3, 4], gain[5, 6], gain[7, 8] = 0, np.nan, np.inf, -1
    fixed, defects = prepare_gain(gain, frame_shape=(20, 20))
    assert np.argwhere(defects).tolist() == [[1, 2], [3, 4], [5, 6], [7, 8]]
    assert np.isfinite(fixed).all()
    assert fixed[defects].tolist() == [1, 1, 1, 1]
    assert (fixed[~defects] == 1.5).all()
    gain[:5] = 0  # 100 pixels, plus the inf and -1 of rows 5 and 7: 102 / 400
    with pytest.raises(InvalidValuesError, match=r"25\.5% of the gain"):
        prepare_gain(gain, frame_shape=(20, 20), gain_path="g.mrc")


def test_read_gain_mrc_and_tiff_agree(tmp_path: Path) -> None:
    gain = np.random.default_rng(1).random((12, 16)).astype(np.float32) + 0.5
    write_mrc(tmp_path / "gain.mrc", gain, voxel_size_a=1.0)
    tifffile.imwrite(tmp_path / "gain.tif", gain[::-1])  # TIFF rows top-down
    np.testing.assert_array_equal(read_gain(tmp_path / "gain.mrc"), gain)
    np.testing.assert_array_equal(read_gain(tmp_path / "gain.tif"), gain)
    mask = np.zeros((12, 16), np.uint8)
    mask[3, 5] = 1
    write_mrc(tmp_path / "mask.mrc", mask.astype(np.int8), voxel_size_a=1.0)
    assert np.argwhere(read_defect_mask(tmp_path / "mask.mrc")).tolist() == [[3, 5]]


def test_serialem_defect_list(tmp_path: Path) -> None:
    path = tmp_path / "defects.txt"
    path.write_text(
        "CameraSizeX 20\nCameraSizeY 10\nK2Type 1\nBadColumns 3 4\nBadRows 8\n"
        "BadPixels 15 1 16 2\nPartialBadColumn 10 2 0 4\nPartialBadRow 6 1 12 14\n"
    )
    mask = read_serialem_defects(path)
    expected = np.zeros((10, 20), bool)
    expected[:, 3:5] = True
    expected[8, :] = True
    expected[1, 15] = expected[2, 16] = True
    expected[0:5, 10:12] = True
    expected[6, 12:15] = True
    np.testing.assert_array_equal(mask, expected)
    path.write_text("BadColumns 25\n")
    with pytest.raises(FileFormatError, match="line 1: column 25 outside"):
        read_serialem_defects(path, shape=(10, 20))
    path.write_text("UsableArea 0 0 10 10\n")
    with pytest.raises(FileFormatError, match="unsupported defect entry"):
        read_serialem_defects(path, shape=(10, 20))


def test_hot_pixels_found_in_poisson_sum() -> None:
    rng = np.random.default_rng(3)
    frame_sum = rng.poisson(100.0, size=(128, 128)).astype(np.float32)
    hot = [(5, 7), (64, 64), (100, 3), (127, 127), (0, 50)]
    for y, x in hot:
        frame_sum[y, x] += 300  # 30 σ
    found = detect_hot_pixels(frame_sum, n_sigma=8)
    assert sorted(map(tuple, np.argwhere(found).tolist())) == sorted(hot)


@pytest.mark.parametrize("method", ["median", "mean"])
def test_defect_correction_recovers_linear_ramp(device: torch.device, method: str) -> None:
    yy, xx = torch.meshgrid(torch.arange(32.0), torch.arange(40.0), indexing="ij")
    ramp = (3 * xx + 2 * yy + 5).to(device)
    frames = torch.stack([ramp, 2 * ramp])  # (2, h, w)
    defects = torch.zeros(32, 40, dtype=torch.bool)
    defects[:, 17] = True  # a whole bad column
    defects[10, 5] = defects[20, 30] = True
    corrupted = frames.clone()
    corrupted[:, defects.to(device)] = 1e6
    before = corrupted.clone()
    fixed = correct_defects(corrupted, defects, method=method)
    torch.testing.assert_close(corrupted, before)  # input untouched
    interior = defects.clone()
    interior[0, 17] = interior[31, 17] = False  # one-sided windows at the edges
    torch.testing.assert_close(fixed[:, interior.to(device)], frames[:, interior.to(device)])
    assert fixed.device.type == device.type
    assert (fixed[:, ~defects.to(device)] == frames[:, ~defects.to(device)]).all()
