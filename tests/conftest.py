"""Shared fixtures: the real-data folder, the devices to test on and simulated movies that are
written once a session."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import torch

if TYPE_CHECKING:
    from cryowarp.simulate.ground_truth import FrameSeriesTruth

_REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("CRYOWARP_SHARED_DATA", _REPO.parent / "shared" / "data"))

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Folder of small real cryo-EM files (``../shared/data``); skips the test when absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real-data fixtures not found at {SHARED_DATA} (set CRYOWARP_SHARED_DATA)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def warp_reference(shared_data: Path) -> Path:
    """Warp's own golden outputs (warpylib test data)."""
    path = shared_data / "warp_reference" / "warpylib_testdata"
    if not path.is_dir():
        pytest.skip(f"Warp golden values not found at {path}")
    return path


@pytest.fixture(params=DEVICES)
def device(request: pytest.FixtureRequest) -> torch.device:
    """Every device test runs on the CPU and, when present, on CUDA."""
    return torch.device(request.param)


@dataclass(frozen=True)
class SimulatedFrameSeries:
    """A simulated dataset of one movie: its files and the ground truth that made it."""

    folder: Path
    movie: Path  # movie_000.mrc
    gain: Path
    truth: FrameSeriesTruth


def _simulate_once(folder: Path, seed: int, **overrides: object) -> SimulatedFrameSeries:
    from cryowarp.simulate.ground_truth import load_ground_truth
    from cryowarp.simulate.presets import frame_series_preset
    from cryowarp.simulate.write import write_frame_series_dataset

    if not (folder / "ground_truth" / "ground_truth.json").is_file():
        settings = frame_series_preset("tiny", **overrides)
        write_frame_series_dataset(folder, settings, n_movies=1, seed=seed)
    truth = load_ground_truth(folder)
    return SimulatedFrameSeries(folder, truth.movie_path, truth.gain_path, truth)


@pytest.fixture(scope="session")
def tiny_frame_series(tmp_path_factory: pytest.TempPathFactory) -> SimulatedFrameSeries:
    """``frame_series_preset("tiny")`` (256², 8 frames of 1 e⁻/Å², 1.5 Å/px, gain and defects),
    seed 0, simulated once a session. Treat the folder as read-only."""
    return _simulate_once(tmp_path_factory.getbasetemp() / "tiny_frame_series", seed=0)


@pytest.fixture(scope="session")
def tiny_frame_series_128(tmp_path_factory: pytest.TempPathFactory) -> SimulatedFrameSeries:
    """The tiny preset at 128² (seed 5), simulated once a session: end-to-end motion correction
    in a few seconds. Treat the folder as read-only."""
    folder = tmp_path_factory.getbasetemp() / "tiny_frame_series_128"
    return _simulate_once(folder, seed=5, shape_px=(128, 128))


@dataclass(frozen=True)
class ProcessedMovie:
    """The tiny movie motion-corrected (quick fit) and its average CTF-estimated, written as
    ``cryowarp motion`` and ``cryowarp ctf`` write them (``folder/ctf/<stem>_ctf.json``)."""

    folder: Path  # the processing folder (motion/, average/, ctf/)
    movie: Path
    motion: Any  # MotionResult
    ctf: Any  # CtfResult
    true_defocus_um: float


@pytest.fixture(scope="session")
def tiny_processed(
    tiny_frame_series: SimulatedFrameSeries, tmp_path_factory: pytest.TempPathFactory
) -> ProcessedMovie:
    """:func:`tiny_frame_series` processed once a session (256², 8 frames, 1.5 Å/px; motion
    patch 64 px, 10 iterations, 2×2×2 grid; RELION motion STAR with 300 kV). Read-only."""
    import json

    import numpy as np

    from cryowarp.io.mrc import read_mrc
    from cryowarp.preprocess.ctf.estimate import estimate_ctf
    from cryowarp.preprocess.motion import MotionSettings, MovieInputSettings, correct_movie

    folder = tmp_path_factory.mktemp("tiny_processed")
    movie = tiny_frame_series.movie
    result = correct_movie(
        movie,
        input_settings=MovieInputSettings(gain_path=str(tiny_frame_series.gain)),
        settings=MotionSettings(
            patch_size_px=64, max_iterations=10, local_grid=(2, 2, 2), write_png=False
        ),
        out_dir=folder,
        relion_voltage_kv=300.0,
    )
    average, _ = read_mrc(result.paths.average)
    ctf = estimate_ctf(
        torch.from_numpy(np.array(average, np.float32)), pixel_size_a=result.output_pixel_size_a
    )
    (folder / "ctf").mkdir()
    (folder / "ctf" / f"{movie.stem}_ctf.json").write_text(json.dumps(ctf.to_dict(), indent=2))
    return ProcessedMovie(folder, movie, result, ctf, tiny_frame_series.truth.ctf.defocus_um)


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


# Property-based tests: no per-example deadline (shared, noisy machines), a bounded number of
# examples so the default suite stays quick on 2 CPU cores, no database written in CI, and
# derandomized examples so that every run of the suite is the same run.
from hypothesis import settings  # noqa: E402

settings.register_profile(
    "cryowarp", deadline=None, max_examples=60, database=None, derandomize=True
)
settings.load_profile("cryowarp")
