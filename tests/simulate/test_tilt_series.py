"""The tilt-series simulator: tilt schemes, geometry (conventions §9), files, physics."""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from pydantic import ValidationError
from typer import Typer
from typer.testing import CliRunner

from cryowarp.core.backprojection import Reconstructor
from cryowarp.core.ctf import CTFParams, ctf_2d
from cryowarp.core.electron import interaction_constant_rad_per_va
from cryowarp.core.fsc import fsc
from cryowarp.core.rotations import euler_to_matrix, random_rotations
from cryowarp.core.tilt_geometry import tilt_rotation_matrix
from cryowarp.io.imod import read_tlt, read_xf
from cryowarp.io.mdoc import read_mdoc
from cryowarp.io.mrc import read_mrc
from cryowarp.simulate.phantom import blob_phantom
from cryowarp.simulate.presets import SpeciesSpec
from cryowarp.simulate.species import Species
from cryowarp.simulate.tilt_presets import (
    TILT_SERIES_PRESETS,
    TiltSeriesSettings,
    tilt_series_preset,
)
from cryowarp.simulate.tilt_schemes import bidirectional_angles_deg, dose_symmetric_angles_deg
from cryowarp.simulate.tilt_series import (
    SpecimenParticles,
    TiltSeriesSimulation,
    place_particles,
    random_tilt_geometry,
    render_tilt_series,
    simulate_tilt_series,
    slab_path_lengths_a,
)
from cryowarp.simulate.tilt_series_files import write_tilt_series_dataset
from cryowarp.simulate.tilt_series_truth import read_tilt_series_truth

PIXEL_A = 4.0


def _settings(**overrides: object) -> TiltSeriesSettings:
    base: dict[str, object] = {
        "shape_px": (64, 64),
        "pixel_size_a": PIXEL_A,
        "step_deg": 30.0,
        "n_particles": 3,
        "thickness_a": 200.0,
        "species": (SpeciesSpec(name="blob"),),
    }
    base.update(overrides)
    return TiltSeriesSettings.model_validate(base)


def _blob(box: int = 16, peak_v: float = 10.0) -> Species:
    return Species("blob", blob_phantom(box, seed=3) * peak_v, PIXEL_A)


def _ball(box: int = 16, sigma_px: float = 2.0, peak_v: float = 10.0) -> Species:
    axis = torch.arange(box, dtype=torch.float32) - box // 2
    z, y, x = torch.meshgrid(axis, axis, axis, indexing="ij")
    return Species("blob", peak_v * torch.exp(-(x**2 + y**2 + z**2) / (2 * sigma_px**2)), PIXEL_A)


# -- tilt schemes ------------------------------------------------------------------------


def test_dose_symmetric_order_is_hagens() -> None:
    """Hagen et al. 2017 (groups of two; the order of EMPIAR-10164 TS_01 from SerialEM):
    0, +s, −s, −2s, +2s, +3s, −3s, −4s, +4s, …"""
    angles = dose_symmetric_angles_deg(min_angle_deg=-60, max_angle_deg=60, step_deg=3)
    assert angles[:12] == [0, 3, -3, -6, 6, 9, -9, -12, 12, 15, -15, -18]
    assert sorted(angles) == [3.0 * k for k in range(-20, 21)]
    # |angle| never decreases by more than one step: low tilts are taken first
    magnitudes = [abs(a) for a in angles]
    assert all(b >= a - 3 for a, b in itertools.pairwise(magnitudes))
    single = dose_symmetric_angles_deg(min_angle_deg=-9, max_angle_deg=9, step_deg=3, group_size=1)
    assert single == [0, 3, -3, 6, -6, 9, -9]
    # an asymmetric range: the longer side finishes in order
    uneven = dose_symmetric_angles_deg(min_angle_deg=-6, max_angle_deg=15, step_deg=3)
    assert uneven == [0, 3, -3, -6, 6, 9, 12, 15]
    negative_first = dose_symmetric_angles_deg(
        min_angle_deg=-9, max_angle_deg=9, step_deg=3, first_direction=-1
    )
    assert negative_first[:4] == [0, -3, 3, 6]


def test_bidirectional_order() -> None:
    angles = bidirectional_angles_deg(
        min_angle_deg=-9, max_angle_deg=9, step_deg=3, start_angle_deg=-3, first_direction=-1
    )
    assert angles == [-3, -6, -9, 0, 3, 6, 9]


def test_cumulative_dose_and_damage_grow_in_acquisition_order() -> None:
    settings = _settings(step_deg=10.0, dose_per_tilt_e_per_a2=2.5, frames_per_tilt=2)
    geometry = random_tilt_geometry(settings, generator=torch.Generator().manual_seed(0))
    prior = geometry.prior_dose_e_per_a2
    assert torch.equal(prior, 2.5 * torch.arange(geometry.n_tilts, dtype=torch.float64))
    b = geometry.frame_bfactors_a2().flatten()  # acquisition order, frame by frame
    assert bool((b.diff() < 0).all())
    # conventions §7: B = −4 × dose at the middle of the frame
    assert float(b[0]) == pytest.approx(-4 * 2.5 / 4)
    # the first tilt acquired is the start angle; the last ones are the high tilts
    assert float(geometry.nominal_angles_deg[0]) == 0.0
    assert abs(float(geometry.nominal_angles_deg[-1])) == 60.0


# -- geometry ----------------------------------------------------------------------------


def test_slab_path_length_grows_as_one_over_cos_and_follows_the_lamella() -> None:
    generator = torch.Generator().manual_seed(0)
    flat = _settings(step_deg=20.0, angle_error_std_deg=0.0)
    geometry = random_tilt_geometry(flat, generator=generator)
    expected = 200.0 / torch.cos(torch.deg2rad(geometry.angles_deg))
    torch.testing.assert_close(slab_path_lengths_a(flat, geometry), expected)
    lamella = _settings(step_deg=20.0, angle_error_std_deg=0.0, pretilt_deg=20.0)
    paths = slab_path_lengths_a(lamella, geometry)
    # the lamella is perpendicular to the beam at tilt = −pretilt
    assert float(geometry.angles_deg[int(paths.argmin())]) == -20.0
    assert float(paths.min()) == pytest.approx(200.0)


def test_particles_do_not_overlap_and_stay_in_the_slab() -> None:
    settings = _settings(shape_px=(128, 128), n_particles=12, thickness_a=120.0, pretilt_deg=15)
    particles = place_particles(settings, [20.0], generator=torch.Generator().manual_seed(1))
    assert len(particles) == 12
    distance = torch.cdist(particles.positions_a, particles.positions_a)
    assert float(distance[~torch.eye(12, dtype=torch.bool)].min()) >= 1.1 * 40.0
    pre = tilt_rotation_matrix(15.0, tilt_axis_angle_deg=175.0, dtype=torch.float64)
    height_in_slab = particles.positions_a @ pre[:, 2]  # component along the slab normal
    assert float(height_in_slab.abs().max()) <= 60.0 - 20.0 + 1e-9
    half = 64 * PIXEL_A
    assert float(particles.positions_a[:, :2].abs().max()) <= half


def _one_particle_series(
    settings: TiltSeriesSettings,
    species: Species,
    position_a: list[float],
    seed: int = 0,
    device: torch.device | None = None,
) -> tuple[SpecimenParticles, TiltSeriesSimulation]:
    generator = torch.Generator().manual_seed(seed)
    geometry = random_tilt_geometry(settings, generator=generator)
    particles = SpecimenParticles(
        positions_a=torch.tensor([position_a], dtype=torch.float64),
        orientations=random_rotations(1, generator=generator, dtype=torch.float64),
        species_index=torch.zeros(1, dtype=torch.int64),
    )
    sim = render_tilt_series(
        settings, [species], geometry, particles, generator=generator, device=device
    )
    return particles, sim


def test_particle_appears_where_the_tilt_rotation_projects_it(device: torch.device) -> None:
    """A particle at r is imaged at (w//2, h//2) + ((R_t r)_xy + s_t)/pixel: located as the
    centroid of the dark blob in the clean (noise-free) tilt images."""
    settings = _settings(
        shape_px=(96, 96),
        step_deg=20.0,
        tilt_axis_angle_deg=130.0,
        shift_error_std_a=25.0,
        angle_error_std_deg=1.0,
        target_defocus_um=0.5,
        defocus_std_um=0.0,
        astigmatism_um=0.0,
        astigmatism_std_um=0.0,
        ice_texture=False,
    )
    r = [48.0, -36.0, 40.0]
    particles, sim = _one_particle_series(settings, _ball(), r, device=device)
    geometry = sim.geometry
    clean = sim.clean_counts
    rotations = tilt_rotation_matrix(
        geometry.angles_deg, tilt_axis_angle_deg=130.0, dtype=torch.float64
    )
    expected = (
        torch.tensor([48.0, 48.0], dtype=torch.float64)
        + ((rotations @ torch.tensor(r, dtype=torch.float64))[:, :2] + geometry.shifts_a) / PIXEL_A
    )
    torch.testing.assert_close(
        particles.image_positions_px(geometry, shape_px=(96, 96), pixel_size_a=PIXEL_A)[0],
        expected,
    )
    errors = []
    for t in range(geometry.n_tilts):
        background = float(torch.median(clean[t]))
        deficit = (background - clean[t]).double()
        y0, x0 = divmod(int(deficit.argmax()), 96)
        window = deficit[y0 - 3 : y0 + 4, x0 - 3 : x0 + 4].clamp(min=0)
        ys, xs = torch.meshgrid(
            torch.arange(y0 - 3, y0 + 4, dtype=torch.float64),
            torch.arange(x0 - 3, x0 + 4, dtype=torch.float64),
            indexing="ij",
        )
        found = torch.stack([(window * xs).sum(), (window * ys).sum()]) / window.sum()
        errors.append(float((found - expected[t]).norm()))
    assert max(errors) < 0.25, errors  # measured: 0.015 px at most


def test_particle_defocus_follows_height_and_tilt(tmp_path: Path) -> None:
    """Conventions §9 through the written ground truth: z > 0 is less underfocused; at a
    positive tilt about +y the +x side is more underfocused."""
    settings = _settings(
        tilt_axis_angle_deg=90.0, angle_error_std_deg=0.0, n_particles=0, ice_texture=False
    )
    species = _blob()
    generator = torch.Generator().manual_seed(0)
    geometry = random_tilt_geometry(settings, generator=generator)
    particles = SpecimenParticles(
        positions_a=torch.tensor([[0.0, 0.0, 50.0], [80.0, 0.0, 0.0]], dtype=torch.float64),
        orientations=torch.eye(3, dtype=torch.float64).expand(2, 3, 3),
        species_index=torch.zeros(2, dtype=torch.int64),
    )
    sim = render_tilt_series(settings, [species], geometry, particles, generator=generator)
    write_tilt_series_dataset(tmp_path, sim, seed=0, species=[species])
    truth = read_tilt_series_truth(tmp_path)
    angles = truth.geometry.angles_deg[truth.stack_to_acquisition]
    tilt_defocus = truth.geometry.defocus_um[truth.stack_to_acquisition]
    high, plus_x = truth.particle_defocus_um
    zero = int(torch.nonzero(angles == 0)[0])
    assert float(high[zero]) == pytest.approx(float(tilt_defocus[zero]) - 50e-4)
    delta = plus_x - tilt_defocus
    assert bool((delta[angles > 0] > 0).all())
    assert bool((delta[angles < 0] < 0).all())
    expected = 80e-4 * torch.sin(torch.deg2rad(angles))
    torch.testing.assert_close(delta, expected)


# -- files -------------------------------------------------------------------------------


@pytest.mark.parametrize("stack_order", ["acquisition", "angle"])
def test_written_files_read_back_equal_to_the_ground_truth(
    tmp_path: Path, stack_order: str
) -> None:
    settings = _settings(stack_order=stack_order, frames_per_tilt=2)
    species = [_blob()]
    sim = simulate_tilt_series(settings, species, seed=5)
    files = write_tilt_series_dataset(tmp_path, sim, seed=5, species=species)
    truth = read_tilt_series_truth(tmp_path)
    g = truth.geometry
    order = truth.stack_to_acquisition
    if stack_order == "angle":
        assert bool((g.nominal_angles_deg[order].diff() > 0).all())
    else:
        assert torch.equal(order, torch.arange(g.n_tilts))

    np.testing.assert_allclose(read_tlt(files.tlt), g.angles_deg[order].numpy(), atol=5e-5)
    np.testing.assert_allclose(read_tlt(files.rawtlt), g.nominal_angles_deg[order].numpy())

    # conventions §9: AxisAngle = −atan2(A21, A11); axis offset (Å) = −A⁻¹·(DX, DY)·pixel
    xf = read_xf(files.xf)
    np.testing.assert_allclose(-xf.rotation_deg, settings.tilt_axis_angle_deg - 90.0, atol=1e-5)
    offsets_a = -np.einsum("nij,nj->ni", np.linalg.inv(xf.matrices), xf.shifts_px) * PIXEL_A
    np.testing.assert_allclose(offsets_a, g.shifts_a[order].numpy(), atol=2e-3 * PIXEL_A)

    mdoc = read_mdoc(files.mdoc)
    assert mdoc.tilt_axis_angle_deg == pytest.approx(settings.tilt_axis_angle_deg - 90.0)
    assert mdoc.pixel_size_a == PIXEL_A
    assert mdoc.voltage_kv == 300.0
    assert mdoc.image_file == "TS_01.mrc"
    assert mdoc.image_size_px == (64, 64)
    np.testing.assert_allclose(mdoc.tilt_angles_deg, g.nominal_angles_deg[order].numpy())
    np.testing.assert_allclose(mdoc.exposure_doses_e_per_a2, g.dose_e_per_a2[order].numpy())
    np.testing.assert_allclose(
        mdoc.column("prior_record_dose_e_per_a2"), g.prior_dose_e_per_a2[order].numpy()
    )
    # SerialEM's Defocus is negative for underfocus (conventions §9)
    np.testing.assert_allclose(
        mdoc.column("microscope_defocus_um"), -g.defocus_um[order].numpy(), atol=1e-5
    )
    assert set(mdoc.column("target_defocus_um")) == {-settings.target_defocus_um}
    # RELION's U/V/angle in the truth give back the astigmatism 2-vector (conventions §6)
    for tilt in truth.document["tilts"]:
        u, v = tilt["defocus_u_a"] * 1e-4, tilt["defocus_v_a"] * 1e-4
        relion = CTFParams.from_relion(
            defocus_u_a=tilt["defocus_u_a"],
            defocus_v_a=tilt["defocus_v_a"],
            defocus_angle_deg=tilt["defocus_angle_deg"],
            pixel_size_a=PIXEL_A,
            dtype=torch.float64,
        )
        assert (u + v) / 2 == pytest.approx(tilt["defocus_um"])
        assert float(relion.astig_x_um) == pytest.approx(tilt["astig_x_um"], abs=1e-9)
        assert float(relion.astig_y_um) == pytest.approx(tilt["astig_y_um"], abs=1e-9)
    # acquisition order from the time stamps, as Warp and RELION reconstruct it
    times = [s.date_time for s in mdoc.z_values]
    by_time = sorted(range(len(times)), key=lambda i: str(times[i]))
    assert [int(order[i]) for i in by_time] == list(range(g.n_tilts))
    # the movies named in the mdoc sum to the stack images
    stack, header = read_mrc(files.stack)
    assert header.voxel_size_a[0] == pytest.approx(PIXEL_A)
    for z, section in enumerate(mdoc.z_values):
        assert section.num_sub_frames == 2
        frames, _ = read_mrc(tmp_path / "frames" / str(section.frame_file_name))
        np.testing.assert_array_equal(frames.astype(np.float32).sum(0), stack[z])
    # shot noise about the clean images: mean counts = dose × pixel area × transmission
    clean, _ = read_mrc(tmp_path / "ground_truth" / "TS_01_clean.mrc")
    paths = sim.ice_path_lengths_a[order].numpy()
    transmitted = settings.dose_per_tilt_e_per_a2 * PIXEL_A**2 * np.exp(-paths / 3800.0)
    np.testing.assert_allclose(clean.mean(axis=(1, 2)), transmitted, rtol=0.01)
    n_px = 64 * 64
    z_scores = (stack.mean(axis=(1, 2)) - clean.mean(axis=(1, 2))) / np.sqrt(
        clean.mean(axis=(1, 2)) / n_px
    )
    assert np.abs(z_scores).max() < 4.5


def test_same_seed_gives_the_same_bytes(tmp_path: Path) -> None:
    settings = _settings(frames_per_tilt=2)
    species = [_blob()]
    for name, seed in (("a", 7), ("b", 7), ("c", 8)):
        sim = simulate_tilt_series(settings, species, seed=seed)
        write_tilt_series_dataset(tmp_path / name, sim, seed=seed, species=species)
    files_a = sorted(
        p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*") if p.is_file()
    )
    files_b = sorted(
        p.relative_to(tmp_path / "b") for p in (tmp_path / "b").rglob("*") if p.is_file()
    )
    assert files_a == files_b
    assert len(files_a) >= 12
    for rel in files_a:
        assert (tmp_path / "a" / rel).read_bytes() == (tmp_path / "b" / rel).read_bytes(), rel
    assert (tmp_path / "a" / "TS_01.mrc").read_bytes() != (
        tmp_path / "c" / "TS_01.mrc"
    ).read_bytes()


# -- physics -----------------------------------------------------------------------------


def test_clean_tilts_back_project_to_the_species_map() -> None:
    """One centred particle, tilts ±60° every 5°: CTF-weighted back-projection of the clean
    tilt images at the poses R_t·A reproduces the species map at low resolution."""
    settings = _settings(
        shape_px=(64, 64),
        step_deg=5.0,
        tilt_axis_angle_deg=175.0,
        shift_error_std_a=0.0,
        target_defocus_um=1.0,
        defocus_std_um=0.1,
        astigmatism_um=0.02,
        ice_texture=False,
        dose_per_tilt_e_per_a2=1.0,
    )
    species = _blob(box=24)
    particles, sim = _one_particle_series(settings, species, [0.0, 0.0, 0.0], seed=2)
    geometry = sim.geometry
    paths = sim.ice_path_lengths_a
    background = settings.dose_per_tilt_e_per_a2 * PIXEL_A**2 * torch.exp(-paths / 3800.0)
    contrast = (1 - sim.clean_counts / background[:, None, None].float()) / 2
    boxes = contrast[:, 8:56, 8:56]  # 48-pixel boxes about pixel (32, 32), the particle
    poses = (geometry.rotations() @ particles.orientations[0]).float()
    reconstructor = Reconstructor((48, 48, 48))
    params = CTFParams.create(
        pixel_size_a=PIXEL_A,
        defocus_um=geometry.defocus_um.float(),
        astig_x_um=geometry.astig_x_um.float(),
        astig_y_um=geometry.astig_y_um.float(),
        bfactor_a2=geometry.frame_bfactors_a2()[:, 0].float(),
    )
    reconstructor.insert_images(boxes, poses, ctf=ctf_2d(params, reconstructor.padded_image_shape))
    volume = reconstructor.reconstruct(snr=100.0)[12:36, 12:36, 12:36]
    sigma = interaction_constant_rad_per_va(300.0)
    truth = species.potential_v * sigma * PIXEL_A
    curve = fsc(volume, truth)
    # shells 1–6 (≥ 16 Å): measured ≥ 0.83 despite the ±60° missing wedge (0.45 at 12 Å)
    assert float(curve[1:7].min()) > 0.7, curve
    scale = float((volume * truth).sum() / truth.square().sum())
    assert 0.5 < scale < 1.5  # the right magnitude: images carry σ·V·pixel


# -- settings and CLI --------------------------------------------------------------------


def test_settings_reject_unknown_keys_and_bad_ranges() -> None:
    with pytest.raises(ValidationError):
        TiltSeriesSettings.model_validate({"tilt_step": 3})
    with pytest.raises(ValidationError):
        TiltSeriesSettings(min_angle_deg=30, max_angle_deg=-30)
    assert set(TILT_SERIES_PRESETS) == {"tiny", "small"}
    small = tilt_series_preset("small", step_deg=2.0)
    assert small.step_deg == 2.0
    assert small.shape_px == (1024, 1024)
    assert TiltSeriesSettings(tilt_axis_angle_deg=175.3).mdoc_tilt_axis_angle_deg == pytest.approx(
        85.3
    )


def test_cli_writes_a_tilt_series(tmp_path: Path) -> None:
    from cryowarp.cli.simulate_tilt import register

    app = Typer()
    register(app)

    @app.command("noop")
    def _noop() -> None:  # a second command keeps typer's sub-command routing
        """No-op."""

    result = CliRunner().invoke(
        app,
        [
            "tilt-series", str(tmp_path), "--preset", "tiny", "--seed", "4", "--size", "48", "48",
            "--step", "30", "--scheme", "bidirectional", "--axis-angle", "95", "--particles", "1",
            "--pixel-size", "8",
        ],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    truth = read_tilt_series_truth(tmp_path)
    assert truth.settings.scheme == "bidirectional"
    assert truth.settings.shape_px == (48, 48)
    assert [float(a) for a in truth.geometry.nominal_angles_deg] == [0, 30, 60, -30, -60]
    assert read_mdoc(tmp_path / "TS_01.mrc.mdoc").tilt_axis_angle_deg == pytest.approx(5.0)


def test_euler_angles_in_the_truth_give_the_orientation(tmp_path: Path) -> None:
    settings = _settings(n_particles=3)
    species = [_blob()]
    sim = simulate_tilt_series(settings, species, seed=9)
    write_tilt_series_dataset(tmp_path, sim, seed=9, species=species)
    truth = read_tilt_series_truth(tmp_path)
    torch.testing.assert_close(truth.particles.orientations, sim.particles.orientations)
    torch.testing.assert_close(truth.particles.positions_a, sim.particles.positions_a)
    euler = torch.tensor([p["euler_deg"] for p in truth.document["particles"]])
    torch.testing.assert_close(
        euler_to_matrix(euler.double()), sim.particles.orientations, atol=1e-6, rtol=0
    )
    assert math.isclose(truth.document["tilt_axis_angle_deg"], 175.0)
