"""EER movies (cryowarp.io.eer), tested on synthetic files written from the format description.

The encoder below follows the EER bit-stream layout (EER format documentation 3.0, §4, as
described in imagecodecs' ``imcd_eer_decode``): a little-endian bit stream read least
significant bit first; each code starts with a ``skip_bits`` run of event-free pixels (raster
order); a run of all ones continues without an event; any other run is followed by
``horz_bits`` then ``vert_bits`` of sub-pixel position (stored XOR-ed with the bit count) and
puts one event on the pixel the run reached; the next run starts on the following pixel. The
container is a little-endian BigTIFF with one strip per frame and the EER XML metadata in tag
65001, written here by hand because tifffile cannot encode EER.
"""

from __future__ import annotations

import itertools
import struct
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from cryowarp.errors import TruncatedFileError
from cryowarp.io.eer import EerReader, eer_fraction_groups
from cryowarp.io.movie import open_movie

Event = tuple[int, int, int, int]  # (y, x, sub_y, sub_x)


def _encode_frame(events: list[Event], h: int, w: int, bits: tuple[int, int, int]) -> bytes:
    skip_bits, horz_bits, vert_bits = bits
    run_max = (1 << skip_bits) - 1
    codes: list[tuple[int, int]] = []
    position = 0
    for y, x, sub_y, sub_x in sorted(events, key=lambda e: e[0] * w + e[1]):
        skip = y * w + x - position
        while skip >= run_max:
            codes.append((run_max, skip_bits))
            skip -= run_max
        codes += [(skip, skip_bits), (sub_x ^ horz_bits, horz_bits), (sub_y ^ vert_bits, vert_bits)]
        position = y * w + x + 1
    remaining = h * w - position
    while remaining > 0:
        step = min(remaining, run_max)
        codes.append((step, skip_bits))
        remaining -= step
    stream = [(value >> i) & 1 for value, n in codes for i in range(n)]
    stream += [0] * (-len(stream) % 16)  # whole 16-bit words
    return np.packbits(np.array(stream, np.uint8), bitorder="little").tobytes()


def _write_bigtiff(
    path: Path,
    strips: list[bytes],
    h: int,
    w: int,
    compression: int,
    metadata: bytes,
    extra: dict[int, int] | None = None,
) -> None:
    """Minimal little-endian BigTIFF: one IFD and one strip per frame."""
    blob = bytearray(b"II" + struct.pack("<HHHQ", 43, 8, 0, 0))
    ifd_offsets = []
    for index, strip in enumerate(strips):
        data_offset = len(blob)
        blob += strip
        meta_offset = len(blob)
        if index == 0:
            blob += metadata
        if len(blob) % 2:
            blob += b"\0"
        tags: list[tuple[int, int, int, int]] = [  # (tag, type, count, value)
            (256, 4, 1, w),
            (257, 4, 1, h),
            (259, 3, 1, compression),
            (262, 3, 1, 1),
            (273, 16, 1, data_offset),
            (277, 3, 1, 1),
            (278, 4, 1, h),
            (279, 16, 1, len(strip)),
        ]
        tags += [(code, 3, 1, value) for code, value in (extra or {}).items()]
        if index == 0:
            tags.append((65001, 7, len(metadata), meta_offset))
        ifd_offsets.append(len(blob))
        blob += struct.pack("<Q", len(tags))
        for code, kind, count, value in sorted(tags):
            if kind == 7 and count > 8:
                blob += struct.pack("<HHQQ", code, kind, count, value)
            elif kind == 3:
                blob += struct.pack("<HHQH6x", code, kind, count, value)
            elif kind == 4:
                blob += struct.pack("<HHQI4x", code, kind, count, value)
            else:
                blob += struct.pack("<HHQQ", code, kind, count, value)
        blob += struct.pack("<Q", 0)
    struct.pack_into("<Q", blob, 8, ifd_offsets[0])
    for this, following in itertools.pairwise(ifd_offsets):
        n_tags = struct.unpack_from("<Q", blob, this)[0]
        struct.pack_into("<Q", blob, this + 8 + 20 * n_tags, following)
    path.write_bytes(bytes(blob))


_META = (
    b'<metadata><item name="numberOfFrames">{n}</item>'
    b'<item name="sensorPixelSize.width" unit="m">8.2e-11</item>'
    b'<item name="sensorPixelSize.height" unit="m">8.2e-11</item></metadata>'
)


def _random_events(rng: np.random.Generator, n: int, h: int, w: int) -> list[Event]:
    pixels = rng.choice(h * w, size=n, replace=False)
    subs = rng.integers(0, 4, size=(n, 2))
    return [
        (int(p // w), int(p % w), int(s[0]), int(s[1])) for p, s in zip(pixels, subs, strict=True)
    ]


def _make_eer(
    path: Path, n_frames: int, h: int, w: int, *, compression: int = 65001, seed: int = 0
) -> list[list[Event]]:
    bits = {65000: (8, 2, 2), 65001: (7, 2, 2), 65002: (9, 2, 2)}[compression]
    extra = {65007: 9, 65008: 2, 65009: 2} if compression == 65002 else None
    rng = np.random.default_rng(seed)
    frames = [_random_events(rng, int(rng.integers(0, 40)), h, w) for _ in range(n_frames)]
    frames[0].append((h - 1, w - 1, 3, 0))  # an event on the very last pixel
    frames[0] = list({(e[0], e[1]): e for e in frames[0]}.values())
    strips = [_encode_frame(ev, h, w, bits) for ev in frames]
    meta = _META.replace(b"{n}", str(n_frames).encode())
    _write_bigtiff(path, strips, h, w, compression, meta, extra)
    return frames


def _render(events: list[Event], h: int, w: int, up: int) -> np.ndarray:
    image = np.zeros((h * up, w * up), np.int64)
    shift = {1: 2, 2: 1, 4: 0}[up]
    for y, x, sy, sx in events:
        image[y * up + (sy >> shift), x * up + (sx >> shift)] += 1
    return image


@pytest.mark.parametrize("compression", [65000, 65001, 65002])
def test_decoded_counts_match_encoded_events(tmp_path: Path, compression: int) -> None:
    h, w = 48, 64
    path = tmp_path / "movie.eer"
    truth = _make_eer(path, 5, h, w, compression=compression, seed=compression)
    with EerReader(path) as reader:
        assert reader.n_raw_frames == 5
        assert reader.frame_shape == (h, w)
        raw = reader.read_raw_frames(0, 5)
    for i, events in enumerate(truth):
        np.testing.assert_array_equal(raw[i], _render(events, h, w, 1))
        assert raw[i].sum() == len(events)


@pytest.mark.parametrize("upsampling", [2, 4])
def test_super_resolution_rendering_places_sub_pixels(tmp_path: Path, upsampling: int) -> None:
    h, w = 32, 40
    path = tmp_path / "movie.eer"
    truth = _make_eer(path, 3, h, w, seed=upsampling)
    with EerReader(path, upsampling=upsampling) as reader:
        assert reader.frame_shape == (h * upsampling, w * upsampling)
        assert reader.pixel_size_a == pytest.approx(0.82 / upsampling)
        raw = reader.read_raw_frames(0, 3)
    for i, events in enumerate(truth):
        np.testing.assert_array_equal(raw[i], _render(events, h, w, upsampling))


def test_fractions_sum_their_raw_frames(tmp_path: Path) -> None:
    h, w = 24, 24
    path = tmp_path / "movie.eer"
    truth = _make_eer(path, 10, h, w, seed=3)
    groups = eer_fraction_groups(10, n_fractions=3)  # 3 frames each, frame 9 dropped
    assert groups.bounds == ((0, 3), (3, 6), (6, 9))
    assert groups.n_dropped == 1
    with EerReader(path, groups=groups) as reader:
        assert reader.n_frames == 3
        fractions = reader.read_frames(0, 3)
    for k, (a, b) in enumerate(groups.bounds):
        expected = sum(_render(truth[i], h, w, 1) for i in range(a, b))
        np.testing.assert_array_equal(fractions[k], expected)
    with open_movie(path, eer_n_fractions=2) as movie:  # dispatch on the TIFF magic + .eer
        assert movie.n_frames == 2
        assert movie.pixel_size_a == pytest.approx(0.82)
        total = movie.read_frames(0, 2).sum()
    assert total == sum(len(e) for e in truth)


def test_grouping_by_dose() -> None:
    # 0.05 e/Å² per raw frame, 1 e/Å² per fraction -> 20 frames per fraction
    groups = eer_fraction_groups(
        130, dose_per_fraction_e_per_a2=1.0, dose_per_raw_frame_e_per_a2=0.05
    )
    assert groups.n_fractions == 6
    assert groups.bounds[1] == (20, 40)
    assert groups.n_dropped == 10
    by_total = eer_fraction_groups(130, dose_per_fraction_e_per_a2=1.0, total_dose_e_per_a2=6.5)
    assert by_total == groups
    merged = eer_fraction_groups(
        130, dose_per_fraction_e_per_a2=1.0, dose_per_raw_frame_e_per_a2=0.05, remainder="merge"
    )
    assert merged.bounds[-1] == (100, 130)
    assert merged.n_dropped == 0
    kept = eer_fraction_groups(130, n_fractions=6, remainder="keep")
    assert kept.bounds[-1] == (126, 130)
    assert kept.n_fractions == 7
    with pytest.raises(ValueError, match="exactly one"):
        eer_fraction_groups(10)
    with pytest.raises(ValueError, match="n_fractions"):
        eer_fraction_groups(10, n_fractions=11)


@given(
    n_raw=st.integers(1, 2000),
    n_fractions=st.integers(1, 200),
    remainder=st.sampled_from(["drop", "merge", "keep"]),
)
def test_grouping_covers_frames_in_order(n_raw: int, n_fractions: int, remainder: str) -> None:
    n_fractions = min(n_fractions, n_raw)
    groups = eer_fraction_groups(n_raw, n_fractions=n_fractions, remainder=remainder)  # type: ignore[arg-type]
    bounds = groups.bounds
    assert bounds[0][0] == 0
    assert all(a[1] == b[0] for a, b in itertools.pairwise(bounds))
    assert bounds[-1][1] + groups.n_dropped == n_raw
    sizes = {b - a for a, b in bounds}
    assert min(sizes) >= 1
    if remainder == "drop":
        assert len(sizes) == 1
        assert groups.n_fractions == n_fractions


def test_truncated_eer(tmp_path: Path) -> None:
    path = tmp_path / "movie.eer"
    _make_eer(path, 4, 32, 32, seed=9)
    full = path.read_bytes()
    with EerReader(path) as reader:
        last = reader._frame_pages[-1]
        cut = int(last.dataoffsets[0]) + 2
    path.write_bytes(full[:cut])  # cut inside the data of the last frame
    with pytest.raises(TruncatedFileError, match=r"movie\.eer"):
        EerReader(path)
