"""MRC reading, streaming, writing and validation (cryowarp.io.mrc)."""

from __future__ import annotations

import os
import re
from pathlib import Path

import mrcfile
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from cryowarp.errors import FileFormatError, MissingFileError, TruncatedFileError
from cryowarp.io.mrc import MrcReader, read_mrc, read_mrc_header, write_mrc

MODES = {0: np.int8, 1: np.int16, 2: np.float32, 6: np.uint16, 12: np.float16}


def _patch_int32(path: Path, offset: int, value: int) -> None:
    with path.open("r+b") as f:
        f.seek(offset)
        f.write(np.int32(value).astype("<i4").tobytes())


@pytest.mark.parametrize("mode", sorted(MODES))
def test_write_read_round_trip_each_mode(tmp_path: Path, mode: int) -> None:
    rng = np.random.default_rng(mode)
    data = rng.integers(-100 if mode in (0, 1) else 0, 100, size=(3, 7, 5)).astype(MODES[mode])
    path = tmp_path / "x.mrcs"
    write_mrc(path, data, voxel_size_a=1.35)
    back, header = read_mrc(path)
    assert header.mode == mode
    assert back.dtype == np.dtype(MODES[mode])
    np.testing.assert_array_equal(back, data)
    assert header.pixel_size_a == pytest.approx(1.35, rel=1e-6)
    assert header.ispg == 0  # .mrcs -> image stack
    with mrcfile.open(path) as mrc:  # mrcfile agrees with what we wrote
        np.testing.assert_array_equal(mrc.data, data)


def test_write_casts_to_requested_mode_and_accepts_tensors(tmp_path: Path) -> None:
    import torch

    data = torch.linspace(-2, 2, 24).reshape(2, 3, 4)
    path = tmp_path / "v.mrc"
    write_mrc(path, data, voxel_size_a=(1.0, 2.0, 3.0), mode=12)
    back, header = read_mrc(path)
    assert header.mode == 12
    assert header.ispg == 1
    assert header.voxel_size_a == pytest.approx((1.0, 2.0, 3.0))
    np.testing.assert_allclose(back, data.numpy(), atol=1e-3)


@given(
    shape=st.tuples(st.integers(1, 4), st.integers(1, 9), st.integers(1, 9)),
    pixel=st.floats(0.2, 20.0),
    seed=st.integers(0, 2**16),
)
def test_round_trip_property(
    tmp_path_factory: pytest.TempPathFactory, shape: tuple[int, int, int], pixel: float, seed: int
) -> None:
    data = np.random.default_rng(seed).standard_normal(shape).astype(np.float32)
    path = tmp_path_factory.mktemp("rt") / "a.mrc"
    write_mrc(path, data, voxel_size_a=pixel)
    back, header = read_mrc(path)
    np.testing.assert_array_equal(back, data[0] if shape[0] == 1 else data)
    assert header.pixel_size_a == pytest.approx(pixel, rel=1e-6)


def test_streaming_reads_exact_section_ranges(tmp_path: Path) -> None:
    data = np.arange(10 * 4 * 6, dtype=np.float32).reshape(10, 4, 6)
    path = tmp_path / "movie.mrc"
    write_mrc(path, data, voxel_size_a=0.83, is_stack=True)
    with MrcReader(path) as movie:
        assert movie.n_sections == 10
        np.testing.assert_array_equal(movie.read_sections(3, 7), data[3:7])
        np.testing.assert_array_equal(movie.read_sections(9, 10), data[9:10])
        assert movie.read_sections(5, 5).shape == (0, 4, 6)
        with pytest.raises(IndexError):
            movie.read_sections(8, 11)


def test_atomic_write_replaces_and_leaves_no_temporary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "a.mrc"
    write_mrc(path, np.ones((4, 4), np.float32), voxel_size_a=1.0)
    write_mrc(path, np.full((4, 4), 2, np.float32), voxel_size_a=1.0)
    assert read_mrc(path)[0][0, 0] == 2
    assert os.listdir(tmp_path) == ["a.mrc"]

    def broken_new(*args: object, **kwargs: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(mrcfile, "new", broken_new)
    with pytest.raises(OSError, match="disk full"):
        write_mrc(path, np.zeros((4, 4), np.float32), voxel_size_a=1.0)
    assert os.listdir(tmp_path) == ["a.mrc"]  # old file intact, temporary removed
    assert read_mrc(path)[0][0, 0] == 2


def _write_mode101(path: Path, values: np.ndarray) -> None:
    """Pack 4-bit values (n, ny, nx) as SerialEM does: low nibble = lower x, rows padded."""
    n, ny, nx = values.shape
    padded = np.zeros((n, ny, nx + nx % 2), np.uint8)
    padded[..., :nx] = values
    packed = (padded[..., 0::2] | (padded[..., 1::2] << 4)).astype(np.uint8)
    with mrcfile.new(path, overwrite=True) as mrc:
        mrc.set_data(packed.view(np.int8))
        mrc.voxel_size = 0.5
    _patch_int32(path, 0, nx)  # NX
    _patch_int32(path, 12, 101)  # MODE
    _patch_int32(path, 28, nx)  # MX (keeps the pixel size)
    with path.open("r+b") as f:  # CELLA x = nx * 0.5
        f.seek(40)
        f.write(np.float32(nx * 0.5).astype("<f4").tobytes())


@pytest.mark.parametrize("nx", [8, 7])
def test_mode_101_unpacks_low_nibble_first(tmp_path: Path, nx: int) -> None:
    rng = np.random.default_rng(nx)
    values = rng.integers(0, 16, size=(3, 5, nx)).astype(np.uint8)
    path = tmp_path / "counts.mrc"
    _write_mode101(path, values)
    header = read_mrc_header(path)
    assert header.mode == 101
    assert header.shape == (3, 5, nx)
    assert header.pixel_size_a == pytest.approx(0.5)
    with MrcReader(path) as reader:
        np.testing.assert_array_equal(reader.read_sections(1, 3), values[1:3])
    # golden: a byte 0x21 holds x=0 -> 1 and x=1 -> 2
    raw = path.read_bytes()
    first = raw[1024]
    assert values[0, 0, 0] == first & 0x0F
    assert values[0, 0, 1] == first >> 4


def _valid(tmp_path: Path) -> Path:
    path = tmp_path / "ok.mrc"
    write_mrc(path, np.zeros((2, 4, 4), np.float32), voxel_size_a=1.0)
    return path


def test_wrong_map_field(tmp_path: Path) -> None:
    path = _valid(tmp_path)
    with path.open("r+b") as f:
        f.seek(208)
        f.write(b"PAM!")
    with pytest.raises(FileFormatError, match=r"ok\.mrc.*MAP field"):
        read_mrc(path)


def test_unknown_mode(tmp_path: Path) -> None:
    path = _valid(tmp_path)
    _patch_int32(path, 12, 3)
    with pytest.raises(FileFormatError, match=r"ok\.mrc.*unknown MRC mode 3"):
        read_mrc_header(path)


def test_negative_dimension(tmp_path: Path) -> None:
    path = _valid(tmp_path)
    _patch_int32(path, 4, -4)
    with pytest.raises(FileFormatError, match="dimensions must be positive"):
        read_mrc(path)


def test_truncated_file(tmp_path: Path) -> None:
    path = _valid(tmp_path)
    with path.open("r+b") as f:
        f.truncate(1024 + 100)
    with pytest.raises(TruncatedFileError, match=r"ok\.mrc.*needs 1152"):
        read_mrc(path)


def test_extended_header_mismatch(tmp_path: Path) -> None:
    path = _valid(tmp_path)
    _patch_int32(path, 92, 64)  # NSYMBT claims 64 bytes that are really data
    with pytest.raises(TruncatedFileError):
        read_mrc(path)
    _patch_int32(path, 92, 10**6)
    with pytest.raises(FileFormatError, match="NSYMBT"):
        read_mrc(path)
    _patch_int32(path, 92, -8)
    with pytest.raises(FileFormatError, match="negative extended header"):
        read_mrc(path)


def test_trailing_bytes_and_tiny_files(tmp_path: Path) -> None:
    path = _valid(tmp_path)
    with path.open("ab") as f:
        f.write(b"\0" * 16)
    with pytest.raises(FileFormatError, match="describes"):
        read_mrc(path)
    tiny = tmp_path / "tiny.mrc"
    tiny.write_bytes(b"hello")
    with pytest.raises(FileFormatError, match="shorter than the 1024-byte"):
        read_mrc(tiny)
    with pytest.raises(MissingFileError, match=r"missing\.mrc: file not found"):
        read_mrc(tmp_path / "missing.mrc")


def test_big_endian_file_is_read(tmp_path: Path) -> None:
    data = np.arange(24, dtype=">f4").reshape(2, 3, 4)
    path = tmp_path / "be.mrc"
    with mrcfile.new(path) as mrc:
        mrc.set_data(data)
        mrc.voxel_size = 2.5
    back, header = read_mrc(path)
    assert header.byte_order == ">"
    assert back.dtype.byteorder in ("=", "|", "<")
    np.testing.assert_array_equal(back, data.astype(np.float32))
    assert header.pixel_size_a == pytest.approx(2.5)


# -- real files ---------------------------------------------------------------------------

_ROW = re.compile(
    r"^\| `(?P<path>[^`]+)` .*?shape=\((?P<shape>[\d, ]+)\) (?P<dtype>\w+) mode=(?P<mode>\d+) "
    r"voxel=\((?P<voxel>[\d., ]+)\)A min=(?P<min>\S+) max=(?P<max>\S+)"
)
_EXAMPLE = re.compile(r"e\.g\. `(?P<name>[^`]+)`")


def _manifest_entries(shared: Path) -> list[tuple[Path, dict[str, str]]]:
    entries = []
    for line in (shared / "MANIFEST.md").read_text().splitlines():
        m = _ROW.match(line)
        if m is None or not m["path"].endswith(("/", ".mrc", ".mrcs", ".map")):
            continue
        if m["path"].endswith("/"):  # a folder: the example file's values hold for all files
            example = _EXAMPLE.search(line)
            assert example is not None
            entries.append((shared / m["path"] / example["name"], m.groupdict()))
        else:
            entries.append((shared / m["path"], m.groupdict()))
    return entries


def test_every_real_mrc_matches_manifest(shared_data: Path) -> None:
    entries = _manifest_entries(shared_data)
    on_disk = sorted(p for ext in ("*.mrc", "*.mrcs", "*.map") for p in shared_data.rglob(ext))
    assert len(on_disk) >= 60
    described = {p for p, _ in entries}
    n_checked = 0
    for path in on_disk:
        header = read_mrc_header(path)  # every file parses without error
        assert header.shape[0] >= 1
        if path not in described:
            continue
        info = dict(entries)[path]
        data, header = read_mrc(path, reorder_axes=False)
        shape = tuple(int(s) for s in info["shape"].split(","))
        assert data.shape == shape, path
        assert data.dtype == np.dtype(info["dtype"]), path
        assert header.mode == int(info["mode"]), path
        voxel = [float(v) for v in info["voxel"].split(",")]
        assert header.voxel_size_a == pytest.approx(tuple(voxel), rel=2e-3), path
        assert header.pixel_size_a == (None if voxel[0] == 0 else pytest.approx(voxel[0], rel=2e-3))
        assert float(data.min()) == pytest.approx(float(info["min"]), rel=2e-3, abs=1e-6)
        assert float(data.max()) == pytest.approx(float(info["max"]), rel=2e-3, abs=1e-6)
        n_checked += 1
    assert n_checked >= 25


def test_float16_subtilt_stacks_stream(shared_data: Path) -> None:
    folder = shared_data / "subtomo_particle_tiltseries" / "tomodrgn_warptools_4tomos_40ptcl"
    files = sorted(folder.rglob("*.mrcs"))
    assert len(files) == 40
    for path in files:
        with MrcReader(path) as reader:
            assert reader.header.mode == 12
            assert reader.header.shape == (37, 32, 32)
            assert reader.header.pixel_size_a == pytest.approx(12.0)
            block = reader.read_sections(10, 13)
            assert block.dtype == np.float16
            assert np.isfinite(block).all()


def test_permuted_axes_are_reordered_to_zyx(shared_data: Path) -> None:
    path = shared_data / "maps" / "emdb_EMD-3001_mrcfile" / "EMD-3001.map"
    raw, header = read_mrc(path, reorder_axes=False)
    assert header.axis_order == (3, 1, 2)  # columns = z, rows = x, sections = y
    zyx, _ = read_mrc(path)
    assert zyx.shape == (73, 25, 43)
    # stored [section=y, row=x, column=z] -> zyx[z, y, x]
    assert zyx[5, 7, 11] == raw[7, 11, 5]
