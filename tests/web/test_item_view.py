"""The item view's picks: positions in Å from the image's top-left corner (docs/conventions.md
§1, "Display positions"), checked against the picks STAR file and the simulation's true
particle centres; other thresholds are the saved probabilities re-thresholded."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient

from cryowarp.io.star import read_star
from cryowarp.preprocess.picking.metrics import match_picks
from cryowarp.preprocess.picking.outputs import read_pick_result
from cryowarp.simulate.ground_truth import load_ground_truth
from cryowarp.web.app import create_app

pytestmark = pytest.mark.slow  # the processed project takes ~30 s to make once


def test_picks_are_corner_based_angstroms_on_the_true_particles(processed_project: object) -> None:
    folder = processed_project.folder  # type: ignore[attr-defined]
    client = TestClient(create_app(folder), base_url="http://127.0.0.1")
    name = "movie_000"
    item = client.get(f"/api/items/{name}").json()
    picks = client.get(f"/api/items/{name}/picks").json()
    assert picks["n_picks"] == item["picking"]["n_picks"] > 0
    assert picks["threshold"] == item["picking"]["threshold"]

    pixel_a = 1.5  # the project's pixel size
    table = next(iter(read_star(folder / "picking" / f"{name}_picks.star").values()))
    star_xy = table[["rlnCoordinateX", "rlnCoordinateY"]].to_numpy(dtype=float)
    api_xy = np.stack([picks["x_a"], picks["y_a"]], axis=1)
    # RELION coordinates count from the centre of pixel 0; the page draws from its corner.
    assert np.abs(api_xy - (star_xy + 0.5) * pixel_a).max() < 0.01
    width_a, height_a = item["field_size_xy_a"]
    assert (api_xy > 0).all()
    assert (api_xy[:, 0] < width_a).all()
    assert (api_xy[:, 1] < height_a).all()

    truth = load_ground_truth(folder.parent / "simulated", 0)
    true_a = truth.particles.positions_a[:, :2].to(torch.float64)
    match = match_picks(torch.from_numpy(api_xy - 0.5 * pixel_a), true_a, diameter_a=80.0)
    assert match.n_matched >= 0.8 * len(api_xy)
    assert float(match.distances_a.max()) < 8.0  # a tenth of the diameter

    low = client.get(f"/api/items/{name}/picks", params={"threshold": 0.1}).json()
    expected = read_pick_result(folder / "picking", name).rethreshold(0.1)
    assert low["n_picks"] == expected.n_picks >= picks["n_picks"]
    assert np.allclose(low["x_a"], expected.positions_a[:, 0].numpy() + 0.5 * pixel_a, atol=0.01)
