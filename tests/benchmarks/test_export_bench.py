"""The helpers of the export benchmark: picks with their origins, and the defocus errors."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch
from benchmarks.export import _particle_sets, defocus_errors

from cryowarp.io.relion import ParticleTable, write_particles
from cryowarp.preprocess.export.particle_set import ParticleSet
from cryowarp.preprocess.export.star_tables import particle_optics_group

PIXEL_A = 2.0


def _truth(stem: str, n: int, seed: int) -> SimpleNamespace:
    """A stand-in for ``FrameSeriesTruth``: particles with known defocus, a flat mid-plane."""
    generator = torch.Generator().manual_seed(seed)
    positions = torch.rand(n, 3, generator=generator, dtype=torch.float64) * 900 + 50
    u = 15000 + 1000 * torch.rand(n, generator=generator, dtype=torch.float64)
    particles = SimpleNamespace(
        positions_a=positions,
        euler_deg=torch.zeros(n, 3, dtype=torch.float64),
        defocus_u_a=u,
        defocus_v_a=u - 500,
    )
    return SimpleNamespace(
        movie_path=Path(f"/data/{stem}.mrc"),
        settings=SimpleNamespace(pixel_size_a=PIXEL_A),
        particles=particles,
        defocus_at=lambda xy: torch.full(xy.shape[:1], 1.5, dtype=torch.float64),  # µm
    )


def test_picks_are_off_by_at_most_the_error_and_origins_recentre_them() -> None:
    truths = [_truth("movie_000", 30, 0), _truth("movie_001", 20, 1)]
    sets = _particle_sets(truths, pick_error_a=8.0, max_particles=25)
    assert [len(s) for s in sets.values()] == [25, 20]
    for truth in truths:
        picks = sets[truth.movie_path.stem]
        true_xy = truth.particles.positions_a[: len(picks), :2]
        assert picks.origins_a is not None
        # The particle sits at pick − origin (docs/conventions.md §4): exactly the truth.
        torch.testing.assert_close(picks.positions_a - picks.origins_a, true_xy)
        offset = (picks.positions_a - true_xy).abs()
        assert 0 < float(offset.max()) <= 8.0
        assert float(offset.mean()) > 2.0  # spread over ±8 Å, not collapsed to zero


def _star(path: Path, truth: SimpleNamespace, picks: ParticleSet, du: np.ndarray) -> None:
    """A particle STAR file whose rows are shuffled and whose U and V are off by ``du``."""
    order = np.random.default_rng(0).permutation(len(picks))
    p = truth.particles
    frame = pd.DataFrame(
        {
            "rlnImageName": [f"{i + 1:06d}@stack.mrcs" for i in range(len(picks))],
            "rlnMicrographName": [f"average/{truth.movie_path.stem}.mrc"] * len(picks),
            "rlnCoordinateX": picks.positions_a[order, 0].numpy() / PIXEL_A,
            "rlnCoordinateY": picks.positions_a[order, 1].numpy() / PIXEL_A,
            "rlnOpticsGroup": np.ones(len(picks), dtype=np.int64),
            "rlnDefocusU": p.defocus_u_a[order].numpy() + du[order],
            "rlnDefocusV": p.defocus_v_a[order].numpy() + du[order],
            "rlnDefocusAngle": np.zeros(len(picks)),
        }
    )
    optics = particle_optics_group(
        optics_group=1,
        name="opticsGroup1",
        image_pixel_size_a=PIXEL_A,
        image_size_px=48,
        micrograph_original_pixel_size_a=PIXEL_A,
        voltage_kv=300.0,
        cs_mm=2.7,
        amplitude_contrast=0.07,
        phase_flipped=False,
        ctf_premultiplied=False,
    )
    write_particles(path, (optics,), ParticleTable(frame, (optics,)))


def test_defocus_errors_match_rows_to_particles_by_pick(tmp_path: Path) -> None:
    truth = _truth("movie_000", 40, 2)
    picks = _particle_sets([truth], pick_error_a=8.0)["movie_000"]
    du = np.where(np.arange(40) % 2 == 0, 30.0, -30.0)  # U and V off by ±30 Å
    star = tmp_path / "particles.star"
    _star(star, truth, picks, du)
    errors = defocus_errors(star, [truth], {"movie_000": picks})
    assert errors["defocus_rms_error_a"] == pytest.approx(30.0, abs=1e-6)
    # Mean defocus (U + V)/2 against the 1.5 µm mid-plane.
    p = truth.particles
    expected = ((p.defocus_u_a + p.defocus_v_a) / 2 + torch.from_numpy(du) - 15000.0).square()
    assert errors["mean_defocus_rms_error_a"] == pytest.approx(
        float(expected.mean().sqrt()), rel=1e-9
    )


def test_defocus_errors_refuse_rows_that_match_no_pick(tmp_path: Path) -> None:
    truth = _truth("movie_000", 10, 3)
    picks = _particle_sets([truth], pick_error_a=8.0)["movie_000"]
    star = tmp_path / "particles.star"
    _star(star, truth, picks, np.zeros(10))
    moved = ParticleSet("movie_000", picks.positions_a + 5.0)
    with pytest.raises(RuntimeError, match="do not match the picks"):
        defocus_errors(star, [truth], {"movie_000": moved})
