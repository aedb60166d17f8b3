"""The simulated counting detector: MTF tables, gain, defects and Poisson counts."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from cryowarp.core.fourier_grids import frequency_magnitude
from cryowarp.errors import (
    DimensionMismatchError,
    InvalidValuesError,
    MissingColumnError,
    MissingFileError,
)
from cryowarp.io.star import read_star
from cryowarp.simulate.detector import (
    DetectorDefects,
    apply_mtf,
    as_integer_counts,
    load_mtf,
    mtf_filter,
    random_detector_defects,
    record_frames,
)


def _generator(device: torch.device | str, seed: int = 0) -> torch.Generator:
    return torch.Generator(device=device).manual_seed(seed)


def _flat_detector(shape: tuple[int, int], device: torch.device | str) -> DetectorDefects:
    return random_detector_defects(
        shape, generator=_generator(device), gain_sigma=0.0, n_hot=0, n_dead_columns=0
    )


# --- MTF -----------------------------------------------------------------------------------


def test_packaged_mtf_is_the_measured_k3_table(shared_data: Path) -> None:
    file = shared_data / "metadata/detector_mtf_gatan_ttsim3d/mtf_k3_standard_300kV_FL2.star"
    measured = next(iter(read_star(file).values()))
    table = load_mtf("k3_300kV")
    assert table.shape == (len(measured), 2)
    torch.testing.assert_close(
        table[:, 0], 2 * torch.tensor(measured["rlnResolutionInversePixel"].to_numpy())
    )
    torch.testing.assert_close(table[:, 1], torch.tensor(measured["rlnMtfValue"].to_numpy()))


def test_shared_mtf_tables_read_as_fractions_of_nyquist(shared_data: Path) -> None:
    files = sorted((shared_data / "metadata").glob("detector_mtf_*/*.star"))
    assert len(files) == 13
    for file in files:
        table = load_mtf(file)
        # RELION's rlnResolutionInversePixel is in 1/pixel: every table ends near 0.5 = Nyquist.
        assert table[0, 0] == 0, file.name
        assert 0.98 <= float(table[-1, 0]) <= 1.02, file.name
        assert float(table[0, 1]) == pytest.approx(1.0, abs=1e-3), file.name
        assert 0.0 < float(table[-1, 1]) < 0.8, file.name  # the MTF falls towards Nyquist


def test_mtf_filter_equals_the_table_at_its_frequencies(device: torch.device) -> None:
    table = load_mtf()  # rows every 1/63 cycles/px = 2/63 of Nyquist
    mtf = mtf_filter((126, 126), table, device=device)  # samples every 1/126 cycles/px
    assert mtf.shape == (126, 64)
    assert mtf.device.type == device.type
    expected = (table[:32, 1] / table[0, 1]).float().to(device)
    torch.testing.assert_close(mtf[0, 0:64:2], expected)  # along x
    torch.testing.assert_close(mtf[0:64:2, 0], expected)  # along y: radial
    torch.testing.assert_close(mtf[0, 1:63:2], (expected[:-1] + expected[1:]) / 2)  # linear
    assert float(mtf[0, 0]) == 1.0


def test_mtf_filter_is_linear_in_frequency_and_held_beyond_the_table() -> None:
    table = torch.tensor([[0.0, 1.0], [1.0, 0.2]], dtype=torch.float64)
    mtf = mtf_filter((40, 50), table, dtype=torch.float64)
    k = frequency_magnitude((40, 50), dtype=torch.float64)
    expected = torch.where(k <= 0.5, 1 - 0.8 * k / 0.5, torch.full_like(k, 0.2))
    torch.testing.assert_close(mtf, expected)


def test_apply_mtf_keeps_the_mean_and_damps_fine_detail(device: torch.device) -> None:
    image = torch.randn((2, 64, 64), generator=_generator(device), device=device) + 5
    blurred = apply_mtf(image, load_mtf())
    torch.testing.assert_close(blurred.mean((-2, -1)), image.mean((-2, -1)))
    assert float(blurred.var()) < float(image.var())


# --- counts --------------------------------------------------------------------------------


def test_mean_counts_equal_the_expected_dose_with_poisson_variance(device: torch.device) -> None:
    expected = 1.7  # counts per pixel per frame
    raw = record_frames(
        torch.full((4, 500, 500), expected, device=device),
        _flat_detector((500, 500), device),
        generator=_generator(device, 1),
    )
    n = raw.numel()
    assert raw.dtype == torch.float32
    assert torch.equal(raw, raw.round())
    assert abs(float(raw.mean()) - expected) < 4 * math.sqrt(expected / n)
    assert float(raw.var()) / float(raw.mean()) == pytest.approx(1.0, abs=0.01)


def test_gain_correction_restores_a_uniform_mean(device: torch.device) -> None:
    defects = random_detector_defects(
        (200, 200), generator=_generator(device, 2), gain_sigma=0.2, n_hot=20, n_dead_columns=2
    )
    expected = 2.0
    raw = record_frames(
        torch.full((16, 200, 200), expected, device=device), defects, generator=_generator(device)
    )
    good = defects.good_pixels()
    low, high = good & (defects.gain < 0.85), good & (defects.gain > 1.15)
    assert int(low.sum()) > 1000
    assert int(high.sum()) > 1000
    corrected = raw * defects.gain
    # Raw counts follow the sensitivity 1/gain; corrected counts do not depend on the gain.
    assert float(raw[:, low].mean()) > 1.25 * float(raw[:, high].mean())
    error = math.sqrt(expected * 1.2 / (16 * 1000))
    assert abs(float(corrected[:, low].mean()) - float(corrected[:, high].mean())) < 5 * error
    assert float(corrected[:, good].mean()) == pytest.approx(expected, abs=0.01)


def test_dead_columns_and_hot_pixels_are_where_reported(device: torch.device) -> None:
    defects = random_detector_defects(
        (64, 80), generator=_generator(device, 3), n_hot=12, n_dead_columns=3
    )
    assert int(defects.hot_pixels.sum()) == 12
    assert defects.dead_columns.unique().numel() == 3
    raw = record_frames(
        torch.full((3, 64, 80), 1.0, device=device),
        defects,
        generator=_generator(device),
        hot_pixel_counts=77.0,
    )
    assert torch.all(raw[:, :, defects.dead_columns] == 0)
    hot_alive = defects.hot_pixels.clone()
    hot_alive[:, defects.dead_columns] = False
    assert torch.all(raw[:, hot_alive] == 77.0)
    assert float(raw[:, defects.good_pixels()].max()) < 20  # 77 only where reported


def test_gain_has_the_requested_spread_and_smooth_share() -> None:
    defects = random_detector_defects(
        (300, 300), generator=_generator("cpu", 4), gain_sigma=0.08, smooth_fraction=0.5
    )
    gain = defects.gain.double()
    assert float(gain.mean()) == pytest.approx(1.0, abs=1e-4)
    assert float(gain.std()) == pytest.approx(0.08, rel=0.05)
    centred = gain - gain.mean()
    # Neighbours share the smooth half of the variance, not the per-pixel half.
    lag1 = float((centred[:, 1:] * centred[:, :-1]).mean() / centred.square().mean())
    assert lag1 == pytest.approx(0.5, abs=0.05)


def test_same_generator_state_gives_the_same_frames(device: torch.device) -> None:
    def frames(seed: int) -> torch.Tensor:
        defects = random_detector_defects((32, 40), generator=_generator(device, seed))
        return record_frames(
            torch.full((2, 32, 40), 3.0, device=device), defects, generator=_generator(device, seed)
        )

    assert torch.equal(frames(5), frames(5))
    assert not torch.equal(frames(5), frames(6))


def test_as_integer_counts_picks_the_smallest_type() -> None:
    assert as_integer_counts(torch.tensor([0.0, 255.0])).dtype == torch.uint8
    wide = as_integer_counts(torch.tensor([0.0, 256.0, 65535.0]))
    assert wide.dtype == torch.uint16
    assert wide.numpy().tolist() == [0, 256, 65535]
    for bad in ([-1.0], [0.5], [70000.0]):
        with pytest.raises(InvalidValuesError):
            as_integer_counts(torch.tensor(bad))


def test_bad_inputs_raise_typed_errors(tmp_path: Path) -> None:
    defects = _flat_detector((8, 8), "cpu")
    with pytest.raises(DimensionMismatchError):
        record_frames(torch.ones(2, 8, 9), defects, generator=_generator("cpu"))
    with pytest.raises(InvalidValuesError):
        record_frames(-torch.ones(2, 8, 8), defects, generator=_generator("cpu"))
    with pytest.raises(MissingFileError):
        load_mtf(tmp_path / "absent.star")
    wrong = tmp_path / "wrong.star"
    wrong.write_text("data_\nloop_\n_rlnResolutionInversePixel\n_rlnOther\n0 1\n0.5 0.3\n")
    with pytest.raises(MissingColumnError, match="rlnMtfValue"):
        load_mtf(wrong)
