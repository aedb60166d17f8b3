"""Shared fixtures: the real-data folder and the devices to test on."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

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
