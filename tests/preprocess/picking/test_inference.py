"""BoxNet inference: post-processing on planted probability maps, tiling, coordinate frames,
planted dark particles end to end, and errors."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from pydantic import ValidationError

from cryowarp.errors import DimensionMismatchError, InvalidValuesError
from cryowarp.preprocess.picking.inference import (
    PickResult,
    pick_micrograph,
    picks_from_probabilities,
    predict_probabilities,
)
from cryowarp.preprocess.picking.model_file import BoxNetModel
from cryowarp.preprocess.picking.network import BoxNet, BoxNetArchitecture
from cryowarp.preprocess.picking.prepare import prepare_micrograph
from cryowarp.preprocess.picking.settings import PickingSettings

PIXEL_A = 8.0


def dark_detector(*, gain: float = 4.0, offset: float = -18.0, widths=(4, 8)) -> BoxNet:
    """A real BoxNet whose weights make it pointwise: particle logit = gain·relu(−x) + offset
    (x the prepared image, dark = particle), background logit 0, artefact logit −30."""
    net = BoxNet(BoxNetArchitecture(widths=widths))
    with torch.no_grad():
        for p in net.parameters():
            p.zero_()
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.weight.fill_(1.0)
        net.down[0].entry[0].weight[0, 0, 1, 1] = -1.0  # channel 0 = relu(-x), kept by ...
        for up in net.up:  # ... every residual block and the decoder's skip path
            up.block.skip.weight[0, up.block.conv1.in_channels // 2, 0, 0] = 1.0
        net.head.weight[1, 0, 0, 0] = gain
        net.head.bias[1] = offset
        net.head.bias[2] = -30.0
    return net.eval()


def _blob(shape, centre_xy, *, sigma_px, peak) -> np.ndarray:
    yy, xx = np.mgrid[0 : shape[0], 0 : shape[1]]
    r2 = (xx - centre_xy[0]) ** 2 + (yy - centre_xy[1]) ** 2
    return peak * np.exp(-r2 / (2 * sigma_px**2))


def _probabilities(particle: np.ndarray, artefact: np.ndarray | None = None) -> torch.Tensor:
    artefact = np.zeros_like(particle) if artefact is None else artefact
    background = 1.0 - particle - artefact
    return torch.from_numpy(np.stack([background, particle, artefact]).astype(np.float32))


# ---------------------------------------------------------------------------- post-processing


def test_centroids_of_planted_gaussian_blobs_are_exact() -> None:
    rng = np.random.default_rng(1)
    shape = (120, 150)
    truth = [(15 + 30 * i + rng.uniform(-3, 3), 15 + 30 * j + rng.uniform(-3, 3))
             for i in range(5) for j in range(4)]  # fmt: skip
    particle = sum(_blob(shape, c, sigma_px=2.0, peak=0.95) for c in truth)
    settings = PickingSettings(diameter_a=80.0, threshold=0.5)
    picks = picks_from_probabilities(
        _probabilities(particle), settings=settings, pixel_size_a=PIXEL_A
    )
    assert picks.n_picks == len(truth)
    found = picks.positions_px.numpy()
    errors = [np.abs(found - np.array(t)).sum(-1).min() for t in truth]
    assert max(errors) < 0.05  # measured 0.009 px (|Δx| + |Δy|)
    assert torch.all(picks.scores[:-1] >= picks.scores[1:])  # by decreasing score
    # area = pixels with p ≥ 0.5: a disk of radius σ·√(2 ln 1.9) ≈ 2.27 px (≈ 16 pixels)
    assert torch.all((picks.areas_px >= 12) & (picks.areas_px <= 21))
    assert picks.masked_fraction == 0.0


def test_threshold_sets_the_count_as_documented() -> None:
    shape = (64, 96)
    peaks = {(16, 32): 0.3, (48, 32): 0.55, (80, 32): 0.8}
    particle = sum(_blob(shape, c, sigma_px=2.0, peak=p) for c, p in peaks.items())
    probabilities = _probabilities(particle)

    def count(**options: float) -> int:
        settings = PickingSettings(diameter_a=100.0, **options)
        return picks_from_probabilities(probabilities, settings=settings, pixel_size_a=8).n_picks

    assert [count(threshold=t) for t in (0.2, 0.5, 0.7, 0.9)] == [3, 2, 1, 0]
    # score = the component's highest probability; a score equal to the threshold passes
    picks = picks_from_probabilities(
        probabilities, settings=PickingSettings(threshold=0.2), pixel_size_a=8
    )
    assert picks.scores.tolist() == pytest.approx([0.8, 0.55, 0.3], abs=1e-6)
    assert count(threshold=float(np.float32(0.55))) == 2
    # tracing at a lower candidate threshold keeps the same picks above the score threshold
    assert count(threshold=0.5, candidate_threshold=0.2) == 2


def test_of_two_close_picks_the_larger_survives() -> None:
    shape = (64, 64)
    big, small = (24.0, 32.0), (36.0, 32.0)  # 12 px = 96 Å apart, separate components
    particle = _blob(shape, big, sigma_px=2.5, peak=0.8) + _blob(
        shape, small, sigma_px=1.5, peak=0.95
    )
    probabilities = _probabilities(particle)
    close = PickingSettings(diameter_a=100.0)
    picks = picks_from_probabilities(probabilities, settings=close, pixel_size_a=8)
    assert picks.n_picks == 1  # the larger one, although its score is lower
    assert picks.positions_px[0].tolist() == pytest.approx(big, abs=0.05)
    far = PickingSettings(diameter_a=90.0)
    assert picks_from_probabilities(probabilities, settings=far, pixel_size_a=8).n_picks == 2
    # equal areas: the higher score wins
    twins = _blob(shape, big, sigma_px=2.0, peak=0.8) + _blob(shape, small, sigma_px=2.0, peak=0.9)
    picks = picks_from_probabilities(_probabilities(twins), settings=close, pixel_size_a=8)
    assert picks.positions_px[0].tolist() == pytest.approx(small, abs=0.05)


def test_small_artefact_regions_are_dropped_and_eight_connectivity_joins_diagonals() -> None:
    artefact = np.zeros((64, 64))
    artefact[5:10, 5:9] = 0.5  # 20 px: kept
    artefact[30:35, 5:9] = 0.5
    artefact[34, 8] = 0.0  # 19 px: dropped
    for i in range(20):  # a diagonal line of 20 px, connected only through corners: kept
        artefact[40 + i, 40 + i] = 0.3
    artefact[2, 60] = 0.1  # not above the threshold
    settings = PickingSettings()
    picks = picks_from_probabilities(_probabilities(artefact * 0, artefact), settings=settings,
                                     pixel_size_a=8)  # fmt: skip
    mask = picks.artefact_mask.numpy()
    assert mask[5:10, 5:9].all()
    assert not mask[30:35, 5:9].any()
    assert all(mask[40 + i, 40 + i] for i in range(20))
    assert not mask[2, 60]
    assert picks.masked_fraction == pytest.approx(int(mask.sum()) / mask.size)
    fewer = PickingSettings(min_artefact_component_px=11)
    small = picks_from_probabilities(
        _probabilities(artefact * 0, artefact), settings=fewer, pixel_size_a=8
    )
    assert int(small.artefact_mask[30:35, 5:9].sum()) == 19  # 19 px ≥ 11: kept


@pytest.mark.parametrize("pixel_a", [8.0, 7.5])
def test_distance_to_the_mask_is_in_angstrom(pixel_a: float) -> None:
    shape = (64, 64)
    artefact = np.zeros(shape)
    artefact[:, :10] = 0.9  # masked columns 0–9
    centres = {"inside": (5.0, 20.0), "near": (15.0, 40.0), "far": (20.0, 20.0)}
    particle = sum(_blob(shape, c, sigma_px=1.5, peak=0.9) for c in centres.values())
    probabilities = _probabilities(particle, artefact)
    near_a = 6 * pixel_a  # from column 15 to the centre of column 9

    def kept(min_distance_a: float) -> set[str]:
        settings = PickingSettings(diameter_a=40.0, min_distance_to_mask_a=min_distance_a)
        picks = picks_from_probabilities(probabilities, settings=settings, pixel_size_a=pixel_a)
        xs = picks.positions_px[:, 0].tolist()
        return {name for name, c in centres.items() if any(abs(x - c[0]) < 0.1 for x in xs)}

    assert kept(0.0) == {"near", "far"}  # inside the mask: always dropped
    assert kept(near_a) == {"near", "far"}  # exactly at the distance: kept
    assert kept(near_a + 0.5) == {"far"}
    assert kept(11 * pixel_a + 0.5) == set()


# ------------------------------------------------------------------------------------ tiling


@pytest.mark.parametrize("shape", [(37, 301), (300, 437)])
def test_tiled_probabilities_equal_untiled_for_a_pointwise_network(
    shape, device: torch.device
) -> None:
    torch.manual_seed(0)
    network = dark_detector(gain=1.5, offset=-2.0, widths=(4, 8, 16, 32))
    with torch.no_grad():
        network.head.bias[2] = -1.0  # all three classes vary
        network.head.weight[2, 0, 0, 0] = 0.7
    network.train()  # the previous mode is restored afterwards
    model = BoxNetModel(network=network, name="pointwise")
    image = torch.randn(shape) * 2
    prepared = prepare_micrograph(image, pixel_size_a=PIXEL_A)
    settings = PickingSettings(tile_px=64, tile_overlap_px=16, batch_tiles=3)
    tiled = predict_probabilities(model, prepared, settings=settings, device=device)
    assert tiled.device.type == device.type
    assert network.training  # restored, and the model itself stays on the CPU
    assert next(network.parameters()).device.type == "cpu"
    tiled = tiled.cpu()
    with torch.no_grad():
        network.eval()
        padded = torch.nn.functional.pad(prepared.image, (0, -shape[1] % 8, 0, -shape[0] % 8))
        direct = torch.softmax(network(padded[None, None]), 1)[0, :, : shape[0], : shape[1]]
    assert tiled.shape == (3, *shape)
    assert float((tiled - direct).abs().max()) < 1e-5
    assert float(direct[1].std()) > 0.05  # the comparison is not between constants


def test_tiling_rejects_tiles_the_network_cannot_take() -> None:
    model = BoxNetModel(dark_detector(widths=(4, 8, 16, 32, 64)), name="deep")  # multiple 16
    prepared = prepare_micrograph(torch.randn(64, 64), pixel_size_a=PIXEL_A)
    with pytest.raises(InvalidValuesError, match="multiples of 16"):
        predict_probabilities(model, prepared, settings=PickingSettings(tile_overlap_px=8))


# ------------------------------------------------------------------------ coordinate frames


@pytest.mark.parametrize("shape", [(1001, 1000), (998, 1003)])
def test_a_pick_at_a_known_prepared_pixel_maps_to_the_right_original_pixel(shape) -> None:
    h, w = shape
    prepared = prepare_micrograph(torch.randn(shape), pixel_size_a=2.0)
    hp, wp = prepared.image.shape
    particle = np.zeros((hp, wp))
    spots = [(wp // 2, hp // 2), (wp // 2 + 40, hp // 2 - 31), (7, 9)]
    for x, y in spots:
        particle[y - 1 : y + 2, x - 1 : x + 2] = 0.9  # a 3×3 plateau: centroid exactly (x, y)
    result = PickResult.from_probabilities(
        _probabilities(particle),
        prepared=prepared,
        settings=PickingSettings(diameter_a=60.0),
        model_name="none",
    )
    assert result.n_picks == 3
    expected = {(2.0 * ((x - wp // 2) * w / wp + w // 2), 2.0 * ((y - hp // 2) * h / hp + h // 2))
                for x, y in spots}  # fmt: skip
    got = {tuple(round(v, 6) for v in p) for p in result.positions_a.tolist()}
    assert got == {tuple(round(v, 6) for v in p) for p in expected}
    # the centre pixel of the prepared image is the centre pixel of the original (§2)
    assert (2.0 * (w // 2), 2.0 * (h // 2)) in got
    assert torch.allclose(result.positions_px, result.positions_a / 2.0)


@pytest.mark.parametrize("shape", [(523, 610), (640, 517)])
def test_planted_dark_particles_are_found_where_they_were_planted(shape) -> None:
    rng = np.random.default_rng(3)
    pixel_a = 2.0
    h, w = shape
    truth_a = np.array([(x, y) for x in np.arange(150.0, w * pixel_a - 100, 210.0)
                        for y in np.arange(140.0, h * pixel_a - 100, 230.0)])  # fmt: skip
    truth_a += rng.uniform(-20, 20, truth_a.shape)
    image = 0.3 * rng.standard_normal(shape)
    for x_a, y_a in truth_a:
        image += _blob(shape, (x_a / pixel_a, y_a / pixel_a), sigma_px=8.0, peak=-7.0)
    model = BoxNetModel(dark_detector(), name="dark")
    settings = PickingSettings(diameter_a=120.0)
    result = pick_micrograph(
        torch.from_numpy(image).float(), pixel_size_a=pixel_a, model=model, settings=settings
    )
    assert result.n_picks == len(truth_a)
    found = result.positions_a.numpy()
    nearest = np.linalg.norm(found[:, None] - truth_a[None], axis=-1).argmin(0)
    error_a = found[nearest] - truth_a
    assert np.abs(error_a).max() < 2.5  # < ⅓ of an 8 Å pixel; measured 1.8 Å
    # no systematic shift: half a pixel of the original (1 Å) would show; measured ≤ 0.25 Å
    assert np.abs(error_a.mean(0)).max() < 0.5
    assert result.model_name == "dark"
    assert result.probabilities.dtype == torch.float16
    # re-thresholding without the network = post-processing with the new threshold
    again = result.rethreshold(0.2)
    assert again.n_picks == result.n_picks
    assert int(again.picks.areas_px.sum()) > int(result.picks.areas_px.sum())  # traced lower
    direct = pick_micrograph(
        torch.from_numpy(image).float(),
        pixel_size_a=pixel_a,
        model=model,
        settings=settings.model_copy(update={"threshold": 0.2}),
    )
    assert torch.equal(again.positions_a, direct.positions_a)
    assert not torch.equal(again.positions_a, result.positions_a)


# ------------------------------------------------------------------------------------ errors


def test_bad_diameters_models_and_images_give_typed_errors() -> None:
    model = BoxNetModel(dark_detector(), name="dark")
    image = torch.randn(400, 300)  # 600 × 800 Å at 2 Å/px

    def pick(diameter_a: float, *, on: torch.Tensor = image, with_model=model) -> None:
        pick_micrograph(on, pixel_size_a=2.0, model=with_model,
                        settings=PickingSettings(diameter_a=diameter_a))  # fmt: skip

    with pytest.raises(InvalidValuesError, match=r"diameter 700 Å is larger .* 600 Å"):
        pick(700.0)
    with pytest.raises(InvalidValuesError, match=r"diameter 12 Å is below 2 px"):
        pick(12.0)
    wrong = BoxNetModel(dark_detector(), name="coarse", pixel_size_a=4.0)
    with pytest.raises(InvalidValuesError, match="coarse was trained at 4 Å/px"):
        pick(150.0, with_model=wrong)
    with pytest.raises(InvalidValuesError, match="blank"):
        pick(150.0, on=torch.full((400, 300), 3.0))
    with pytest.raises(DimensionMismatchError):
        picks_from_probabilities(torch.zeros(2, 8, 8), settings=PickingSettings(), pixel_size_a=8)


def test_settings_reject_inconsistent_tiles_and_thresholds() -> None:
    with pytest.raises(ValidationError, match="multiple of 8"):
        PickingSettings(tile_overlap_px=20)
    with pytest.raises(ValidationError, match="at most half"):
        PickingSettings(tile_px=64, tile_overlap_px=40)
    with pytest.raises(ValidationError, match="must not exceed threshold"):
        PickingSettings(threshold=0.3, candidate_threshold=0.4)
    with pytest.raises(ValidationError, match="extra"):
        PickingSettings.model_validate({"diameter": 100})
    settings = PickingSettings(diameter_a=222.0, candidate_threshold=0.25)
    assert PickingSettings.model_validate_json(settings.model_dump_json()) == settings
    assert settings.trace_threshold == 0.25
    assert math.isclose(PickingSettings().trace_threshold, 0.5)
