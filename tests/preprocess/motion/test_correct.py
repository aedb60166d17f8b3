"""Motion correction end to end (cryowarp.preprocess.motion.correct) on a tiny simulated movie.

Most tests replace the fit by a stand-in that returns the simulator's exact motion, so that
they check the plumbing — pixel sizes, the sign of the correction, every output file and its
content, no partial output, batch error handling — in a few seconds; one slow test runs the
real fit and compares it with the truth.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from matplotlib.image import imread

from cryowarp.errors import DimensionMismatchError, TruncatedFileError
from cryowarp.io.mrc import read_mrc, write_mrc
from cryowarp.io.relion_motion import read_relion_motion, relion_shifts_px_at
from cryowarp.preprocess.motion import correct as correct_module
from cryowarp.preprocess.motion._outputs import write_relion_star
from cryowarp.preprocess.motion.correct import (
    MotionOutcome,
    alignment_patch_size_px,
    alignment_pixel_size_a,
    correct_movie,
    correct_movies,
)
from cryowarp.preprocess.motion.fit import MotionFit
from cryowarp.preprocess.motion.frames import binned_shape, load_movie
from cryowarp.preprocess.motion.model import FrameMotion
from cryowarp.preprocess.motion.settings import MotionSettings, MovieInputSettings
from cryowarp.preprocess.motion.summary import motion_summary, summary_positions_a
from cryowarp.simulate.ground_truth import FrameSeriesTruth, load_ground_truth

SHAPE = (128, 128)
PIXEL_A = 1.5
FAST = MotionSettings(patch_size_px=64, max_iterations=15, local_grid=(2, 2, 2), write_png=False)


@pytest.fixture(scope="session")
def movie(tiny_frame_series_128: Any) -> Path:
    """One tiny movie (128², 8 frames, 1 e⁻/Å² per frame, 1.5 Å/px) with its gain and truth
    (tests/conftest.py, simulated once a session)."""
    path: Path = tiny_frame_series_128.movie
    return path


def _inputs(movie: Path) -> MovieInputSettings:
    return MovieInputSettings(gain_path=str(movie.parent / "gain.mrc"))


def _truth_motion(truth: FrameSeriesTruth) -> FrameMotion:
    """The simulator's motion as a FrameMotion: one global node per frame (the spline passes
    through them at whole frames) and the same local spline grid."""
    motion = truth.motion
    return FrameMotion(
        motion.global_shifts_a.T.contiguous(),
        motion.local_grid_a,
        motion.field_size_a,
        motion.n_frames,
    )


def _exact_stand_in(
    movie: Path, calls: list[dict[str, Any]] | None = None
) -> Callable[..., MotionFit]:
    """A stand-in for ``estimate_motion`` that returns the true motion and records what it
    was asked."""
    truth = load_ground_truth(movie.parent)
    record: list[dict[str, Any]] = [] if calls is None else calls

    def stand_in(
        frames: torch.Tensor,
        *,
        pixel_size_a: float,
        field_size_a: tuple[float, float],
        settings: MotionSettings,
        patch_size_px: int,
        progress: Callable[[str, float], None] | None = None,
    ) -> MotionFit:
        record.append(
            {"shape": tuple(frames.shape), "pixel_size_a": pixel_size_a,
             "field_size_a": field_size_a, "patch_size_px": patch_size_px}
        )  # fmt: skip
        centres = summary_positions_a(field_size_a, points=3).reshape(-1, 2).float()
        return MotionFit(
            motion=_truth_motion(truth),
            patch_centres_a=centres,
            patch_size_a=patch_size_px * pixel_size_a,
            initial_track_a=truth.motion.global_shifts_a,
            alignment_pixel_size_a=pixel_size_a,
        )

    return stand_in


@pytest.fixture
def exact_fit(movie: Path, monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """Replace the fit by the true motion; the list receives what the fit was asked."""
    calls: list[dict[str, Any]] = []
    monkeypatch.setattr(correct_module, "estimate_motion", _exact_stand_in(movie, calls))
    return calls


def _files(folder: Path) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())


def _lowpass_correlation(image: torch.Tensor, reference: torch.Tensor, cutoff: float) -> float:
    """Correlation of two images after keeping frequencies below ``cutoff`` cycles/px."""
    fy = torch.fft.fftfreq(image.shape[0], dtype=torch.float64)[:, None]
    fx = torch.fft.rfftfreq(image.shape[1], dtype=torch.float64)[None, :]
    keep = (fx**2 + fy**2 <= cutoff**2) & ((fx != 0) | (fy != 0))
    a = torch.fft.rfft2(image.double()) * keep
    b = torch.fft.rfft2(reference.double()) * keep
    return float(
        (a * b.conj()).real.sum() / (a.abs().square().sum() * b.abs().square().sum()).sqrt()
    )


def test_every_output_holds_what_it_should(
    movie: Path, exact_fit: list[dict[str, Any]], tmp_path: Path
) -> None:
    out = tmp_path / "out"
    settings = FAST.model_copy(update={"write_aligned_stack": True, "write_png": True})
    seen: list[float] = []
    result = correct_movie(
        movie, input_settings=_inputs(movie), settings=settings, out_dir=out,
        progress=lambda _message, done: seen.append(done), relion_voltage_kv=300.0,
    )  # fmt: skip
    truth = load_ground_truth(movie.parent)
    stem = movie.stem
    assert _files(out) == sorted([
        f"aligned/{stem}.mrcs", f"average/even/{stem}.mrc", f"average/odd/{stem}.mrc",
        f"average/{stem}.mrc", f"motion/{stem}.json", f"motion/{stem}.png",
        f"motion/{stem}.star",
    ])  # fmt: skip
    assert (seen[0], seen[-1]) == (0.0, 1.0)
    assert seen == sorted(seen)

    # The fit saw frames whose Nyquist reaches 7 Å, and patches of 64 output px = 96 Å
    # (28 alignment px, raised to the smallest patch, 32 px).
    (call,) = exact_fit
    assert 2 * call["pixel_size_a"] <= FAST.max_resolution_a + 1e-9
    assert 2 * call["pixel_size_a"] > 0.9 * FAST.max_resolution_a
    assert call["shape"] == (8, 56, 56)
    assert call["patch_size_px"] == 32
    assert call["field_size_a"] == (SHAPE[1] * PIXEL_A, SHAPE[0] * PIXEL_A)

    # Averages: shape, pixel size in the header, frame-0 geometry (the sign of the correction).
    average, header = read_mrc(out / "average" / f"{stem}.mrc")
    assert average.shape == SHAPE
    assert average.dtype == np.float32
    assert header.voxel_size_a[0] == pytest.approx(PIXEL_A)
    assert result.output_pixel_size_a == pytest.approx(PIXEL_A)
    clean = truth.read_clean_micrograph()
    raw_sum = torch.from_numpy(read_mrc(movie)[0].astype(np.float32)).sum(0)
    corrected = _lowpass_correlation(torch.from_numpy(average), clean, 0.1)
    uncorrected = _lowpass_correlation(raw_sum, clean, 0.1)
    assert corrected > uncorrected + 0.1, (corrected, uncorrected)
    odd = read_mrc(out / "average" / "odd" / f"{stem}.mrc")[0]
    even = read_mrc(out / "average" / "even" / f"{stem}.mrc")[0]
    assert _lowpass_correlation(torch.from_numpy(odd), torch.from_numpy(even), 0.1) > 0.5
    stack, stack_header = read_mrc(out / "aligned" / f"{stem}.mrcs")
    assert stack.shape == (8, *SHAPE)
    assert stack_header.voxel_size_a[0] == pytest.approx(PIXEL_A)

    # Metadata JSON.
    document = json.loads((out / "motion" / f"{stem}.json").read_text())
    assert document["schema_version"] == 1
    assert document["movie"] == str(movie)
    assert MovieInputSettings(**document["input_settings"]) == _inputs(movie)
    assert MotionSettings(**document["settings"]) == settings
    assert document["n_frames"] == 8
    assert document["raw_pixel_size_a"] == pytest.approx(PIXEL_A)
    assert document["output_pixel_size_a"] == pytest.approx(PIXEL_A)
    assert document["dose"]["accumulated_dose_e_per_a2"] == pytest.approx(
        [0.5 + i for i in range(8)]
    )
    motion = FrameMotion.from_dict(document["motion"])
    positions = summary_positions_a(motion.field_size_a).reshape(-1, 2)
    assert torch.allclose(motion.shifts_at(positions), truth.shifts_at(positions), atol=1e-4)
    assert np.allclose(document["global_track_a"], truth.motion.global_shifts_a, atol=1e-4)
    centres = torch.tensor(document["patch_tracks"]["positions_a"])
    assert np.allclose(
        document["patch_tracks"]["shifts_a"], truth.shifts_at(centres.float()), atol=1e-4
    )
    expected = motion_summary(truth.motion, field_size_a=truth.settings.field_size_a)
    for name, value in expected.to_dict().items():
        assert document["summary"][name] == pytest.approx(value, rel=1e-4, abs=1e-5), name
    assert document["summary"] == result.summary.to_dict()
    assert document["files"]["average"] == f"average/{stem}.mrc"
    assert document["files"]["star"] == f"motion/{stem}.star"
    for name, relative in document["files"].items():
        assert (out / relative).is_file(), name
    assert set(document["seconds"]) >= {"load", "alignment_frames", "fit", "average"}

    # RELION STAR: correction shifts in unbinned pixels (the negative of ours), local model.
    star = read_relion_motion(out / "motion" / f"{stem}.star")
    assert star.image_size_xyz == (SHAPE[1], SHAPE[0], 8)
    assert star.voltage_kv == 300.0
    assert star.original_pixel_size_a == pytest.approx(PIXEL_A)
    assert np.allclose(
        star.global_shifts_px, -truth.motion.global_shifts_a.numpy() / PIXEL_A, atol=1e-4
    )
    # RELION's polynomial (quadratic in x and y, no x²y terms) cannot follow the simulator's
    # 3 × 3 spline field exactly; the file holds the least-squares fit, and the JSON its error.
    total_relion_px = relion_shifts_px_at(star, positions.numpy() / PIXEL_A)
    ours_px = truth.shifts_at(positions.float()).numpy() / PIXEL_A
    error_px = np.abs(total_relion_px + ours_px)
    assert error_px.max() == pytest.approx(
        document["fit"]["relion_local_model_max_error_px"], abs=1e-3
    )
    local_px = truth.motion.local_shifts_at(positions.float()).numpy() / PIXEL_A
    assert np.sqrt(np.mean(error_px**2)) < 0.6 * np.sqrt(np.mean(local_px**2))

    png = imread(out / "motion" / f"{stem}.png")
    assert png.shape[:2] == (500, 1100)
    assert png[..., :3].std() > 0.05


def test_relion_star_holds_the_motion_when_the_polynomial_can_express_it(
    movie: Path, tmp_path: Path
) -> None:
    """A bilinear-in-space, linear-in-time local field is inside RELION's model: the STAR
    file then reproduces our total motion exactly, with RELION's sign and pixels."""
    inputs = _inputs(movie)
    loaded = load_movie(movie, inputs)
    truth = load_ground_truth(movie.parent)
    local = torch.zeros(2, 2, 2, 2)  # (xy, t, gy, gx)
    local[:, 1] = torch.tensor([[[1.0, -2.0], [0.5, 0.5]], [[-1.5, 0.0], [2.0, -0.5]]])
    motion = FrameMotion(truth.motion.global_shifts_a.T.contiguous(), local, loaded.field_size_a, 8)
    fit = MotionFit(
        motion=motion, patch_centres_a=torch.zeros(1, 2), patch_size_a=96.0,
        initial_track_a=truth.motion.global_shifts_a,
    )  # fmt: skip
    error_px = write_relion_star(
        tmp_path / "m.star", loaded, fit, input_settings=inputs, voltage_kv=None
    )
    assert error_px < 1e-4
    star = read_relion_motion(tmp_path / "m.star")
    assert star.voltage_kv is None
    assert star.local_model_coefficients is not None
    positions = summary_positions_a(loaded.field_size_a, points=5).reshape(-1, 2)
    relion_px = relion_shifts_px_at(star, positions.numpy() / PIXEL_A)
    ours_a = motion.shifts_at(positions).double().numpy()
    assert np.abs(relion_px + ours_a / PIXEL_A).max() < 1e-4


def test_binning_halves_the_average_and_doubles_its_pixel(
    movie: Path, exact_fit: list[dict[str, Any]], tmp_path: Path
) -> None:
    inputs = _inputs(movie).model_copy(update={"bin_factor": 2.0})
    settings = FAST.model_copy(update={"write_odd_even": False})
    result = correct_movie(movie, input_settings=inputs, settings=settings, out_dir=tmp_path)
    average, header = read_mrc(result.paths.average)
    assert average.shape == (SHAPE[0] // 2, SHAPE[1] // 2)
    assert header.voxel_size_a[0] == pytest.approx(2 * PIXEL_A)
    # The patch edge is 64 output px = 192 Å, converted to alignment pixels.
    (call,) = exact_fit
    assert abs(call["patch_size_px"] * call["pixel_size_a"] - 64 * 2 * PIXEL_A) <= 3.5
    assert _files(tmp_path) == [
        f"average/{movie.stem}.mrc", f"motion/{movie.stem}.json", f"motion/{movie.stem}.star"
    ]  # fmt: skip


def test_a_rerun_replaces_the_outputs_and_a_failed_one_leaves_them_alone(
    movie: Path, exact_fit: list[dict[str, Any]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    stem = movie.stem
    correct_movie(movie, input_settings=_inputs(movie), settings=FAST, out_dir=tmp_path)
    assert (tmp_path / "average" / "odd" / f"{stem}.mrc").is_file()
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}

    # A failure while writing: the earlier complete set is untouched, nothing staged is left.
    def broken_writer(*args: object, **kwargs: object) -> Path:
        raise RuntimeError("disk full")

    monkeypatch.setattr(correct_module, "write_mrc", broken_writer)
    settings = FAST.model_copy(update={"write_odd_even": False, "dose_weighting": False})
    with pytest.raises(RuntimeError, match="disk full"):
        correct_movie(movie, input_settings=_inputs(movie), settings=settings, out_dir=tmp_path)
    assert {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()} == before
    assert not (tmp_path / ".staging").exists()

    # A successful rerun replaces the set and removes what the settings no longer ask for.
    monkeypatch.undo()
    monkeypatch.setattr(correct_module, "estimate_motion", _exact_stand_in(movie))
    correct_movie(movie, input_settings=_inputs(movie), settings=settings, out_dir=tmp_path)
    assert _files(tmp_path) == [
        f"average/{stem}.mrc", f"motion/{stem}.json", f"motion/{stem}.star"
    ]  # fmt: skip
    document = json.loads((tmp_path / "motion" / f"{stem}.json").read_text())
    assert document["settings"]["dose_weighting"] is False
    assert document["files"]["odd"] is None
    new_average = (tmp_path / "average" / f"{stem}.mrc").read_bytes()
    assert new_average != before[tmp_path / "average" / f"{stem}.mrc"]  # not dose-weighted


def test_a_gain_of_the_wrong_size_is_refused_before_anything_is_written(
    movie: Path, tmp_path: Path
) -> None:
    gain = tmp_path / "small_gain.mrc"
    write_mrc(gain, np.ones((64, 128), np.float32), voxel_size_a=PIXEL_A)
    out = tmp_path / "out"
    with pytest.raises(DimensionMismatchError, match=r"small_gain\.mrc"):
        correct_movie(
            movie, input_settings=MovieInputSettings(gain_path=str(gain)), settings=FAST,
            out_dir=out,
        )  # fmt: skip
    assert not out.exists()


def test_batch_records_bad_movies_and_goes_on(
    movie: Path, exact_fit: list[dict[str, Any]], tmp_path: Path
) -> None:
    broken = tmp_path / "raw" / "broken.mrc"
    broken.parent.mkdir()
    data = movie.read_bytes()
    broken.write_bytes(data[: len(data) // 2])
    twin = tmp_path / "other" / movie.name
    twin.parent.mkdir()
    shutil.copy(movie, twin)
    missing = tmp_path / "raw" / "missing.mrc"
    out = tmp_path / "out"
    seen: list[MotionOutcome] = []
    outcomes = correct_movies(
        [movie, broken, missing, twin], input_settings=_inputs(movie), settings=FAST,
        out_dir=out, on_result=seen.append,
    )  # fmt: skip
    assert seen == outcomes
    assert [o.ok for o in outcomes] == [True, False, False, False]
    assert outcomes[0].result is not None
    assert outcomes[0].result.paths.average.is_file()
    assert "broken.mrc" in (outcomes[1].error or "")
    assert "missing.mrc" in (outcomes[2].error or "")
    assert "same file stem" in (outcomes[3].error or "")
    assert not any("broken" in name for name in _files(out))
    with pytest.raises(TruncatedFileError):  # the recorded message is the typed error's
        correct_movie(broken, input_settings=_inputs(movie), settings=FAST, out_dir=out)


def test_a_bug_is_not_swallowed_by_the_batch(
    movie: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def buggy(*args: object, **kwargs: object) -> MotionFit:
        raise RuntimeError("a bug")

    monkeypatch.setattr(correct_module, "estimate_motion", buggy)
    with pytest.raises(RuntimeError, match="a bug"):
        correct_movies([movie], input_settings=_inputs(movie), settings=FAST, out_dir=tmp_path)
    assert _files(tmp_path) == []


@given(
    raw_pixel_a=st.floats(0.4, 3.0),
    max_resolution_a=st.floats(2.0, 20.0),
    size=st.integers(64, 6000),
)
def test_alignment_nyquist_reaches_the_highest_fit_resolution(
    raw_pixel_a: float, max_resolution_a: float, size: int
) -> None:
    settings = MotionSettings(max_resolution_a=max_resolution_a)
    shape = (size, size + 100)
    target = alignment_pixel_size_a(raw_pixel_a, shape, settings)
    limit = max_resolution_a / 2
    if limit <= raw_pixel_a:
        assert target == raw_pixel_a  # never upsampled
        return
    if target <= raw_pixel_a * (1 + 1e-6):  # alignment_frames keeps the raw frames
        actual = raw_pixel_a
    else:
        _, actual = binned_shape(shape, target / raw_pixel_a, pixel_size_a=raw_pixel_a)
    assert 2 * actual <= max_resolution_a * (1 + 1e-9)
    # ... and no finer than needed: within 2 % or two pixels of the resampled field.
    slack = max(0.02, 2.5 * actual / (shape[1] * raw_pixel_a))
    assert actual >= limit * (1 - slack) or actual == raw_pixel_a


def test_patch_size_keeps_its_length_in_alignment_pixels() -> None:
    settings = MotionSettings(patch_size_px=512)
    size = alignment_patch_size_px(settings, output_pixel_size_a=1.0, alignment_pixel_size_a=3.4)
    assert size % 2 == 0
    assert abs(size * 3.4 - 512) <= 3.4
    tiny = MotionSettings(patch_size_px=32)
    assert alignment_patch_size_px(tiny, output_pixel_size_a=1.0, alignment_pixel_size_a=3.5) == 32


@pytest.mark.slow
def test_the_real_fit_recovers_the_simulated_motion(movie: Path, tmp_path: Path) -> None:
    result = correct_movie(movie, input_settings=_inputs(movie), settings=FAST, out_dir=tmp_path)
    truth = load_ground_truth(movie.parent)
    positions = summary_positions_a(truth.settings.field_size_a).reshape(-1, 2)
    fitted = result.motion.shifts_at(positions).double().cpu()
    true = truth.shifts_at(positions.float()).double()
    rms_error = float((fitted - true).norm(dim=-1).square().mean().sqrt())
    rms_motion = float(true.norm(dim=-1).square().mean().sqrt())
    assert rms_error < 0.35 * rms_motion, (rms_error, rms_motion)
    track_error = (result.motion.global_shifts_at().cpu() - truth.motion.global_shifts_a).norm(
        dim=-1
    )
    assert float(track_error.max()) < 2.0  # Å, 1.3 px, at 1 e⁻/Å² per frame on 128²


def test_a_local_grid_with_one_temporal_node_is_refused_with_the_reason() -> None:
    """Frame 0 holds the local grid at zero, so (X, Y, 1) could fit nothing (it used to fail
    deep inside the fit with an einsum shape error)."""
    with pytest.raises(ValueError, match="one temporal node"):
        MotionSettings(local_grid=(2, 2, 1))
    assert not MotionSettings(local_grid=(1, 1, 1)).local_motion
    assert MotionSettings(local_grid=(2, 2, 2)).local_motion
