"""EMAN1 / crYOLO .box files: centres as RELION computes them, exact round trips, malformed
lines."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from cryowarp.errors import FileFormatError, InvalidValuesError
from cryowarp.io.eman_box import BoxCoordinates, read_box, write_box


def test_centre_is_corner_plus_half_the_box_like_relion(tmp_path: Path) -> None:
    """RELION's readCoordinates: X = x + w/2, Y = y + h/2 in integer arithmetic, no y flip;
    for an odd box the centre is the box-centre pixel N//2."""
    path = tmp_path / "mic.box"
    path.write_text("100\t200\t64\t64\n# a comment\n\n5341 8216 255 255\n")
    boxes = read_box(path)
    np.testing.assert_array_equal(boxes.centres_px, [[132.0, 232.0], [5468.0, 8343.0]])
    np.testing.assert_array_equal(boxes.sizes_px, [[64.0, 64.0], [255.0, 255.0]])
    np.testing.assert_array_equal(boxes.corners_px, [[100.0, 200.0], [5341.0, 8216.0]])
    assert boxes.scores is None


def test_cryolo_confidence_column_is_kept(tmp_path: Path) -> None:
    path = tmp_path / "cryolo.box"
    path.write_text("10.5 20.25 128 128 0.875\n30 40 128 128 0.5\n")
    boxes = read_box(path)
    np.testing.assert_array_equal(boxes.centres_px, [[74.5, 84.25], [94.0, 104.0]])
    assert boxes.scores is not None
    np.testing.assert_array_equal(boxes.scores, [0.875, 0.5])


def test_empty_file_has_no_particles(tmp_path: Path) -> None:
    path = tmp_path / "empty.box"
    path.write_text("")
    boxes = read_box(path)
    assert len(boxes) == 0
    assert boxes.centres_px.shape == (0, 2)
    write_box(tmp_path / "again.box", boxes)
    assert (tmp_path / "again.box").read_text() == ""


def test_integer_boxes_round_trip_exactly(tmp_path: Path) -> None:
    boxes = BoxCoordinates(
        centres_px=np.array([[132.0, 232.0], [5468.0, 8343.0]]),
        sizes_px=np.array([[64.0, 64.0], [255.0, 255.0]]),
        scores=np.array([0.1, -3.0]),
    )
    write_box(tmp_path / "b.box", boxes)
    assert (tmp_path / "b.box").read_text() == "100\t200\t64\t64\t0.1\n5341\t8216\t255\t255\t-3\n"
    again = read_box(tmp_path / "b.box")
    np.testing.assert_array_equal(again.centres_px, boxes.centres_px)
    np.testing.assert_array_equal(again.sizes_px, boxes.sizes_px)
    assert again.scores is not None
    np.testing.assert_array_equal(again.scores, [0.1, -3.0])


@settings(max_examples=30, deadline=None)
@given(
    centres=arrays(
        np.float64, st.tuples(st.integers(1, 8), st.just(2)), elements=st.floats(0, 1e4)
    ),
    size=st.integers(8, 512),
)
def test_round_trip_keeps_centres(
    tmp_path_factory: pytest.TempPathFactory, centres: np.ndarray, size: int
) -> None:
    boxes = BoxCoordinates(centres_px=centres, sizes_px=np.full(centres.shape, float(size)))
    path = tmp_path_factory.mktemp("box") / "p.box"
    write_box(path, boxes)
    again = read_box(path)
    np.testing.assert_allclose(again.centres_px, centres, rtol=0, atol=1e-9)
    np.testing.assert_array_equal(again.sizes_px, boxes.sizes_px)


@pytest.mark.parametrize(
    ("text", "error", "match"),
    [
        ("1 2 3\n", FileFormatError, "line 1: expected 4 or 5 columns, found 3"),
        ("1 2 3 4\n1 2 3 4 5\n", FileFormatError, "line 2: expected 4 columns"),
        ("1 2 x 4\n", FileFormatError, "line 1: non-numeric"),
        ("1 nan 3 4\n", InvalidValuesError, "line 1: NaN or Inf"),
        ("1 2 0 4\n", InvalidValuesError, "line 1: box size must be positive"),
    ],
)
def test_malformed_lines_are_named(tmp_path: Path, text: str, error: type, match: str) -> None:
    path = tmp_path / "bad.box"
    path.write_text(text)
    with pytest.raises(error, match=rf"bad\.box: {match}"):
        read_box(path)
