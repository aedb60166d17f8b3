"""``cryowarp pick``: the files agree with the API on a saved model, a header pixel size of
1.0 or 0 needs ``--pixel-size``, bad items fail without stopping the batch, and
``rethreshold`` re-makes the picks from the saved probabilities."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from cryowarp.cli.main import app
from cryowarp.io.mrc import write_mrc
from cryowarp.preprocess.export.coordinates import read_coordinates
from cryowarp.preprocess.picking.inference import PickResult, pick_micrograph
from cryowarp.preprocess.picking.model_file import (
    BoxNetModel,
    load_boxnet_model,
    save_boxnet_model,
)
from cryowarp.preprocess.picking.network import BoxNet, BoxNetArchitecture
from cryowarp.preprocess.picking.settings import PickingSettings

PIXEL_A = 4.0
DIAMETER_A = 120.0


def _dark_detector() -> BoxNet:
    """A real BoxNet made pointwise: particle logit = 4·relu(−x) − 18 (dark = particle)."""
    net = BoxNet(BoxNetArchitecture(widths=(4, 8)))
    with torch.no_grad():
        for p in net.parameters():
            p.zero_()
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.weight.fill_(1.0)
        net.down[0].entry[0].weight[0, 0, 1, 1] = -1.0
        for up in net.up:
            up.block.skip.weight[0, up.block.conv1.in_channels // 2, 0, 0] = 1.0
        net.head.weight[1, 0, 0, 0] = 4.0
        net.head.bias[1] = -18.0
        net.head.bias[2] = -30.0
    return net.eval()


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("pick_cli")
    model_path = save_boxnet_model(
        BoxNetModel(network=_dark_detector(), name="dark_test"), folder / "dark_test"
    )
    rng = np.random.default_rng(11)
    shape = (301, 280)
    image = 0.3 * rng.standard_normal(shape)
    yy, xx = np.mgrid[0 : shape[0], 0 : shape[1]]
    for x, y in [(40, 50), (130, 60), (220, 45), (60, 160), (170, 170), (90, 250), (230, 240)]:
        image -= 7.0 * np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * 4.0**2))
    paths = {"model": model_path}
    for name, pixel in (("good", PIXEL_A), ("unset", 1.0), ("zero", 0.0)):
        paths[name] = folder / f"{name}.mrc"
        write_mrc(paths[name], image.astype(np.float32), voxel_size_a=pixel)
    paths["blank"] = folder / "blank.mrc"
    write_mrc(paths["blank"], np.full(shape, 5.0, np.float32), voxel_size_a=PIXEL_A)
    return paths


def _api(files: dict[str, Path], **settings: float) -> PickResult:
    from cryowarp.io.mrc import read_mrc

    image, _ = read_mrc(files["good"])
    return pick_micrograph(
        torch.from_numpy(image),
        pixel_size_a=PIXEL_A,
        model=load_boxnet_model(files["model"]),
        settings=PickingSettings(diameter_a=DIAMETER_A, model=str(files["model"]), **settings),
    )


def _star_positions(folder: Path, name: str) -> torch.Tensor:
    (particles,) = read_coordinates(
        folder / f"{name}_picks.star", pixel_size_a=PIXEL_A, micrograph=name
    )
    return particles.positions_a


def test_outputs_agree_with_the_api_and_unset_pixel_sizes_fail(
    files: dict[str, Path], tmp_path: Path
) -> None:
    out = tmp_path / "picks"
    base = ["pick", "micrographs", "--diameter", str(DIAMETER_A), "--model", str(files["model"])]
    inputs = [str(files[k]) for k in ("good", "unset", "zero", "blank")]
    result = CliRunner().invoke(app, [*base, *inputs, "--out", str(out), "--no-png"])
    assert result.exit_code == 1, result.output
    expected = _api(files)
    assert expected.n_picks == 7
    assert torch.allclose(_star_positions(out, "good"), expected.positions_a, atol=1e-5, rtol=0)
    for name in ("unset", "zero"):
        assert f"FAILED: {files[name]}" in result.output
        assert not (out / f"{name}_picks.star").exists()
    assert "means none was recorded" in result.output
    assert "--pixel-size" in result.output
    assert "blank" in result.output
    assert "7 picks on 1 of 4 micrographs" in result.output
    # with --pixel-size the file whose header says 1.0 gives the same picks
    again = CliRunner().invoke(
        app, [*base, str(files["unset"]), "--pixel-size", str(PIXEL_A), "--out", str(out)]
    )
    assert again.exit_code == 0, again.output
    assert torch.allclose(_star_positions(out, "unset"), expected.positions_a, atol=1e-5, rtol=0)
    assert (out / "unset_picks.png").stat().st_size > 10_000


def test_rethreshold_rewrites_the_picks_from_the_saved_probabilities(
    files: dict[str, Path], tmp_path: Path
) -> None:
    out = tmp_path / "picks"
    base = ["pick", "micrographs", "--diameter", str(DIAMETER_A), "--model", str(files["model"])]
    first = CliRunner().invoke(app, [*base, str(files["good"]), "--out", str(out), "--no-png"])
    assert first.exit_code == 0, first.output
    files["model"].rename(files["model"].with_suffix(".moved"))  # no network from here on
    try:
        result = CliRunner().invoke(
            app, ["pick", "rethreshold", str(out), "--threshold", "0.2", "--no-png"]
        )
    finally:
        files["model"].with_suffix(".moved").rename(files["model"])
    assert result.exit_code == 0, result.output
    expected = _api(files).rethreshold(0.2)
    direct = _api(files, threshold=0.2)
    assert torch.equal(expected.positions_a, direct.positions_a)
    written = _star_positions(out, "good")
    assert torch.allclose(written, expected.positions_a, atol=1e-5, rtol=0)
    assert not torch.allclose(written, _api(files).positions_a, atol=1e-3, rtol=0)
    bad = CliRunner().invoke(app, ["pick", "rethreshold", str(tmp_path), "--threshold", "0.2"])
    assert bad.exit_code == 2
    assert "no *_picking.json" in bad.output


def test_a_damaged_model_is_a_usage_error(files: dict[str, Path], tmp_path: Path) -> None:
    damaged = tmp_path / "damaged.boxnet.pt"
    damaged.write_bytes(files["model"].read_bytes()[:500])
    result = CliRunner().invoke(
        app,
        ["pick", "micrographs", str(files["good"]), "--diameter", "120", "--model", str(damaged),
         "--out", str(tmp_path / "o")],
        env={"COLUMNS": "400"},  # the error box on one line
    )  # fmt: skip
    assert result.exit_code == 2
    assert "Invalid value for --model" in result.output
    assert "damaged.boxnet.pt: cannot read" in result.output
