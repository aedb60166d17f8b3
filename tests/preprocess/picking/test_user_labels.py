"""User files → training examples: picks land on their micrograph's label disks, painted
regions become ignore/artefact labels, and files that match nothing fail naming the file."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from cryowarp.errors import CryowarpInputError, DimensionMismatchError
from cryowarp.io.mrc import write_mrc
from cryowarp.preprocess.picking.prepare import prepare_micrograph
from cryowarp.preprocess.picking.user_labels import read_user_examples

PIXEL_A = 4.0
SHAPE = (256, 320)  # (h, w) at 4 Å → 128 × 160 at 8 Å


def write_coordinate_star(path: Path, xy_px: np.ndarray) -> Path:
    rows = "\n".join(f"{x:.2f} {y:.2f}" for x, y in xy_px)
    path.write_text(f"\ndata_\n\nloop_\n_rlnCoordinateX #1\n_rlnCoordinateY #2\n{rows}\n")
    return path


def write_micrograph(path: Path, seed: int) -> Path:
    image = np.random.default_rng(seed).normal(size=SHAPE).astype(np.float32)
    write_mrc(path, image, voxel_size_a=PIXEL_A)
    return path


@pytest.fixture
def user_files(tmp_path: Path) -> dict[str, Path]:
    files = {
        "a": write_micrograph(tmp_path / "mic_a_DW.mrc", 0),
        "b": write_micrograph(tmp_path / "mic_b_DW.mrc", 1),
        "c": write_micrograph(tmp_path / "mic_c_DW.mrc", 2),  # never picked
        "a_star": write_coordinate_star(
            tmp_path / "mic_a_autopick.star", np.array([[40.0, 50.0], [200.0, 120.0]])
        ),
        "b_star": write_coordinate_star(
            tmp_path / "mic_b_autopick.star", np.array([[100.0, 100.0]])
        ),
    }
    return files


def test_picks_become_label_disks_on_their_own_micrograph(user_files: dict[str, Path]) -> None:
    result = read_user_examples(
        [user_files["a"], user_files["b"], user_files["c"]],
        [user_files["a_star"], user_files["b_star"]],
        diameter_a=120.0,
    )
    assert result.skipped == [user_files["c"]]
    assert [e.source for e in result.examples] == [str(user_files["a"]), str(user_files["b"])]
    assert result.n_particles == 3
    a = result.examples[0]
    assert a.image.shape == (128, 160)
    prepared = prepare_micrograph(torch.zeros(SHAPE).normal_(), pixel_size_a=PIXEL_A)
    expected = prepared.to_prepared_px(torch.tensor([[40.0, 50.0], [200.0, 120.0]]))
    assert torch.allclose(a.positions_px, expected.float(), atol=1e-4)
    for x, y in expected.round().long().tolist():
        assert int(a.labels[y, x]) == 1
    # label radius 0.2 × 120 Å / 8 Å = 3 px: a disk of 29 pixels per particle
    assert int((a.labels == 1).sum()) == 2 * 29
    assert int((result.examples[1].labels == 1).sum()) == 29


def test_painted_masks_set_ignore_and_artefact_labels(
    user_files: dict[str, Path], tmp_path: Path
) -> None:
    ignore = np.zeros(SHAPE, np.uint8)
    ignore[:, 240:] = 255  # the right quarter was not picked
    Image.fromarray(ignore).save(tmp_path / "mic_a_ignore.png")
    artefact = np.zeros(SHAPE, np.float32)
    artefact[:64, :64] = 1
    write_mrc(tmp_path / "mic_a_carbon.mrc", artefact, voxel_size_a=PIXEL_A)
    result = read_user_examples(
        [user_files["a"]],
        [user_files["a_star"]],
        diameter_a=120.0,
        painted_ignore=[tmp_path / "mic_a_ignore.png"],
        painted_artefacts=[tmp_path / "mic_a_carbon.mrc"],
    )
    labels = result.examples[0].labels
    assert bool((labels[:, 120:] == -1).all())
    assert bool((labels[:32, :32] == 2).all())
    assert int((labels == 2).sum()) == 32 * 32
    # the pick at (40, 50) px lies in the painted artefact (artefact wins); (200, 120) stays
    assert int((labels == 1).sum()) == 29


def test_files_that_match_no_micrograph_fail_naming_the_file(
    user_files: dict[str, Path], tmp_path: Path
) -> None:
    stray = write_coordinate_star(tmp_path / "other_autopick.star", np.array([[10.0, 10.0]]))
    with pytest.raises(CryowarpInputError, match=re.escape("other_autopick.star")) as info:
        read_user_examples([user_files["a"]], [stray], diameter_a=120.0)
    assert info.value.path == stray
    assert "none of which" in info.value.problem
    mask = tmp_path / "unrelated_ignore.png"
    Image.fromarray(np.zeros(SHAPE, np.uint8)).save(mask)
    with pytest.raises(CryowarpInputError, match=re.escape("unrelated_ignore.png")):
        read_user_examples(
            [user_files["a"]], [user_files["a_star"]], diameter_a=120.0, painted_ignore=[mask]
        )
    small = tmp_path / "mic_a_small.png"
    Image.fromarray(np.zeros((10, 10), np.uint8)).save(small)
    with pytest.raises(DimensionMismatchError, match=re.escape("mic_a_small.png")):
        read_user_examples(
            [user_files["a"]], [user_files["a_star"]], diameter_a=120.0, painted_ignore=[small]
        )
    empty = write_coordinate_star(tmp_path / "mic_c_autopick.star", np.zeros((0, 2)))
    with pytest.raises(CryowarpInputError, match="none of the 1 micrographs has picks"):
        read_user_examples([user_files["c"]], [empty], diameter_a=120.0)
    with pytest.raises(
        CryowarpInputError, match=re.escape("mic_a_DW.mrc")
    ):  # errors name the micrograph
        read_user_examples([user_files["a"]], [user_files["a_star"]], diameter_a=1e6)
