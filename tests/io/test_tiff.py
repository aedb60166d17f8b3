"""TIFF movies (cryowarp.io.tiff)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile

from cryowarp.errors import CorruptFileError, FileFormatError, TruncatedFileError
from cryowarp.io.tiff import TiffReader, read_tiff


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32])
@pytest.mark.parametrize("compression", [None, "lzw", "zlib"])
def test_multipage_round_trip(tmp_path: Path, dtype: type, compression: str | None) -> None:
    rng = np.random.default_rng(1)
    data = (rng.random((6, 20, 12)) * 200).astype(dtype)
    path = tmp_path / "movie.tif"
    tifffile.imwrite(path, data, compression=compression)
    with TiffReader(path, flip_y=False) as reader:
        assert reader.n_frames == 6
        assert reader.frame_shape == (20, 12)
        assert reader.dtype == np.dtype(dtype)
        np.testing.assert_array_equal(reader.read_frames(2, 5), data[2:5])
        assert reader.pixel_size_a is None  # no resolution written
    with TiffReader(path) as reader:  # default: rows flipped like RELION / IMOD
        np.testing.assert_array_equal(reader.read_frames(0, 6), data[:, ::-1, :])


def test_pixel_size_from_resolution_tags(tmp_path: Path) -> None:
    data = np.zeros((2, 8, 8), np.uint16)
    path = tmp_path / "cm.tif"
    pixel_a = 0.834
    per_cm = 1e8 / pixel_a
    tifffile.imwrite(path, data, resolution=(per_cm, per_cm), resolutionunit="CENTIMETER")
    with TiffReader(path) as reader:
        assert reader.pixel_size_a == pytest.approx(pixel_a, rel=1e-5)
    path72 = tmp_path / "dpi.tif"  # a 72-dpi default is no calibration
    tifffile.imwrite(path72, data, resolution=(72, 72), resolutionunit="INCH")
    with TiffReader(path72) as reader:
        assert reader.pixel_size_a is None


def test_real_cylindra_tiffs(shared_data: Path) -> None:
    folder = shared_data / "tomograms" / "cylindra_microtubule_crops"
    expected = {"13pf_MT.tif": (36, 206, 94), "14pf_MT.tif": (44, 136, 84)}
    for name, shape in expected.items():
        data, pixel_size_a = read_tiff(folder / name, flip_y=False)
        assert data.shape == shape
        assert data.dtype == np.uint8
        assert (int(data.min()), int(data.max())) == (0, 255)
        assert pixel_size_a == pytest.approx(10.52, rel=1e-3)  # ImageJ: 1.052 nm
        with tifffile.TiffFile(folder / name) as tf:
            np.testing.assert_array_equal(data, tf.asarray())
        with TiffReader(folder / name) as reader:
            np.testing.assert_array_equal(reader.read_frames(3, 5), data[3:5, ::-1])


@pytest.mark.parametrize("compression", [None, "lzw"])
def test_truncated_tiff_raises_typed_error(tmp_path: Path, compression: str | None) -> None:
    data = (np.random.default_rng(2).random((5, 32, 32)) * 1000).astype(np.uint16)
    path = tmp_path / "m.tif"
    tifffile.imwrite(path, data, compression=compression)
    full = path.read_bytes()
    for cut in (len(full) // 2, len(full) - 100, 300):
        path.write_bytes(full[:cut])
        with (
            pytest.raises((TruncatedFileError, CorruptFileError), match=r"m\.tif"),
            TiffReader(path) as reader,
        ):
            reader.read_frames(0, reader.n_frames)


def test_not_a_tiff(tmp_path: Path) -> None:
    path = tmp_path / "x.tif"
    path.write_bytes(b"definitely not a TIFF file")
    with pytest.raises(FileFormatError, match=r"x\.tif"):
        TiffReader(path)
