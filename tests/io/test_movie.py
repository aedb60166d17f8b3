"""One movie reader over MRC/TIFF/EER (cryowarp.io.movie)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch

from cryowarp.errors import FileFormatError, InvalidValuesError, MissingFileError
from cryowarp.io.movie import check_frames, open_movie
from cryowarp.io.mrc import write_mrc


def _frames() -> np.ndarray:
    return np.random.default_rng(5).poisson(2.0, size=(7, 16, 24)).astype(np.uint16)


def test_mrc_and_tiff_movies_read_the_same(tmp_path: Path, device: torch.device) -> None:
    frames = _frames()
    write_mrc(tmp_path / "m.mrc", frames, voxel_size_a=0.83, is_stack=True)
    # TIFF stores rows top-down: written flipped, it reads back like the MRC
    tifffile.imwrite(tmp_path / "m.tif", frames[:, ::-1], compression="zlib")
    for name in ("m.mrc", "m.tif"):
        with open_movie(tmp_path / name) as movie:
            assert movie.n_frames == 7
            assert movie.frame_shape == (16, 24)
            assert movie.dtype == np.uint16
            block = movie.read_frames(2, 5)
            assert block.dtype == np.float32
            np.testing.assert_array_equal(block, frames[2:5])
            tensor = movie.read_frames_tensor(0, 3, device=device)
            assert tensor.device.type == device.type
            assert tensor.dtype == torch.float32
            torch.testing.assert_close(tensor.cpu(), torch.from_numpy(frames[:3].astype("f4")))
            chunks = list(movie.iter_chunks(3))
            assert [start for start, _ in chunks] == [0, 3, 6]
            np.testing.assert_array_equal(np.concatenate([c for _, c in chunks]), frames)
    with open_movie(tmp_path / "m.mrc") as movie:
        assert movie.pixel_size_a == pytest.approx(0.83)


def test_format_is_sniffed_from_magic_not_extension(tmp_path: Path) -> None:
    frames = _frames()
    tifffile.imwrite(tmp_path / "looks_like.mrc", frames)
    with open_movie(tmp_path / "looks_like.mrc", flip_tiff_y=False) as movie:
        np.testing.assert_array_equal(movie.read_frames(0, 7), frames)
    (tmp_path / "junk.tif").write_bytes(b"\0" * 100)
    with pytest.raises(FileFormatError, match=r"junk\.tif"):
        open_movie(tmp_path / "junk.tif")
    with pytest.raises(MissingFileError, match=r"absent\.mrc: file not found"):
        open_movie(tmp_path / "absent.mrc")


def test_validation_names_file_and_frame(tmp_path: Path) -> None:
    frames = _frames().astype(np.float32) + 1
    frames[4, 3, 3] = np.nan
    path = tmp_path / "bad.mrc"
    write_mrc(path, frames, voxel_size_a=1.0)
    with open_movie(path, validate=True) as movie:
        movie.read_frames(0, 4)  # frames 0-3 are fine
        with pytest.raises(InvalidValuesError, match=r"bad\.mrc: frame 4 holds 1 NaN/Inf"):
            movie.read_frames(2, 6)
    with open_movie(path) as movie:  # without validation the values pass through
        assert np.isnan(movie.read_frames(4, 5)).sum() == 1


def test_blank_and_infinite_frames_detected(device: torch.device) -> None:
    frames = torch.ones(5, 8, 8, device=device)
    check_frames(frames, path="ok.mrc")
    frames[2] = 0
    with pytest.raises(InvalidValuesError, match=r"m\.tif: frame 12 is entirely zero"):
        check_frames(frames, path="m.tif", first_index=10)
    frames[2] = 1
    frames[1, 0, 0] = float("inf")
    with pytest.raises(InvalidValuesError, match="frame 1 holds 1 NaN/Inf"):
        check_frames(frames, path="m.tif")


def test_real_stack_streams_as_movie(shared_data: Path) -> None:
    path = shared_data / "particles" / "cryojax_trpv1_10ptcl" / "trpv1_small_stack.mrcs"
    with open_movie(path, validate=True) as movie:
        assert (movie.n_frames, *movie.frame_shape) == (10, 48, 48)
        assert movie.pixel_size_a == pytest.approx(4.88, rel=1e-3)
        total = sum(float(c.sum()) for _, c in movie.iter_chunks(4))
        assert total == pytest.approx(float(movie.read_frames(0, 10).sum()), rel=1e-6)
