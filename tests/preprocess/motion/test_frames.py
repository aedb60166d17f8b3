"""Movie input for motion correction (cryowarp.preprocess.motion.frames) on simulated movies.

The simulator's ``tiny`` movie (256², 8 frames at 1 e⁻/Å², 1.5 Å/px) comes with its gain
(5 % RMS), hot pixels and dead columns, so gain correction, gain orientation and defect
detection are checked against the truth that made the movie.
"""

from __future__ import annotations

import importlib.util
import re
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest
import tifffile
import torch
from hypothesis import given
from hypothesis import strategies as st

from cryowarp.core.resize import rescale
from cryowarp.errors import (
    CorruptFileError,
    DimensionMismatchError,
    InvalidValuesError,
    TruncatedFileError,
)
from cryowarp.io.gain import orient_gain, read_gain
from cryowarp.io.mrc import read_mrc, write_mrc
from cryowarp.preprocess.motion._gain_check import gain_orientations
from cryowarp.preprocess.motion.frames import (
    LoadedMovie,
    alignment_frames,
    binned_shape,
    load_movie,
)
from cryowarp.preprocess.motion.settings import MovieInputSettings
from cryowarp.simulate.write import write_movie

PIXEL_A = 1.5


@dataclass(frozen=True)
class Dataset:
    folder: Path
    mrc: Path
    tiff: Path
    gain: Path
    raw: np.ndarray  # (8, 256, 256) counts as the simulator made them
    gain_values: np.ndarray  # (256, 256)
    hot: np.ndarray  # (256, 256) bool, from the ground truth
    dead: np.ndarray  # (256, 256) bool


@pytest.fixture(scope="session")
def tiny(tiny_frame_series: Any, tmp_path_factory: pytest.TempPathFactory) -> Dataset:
    """The session's tiny movie (tests/conftest.py) plus a TIFF copy of its raw frames."""
    series = tiny_frame_series
    raw, _ = read_mrc(series.movie)
    tiff = tmp_path_factory.mktemp("tiny_tiff") / "movie_000.tif"
    write_movie(tiff, torch.from_numpy(raw.astype(np.int64)), pixel_size_a=PIXEL_A)
    truth = series.truth
    hot = np.zeros(raw.shape[1:], bool)
    for x, y in truth.hot_pixels_xy.tolist():
        hot[y, x] = True
    dead = np.zeros(raw.shape[1:], bool)
    dead[:, truth.dead_columns.numpy()] = True
    return Dataset(
        series.folder, series.movie, tiff, series.gain, raw, read_gain(series.gain), hot, dead
    )


def _settings(**kw: object) -> MovieInputSettings:
    return MovieInputSettings.model_validate(kw)


@pytest.mark.parametrize("kind", ["mrc", "tiff"])
def test_corrected_frames_are_raw_times_gain(
    tiny: Dataset, kind: str, device: torch.device
) -> None:
    path = tiny.mrc if kind == "mrc" else tiny.tiff
    movie = load_movie(path, _settings(gain_path=str(tiny.gain), detect_hot_pixels=False))
    assert (movie.n_frames, movie.frame_shape) == (8, (256, 256))
    assert movie.pixel_size_a == pytest.approx(PIXEL_A)
    assert movie.field_size_a == pytest.approx((256 * PIXEL_A, 256 * PIXEL_A))
    assert movie.in_memory
    assert movie._raw is not None
    assert movie._raw.itemsize == 1
    assert movie.defects is None
    frames = movie.corrected_frames(2, 6, device=device)
    assert frames.device.type == device.type
    assert frames.dtype == torch.float32
    expected = torch.from_numpy(tiny.raw[2:6].astype(np.float32) * tiny.gain_values)
    torch.testing.assert_close(frames.cpu(), expected, rtol=0, atol=0)
    # the sum is the sum of the corrected frames (float64 accumulation)
    torch.testing.assert_close(
        movie.frame_sum(), movie.corrected_frames(0, 8).sum(0), rtol=1e-6, atol=1e-4
    )


def test_gain_correction_flattens_the_frame_sum(tiny: Dataset, tmp_path: Path) -> None:
    """Physics: the right gain removes the pixel sensitivities imprinted on the raw sum (by
    their per-pixel variance, 1.25e-3 here), a wrongly oriented one adds as much again."""
    flipped = tmp_path / "flipped_gain.mrc"
    write_mrc(flipped, np.ascontiguousarray(tiny.gain_values[::-1]), voxel_size_a=PIXEL_A)
    right = load_movie(tiny.mrc, _settings(gain_path=str(tiny.gain)))
    none = load_movie(tiny.mrc, _settings())
    wrong = load_movie(tiny.mrc, _settings(gain_path=str(flipped), check_gain_orientation=False))
    good = torch.from_numpy(~(tiny.hot | tiny.dead))

    def high_pass_variance(movie: LoadedMovie) -> float:
        image = movie.frame_sum()
        smooth = torch.nn.functional.avg_pool2d(image[None, None], 7, 1, 3)[0, 0]
        return float(((image / smooth - 1)[good] ** 2).mean())

    v_right, v_none, v_wrong = (high_pass_variance(m) for m in (right, none, wrong))
    assert v_none - v_right == pytest.approx(v_wrong - v_none, rel=0.3)
    assert v_none - v_right > 0.01 * v_none


def _oriented_settings(message: str) -> dict[str, object]:
    found = re.search(
        r"set gain_transpose=(True|False), gain_rotation_quarter_turns=(\d), gain_flip='(\w+)'",
        message,
    )
    assert found is not None, message
    return {
        "gain_transpose": found.group(1) == "True",
        "gain_rotation_quarter_turns": int(found.group(2)),
        "gain_flip": found.group(3),
    }


@pytest.mark.slow
def test_every_wrong_gain_orientation_is_detected_and_the_right_one_passes(
    tiny: Dataset, tmp_path: Path
) -> None:
    names = []
    for transpose, turns, flip in gain_orientations()[1:]:  # all but the identity
        stored = orient_gain(
            tiny.gain_values, transpose=transpose, rotation_quarter_turns=turns, flip=flip
        )
        gain_file = tmp_path / f"gain_{transpose}_{turns}_{flip}.mrc"
        write_mrc(gain_file, stored, voxel_size_a=PIXEL_A)
        with pytest.raises(DimensionMismatchError) as caught:
            load_movie(tiny.mrc, _settings(gain_path=str(gain_file)))
        message = str(caught.value)
        assert message.startswith(str(gain_file))
        assert str(tiny.mrc) in message
        fix = _oriented_settings(message)
        names.append(tuple(fix.values()))
        # the suggested settings undo the wrong orientation exactly and are not flagged
        right = load_movie(tiny.mrc, _settings(gain_path=str(gain_file), **fix))
        assert right.gain is not None
        np.testing.assert_array_equal(right.gain.numpy(), tiny.gain_values)
    assert len(set(names)) == 7


def test_right_gain_orientation_is_not_flagged(tiny: Dataset) -> None:
    for path in (tiny.mrc, tiny.tiff):
        movie = load_movie(path, _settings(gain_path=str(tiny.gain)))
        assert movie.gain is not None
        np.testing.assert_array_equal(movie.gain.numpy(), tiny.gain_values)


def test_rotated_gain_is_detected_on_a_cropped_rectangular_movie(
    tiny: Dataset, tmp_path: Path
) -> None:
    movie = tmp_path / "rect.mrc"
    write_mrc(movie, tiny.raw[:, :, :200], voxel_size_a=PIXEL_A, is_stack=True)
    flipped = tmp_path / "gain_flipped.mrc"
    write_mrc(flipped, np.ascontiguousarray(tiny.gain_values[::-1, :200]), voxel_size_a=PIXEL_A)
    with pytest.raises(DimensionMismatchError, match="gain_flip='y'"):
        load_movie(movie, _settings(gain_path=str(flipped)))
    fixed = load_movie(movie, _settings(gain_path=str(flipped), gain_flip="y"))
    assert fixed.gain is not None
    np.testing.assert_array_equal(fixed.gain.numpy(), tiny.gain_values[:, :200])
    # a gain of the wrong size names both files and hints at the transpose
    transposed = tmp_path / "gain_transposed.mrc"
    write_mrc(transposed, np.ascontiguousarray(tiny.gain_values[:, :200].T), voxel_size_a=PIXEL_A)
    with pytest.raises(DimensionMismatchError, match=r"gain_transposed\.mrc.*rect\.mrc.*transpose"):
        load_movie(movie, _settings(gain_path=str(transposed)))


def test_hot_pixels_and_dead_columns_are_found_and_filled(tiny: Dataset) -> None:
    movie = load_movie(tiny.mrc, _settings(gain_path=str(tiny.gain)))
    assert movie.defects is not None
    np.testing.assert_array_equal(movie.defects.numpy(), tiny.hot | tiny.dead)
    corrected = movie.corrected_frames(0, 8)
    y, x = np.argwhere(tiny.hot)[0]
    assert 2 <= y < 254
    assert 2 <= x < 254
    window = tiny.raw[:, y - 1 : y + 2, x - 1 : x + 2].astype(np.float32)
    window = window * tiny.gain_values[y - 1 : y + 2, x - 1 : x + 2]
    good = ~(tiny.hot | tiny.dead)[y - 1 : y + 2, x - 1 : x + 2]
    expected = window[:, good].mean(axis=1)
    np.testing.assert_allclose(corrected[:, y, x].numpy(), expected, rtol=1e-6)
    assert float(corrected[:, y, x].max()) < 20  # hot pixels read 100 counts per frame
    column = int(np.argwhere(tiny.dead[0])[0, 0])
    assert float(corrected[:, :, column].mean()) == pytest.approx(float(corrected.mean()), rel=0.1)


def test_serialem_defect_list_and_mask_image(tiny: Dataset, tmp_path: Path) -> None:
    listing = tmp_path / "defects.txt"
    listing.write_text("CameraSizeX 256\nCameraSizeY 256\nBadColumns 10\nBadPixels 100 50\n")
    movie = load_movie(tiny.mrc, _settings(defects_path=str(listing), detect_hot_pixels=False))
    assert movie.defects is not None
    expected = np.zeros((256, 256), bool)
    expected[:, 10] = True
    expected[50, 100] = True
    np.testing.assert_array_equal(movie.defects.numpy(), expected)
    frames = movie.corrected_frames(0, 8)
    neighbours = np.concatenate(
        [tiny.raw[:, 49:52, 99], tiny.raw[:, 49:52, 101], tiny.raw[:, [49, 51], 100]], axis=1
    )
    np.testing.assert_allclose(frames[:, 50, 100].numpy(), neighbours.mean(axis=1), rtol=1e-6)
    np.testing.assert_allclose(
        frames[:, 20, 10].numpy(), tiny.raw[:, 19:22, [9, 11]].reshape(8, -1).mean(1), rtol=1e-6
    )
    mask_file = tmp_path / "mask.mrc"
    write_mrc(mask_file, expected.astype(np.int8), voxel_size_a=PIXEL_A)
    from_mask = load_movie(
        tiny.mrc, _settings(defects_path=str(mask_file), detect_hot_pixels=False)
    )
    assert from_mask.defects is not None
    np.testing.assert_array_equal(from_mask.defects.numpy(), expected)
    small = tmp_path / "small_mask.mrc"
    write_mrc(small, expected[:128].astype(np.int8), voxel_size_a=PIXEL_A)
    with pytest.raises(DimensionMismatchError, match=r"small_mask\.mrc"):
        load_movie(tiny.mrc, _settings(defects_path=str(small)))


@pytest.mark.parametrize(("frame", "value", "problem"), [(5, np.nan, "NaN"), (2, 0.0, "zero")])
def test_bad_frames_name_the_file_and_frame(
    tiny: Dataset, tmp_path: Path, frame: int, value: float, problem: str
) -> None:
    frames = tiny.raw.astype(np.float32)
    if np.isnan(value):
        frames[frame, 7, 9] = value
    else:
        frames[frame] = value
    path = tmp_path / "bad_frames.mrc"
    write_mrc(path, frames, voxel_size_a=PIXEL_A, is_stack=True)
    with pytest.raises(InvalidValuesError, match=rf"bad_frames\.mrc: frame {frame} .*{problem}"):
        load_movie(path, _settings())


def test_too_few_frames_and_unknown_pixel_size(tiny: Dataset, tmp_path: Path) -> None:
    with pytest.raises(InvalidValuesError, match=r"movie_000\.mrc: has 8 frames.*minimum of 9"):
        load_movie(tiny.mrc, _settings(min_frames=9))
    bare = tmp_path / "no_pixel_size.mrc"
    write_mrc(bare, tiny.raw[:4], voxel_size_a=0.0, is_stack=True)
    with pytest.raises(InvalidValuesError, match=r"no_pixel_size\.mrc.*--pixel-size"):
        load_movie(bare, _settings())
    movie = load_movie(bare, _settings(pixel_size_a=1.25))
    assert movie.pixel_size_a == 1.25
    assert movie.field_size_a == (320.0, 320.0)


def test_truncated_and_corrupt_files_raise_typed_errors(tiny: Dataset, tmp_path: Path) -> None:
    cut = tmp_path / "cut.mrc"
    cut.write_bytes(tiny.mrc.read_bytes()[:-1000])
    with pytest.raises(TruncatedFileError, match=r"cut\.mrc"):
        load_movie(cut, _settings())
    tiff_bytes = tiny.tiff.read_bytes()
    cut_tiff = tmp_path / "cut.tif"
    cut_tiff.write_bytes(tiff_bytes[: len(tiff_bytes) // 2])
    with pytest.raises(CorruptFileError, match=r"cut\.tif"):
        load_movie(cut_tiff, _settings())


def test_streaming_from_disk_equals_in_memory(tiny: Dataset) -> None:
    settings = _settings(gain_path=str(tiny.gain))
    memory = load_movie(tiny.tiff, settings)
    disk = load_movie(tiny.tiff, settings, max_memory_gb=0.0)
    assert memory.in_memory
    assert not disk.in_memory
    assert disk.defects is not None
    assert memory.defects is not None
    assert torch.equal(disk.defects, memory.defects)
    assert torch.equal(disk.corrected_frames(1, 7), memory.corrected_frames(1, 7))
    assert torch.equal(disk.frame_sum(), memory.frame_sum())
    a, pixel_a = alignment_frames(disk, pixel_size_a=12.0)
    b, pixel_b = alignment_frames(memory, pixel_size_a=12.0)
    assert pixel_a == pixel_b
    assert torch.equal(a, b)


def test_accumulated_dose_is_at_the_middle_of_each_frame(tiny: Dataset) -> None:
    movie = load_movie(tiny.mrc, _settings(dose_per_frame_e_per_a2=1.5, pre_exposure_e_per_a2=2.0))
    dose = movie.accumulated_dose_e_per_a2()
    assert dose.dtype == torch.float64
    torch.testing.assert_close(dose, 2.0 + 1.5 * (torch.arange(8, dtype=torch.float64) + 0.5))


def _band_correlation(a: torch.Tensor, b: torch.Tensor, max_cycles_per_px: float) -> float:
    fa, fb = torch.fft.rfft2(a.double()), torch.fft.rfft2(b.double())
    fy = torch.fft.fftfreq(a.shape[-2], dtype=torch.float64)[:, None]
    fx = torch.fft.rfftfreq(a.shape[-1], dtype=torch.float64)[None]
    band = (fx**2 + fy**2 < max_cycles_per_px**2) & (fx**2 + fy**2 > 0)
    sa, sb = fa[:, band], fb[:, band]
    return float(
        (sa * sb.conj()).sum().real / (sa.abs().square().sum() * sb.abs().square().sum()).sqrt()
    )


@pytest.mark.parametrize(("target_a", "binned"), [(6.0, False), (13.0, True)])
def test_alignment_frames_keep_mean_and_low_frequencies(
    tiny: Dataset, device: torch.device, target_a: float, binned: bool
) -> None:
    movie = load_movie(tiny.mrc, _settings(gain_path=str(tiny.gain)))
    frames, pixel_a = alignment_frames(movie, pixel_size_a=target_a, device=device)
    shape, expected_pixel = binned_shape((256, 256), target_a / PIXEL_A, pixel_size_a=PIXEL_A)
    assert tuple(frames.shape) == (8, *shape)
    assert frames.device.type == device.type
    assert pixel_a == pytest.approx(expected_pixel)
    assert abs(pixel_a - target_a) <= target_a / shape[1] * 1.01
    full = movie.corrected_frames(0, 8)
    reference = rescale(full, shape)  # Fourier crop of the full frames
    torch.testing.assert_close(frames.mean((-2, -1)).cpu(), full.mean((-2, -1)), rtol=1e-5, atol=0)
    correlation = _band_correlation(frames.cpu(), reference, 0.25)
    if binned:
        assert 0.99 < correlation < 0.99999  # block means alias a little
    else:
        assert correlation > 1 - 1e-9


def test_alignment_at_or_below_the_raw_pixel_returns_the_corrected_frames(tiny: Dataset) -> None:
    movie = load_movie(tiny.mrc, _settings(gain_path=str(tiny.gain)))
    frames, pixel_a = alignment_frames(movie, pixel_size_a=1.0)
    assert pixel_a == PIXEL_A
    assert torch.equal(frames, movie.corrected_frames(0, 8))


@given(
    h=st.integers(16, 5000),
    w=st.integers(16, 5000),
    factor=st.floats(1.0, 8.0),
    pixel_a=st.floats(0.3, 3.0),
)
def test_binned_shape_is_even_and_keeps_the_field(
    h: int, w: int, factor: float, pixel_a: float
) -> None:
    (new_h, new_w), new_pixel = binned_shape((h, w), factor, pixel_size_a=pixel_a)
    if factor == 1.0:
        assert ((new_h, new_w), new_pixel) == ((h, w), pixel_a)
        return
    assert new_h % 2 == 0
    assert new_w % 2 == 0
    assert abs(new_w - w / factor) <= 1
    assert abs(new_h - h / factor) <= 1
    assert new_pixel * new_w == pytest.approx(w * pixel_a)  # same field of view along x


# -- EER ---------------------------------------------------------------------------------------


def _eer_helpers() -> ModuleType:
    """The synthetic EER writer of tests/io/test_eer.py (written from the format description)."""
    path = Path(__file__).resolve().parents[2] / "io" / "test_eer.py"
    spec = importlib.util.spec_from_file_location("_eer_test_helpers", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_eer_fractions_by_number_and_by_dose(tmp_path: Path) -> None:
    eer = _eer_helpers()
    h = w = 32
    path = tmp_path / "movie.eer"
    events = eer._make_eer(path, 12, h, w, seed=4)
    raw = np.stack([eer._render(e, h, w, 1) for e in events]).astype(np.float32)
    by_number = load_movie(path, _settings(eer_n_fractions=3, detect_hot_pixels=False))
    assert by_number.n_frames == 3
    assert by_number.pixel_size_a == pytest.approx(0.82)  # from the EER metadata
    expected = torch.from_numpy(raw.reshape(3, 4, h, w).sum(1))
    assert torch.equal(by_number.corrected_frames(0, 3), expected)
    assert by_number.dose_per_frame_e_per_a2 == 1.0  # the settings' value: no total dose given
    # 0.5 e/Å² per raw frame; 1.2 e/Å² per fraction rounds to 2 raw frames = 1.0 e/Å²
    by_dose = load_movie(
        path,
        _settings(
            eer_dose_per_fraction_e_per_a2=1.2,
            eer_total_dose_e_per_a2=6.0,
            detect_hot_pixels=False,
        ),
    )
    assert by_dose.n_frames == 6
    assert torch.equal(
        by_dose.corrected_frames(0, 6), torch.from_numpy(raw.reshape(6, 2, h, w).sum(1))
    )
    assert by_dose.dose_per_frame_e_per_a2 == pytest.approx(1.0)
    torch.testing.assert_close(
        by_dose.accumulated_dose_e_per_a2(), torch.arange(6, dtype=torch.float64) + 0.5
    )


def test_tiff_gain_is_flipped_with_tiff_movies_but_not_with_eer(tmp_path: Path) -> None:
    eer = _eer_helpers()
    h = w = 32
    eer_movie = tmp_path / "movie.eer"
    events = eer._make_eer(eer_movie, 6, h, w, seed=5)
    raw = np.stack([eer._render(e, h, w, 1) for e in events])
    tiff_movie = tmp_path / "movie.tif"
    tifffile.imwrite(tiff_movie, raw.astype(np.uint8)[:, ::-1])  # stored top-down
    stored = np.random.default_rng(2).uniform(0.9, 1.1, (h, w)).astype(np.float32)
    gain_file = tmp_path / "gain.tif"
    tifffile.imwrite(gain_file, stored)
    common = {"gain_path": str(gain_file), "check_gain_orientation": False, "pixel_size_a": 1.0}
    from_eer = load_movie(eer_movie, _settings(detect_hot_pixels=False, **common))
    from_tiff = load_movie(tiff_movie, _settings(detect_hot_pixels=False, **common))
    assert from_eer.gain is not None
    assert from_tiff.gain is not None
    np.testing.assert_array_equal(from_eer.gain.numpy(), stored)
    np.testing.assert_array_equal(from_tiff.gain.numpy(), stored[::-1])
    # the same detector pixels: the TIFF movie and its gain are flipped together
    torch.testing.assert_close(
        from_tiff.corrected_frames(0, 6), torch.from_numpy(raw * stored[::-1]).float()
    )
