"""Physics of the frame-series simulator: dose, Thon rings, motion, tilt, contrast, poses."""

from __future__ import annotations

import math
from dataclasses import dataclass

import pytest
import torch

from cryowarp.core.backprojection import Reconstructor
from cryowarp.core.ctf import CTFParams, ctf_2d, ctf_zero_frequencies_a
from cryowarp.core.electron import interaction_constant_rad_per_va
from cryowarp.core.fourier_grids import frequency_grid
from cryowarp.core.fsc import frc, fsc
from cryowarp.core.resize import crop_or_pad
from cryowarp.core.rotations import euler_to_matrix
from cryowarp.core.shift import shift_image
from cryowarp.simulate.frame_series import (
    SimulatedFrameSeries,
    detector_for,
    simulate_frame_series,
)
from cryowarp.simulate.ice import ice_mean_inner_potential_v
from cryowarp.simulate.phantom import blob_phantom
from cryowarp.simulate.presets import FrameSeriesSettings, frame_series_preset


@dataclass(frozen=True)
class _Blob:
    """A species-like phantom (Gaussian blobs, ``peak_v`` volts at the maximum)."""

    name: str
    potential_v: torch.Tensor
    pixel_size_a: float

    def radius_a(self, threshold_fraction: float = 0.05) -> float:
        return (self.potential_v.shape[-1] / 4 + 3) * self.pixel_size_a

    def at_pixel_size(self, pixel_size_a: float, box_size_px: int | None = None) -> _Blob:
        raise AssertionError("the tests build species at the right pixel size")


def _blob(box: int, pixel_size_a: float, peak_v: float = 10.0, seed: int = 0) -> _Blob:
    return _Blob("blob", blob_phantom(box, seed=seed) * peak_v, pixel_size_a)


_QUIET = {
    "drift_a": 0.0,
    "jitter_a": 0.0,
    "local_motion_a": 0.0,
    "ice_thickness_variation_a": 0.0,
    "detector_mtf": None,
    "n_hot_pixels": 0,
    "n_dead_columns": 0,
}


def _settings(**overrides: object) -> FrameSeriesSettings:
    return frame_series_preset("tiny", **overrides)


def _corrected_sum(result: SimulatedFrameSeries, settings: FrameSeriesSettings, seed: int):
    gain = detector_for(settings, seed=seed).gain
    return result.frames.to(torch.float32) * gain


def test_mean_counts_equal_the_dose_within_poisson_error() -> None:
    settings = _settings(n_particles=0, ice_thickness_a=0.0, n_frames=6, **_QUIET)
    result = simulate_frame_series([_blob(32, 1.5)], settings, seed=4)
    defects = detector_for(settings, seed=4)
    corrected = result.frames.to(torch.float64) * defects.gain
    good = defects.good_pixels()
    expected = settings.dose_per_frame_e_per_a2 * settings.pixel_size_a**2
    values = corrected[:, good]
    # Var(raw × gain) = gain × expected: the standard error of the mean over all samples.
    error = math.sqrt(float((defects.gain[good].double() * expected).mean()) / values[0].numel())
    per_frame = values.mean(dim=1)
    assert torch.all((per_frame - expected).abs() < 4 * error), (per_frame, expected, error)
    total_error = error / math.sqrt(settings.n_frames)
    assert abs(float(values.mean()) - expected) < 4 * total_error


def test_mean_counts_follow_the_clean_image_with_ice_and_particles() -> None:
    settings = _settings(n_frames=4, dose_per_frame_e_per_a2=3.0, ice_thickness_a=500.0)
    result = simulate_frame_series([_blob(32, 1.5)], settings, seed=5)
    defects = detector_for(settings, seed=5)
    good = defects.good_pixels()
    corrected = (result.frames.to(torch.float64) * defects.gain)[:, good]
    expected = settings.dose_per_frame_e_per_a2 * settings.pixel_size_a**2
    mean_intensity = float(result.clean_micrograph[good].double().mean())
    # Ice of 500 Å darkens the image by 2·A·σ·V_ice·500 Å ≈ 20 % (weak-phase amplitude term),
    # V_ice = n·U_w = 4.48 V: the mean inner potential of independent water molecules.
    sigma = interaction_constant_rad_per_va(300.0)
    potential_v = ice_mean_inner_potential_v(settings.ice_density_g_per_cm3)
    assert potential_v == pytest.approx(4.48, abs=0.01)
    assert mean_intensity == pytest.approx(1 - 2 * 0.07 * sigma * potential_v * 500.0, abs=0.01)
    error = math.sqrt(expected * mean_intensity * 1.01 / corrected.numel())
    assert abs(float(corrected.mean()) - expected * mean_intensity) < 4 * error + 2e-3 * expected


def _sector_profiles(image: torch.Tensor, pixel_size_a: float, angles_deg: list[float]):
    """Welch power spectrum (512-pixel tiles) averaged in ±20° sectors about each angle."""
    tile = 512
    tiles = image.unfold(0, tile, 256).unfold(1, tile, 256).reshape(-1, tile, tile)
    tiles = tiles - tiles.mean(dim=(-1, -2), keepdim=True)
    power = torch.fft.rfft2(tiles.double()).abs().square().mean(0)
    k = frequency_grid((tile, tile), dtype=torch.float64)
    radius = torch.round(k.norm(dim=-1) * tile).long().clamp(max=tile // 2)
    angle = torch.rad2deg(torch.atan2(k[..., 1], k[..., 0]))
    profiles = []
    for a in angles_deg:
        inside = (((angle - a + 90) % 180) - 90).abs() < 20
        total = torch.zeros(tile // 2 + 1, dtype=torch.float64).index_add_(
            0, radius[inside], power[inside]
        )
        count = torch.zeros_like(total).index_add_(
            0, radius[inside], torch.ones_like(power[inside])
        )
        profiles.append(total / count.clamp(min=1))
    return profiles, tile * pixel_size_a  # profile bin i is frequency i / (tile · pixel size)


def _realistic(**overrides: object) -> FrameSeriesSettings:
    """1.5 Å/px, 500 Å of ice, 40 e⁻/Å² in two frames, K3 MTF, no motion or bad pixels."""
    values: dict[str, object] = {
        **_QUIET,
        "detector_mtf": "k3_300kV",
        "pixel_size_a": 1.5,
        "n_frames": 2,
        "dose_per_frame_e_per_a2": 20.0,
        "n_particles": 10,
        "ice_thickness_a": 500.0,
    }
    return _settings(**{**values, **overrides})


@pytest.mark.parametrize(
    ("defocus_um", "astigmatism_um", "angle_deg"), [(1.2, 0.0, 0.0), (2.2, 0.15, 30.0)]
)
def test_thon_ring_minima_are_at_the_ctf_zeros(
    defocus_um: float, astigmatism_um: float, angle_deg: float
) -> None:
    """Poisson-noised raw frames (40 e⁻/Å²), gain-corrected and summed: the ice texture
    carries Thon rings whose minima sit at the ground-truth CTF zeros along U and V."""
    px = 1.5
    settings = _realistic(
        shape_px=(768, 768),
        defocus_range_um=(defocus_um, defocus_um),
        astigmatism_range_um=(astigmatism_um, astigmatism_um),
        astigmatism_angle_deg=angle_deg,
    )
    result = simulate_frame_series([_blob(32, px)], settings, seed=1)
    image = _corrected_sum(result, settings, seed=1).sum(0)
    (u_profile, v_profile), length_a = _sector_profiles(image, px, [angle_deg, angle_deg + 90])
    truth = result.ctf
    for profile, sign in ((u_profile, 1.0), (v_profile, -1.0)):
        along = CTFParams.create(
            pixel_size_a=px, defocus_um=truth.defocus_um + sign * truth.astigmatism_um
        )
        zeros = ctf_zero_frequencies_a(along, 5)  # up to 1/5.5 Å (1.2 µm), 1/4.4 Å (2.2 µm)
        for zero in zeros.tolist():
            i = round(zero * length_a)
            window = profile[i - 3 : i + 4]
            found = i - 3 + int(torch.argmin(window))
            assert abs(found - zero * length_a) <= 1.0, (zero, found, window)
            assert float(window.min()) < 0.5 * float(window.max())
    if astigmatism_um > 0:  # U and V zeros are resolved: each profile prefers its own zeros
        zeros_u = ctf_zero_frequencies_a(
            CTFParams.create(pixel_size_a=px, defocus_um=defocus_um + astigmatism_um), 4
        )
        zeros_v = ctf_zero_frequencies_a(
            CTFParams.create(pixel_size_a=px, defocus_um=defocus_um - astigmatism_um), 4
        )

        def at(profile: torch.Tensor, zeros: torch.Tensor) -> float:
            return float(profile[torch.round(zeros * length_a).long()].sum())

        assert at(u_profile, zeros_u) < 0.7 * at(u_profile, zeros_v)
        assert at(v_profile, zeros_v) < 0.7 * at(v_profile, zeros_u)


def test_without_ice_texture_the_rings_drown_in_shot_noise() -> None:
    """The texture is what makes the rings: with a constant ice potential the same movie
    has no minimum at the CTF zeros."""
    px = 1.5
    settings = _realistic(
        shape_px=(512, 512), defocus_range_um=(1.2, 1.2), astigmatism_range_um=(0.0, 0.0)
    )
    contrast = {}
    for texture in (True, False):
        changed = settings.model_copy(update={"ice_texture": texture})
        result = simulate_frame_series([_blob(32, px)], changed, seed=1)
        (profile,), length_a = _sector_profiles(
            _corrected_sum(result, changed, seed=1).sum(0), px, [0.0]
        )
        zeros = ctf_zero_frequencies_a(CTFParams.create(pixel_size_a=px, defocus_um=1.2), 4)
        at_zeros = profile[torch.round(zeros * length_a).long()]
        peaks = ctf_zero_frequencies_a(CTFParams.create(pixel_size_a=px, defocus_um=1.2), 5)
        between = profile[torch.round((peaks[:-1] + peaks[1:]) / 2 * length_a).long()]
        contrast[texture] = float(between.mean() / at_zeros.mean())
    assert contrast[True] > 3.0, contrast
    assert contrast[False] < 1.3, contrast


def test_aligning_frames_with_the_true_shifts_sharpens_the_sum() -> None:
    px = 1.5
    settings = _settings(
        shape_px=(320, 320),
        n_frames=8,
        dose_per_frame_e_per_a2=4.0,
        n_particles=20,
        drift_a=30.0,
        jitter_a=1.0,
        local_motion_a=1.0,
        detector_mtf=None,
    )
    result = simulate_frame_series([_blob(40, px)], settings, seed=2)
    frames = _corrected_sum(result, settings, seed=2)
    # Align to frame 0 with the true shift at the field centre (global + local there).
    centre = torch.tensor([[160 * px, 160 * px]], dtype=torch.float64)
    shifts_px = result.motion.shifts_at(centre)[0].to(torch.float32) / px  # (n_frames, 2)
    aligned = shift_image(frames, -shifts_px).sum(0)
    plain = frames.sum(0)
    band = slice(320 // 40, 320 // 4)  # 60 Å … 6 Å
    frc_aligned = frc(aligned, result.clean_micrograph)[band].mean()
    frc_plain = frc(plain, result.clean_micrograph)[band].mean()
    assert float(frc_aligned) > 3 * float(frc_plain)
    assert float(frc_aligned) > 0.05


def test_tilted_sample_defocus_gradient_in_the_ground_truth() -> None:
    settings = _settings(sample_tilt_range_deg=(30.0, 30.0), sample_tilt_axis_deg=90.0)
    result = simulate_frame_series([_blob(32, 1.5)], settings, seed=3, render_frames=False)
    ctf = result.ctf
    left = torch.tensor([[0.0, 192.0]], dtype=torch.float64)
    right = torch.tensor([[383.0, 192.0]], dtype=torch.float64)
    gradient = float(ctf.defocus_at(right) - ctf.defocus_at(left)) / 383.0
    # Positive tilt about +y: the +x side is more underfocused by tan(tilt) per Å (§9).
    assert gradient == pytest.approx(math.tan(math.radians(30.0)) * 1e-4, rel=1e-9)
    # Particles sit inside the ice slab around the tilted mid-plane.
    mid = ctf.plane_height_a(result.particles.positions_a[:, :2])
    slab = settings.ice_thickness_a / 2 / math.cos(math.radians(30.0))
    assert torch.all((result.particles.positions_a[:, 2] - mid).abs() <= slab)
    u, v = result.particles.defocus_u_a, result.particles.defocus_v_a
    assert torch.allclose((u + v) / 2e4, ctf.defocus_at(result.particles.positions_a))


def _fit_defocus(profile: torch.Tensor, length_a: float, px: float, guess_um: float) -> float:
    """Defocus whose first 4 zeros sit at the lowest values of a radial power profile."""
    best, best_score = guess_um, math.inf
    grid = torch.arange(guess_um - 0.3, guess_um + 0.3, 0.002, dtype=torch.float64)
    frequency = torch.arange(profile.shape[0], dtype=torch.float64) / length_a
    log_profile = profile.clamp(min=1e-30).log()
    for d in grid.tolist():
        zeros = ctf_zero_frequencies_a(CTFParams.create(pixel_size_a=px, defocus_um=d), 4)
        values = torch.from_numpy(
            __import__("numpy").interp(zeros.numpy(), frequency.numpy(), log_profile.numpy())
        )
        score = float(values.sum())
        if score < best_score:
            best, best_score = d, score
    return best


def test_tilted_sample_shows_the_defocus_gradient_in_local_spectra() -> None:
    """Noisy frames (40 e⁻/Å²) of ice tilted by 40°: the left and right halves' spectra give
    defoci 0.097 µm apart, as the ground truth says."""
    px = 1.5
    settings = _realistic(
        shape_px=(768, 1536),
        defocus_range_um=(1.6, 1.6),
        astigmatism_range_um=(0.0, 0.0),
        sample_tilt_range_deg=(40.0, 40.0),
        sample_tilt_axis_deg=90.0,
    )
    result = simulate_frame_series([_blob(32, px)], settings, seed=6)
    image = _corrected_sum(result, settings, seed=6).sum(0)
    fits, truths = [], []
    for x0 in (0, 768):
        # rotational average (no astigmatism) of the half's Welch spectrum
        (profile_x, profile_y), length_a = _sector_profiles(
            image[:, x0 : x0 + 768], px, [0.0, 90.0]
        )
        fits.append(_fit_defocus(profile_x + profile_y, length_a, px, 1.6))
        centre = torch.tensor([[(x0 + 384) * px, 384 * px]], dtype=torch.float64)
        truths.append(float(result.ctf.defocus_at(centre)))
    expected = truths[1] - truths[0]  # 768 px · 1.5 Å · tan 40° = 0.0967 µm
    assert expected == pytest.approx(1152 * math.tan(math.radians(40)) * 1e-4, rel=1e-6)
    # measured: 1.550 / 1.656 µm for 1.552 / 1.648 µm, a gradient of 0.106 µm for 0.097 µm
    assert fits[0] == pytest.approx(truths[0], abs=0.02)
    assert fits[1] == pytest.approx(truths[1], abs=0.02)
    assert fits[1] - fits[0] == pytest.approx(expected, abs=0.03)


def test_particles_are_dark_on_the_raw_micrograph() -> None:
    px = 1.5
    settings = _settings(
        n_frames=8, dose_per_frame_e_per_a2=5.0, n_particles=20, ice_thickness_variation_a=0.0
    )
    result = simulate_frame_series([_blob(40, px)], settings, seed=7)
    image = _corrected_sum(result, settings, seed=7).sum(0)

    def low_pass(x: torch.Tensor) -> torch.Tensor:  # Gaussian, σ = 15 Å
        k = frequency_grid((int(x.shape[0]), int(x.shape[1])))
        sigma_px = 15.0 / px
        weight = torch.exp(-2 * (math.pi * sigma_px) ** 2 * k.square().sum(-1))
        return torch.fft.irfft2(torch.fft.rfft2(x) * weight, s=x.shape)

    # The same movie without particles has the same ice (its own random stream): the
    # difference is the particles' contrast alone, free of the ice texture.
    empty = simulate_frame_series(
        [_blob(40, px)],
        settings.model_copy(update={"n_particles": 0}),
        seed=7,
        render_frames=False,
    )
    smooth = low_pass(image)
    clean = low_pass(result.clean_micrograph - empty.clean_micrograph)
    xy = result.particles.positions_px(px)
    index = torch.round(xy).long()
    grid = torch.stack(
        torch.meshgrid(torch.arange(256.0), torch.arange(256.0), indexing="xy"), -1
    ).double()
    far = (torch.cdist(grid.reshape(-1, 2), xy).min(dim=1).values > 40).reshape(256, 256)
    # Noise-free: every particle is darker than the background.
    assert torch.all(clean[index[:, 1], index[:, 0]] < clean[far].min())
    assert float(clean[far].abs().max()) < 1e-3
    # Raw counts: darker on average, by more than 4 standard errors.
    at_particles = smooth[index[:, 1], index[:, 0]]
    error = float(smooth[far].std()) / math.sqrt(len(xy))
    assert float(at_particles.mean()) < float(smooth[far].mean()) - 4 * error


def test_back_projecting_clean_particles_with_the_true_poses_and_ctf_gives_the_map() -> None:
    """Positions, Euler angles, defocus and CTF sign, end to end (docs/simulator.md)."""
    px, box, extract = 3.0, 32, 64
    blob = _blob(box, px)
    settings = _settings(
        pixel_size_a=px,
        shape_px=(512, 512),
        n_frames=1,
        n_particles=30,
        particle_spacing=2.0,
        ice_thickness_a=0.0,
        defocus_range_um=(0.8, 1.6),
        astigmatism_range_um=(0.0, 0.05),
        sample_tilt_range_deg=(0.0, 20.0),
        **_QUIET,
    )
    reconstructor = Reconstructor((extract, extract, extract))
    n_images = 0
    for movie in range(10):
        result = simulate_frame_series(
            [blob], settings, seed=11, movie_index=movie, render_frames=False
        )
        inverted = (1.0 - result.clean_micrograph) / 2  # = CTF ⊗ σ·Vp: protein white (RELION)
        table = result.particles
        position = table.positions_px(px)
        centre = torch.round(position)
        keep = (
            (centre >= extract // 2).all(-1)
            & (centre[:, 0] < 512 - extract // 2)
            & (centre[:, 1] < 512 - extract // 2)
        )
        boxes = torch.stack(
            [
                inverted[
                    int(y) - extract // 2 : int(y) - extract // 2 + extract,
                    int(x) - extract // 2 : int(x) - extract // 2 + extract,
                ]
                for x, y in centre[keep].tolist()
            ]
        )
        boxes = shift_image(boxes, -(position - centre)[keep].to(torch.float32))
        ctf = CTFParams.from_relion(
            defocus_u_a=table.defocus_u_a[keep],
            defocus_v_a=table.defocus_v_a[keep],
            defocus_angle_deg=table.defocus_angle_deg[keep],
            pixel_size_a=px,
            amplitude_contrast=0.07,
            dtype=torch.float32,
        )
        rotations = euler_to_matrix(table.euler_deg[keep]).to(torch.float32)
        reconstructor.insert_images(
            boxes, rotations, ctf=ctf_2d(ctf, reconstructor.padded_image_shape)
        )
        n_images += int(keep.sum())
    volume = crop_or_pad(reconstructor.reconstruct(snr=100.0), (box, box, box))
    curve = fsc(volume, blob.potential_v)
    # FSC > 0.95 to 8.7 Å (shell 11 of 32 at 3 Å/px; measured 0.988 there, 0.935 at 8 Å).
    # A wrong CTF sign, Euler convention or position would give FSC ≤ 0 at low resolution.
    assert n_images > 150
    assert torch.all(curve[1:12] > 0.95), curve
