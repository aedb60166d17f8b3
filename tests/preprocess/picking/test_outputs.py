"""Picking outputs: RELION coordinate STAR read back by the importer, probabilities and mask
stacks, re-thresholding from the files, and what the overlay PNG shows."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch
from matplotlib.image import imread

from cryowarp.errors import FileFormatError
from cryowarp.io.mrc import read_mrc, write_mrc
from cryowarp.preprocess.export.coordinates import read_coordinates
from cryowarp.preprocess.picking.inference import PickResult
from cryowarp.preprocess.picking.outputs import (
    picks_figure,
    read_pick_result,
    read_probabilities,
    write_picks,
)
from cryowarp.preprocess.picking.prepare import prepare_micrograph
from cryowarp.preprocess.picking.settings import PickingSettings

PIXEL_A = 1.3  # original micrograph; the prepared one is ≈ 8 Å/px
SHAPE = (333, 421)  # odd sizes


def _result(*, masked: bool = True, n_blobs: int = 6, threshold: float = 0.5) -> PickResult:
    rng = np.random.default_rng(7)
    image = torch.from_numpy(rng.standard_normal(SHAPE)).float()
    prepared = prepare_micrograph(image, pixel_size_a=PIXEL_A)
    hp, wp = prepared.image.shape
    yy, xx = np.mgrid[0:hp, 0:wp]
    particle = np.zeros((hp, wp))
    for i in range(n_blobs):
        cx, cy = 8 + 9.5 * i + rng.uniform(-1, 1), 12 + 30 * (i % 2) + rng.uniform(-1, 1)
        particle += (0.35 + 0.12 * i) * np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / 4.5)
    artefact = np.zeros((hp, wp))
    if masked:
        artefact[:, : wp // 3] = 0.6  # left third
        particle[:, : wp // 3] = 0.0
    background = 1 - particle - artefact
    probabilities = torch.from_numpy(np.stack([background, particle, artefact])).float()
    settings = PickingSettings(diameter_a=60.0, threshold=threshold)
    return PickResult.from_probabilities(
        probabilities, prepared=prepared, settings=settings, model_name="unit_model"
    )


def test_star_reads_back_through_the_coordinate_importer(tmp_path: Path) -> None:
    result = _result(threshold=0.3)
    assert result.n_picks >= 3
    files = write_picks(result, micrograph_name="mic_001", out_dir=tmp_path, png=False)
    assert files.star == Path("mic_001_picks.star")
    text = (tmp_path / files.star).read_text()
    # RELION 5 autopick layout: version line, bare data_ block, these columns in this order
    header = [line.split()[0] for line in text.splitlines() if line.startswith("_rln")]
    assert "# version 50001" in text
    assert "\ndata_\n" in text
    assert header == ["_rlnCoordinateX", "_rlnCoordinateY", "_rlnClassNumber",
                      "_rlnAutopickFigureOfMerit", "_rlnAnglePsi"]  # fmt: skip
    (particles,) = read_coordinates(
        tmp_path / files.star, pixel_size_a=PIXEL_A, micrograph="mic_001"
    )
    assert particles.micrograph == "mic_001"
    assert particles.positions_a.shape == (result.n_picks, 2)
    # 6 decimals of a pixel: ≤ 5e-7 px
    assert torch.allclose(particles.positions_a, result.positions_a, atol=1e-6 * PIXEL_A, rtol=0)
    assert particles.extra is not None
    fom = particles.extra["rlnAutopickFigureOfMerit"].to_numpy()
    np.testing.assert_allclose(fom, result.scores.numpy(), atol=5e-7)
    assert (particles.extra["rlnClassNumber"] == 0).all()


def test_empty_picks_give_an_empty_coordinate_file(tmp_path: Path) -> None:
    result = _result(threshold=1.0)
    assert result.n_picks == 0
    files = write_picks(result, micrograph_name="none", out_dir=tmp_path, png=False)
    (particles,) = read_coordinates(tmp_path / files.star, pixel_size_a=PIXEL_A, micrograph="none")
    assert particles.positions_a.shape == (0, 2)


def test_stacks_hold_the_probabilities_and_mask_and_rethreshold_like_the_result(
    tmp_path: Path,
) -> None:
    result = _result()
    files = write_picks(result, micrograph_name="m", out_dir=tmp_path / "out", png=False)
    folder = tmp_path / "out"
    probabilities, pixel_xy = read_probabilities(folder / files.probabilities)
    assert torch.equal(probabilities, result.probabilities.float())  # float16 stored exactly
    assert pixel_xy == pytest.approx(result.prepared.pixel_size_xy_a, rel=1e-6)
    mask, header = read_mrc(folder / files.mask)
    assert mask.dtype == np.int8
    assert header.mode == 0
    assert np.array_equal(mask.astype(bool), result.artefact_mask.numpy())
    assert 0.3 < result.picks.masked_fraction < 0.37  # left third
    assert header.voxel_size_a[0] == pytest.approx(result.prepared.pixel_size_xy_a[0], rel=1e-6)
    saved = read_pick_result(folder, "m")
    assert saved.model_name == "unit_model"
    assert saved.settings == result.settings
    assert torch.equal(saved.positions_a, result.positions_a)
    assert torch.allclose(saved.prepared.image, result.prepared.image, atol=4e-3)
    for threshold in (0.5, 0.75, 0.9):
        assert torch.equal(
            saved.rethreshold(threshold).positions_a, result.rethreshold(threshold).positions_a
        )
    # peaks 0.59, 0.71, 0.83, 0.95 outside the mask
    assert [result.rethreshold(t).n_picks for t in (0.5, 0.75, 0.9)] == [4, 2, 1]


def test_foreign_stacks_are_rejected(tmp_path: Path) -> None:
    write_mrc(tmp_path / "x_picking.mrc", np.zeros((2, 8, 8), np.float32), voxel_size_a=8.0)
    with pytest.raises(FileFormatError, match="not a picking stack"):
        read_probabilities(tmp_path / "x_picking.mrc")
    (tmp_path / "x_picking.json").write_text('{"format": "other"}')
    with pytest.raises(FileFormatError, match="not a cryowarp picking"):
        read_pick_result(tmp_path, "x")


def _png(result: PickResult) -> np.ndarray:
    buffer = io.BytesIO()
    picks_figure(result).savefig(buffer, format="png", dpi=50)
    buffer.seek(0)
    return imread(buffer)[..., :3]


def test_overlay_tints_the_mask_and_draws_the_picks(tmp_path: Path) -> None:
    with_mask = _png(_result(masked=True, n_blobs=0))
    without = _png(_result(masked=False, n_blobs=0))
    assert with_mask.shape == without.shape
    changed = np.abs(with_mask - without).sum(-1) > 0.05
    redness = with_mask[..., 0] - with_mask[..., 1]
    assert changed.mean() > 0.1  # the tinted third of the micrograph
    assert redness[changed].mean() > 0.2 > redness[~changed].mean()
    picked = _result(masked=False, n_blobs=6, threshold=0.3)
    assert picked.n_picks == 6
    circles = np.abs(_png(picked) - without).sum(-1) > 0.05
    assert circles.sum() > 6 * 20  # six circles drawn
    written = write_picks(picked, micrograph_name="p", out_dir=tmp_path)
    image = imread(tmp_path / written.png)
    write_picks(picked.rethreshold(0.9), micrograph_name="p", out_dir=tmp_path, png=False)
    assert not (tmp_path / written.png).exists()  # no stale overlay of other picks
    assert image.shape[0] > 300
    assert image.shape[1] > 700
