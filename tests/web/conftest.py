"""Fixtures of the dashboard tests.

- ``processed_project`` (session): a :class:`ProcessedProject`: a project of three simulated
  ``tiny`` movies (256², 1.5 Å, seed 11) processed through motion → CTF → picking (diameter
  80 Å) → display. Its ``process_new_item()`` moves one more simulated movie into the watched
  folder and processes it (about 10 s), as a microscope and ``cryowarp run --watch`` would.
  Tests that change it must leave it as they found it or work on ``copy_to(folder)``.
- ``dashboard_server``: a function ``(project_folder, token=None) -> URL`` that serves the
  dashboard on 127.0.0.1 from a background thread (:func:`cryowarp.web.background.
  start_dashboard`, stopped at the end of the test) and returns its base URL
  ``http://127.0.0.1:PORT/``.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from cryowarp.pipeline.executors import SerialExecutor
from cryowarp.pipeline.project import Project, init_project, open_project
from cryowarp.pipeline.runner import run_project
from cryowarp.pipeline.settings import ProjectSettings
from cryowarp.simulate.presets import frame_series_preset
from cryowarp.simulate.write import write_frame_series_dataset

N_MOVIES = 3
FAST = {
    "motion": {"patch_size_px": 128, "max_iterations": 5, "local_grid": [2, 2, 2]},
    "ctf": {"spectrum_source": "average"},
    "picking": {"diameter_a": 80.0},
}


@dataclass
class ProcessedProject:
    """A processed project and the movie that can still be added to it."""

    folder: Path
    spare_movies: list[Path]

    @property
    def project(self) -> Project:
        return open_project(self.folder)

    def process_new_item(self) -> str:
        """Move the next spare movie into the watched folder and process it; its item name."""
        movie = self.spare_movies.pop(0)
        target = self.folder.parent / "raw" / movie.name
        shutil.move(movie, target)
        run_project(self.folder, executor=SerialExecutor())
        return target.stem

    def copy_to(self, folder: Path) -> Path:
        """A copy of the project (its raw data shared) in ``folder``; its path."""
        shutil.copytree(self.folder, folder, symlinks=True)
        return folder


@pytest.fixture(scope="session")
def processed_project(tmp_path_factory: pytest.TempPathFactory) -> ProcessedProject:
    torch.set_num_threads(1)  # the same arithmetic whatever the machine
    root = tmp_path_factory.mktemp("dashboard")
    data = root / "simulated"
    write_frame_series_dataset(data, frame_series_preset("tiny"), n_movies=N_MOVIES + 2, seed=11)
    raw, spare = root / "raw", root / "spare"
    raw.mkdir()
    spare.mkdir()
    movies = sorted(data.glob("movie_*.mrc"))
    for movie in movies[:N_MOVIES]:
        shutil.copy(movie, raw / movie.name)
    for movie in movies[N_MOVIES:]:
        shutil.copy(movie, spare / movie.name)
    settings = ProjectSettings.model_validate(
        {
            "data": {
                "pattern": str(raw / "movie_*.mrc"),
                "movie": {"gain_path": str(data / "gain.mrc"), "pixel_size_a": 1.5},
            },
            **FAST,
        }
    )
    project = init_project(root / "proj", settings)
    summary = run_project(project, executor=SerialExecutor())
    assert [o.state for o in summary.outcomes] == ["done"] * N_MOVIES
    return ProcessedProject(project.folder, sorted(spare.glob("movie_*.mrc")))


@pytest.fixture
def dashboard_server() -> Iterator[Callable[..., str]]:
    from cryowarp.web.background import RunningDashboard, start_dashboard

    running: list[RunningDashboard] = []

    def start(folder: Path, token: str | None = None) -> str:
        running.append(start_dashboard(folder, token=token, min_refresh_interval_s=0.2))
        return running[-1].url

    yield start
    for dashboard in running:
        dashboard.stop()
