"""Motion-corrected, exposure-weighted averages (preprocess/motion/average.py).

Frames are rendered exactly from a periodic, band-limited reference moved by a known
``FrameMotion`` (frame_t(x + s(x, t)) = ref(x), solved by fixed-point iteration), so the
averages can be compared with the reference in the geometry of frame 0.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from scipy.interpolate import RectBivariateSpline

from cryowarp.core.dose import dose_weights
from cryowarp.core.fourier_grids import frequency_magnitude
from cryowarp.core.fsc import frc
from cryowarp.core.resize import rescale
from cryowarp.core.shift import shift_image
from cryowarp.errors import DimensionMismatchError, InvalidValuesError
from cryowarp.preprocess.motion.average import average_frames
from cryowarp.preprocess.motion.model import FrameMotion

H, W = 96, 128  # non-square: catches x/y swaps
PIXEL_A = 1.3
N_FRAMES = 6
MARGIN = 14  # px left out at the edges (the drift wraps content that the spline does not)


# -- test data ----------------------------------------------------------------------------


def _modes(generator: torch.Generator, n_modes: int, max_cycles_per_px: float) -> torch.Tensor:
    """(n_modes, 4): integer cycles over the field (mx, my), amplitude and phase."""
    mx = torch.randint(
        -int(max_cycles_per_px * W), int(max_cycles_per_px * W) + 1, (n_modes,), generator=generator
    )
    my = torch.randint(
        -int(max_cycles_per_px * H), int(max_cycles_per_px * H) + 1, (n_modes,), generator=generator
    )
    f = torch.sqrt((mx / W) ** 2 + (my / H) ** 2)
    amplitude = torch.exp(-f / 0.08) * (0.5 + torch.rand(n_modes, generator=generator))
    phase = 2 * math.pi * torch.rand(n_modes, generator=generator)
    return torch.stack([mx.double(), my.double(), amplitude.double(), phase.double()], dim=-1)


def _reference_at(modes: torch.Tensor, xy_px: torch.Tensor) -> torch.Tensor:
    """The periodic reference ``Σ a cos(2π(mx x/W + my y/H) + φ)`` at ``(..., 2)`` positions."""
    frequencies = (modes[:, :2] / torch.tensor([W, H], dtype=modes.dtype)).T.float()  # (2, m)
    arg = 2 * math.pi * (xy_px.float() @ frequencies) + modes[:, 3].float()
    return torch.cos(arg) @ modes[:, 2].float()


def _pixel_grid() -> torch.Tensor:  # (H, W, 2) pixel positions (x, y)
    yy, xx = torch.meshgrid(
        torch.arange(H, dtype=torch.float64), torch.arange(W, dtype=torch.float64), indexing="ij"
    )
    return torch.stack([xx, yy], dim=-1)


def _motion(
    generator: torch.Generator, *, drift_a: float = 6.0, local_a: float = 1.5
) -> FrameMotion:
    """Global drift + jitter (one node per frame) and a 3×3×3 local field, zero at frame 0."""
    t = torch.arange(N_FRAMES, dtype=torch.float32) / (N_FRAMES - 1)
    direction = torch.tensor([0.8, -0.6])
    global_nodes = direction[:, None] * drift_a * torch.sqrt(t)[None]
    global_nodes = global_nodes + 0.3 * torch.randn(2, N_FRAMES, generator=generator)
    global_nodes = global_nodes - global_nodes[:, :1]
    local = local_a * torch.randn(2, 3, 3, 3, generator=generator)
    local[:, 0] = 0.0
    return FrameMotion(global_nodes, local, (W * PIXEL_A, H * PIXEL_A), N_FRAMES)


def _render(modes: torch.Tensor, motion: FrameMotion) -> torch.Tensor:  # (n, H, W) float32
    """frame_t(y) = ref(x) where y = x + s(x, t)/pixel: solve x = y − s(x) by iteration.

    ``s`` is sampled every 2 px by ``motion.shifts_at`` and interpolated by scipy's bicubic
    spline (independent of the code under test; error < 1e-4 px for these smooth fields).
    """
    ys, xs = np.arange(-8.0, H + 8.0, 2.0), np.arange(-8.0, W + 8.0, 2.0)
    yy, xx = np.meshgrid(ys, xs, indexing="ij")
    nodes_a = torch.from_numpy(np.stack([xx, yy], axis=-1) * PIXEL_A).float()
    shifts_px = motion.shifts_at(nodes_a).double().numpy() / PIXEL_A  # (gy, gx, n, 2)
    y = _pixel_grid().numpy()
    frames = []
    for t in range(N_FRAMES):
        splines = [RectBivariateSpline(ys, xs, shifts_px[:, :, t, c]) for c in range(2)]
        x = y.copy()
        for _ in range(6):  # |∇s| < 0.1: converged to < 1e-5 px
            s = np.stack([sp(x[..., 1], x[..., 0], grid=False) for sp in splines], axis=-1)
            x = y - s
        frames.append(_reference_at(modes, torch.from_numpy(x)))
    return torch.stack(frames).float()


def _reader(frames: torch.Tensor):  # type: ignore[no-untyped-def]
    def read(start: int, stop: int) -> torch.Tensor:
        return frames[start:stop].clone()

    return read


def _inner(image: torch.Tensor) -> torch.Tensor:
    return image[..., MARGIN:-MARGIN, MARGIN:-MARGIN]


def _correlation(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = _inner(a).double().cpu(), _inner(b).double().cpu()
    a, b = a - a.mean(), b - b.mean()
    return float((a * b).sum() / torch.sqrt((a * a).sum() * (b * b).sum()))


def _relative_rms(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = _inner(a).double().cpu(), _inner(b).double().cpu()
    return float(torch.sqrt(((a - b) ** 2).mean() / (b**2).mean()))


@pytest.fixture(scope="module")
def scene() -> tuple[torch.Tensor, FrameMotion, torch.Tensor]:
    """(reference (H, W), motion, frames (n, H, W))."""
    generator = torch.Generator().manual_seed(7)
    modes = _modes(generator, 150, 0.3)
    motion = _motion(generator)
    reference = _reference_at(modes, _pixel_grid()).float()
    return reference, motion, _render(modes, motion)


def _average(frames: torch.Tensor, motion: FrameMotion, device: torch.device, **options):  # type: ignore[no-untyped-def]
    return average_frames(
        _reader(frames),
        _on(motion, device),
        n_frames=frames.shape[0],
        frame_shape=(frames.shape[1], frames.shape[2]),
        pixel_size_a=PIXEL_A,
        device=device,
        **options,
    )


def _on(motion: FrameMotion, device: torch.device) -> FrameMotion:
    return FrameMotion(
        motion.global_nodes_a.to(device),
        motion.local_nodes_a.to(device),
        motion.field_size_a,
        motion.n_frames,
    )


def _global_only(motion: FrameMotion) -> FrameMotion:
    """The same motion without the local field (the global part is the field's mean)."""
    return FrameMotion(
        motion.global_shifts_at().T.contiguous() + _field_mean(motion).T,
        torch.zeros(2, 1, 1, 1),
        motion.field_size_a,
        motion.n_frames,
    )


def _field_mean(motion: FrameMotion) -> torch.Tensor:  # (n, 2)
    positions = _pixel_grid()[::8, ::8].float() * PIXEL_A
    return motion.local_shifts_at(positions).mean(dim=(0, 1))


# -- recovery and the sign convention -------------------------------------------------------


def test_true_motion_recovers_the_frame_zero_reference(scene, device: torch.device) -> None:  # type: ignore[no-untyped-def]
    reference, motion, frames = scene
    result = _average(frames, motion, device, aligned_stack=True)
    corrected = _correlation(result.average, reference)
    global_only = _correlation(_average(frames, _global_only(motion), device).average, reference)
    none = _correlation(frames.mean(0), reference)
    assert corrected > 0.9999
    assert 1 - corrected < (1 - global_only) / 20
    assert 1 - global_only < (1 - none) / 5
    assert result.average.device.type == device.type
    assert result.shape == (H, W)
    assert result.pixel_size_a == pytest.approx(PIXEL_A)
    # The default prefiltered B-spline is ~5× more accurate than grid_sample's bicubic.
    assert result.aligned_stack is not None
    assert _relative_rms(result.average, reference) < 0.005
    for t in range(N_FRAMES):
        assert _relative_rms(result.aligned_stack[t], reference) < 0.01
    cubic = _average(frames, motion, device, interpolation="cubic")
    assert _relative_rms(result.average, reference) < _relative_rms(cubic.average, reference) / 3
    assert _relative_rms(cubic.average, reference) < 0.03


def test_content_moved_by_plus_s_is_brought_back(device: torch.device) -> None:
    """A blob that moved by +s in frame 1 ends at its frame-0 position; −s would double it."""
    axis = torch.arange(64, dtype=torch.float32)
    y, x = torch.meshgrid(axis, axis, indexing="ij")
    blob = torch.exp(-((x - 30.0) ** 2 + (y - 24.0) ** 2) / 6.0)
    s_a = torch.tensor([4.0, -2.5]) * PIXEL_A  # (x, y) Å: where the content moved to
    frames = torch.stack([blob, shift_image(blob, s_a / PIXEL_A)])
    nodes = torch.stack([torch.zeros(2), s_a], dim=1)  # (2, T=2)
    motion = FrameMotion(nodes, torch.zeros(2, 1, 1, 1), (64 * PIXEL_A, 64 * PIXEL_A), 2)
    result = average_frames(
        _reader(frames),
        _on(motion, device),
        n_frames=2,
        frame_shape=(64, 64),
        pixel_size_a=PIXEL_A,
        aligned_stack=True,
        device=device,
    )
    assert result.aligned_stack is not None
    assert result.n_deformation_groups == 0
    torch.testing.assert_close(result.aligned_stack[1].cpu(), blob, atol=1e-5, rtol=0)
    torch.testing.assert_close(result.average.cpu(), blob, atol=1e-5, rtol=0)
    mass = result.average.cpu().clamp_min(0)
    centroid = torch.stack([(x * mass).sum(), (y * mass).sum()]) / mass.sum()
    torch.testing.assert_close(centroid, torch.tensor([30.0, 24.0]), atol=1e-3, rtol=0)


def test_local_sign_convention_on_a_pure_local_field(device: torch.device) -> None:
    """With only a local field the corrected average beats the same field negated."""
    generator = torch.Generator().manual_seed(3)
    modes = _modes(generator, 200, 0.25)
    local = torch.zeros(2, 3, 3, 3)
    local[:, 1:] = 2.5 * torch.randn(2, 2, 3, 3, generator=generator)
    motion = FrameMotion(torch.zeros(2, 1), local, (W * PIXEL_A, H * PIXEL_A), N_FRAMES)
    negated = FrameMotion(torch.zeros(2, 1), -local, (W * PIXEL_A, H * PIXEL_A), N_FRAMES)
    frames = _render(modes, motion)
    reference = _reference_at(modes, _pixel_grid()).float()
    right = _correlation(_average(frames, motion, device).average, reference)
    wrong = _correlation(_average(frames, negated, device).average, reference)
    assert right > 0.999
    assert wrong < right - 0.05


@given(shifts=st.lists(st.tuples(st.floats(-6, 6), st.floats(-6, 6)), min_size=1, max_size=3))
def test_global_shifts_are_undone_exactly(shifts: list[tuple[float, float]]) -> None:
    """Frames = ref shifted by +s_t (Fourier, periodic): the average is ref to float precision."""
    generator = torch.Generator().manual_seed(1)
    reference = _reference_at(_modes(generator, 60, 0.3), _pixel_grid()).float()
    s_px = torch.tensor([(0.0, 0.0), *shifts], dtype=torch.float32)  # frame 0 is the reference
    frames = shift_image(reference, s_px)
    motion = FrameMotion(
        (s_px * PIXEL_A).T.contiguous(),
        torch.zeros(2, 1, 1, 1),
        (W * PIXEL_A, H * PIXEL_A),
        len(s_px),
    )
    result = average_frames(
        _reader(frames), motion, n_frames=len(s_px), frame_shape=(H, W), pixel_size_a=PIXEL_A
    )
    torch.testing.assert_close(result.average, reference, atol=2e-5, rtol=0)


# -- grouping by tolerance ----------------------------------------------------------------


def test_tolerance_groups_frames_at_a_small_cost(scene, device: torch.device) -> None:  # type: ignore[no-untyped-def]
    _reference, motion, frames = scene
    exact = _average(frames, motion, device, local_tolerance_px=0.0)
    grouped = _average(frames, motion, device, local_tolerance_px=0.3)
    assert exact.n_deformation_groups == N_FRAMES
    assert 1 <= grouped.n_deformation_groups < N_FRAMES
    assert _relative_rms(grouped.average, exact.average) < 0.01


def test_negligible_local_motion_is_not_applied(scene, device: torch.device) -> None:  # type: ignore[no-untyped-def]
    _reference, motion, frames = scene
    result = _average(frames, _global_only(motion), device, local_tolerance_px=0.0)
    assert result.n_deformation_groups == 0


# -- exposure weighting --------------------------------------------------------------------


def test_dose_weights_of_a_single_frequency(device: torch.device) -> None:
    """Frames c_t·cos(2πk·x) with doses D_t average to Σ c_t e^{−D_t k²} / Σ e^{−D_t k²}."""
    n, size = 5, 64
    cycles = 10  # along x
    k_a = cycles / (size * PIXEL_A)  # Å⁻¹
    dose = torch.tensor([0.5, 1.5, 2.5, 3.5, 4.5]) * 3.0
    c = torch.tensor([1.0, 2.0, -1.0, 0.5, 3.0])
    x = torch.arange(size, dtype=torch.float32)
    wave = torch.cos(2 * math.pi * cycles * x / size).expand(size, size)
    frames = c[:, None, None] * wave
    motion = FrameMotion.zeros(n, field_size_a=(size * PIXEL_A,) * 2, global_nodes=1)
    result = average_frames(
        _reader(frames),
        motion,
        n_frames=n,
        frame_shape=(size, size),
        pixel_size_a=PIXEL_A,
        accumulated_dose_e_per_a2=dose.to(device),
        device=device,
    )
    w = torch.exp(-4.0 * dose * k_a**2 / 4)  # B = −4 D (conventions §7), exp(B k²/4)

    def expected(frames_of: slice) -> torch.Tensor:
        return (c[frames_of] * w[frames_of]).sum() / w[frames_of].sum() * wave

    torch.testing.assert_close(result.average.cpu(), expected(slice(None)), atol=1e-5, rtol=0)
    assert result.odd is not None
    assert result.even is not None
    torch.testing.assert_close(result.odd.cpu(), expected(slice(1, None, 2)), atol=1e-5, rtol=0)
    torch.testing.assert_close(result.even.cpu(), expected(slice(0, None, 2)), atol=1e-5, rtol=0)


@pytest.mark.parametrize("local", [False, True])
def test_dose_weighted_averages_equal_a_direct_per_frame_implementation(
    scene,  # type: ignore[no-untyped-def]
    device: torch.device,
    local: bool,
) -> None:
    """Align each frame on its own, weight its spectrum, normalise per frequency and sum.

    Exact for a global shift (the weights commute with it); with local motion the weights are
    applied before the deformation, which differs from weighting after it by ~0.1 %.
    """
    reference, motion, frames = scene
    motion = motion if local else _global_only(motion)
    dose = (torch.arange(N_FRAMES, dtype=torch.float32) + 0.5) * 4.0
    result = _average(
        frames,
        motion,
        device,
        accumulated_dose_e_per_a2=dose,
        local_tolerance_px=0.0,
        aligned_stack=True,
    )
    assert result.aligned_stack is not None
    assert result.odd is not None
    assert result.even is not None
    aligned = result.aligned_stack.cpu().double()

    def direct(frames_of: slice) -> torch.Tensor:
        w = dose_weights(dose[frames_of].double(), (H, W), pixel_size_a=PIXEL_A)
        spectrum = (torch.fft.rfft2(aligned[frames_of]) * w).sum(0)
        return torch.fft.irfft2(spectrum, s=(H, W)).float()

    pairs = [
        (result.average, direct(slice(None))),
        (result.odd, direct(slice(1, None, 2))),
        (result.even, direct(slice(0, None, 2))),
    ]
    for ours, expected in pairs:
        if local:
            assert _relative_rms(ours, expected) < 3e-3
        else:
            torch.testing.assert_close(ours.cpu(), expected, atol=1e-4, rtol=0)
    if local:  # the full motion made the frames: the average is the reference, a little
        # blurred by the exposure weighting (global-only leaves the local motion in)
        assert _correlation(result.average, reference) > 0.99


# -- binning, half-averages and the aligned stack -------------------------------------------


def test_binning_equals_fourier_cropping_the_unbinned_average(scene, device: torch.device) -> None:  # type: ignore[no-untyped-def]
    _reference, motion, frames = scene
    small = (H // 2, W // 2)
    # Only a global shift: binning commutes with the correction exactly.
    global_only = _global_only(motion)
    full = _average(frames, global_only, device)
    binned = _average(frames, global_only, device, output_shape=small)
    assert binned.shape == small
    assert binned.pixel_size_a == pytest.approx(2 * PIXEL_A)
    torch.testing.assert_close(
        binned.average.cpu(), rescale(full.average.cpu(), small), atol=1e-4, rtol=0
    )
    # Local motion is applied at the output scale: equal up to the interpolation error there,
    # compared below 0.2 cycles/binned pixel where the B-spline is accurate.
    dose = (torch.arange(N_FRAMES, dtype=torch.float32) + 0.5) * 2.0
    options = {"accumulated_dose_e_per_a2": dose, "interpolation": "bspline"}
    full = _average(frames, motion, device, **options)
    binned = _average(frames, motion, device, output_shape=small, **options)
    low = (frequency_magnitude(small) < 0.2).to(torch.float32)

    def low_pass(image: torch.Tensor) -> torch.Tensor:
        return torch.fft.irfft2(torch.fft.rfft2(image.cpu()) * low, s=small)

    expected = low_pass(rescale(full.average.cpu(), small))
    inner = (slice(MARGIN // 2, -MARGIN // 2),) * 2
    a, b = low_pass(binned.average)[inner].double(), expected[inner].double()
    assert float(torch.sqrt(((a - b) ** 2).mean() / (b**2).mean())) < 1e-2


def test_full_average_is_the_weighted_combination_of_the_halves(
    scene,  # type: ignore[no-untyped-def]
    device: torch.device,
) -> None:
    reference, motion, frames = scene
    plain = _average(frames, motion, device)
    assert plain.odd is not None
    assert plain.even is not None
    n_odd, n_even = N_FRAMES // 2, (N_FRAMES + 1) // 2
    combined = (n_odd * plain.odd + n_even * plain.even) / N_FRAMES
    torch.testing.assert_close(combined, plain.average, atol=1e-5, rtol=0)
    assert _correlation(plain.odd, reference) > 0.998
    assert _correlation(plain.even, reference) > 0.998

    dose = (torch.arange(N_FRAMES, dtype=torch.float32) + 0.5) * 4.0
    weighted = _average(frames, motion, device, accumulated_dose_e_per_a2=dose)
    assert weighted.odd is not None
    assert weighted.even is not None
    u = dose_weights(dose, (H, W), pixel_size_a=PIXEL_A, normalize=False).to(device)
    n_all, n_odd_k, n_even_k = u.sum(0), u[1::2].sum(0), u[::2].sum(0)
    spectrum = (
        torch.fft.rfft2(weighted.odd) * n_odd_k + torch.fft.rfft2(weighted.even) * n_even_k
    ) / n_all
    torch.testing.assert_close(
        torch.fft.irfft2(spectrum, s=(H, W)), weighted.average, atol=1e-4, rtol=0
    )

    no_halves = _average(frames, motion, device, odd_even=False)
    assert no_halves.odd is None
    assert no_halves.even is None
    torch.testing.assert_close(no_halves.average, plain.average, atol=1e-5, rtol=0)


def test_aligned_stack_holds_each_aligned_frame(scene, device: torch.device) -> None:  # type: ignore[no-untyped-def]
    reference, motion, frames = scene
    result = _average(frames, motion, device, aligned_stack=True, local_tolerance_px=0.0)
    stack = result.aligned_stack
    assert stack is not None
    assert stack.shape == (N_FRAMES, H, W)
    for t in range(N_FRAMES):
        assert _correlation(stack[t], reference) > 0.998
    # float32 rounding of values up to ~1.5 (the frames go through different batches)
    torch.testing.assert_close(stack.mean(0), result.average, atol=2e-5, rtol=0)
    binned = _average(frames, motion, device, aligned_stack=True, output_shape=(H // 2, W // 2))
    assert binned.aligned_stack is not None
    assert binned.aligned_stack.shape == (N_FRAMES, H // 2, W // 2)


# -- simulated movie ----------------------------------------------------------------------


@pytest.mark.slow
def test_simulated_movie_frc_improves_with_the_true_motion() -> None:
    from cryowarp.simulate import build_species
    from cryowarp.simulate.frame_series import simulate_frame_series
    from cryowarp.simulate.presets import frame_series_preset

    settings = frame_series_preset("tiny", drift_a=12.0, jitter_a=1.0, local_motion_a=3.0)
    species = build_species.build_species(settings, seed=4)
    movie = simulate_frame_series(species, settings, seed=4, shot_noise=False)
    n, h, w = movie.frames.shape
    dose = (torch.arange(n, dtype=torch.float32) + 0.5) * settings.dose_per_frame_e_per_a2

    def average(motion) -> torch.Tensor:  # type: ignore[no-untyped-def]
        return average_frames(
            _reader(movie.frames),
            motion,
            n_frames=n,
            frame_shape=(h, w),
            pixel_size_a=settings.pixel_size_a,
            accumulated_dose_e_per_a2=dose,
        ).average

    still = FrameMotion.zeros(n, field_size_a=settings.field_size_a, global_nodes=1)
    clean = movie.clean_micrograph
    corrected = frc(average(movie.motion), clean)
    uncorrected = frc(average(still), clean)
    band = slice(10, 60)  # 1/38 … 1/6.4 Å⁻¹
    assert float(corrected[band].mean()) > float(uncorrected[band].mean()) + 0.2
    assert float(corrected[band].mean()) > 0.8


# -- bad input ----------------------------------------------------------------------------


def test_bad_input_raises_typed_errors(scene) -> None:  # type: ignore[no-untyped-def]
    _reference, motion, frames = scene
    options = {"n_frames": N_FRAMES, "frame_shape": (H, W), "pixel_size_a": PIXEL_A}
    with pytest.raises(DimensionMismatchError, match="read_frames"):
        average_frames(_reader(frames[:, :-1]), motion, **options)  # type: ignore[arg-type]
    bad = frames.clone()
    bad[3, 5, 5] = float("nan")
    with pytest.raises(InvalidValuesError, match="NaN or Inf"):
        average_frames(_reader(bad), motion, **options)  # type: ignore[arg-type]
    with pytest.raises(DimensionMismatchError, match="motion model"):
        average_frames(
            _reader(frames), motion, n_frames=N_FRAMES - 1, frame_shape=(H, W), pixel_size_a=1.0
        )
    with pytest.raises(DimensionMismatchError, match="one value per frame"):
        average_frames(
            _reader(frames),
            motion,
            accumulated_dose_e_per_a2=torch.ones(2),
            **options,  # type: ignore[arg-type]
        )
    with pytest.raises(ValueError, match="even"):
        average_frames(_reader(frames), motion, output_shape=(47, 64), **options)  # type: ignore[arg-type]
