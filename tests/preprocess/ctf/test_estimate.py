"""End to end on simulated movies with known CTF, and the failure paths."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from pydantic import ValidationError

from cryowarp.core.fourier_grids import frequency_magnitude
from cryowarp.io.mrc import read_mrc
from cryowarp.preprocess.ctf.estimate import estimate_ctf, estimate_ctf_from_spectrum
from cryowarp.preprocess.ctf.result import CtfResult
from cryowarp.preprocess.ctf.settings import CtfSettings
from cryowarp.simulate.ground_truth import FrameSeriesTruth, load_ground_truth
from cryowarp.simulate.presets import frame_series_preset
from cryowarp.simulate.write import write_frame_series_dataset

from ._synthetic import background_envelope


def _frames(folder: Path) -> tuple[torch.Tensor, FrameSeriesTruth]:
    truth = load_ground_truth(folder)
    raw, _ = read_mrc(truth.movie_path)
    gain, _ = read_mrc(truth.gain_path)
    return torch.from_numpy(raw.astype(np.float32) * gain.astype(np.float32)), truth


@pytest.fixture(scope="module")
def astigmatic_movie(
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[torch.Tensor, FrameSeriesTruth]:
    folder = tmp_path_factory.mktemp("ctf_flat")
    settings = frame_series_preset(
        "tiny", astigmatism_range_um=(0.1, 0.1), astigmatism_angle_deg=30.0
    )
    write_frame_series_dataset(folder, settings, n_movies=1, seed=1)
    return _frames(folder)


def test_recovers_defocus_and_astigmatism_of_a_simulated_movie(
    astigmatic_movie: tuple[torch.Tensor, FrameSeriesTruth],
) -> None:
    frames, truth = astigmatic_movie
    result = estimate_ctf(
        frames,
        pixel_size_a=truth.ctf.pixel_size_a,
        voltage_kv=truth.ctf.voltage_kv,
        cs_mm=truth.ctf.cs_mm,
        amplitude_contrast=truth.ctf.amplitude_contrast,
        settings=CtfSettings(window_size_px=256, max_iterations=30),
    )
    assert not result.failed, result.failure_reason
    assert abs(result.defocus_um - truth.ctf.defocus_um) < 0.01  # measured: 3 nm
    assert abs(result.astigmatism_um - truth.ctf.astigmatism_um) < 0.01
    assert abs(result.astigmatism_angle_deg - truth.ctf.astigmatism_angle_deg) < 3.0
    assert result.resolution_a < 5.0  # rings fitted to ≈ 3.7 Å (Nyquist 3 Å)
    assert result.fit_score > 0.5
    centre = torch.tensor([[192.0, 192.0]], dtype=torch.float64)
    assert abs(float(result.defocus_at(centre)[0]) - truth.ctf.defocus_um) < 0.01


@pytest.fixture(scope="module")
def phase_plate_movie(
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[torch.Tensor, FrameSeriesTruth]:
    folder = tmp_path_factory.mktemp("ctf_phase_plate")
    settings = frame_series_preset("tiny", phase_shift_deg=90.0, defocus_range_um=(0.8, 0.8))
    write_frame_series_dataset(folder, settings, n_movies=1, seed=1)
    return _frames(folder)


def test_recovers_defocus_and_phase_shift_of_a_phase_plate_movie(
    phase_plate_movie: tuple[torch.Tensor, FrameSeriesTruth],
) -> None:
    # With a 90° phase plate the CTF is ≈ cos χ: strong rings from the lowest frequencies.
    frames, truth = phase_plate_movie
    settings = CtfSettings(
        window_size_px=256,
        max_iterations=30,
        fit_phase_shift=True,
        defocus_min_um=0.3,
        defocus_max_um=1.5,
    )
    result = estimate_ctf(frames, pixel_size_a=truth.ctf.pixel_size_a, settings=settings)
    assert not result.failed, result.failure_reason
    assert abs(result.defocus_um - truth.ctf.defocus_um) < 0.05  # measured: 3 nm
    assert abs(result.phase_shift_deg - truth.ctf.phase_shift_deg) < 10.0  # measured: 0.6°
    assert result.fit_score > 0.5


def test_constant_image_fails_with_a_reason() -> None:
    result = estimate_ctf(torch.full((256, 256), 3.0), pixel_size_a=1.5)
    assert result.failed
    assert result.failure_reason is not None
    assert "constant" in result.failure_reason
    assert math.isnan(result.defocus_u_um)


def test_pure_noise_fails() -> None:
    generator = torch.Generator().manual_seed(0)
    noise = torch.poisson(torch.full((256, 256), 20.0), generator=generator)
    result = estimate_ctf(noise, pixel_size_a=1.5, settings=CtfSettings(window_size_px=256))
    assert result.failed
    assert result.failure_reason is not None
    assert "Thon rings" in result.failure_reason


@pytest.mark.parametrize(
    ("data", "settings", "words"),
    [
        (torch.full((256, 256), float("nan")), CtfSettings(), "NaN"),
        (torch.ones(32, 32), CtfSettings(), "smaller"),
        (torch.randn(256, 256), CtfSettings(min_resolution_a=3.2, max_resolution_a=2.0), "empty"),
    ],
)
def test_bad_input_is_a_failed_result(
    data: torch.Tensor, settings: CtfSettings, words: str
) -> None:
    result = estimate_ctf(data, pixel_size_a=1.5, settings=settings)
    assert result.failed
    assert result.failure_reason is not None
    assert words in result.failure_reason


def test_negative_spectrum_is_refused() -> None:
    result = estimate_ctf_from_spectrum(-torch.rand(128, 65) - 0.1, pixel_size_a=1.5)
    assert result.failed


def test_result_round_trips_through_a_dict() -> None:
    result = CtfResult(
        defocus_u_um=2.1,
        defocus_v_um=1.9,
        astigmatism_angle_deg=-12.0,
        phase_shift_deg=0.0,
        defocus_grid_um=((1.9, 2.0), (2.0, 2.1)),
        image_size_xy_a=(400.0, 300.0),
        resolution_a=3.5,
        fit_score=0.8,
        pixel_size_a=1.0,
        voltage_kv=300.0,
        cs_mm=2.7,
        amplitude_contrast=0.07,
    )
    again = CtfResult.from_dict(result.to_dict())
    assert again.to_dict() == result.to_dict()
    failed = CtfResult.failure(
        "x", pixel_size_a=1.0, voltage_kv=300.0, cs_mm=2.7, amplitude_contrast=0.1
    )
    assert failed.to_dict()["defocus_u_um"] is None
    assert CtfResult.from_dict(failed.to_dict()).failed
    # The grid is bilinear for 2 × 2 nodes: corners, and the mean at the centre.
    corners = torch.tensor([[0.0, 0.0], [400.0, 300.0], [200.0, 150.0]], dtype=torch.float64)
    assert torch.allclose(
        result.defocus_at(corners), torch.tensor([1.9, 2.1, 2.0], dtype=torch.float64)
    )


def test_spectrum_without_rings_fails_with_a_reason() -> None:
    # Background × averaging noise, no CTF term: the spectrum entry point finds no rings.
    generator = torch.Generator().manual_seed(3)
    k_per_a = frequency_magnitude((256, 256), dtype=torch.float64) / 1.5
    background, _ = background_envelope(k_per_a)
    noise = -torch.log(torch.rand(background.shape, generator=generator, dtype=torch.float64))
    result = estimate_ctf_from_spectrum(background * noise, pixel_size_a=1.5)
    assert result.failed
    assert result.failure_reason is not None
    assert "Thon rings" in result.failure_reason
    assert math.isnan(result.defocus_um)


def test_rings_outside_the_search_range_fail(
    astigmatic_movie: tuple[torch.Tensor, FrameSeriesTruth],
) -> None:
    # The movie's defocus is far above a 0.3–0.4 µm search: no candidate fits, a failed result.
    frames, truth = astigmatic_movie
    assert truth.ctf.defocus_um > 1.0
    settings = CtfSettings(window_size_px=256, defocus_min_um=0.3, defocus_max_um=0.4)
    result = estimate_ctf(frames, pixel_size_a=truth.ctf.pixel_size_a, settings=settings)
    assert result.failed
    assert result.failure_reason is not None
    assert "0.3–0.4 µm" in result.failure_reason


@pytest.mark.parametrize(
    ("options", "words"),
    [
        ({"defocus_min_um": 3.0, "defocus_max_um": 2.0}, "must exceed"),
        ({"window_size_px": 511}, "even"),
        ({"min_resolution_a": 4.0, "max_resolution_a": 8.0}, "finer"),
    ],
)
def test_impossible_settings_are_refused_with_the_reason(
    options: dict[str, float], words: str
) -> None:
    with pytest.raises(ValidationError, match=words):
        CtfSettings(**options)  # type: ignore[arg-type]
