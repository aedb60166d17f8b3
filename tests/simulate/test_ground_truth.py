"""The on-disk dataset: files as users' files, the ground-truth format, determinism."""

from __future__ import annotations

import hashlib
import json
import math
import os
import stat
from pathlib import Path

import numpy as np
import pytest
import torch
from pydantic import ValidationError

from cryowarp.core.tilt_geometry import defocus_at_positions_um, tilt_rotation_matrix
from cryowarp.errors import FileFormatError, MissingFileError
from cryowarp.io.movie import open_movie
from cryowarp.simulate.build_species import build_species
from cryowarp.simulate.frame_series import simulate_frame_series
from cryowarp.simulate.ground_truth import load_ground_truth
from cryowarp.simulate.presets import FrameSeriesSettings, SpeciesSpec, frame_series_preset
from cryowarp.simulate.procedural import procedural_species
from cryowarp.simulate.sample_ctf import SampleCTF
from cryowarp.simulate.tilt_presets import TiltSeriesSettings
from cryowarp.simulate.write import write_frame_series_dataset


def _settings(**overrides: object) -> FrameSeriesSettings:
    return frame_series_preset("tiny", n_frames=4, shape_px=(128, 160), n_particles=3, **overrides)


@pytest.fixture(scope="module")
def species() -> list:
    return [procedural_species(mass_kda=60.0, seed=3, pixel_size_a=1.5, name="protein_a")]


def _hashes(folder: Path) -> dict[str, str]:
    return {
        p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


@pytest.mark.parametrize("movie_format", ["mrc", "tiff"])
def test_same_seed_same_bytes_other_seed_other_bytes(
    tmp_path: Path, species: list, movie_format: str
) -> None:
    settings = _settings(output_format=movie_format)
    for name, seed in (("a", 1), ("b", 1), ("c", 2)):
        write_frame_series_dataset(
            tmp_path / name, settings, n_movies=2, seed=seed, species=species
        )
    a, b, c = (_hashes(tmp_path / name) for name in "abc")
    assert a == b
    suffix = ".tif" if movie_format == "tiff" else ".mrc"
    assert {f"movie_000{suffix}", f"movie_001{suffix}", "gain.mrc"} <= set(a)
    for key in (f"movie_000{suffix}", "gain.mrc"):
        assert a[key] != c[key]
    assert a[f"movie_000{suffix}"] != a[f"movie_001{suffix}"]
    # Written through io.files.atomic_output: the permissions of any new file (umask), not
    # the 0600 of a temporary file.
    umask = os.umask(0)
    os.umask(umask)
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in (tmp_path / "a").rglob("*.*")}
    assert "ground_truth.json" in modes
    assert set(modes.values()) == {0o666 & ~umask}


def test_ground_truth_round_trip(tmp_path: Path, species: list) -> None:
    settings = _settings(sample_tilt_range_deg=(10.0, 20.0), local_motion_a=3.0)
    dataset = write_frame_series_dataset(tmp_path, settings, n_movies=2, seed=5, species=species)
    document = json.loads(dataset.ground_truth.read_text())
    assert document["schema_version"] == 1
    truth = load_ground_truth(tmp_path, movie="movie_001.mrc")
    assert truth.movie_index == 1
    assert truth.settings == settings
    memory = simulate_frame_series(species, settings, seed=5, movie_index=1)
    assert truth.ctf == memory.ctf
    assert torch.allclose(truth.particles.positions_a, memory.particles.positions_a, atol=1e-9)
    assert torch.allclose(truth.particles.euler_deg, memory.particles.euler_deg, atol=1e-9)
    assert truth.particles.species == ("protein_a",) * len(truth.particles)
    # The defocus of every particle is that of the CTF plane at its 3-D position.
    mean = (truth.particles.defocus_u_a + truth.particles.defocus_v_a) / 2e4
    assert torch.allclose(truth.defocus_at(truth.particles.positions_a), mean, atol=1e-9)
    positions = truth.particles.positions_a[:, :2]
    assert torch.equal(truth.shifts_at(positions), memory.motion.shifts_at(positions))
    # Files: the movie through the same io code as real data, the clean image, mask, maps.
    with open_movie(truth.movie_path) as movie:
        frames = movie.read_frames(0, movie.n_frames)
        assert movie.pixel_size_a == pytest.approx(settings.pixel_size_a)
    assert np.array_equal(frames, memory.frames.numpy().astype(np.float32))
    assert torch.equal(truth.read_clean_micrograph(), memory.clean_micrograph)
    assert torch.equal(truth.read_artefact_mask(), memory.artefact_mask)
    assert torch.allclose(truth.read_species_map("protein_a"), species[0].potential_v)
    gain = truth.read_gain()
    assert gain.shape == (128, 160)
    assert float(gain.std()) > 0.01
    assert truth.dead_columns.numel() == settings.n_dead_columns
    hot = truth.hot_pixels_xy
    assert torch.all(torch.from_numpy(frames[:, hot[:, 1], hot[:, 0]]) == 100)


def test_mrc_and_tiff_movies_read_the_same(tmp_path: Path, species: list) -> None:
    for fmt in ("mrc", "tiff"):
        settings = _settings(output_format=fmt)
        write_frame_series_dataset(tmp_path / fmt, settings, n_movies=1, seed=8, species=species)
    with (
        open_movie(tmp_path / "mrc" / "movie_000.mrc") as a,
        open_movie(tmp_path / "tiff" / "movie_000.tif") as b,
    ):
        assert np.array_equal(a.read_frames(0, 4), b.read_frames(0, 4))
        assert b.pixel_size_a == pytest.approx(1.5)


def test_loader_errors(tmp_path: Path, species: list) -> None:
    with pytest.raises(MissingFileError):
        load_ground_truth(tmp_path)
    dataset = write_frame_series_dataset(tmp_path, _settings(), n_movies=1, seed=0, species=species)
    with pytest.raises(FileFormatError, match="movie index 3"):
        load_ground_truth(tmp_path, movie=3)
    document = json.loads(dataset.ground_truth.read_text())
    document["schema_version"] = 99
    dataset.ground_truth.write_text(json.dumps(document))
    with pytest.raises(FileFormatError, match="schema_version"):
        load_ground_truth(tmp_path / "ground_truth")


def test_sample_ctf_agrees_with_the_core_tilt_geometry() -> None:
    ctf = SampleCTF(
        pixel_size_a=1.0,
        voltage_kv=300.0,
        cs_mm=2.7,
        amplitude_contrast=0.07,
        defocus_um=1.5,
        astigmatism_um=0.1,
        astigmatism_angle_deg=20.0,
        phase_shift_deg=0.0,
        sample_tilt_deg=25.0,
        sample_tilt_axis_deg=60.0,
        centre_xy_a=(500.0, 400.0),
    )
    # Points of the untilted sample plane, rotated by the core tilt rotation, land on the
    # simulator's mid-plane and get the same defocus from both.
    rotation = tilt_rotation_matrix(25.0, tilt_axis_angle_deg=60.0, dtype=torch.float64)
    sample = torch.tensor([[300.0, -200.0, 0.0], [-120.0, 50.0, 0.0]], dtype=torch.float64)
    tilted = sample @ rotation.T
    image_xy = tilted[:, :2] + torch.tensor([500.0, 400.0], dtype=torch.float64)
    assert torch.allclose(ctf.plane_height_a(image_xy), tilted[:, 2])
    core = defocus_at_positions_um(sample, defocus_um=1.5, rotation=rotation)
    assert torch.allclose(ctf.defocus_at(image_xy), core)
    u, v, angle = ctf.relion_defocus_a(torch.tensor([1.5], dtype=torch.float64))
    params = ctf.ctf_params()
    assert float(u - v) == pytest.approx(2000.0)
    assert float(angle) == 20.0
    assert float(params.defocus_angle_deg) == pytest.approx(20.0, abs=1e-4)
    assert SampleCTF.from_dict(json.loads(json.dumps(ctf.to_dict()))) == ctf
    assert math.isclose(float(ctf.plane_normal().norm()), 1.0)


def test_settings_reject_unknown_keys_and_bad_ranges() -> None:
    with pytest.raises(ValidationError):
        FrameSeriesSettings(pixel_size=1.0)  # type: ignore[call-arg]
    with pytest.raises(ValidationError, match="defocus_range_um"):
        frame_series_preset("tiny", defocus_range_um=(2.0, 1.0))
    with pytest.raises(ValidationError, match="needs a path"):
        SpeciesSpec(name="x", kind="map")
    with pytest.raises(ValueError, match="unknown preset"):
        frame_series_preset("huge")
    k3 = frame_series_preset("k3")
    assert k3.shape_px == (4092, 5760)
    assert k3.n_frames == 40


def test_build_species_is_deterministic() -> None:
    settings = _settings()
    a, b = build_species(settings, seed=4), build_species(settings, seed=4)
    assert torch.equal(a[0].potential_v, b[0].potential_v)
    assert a[0].pixel_size_a == settings.pixel_size_a
    # The tilt-series simulator builds the same species from the same spec and seed.
    tilt = TiltSeriesSettings(pixel_size_a=settings.pixel_size_a, species=settings.species)
    assert torch.equal(build_species(tilt, seed=4)[0].potential_v, a[0].potential_v)
    assert not torch.equal(build_species(settings, seed=5)[0].potential_v, a[0].potential_v)
