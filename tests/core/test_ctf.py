"""CTF: Warp golden image, physics invariants, conversions, gradients, batching."""

from __future__ import annotations

import math
from pathlib import Path

import mrcfile
import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from cryowarp.core.aberrations import beam_tilt_phase_rad
from cryowarp.core.ctf import (
    CTFParams,
    ctf_1d,
    ctf_2d,
    ctf_at_frequencies,
    ctf_zero_frequencies_a,
    odd_phase_factor_2d,
    polar_frequency_coordinates,
)
from cryowarp.core.electron import electron_wavelength_a
from cryowarp.core.fourier_grids import frequency_grid, rfft_shape
from cryowarp.errors import InvalidValuesError

F64 = torch.float64

# gen_ctf.txt: Warp's C1 (slice 0) and C2 (slice 1), in Warp's units.
_WARP = {
    "pixel_size_a": [1.1, 1.5],
    "defocus_um": [1.5, 2.5],
    "defocus_delta_um": [0.3, 0.0],
    "defocus_angle_deg": [25.0, 0.0],
    "phase_shift_pi": [0.4, 0.0],
    "voltage_kv": [300.0, 200.0],
    "cs_mm": [2.7, 2.7],
    "amplitude": [0.1, 0.07],
    "scale": [0.9, 1.0],
    "bfactor_a2": [-40.0, -40.0],
}


def _warp_params(device: torch.device, dtype: torch.dtype) -> CTFParams:
    values = {k: torch.tensor(v, device=device, dtype=dtype) for k, v in _WARP.items()}
    return CTFParams.from_warp(**values)  # type: ignore[arg-type]


def _golden(warp_reference: Path) -> torch.Tensor:
    with mrcfile.open(warp_reference / "ctf_reference.mrc", permissive=True) as mrc:
        return torch.from_numpy(np.asarray(mrc.data, dtype=np.float64).copy())


@pytest.mark.parametrize(("dtype", "tolerance"), [(torch.float32, 4e-5), (F64, 2.5e-5)])
def test_matches_warp_golden_image(
    warp_reference: Path, device: torch.device, dtype: torch.dtype, tolerance: float
) -> None:
    golden = _golden(warp_reference)  # (2, 256, 129), rfft layout of 256 x 256
    ctf = ctf_2d(_warp_params(device, dtype), (256, 256))
    assert ctf.shape == golden.shape
    assert ctf.device.type == device.type
    # The residual (≈2e-5) is Warp's own float32 rounding of χ (up to ~400 rad here).
    assert float((ctf.cpu().double() - golden).abs().max()) < tolerance


def test_warp_nyquist_row_is_positive(warp_reference: Path) -> None:
    """Row h/2 of Warp's rfft layout is ky = +½ (fftfreq says −½): visible with astigmatism."""
    golden = _golden(warp_reference)
    params = _warp_params(torch.device("cpu"), F64)
    grid = frequency_grid((256, 256), dtype=F64)  # conventions §3: row 128 is −½
    per_a = grid / params.pixel_size_a[:, None, None, None]
    plain = ctf_at_frequencies(params, per_a, frequencies_batched=True)
    rows = torch.arange(256) != 128
    assert float((plain - golden)[:, rows].abs().max()) < 2.5e-5
    assert float((plain - golden)[0, 128].abs().max()) > 1e-2
    assert float(frequency_grid((256, 256), nyquist_positive=True, dtype=F64)[128, 0, 1]) == 0.5


@given(
    shape=st.lists(st.integers(1, 9), min_size=2, max_size=3).map(tuple),
    rfft=st.booleans(),
    fftshifted=st.booleans(),
)
def test_nyquist_positive_moves_only_even_nyquist(
    shape: tuple[int, ...], rfft: bool, fftshifted: bool
) -> None:
    """``nyquist_positive`` changes exactly the −½ samples (even non-rfft axes) to +½."""
    plain = frequency_grid(shape, rfft=rfft, fftshifted=fftshifted, dtype=F64)
    positive = frequency_grid(
        shape, rfft=rfft, fftshifted=fftshifted, nyquist_positive=True, dtype=F64
    )
    at_nyquist = plain == -0.5
    assert torch.equal(positive[at_nyquist], torch.full_like(plain[at_nyquist], 0.5))
    assert torch.equal(positive[~at_nyquist], plain[~at_nyquist])
    assert bool((positive > -0.5).all())
    # every even-sized non-rfft axis has exactly one Nyquist plane, and no other axis has one
    fourier_shape = rfft_shape(shape) if rfft else shape
    n_full = len(shape) - 1 if rfft else len(shape)
    expected = sum(
        math.prod(fourier_shape) // fourier_shape[i] for i in range(n_full) if shape[i] % 2 == 0
    )
    assert int(at_nyquist.sum()) == expected


def test_warp_defocus_delta_is_u_minus_v() -> None:
    params = CTFParams.from_warp(
        defocus_um=1.5, defocus_delta_um=0.3, defocus_angle_deg=25.0, pixel_size_a=1.0
    )
    u, v, angle = params.to_relion_defocus()
    assert float(u) == pytest.approx(16500.0)
    assert float(v) == pytest.approx(13500.0)
    assert float(angle) == pytest.approx(25.0, abs=1e-4)
    mean, delta, angle_w = params.to_warp_defocus()
    assert (float(mean), float(delta), float(angle_w)) == pytest.approx((1.5, 0.3, 25.0), abs=1e-5)


@pytest.mark.parametrize(
    ("amplitude", "phase_rad"), [(0.07, 0.0), (0.1, 0.0), (0.0, 0.0), (0.1, 1.0)]
)
def test_ctf_at_zero_frequency(device: torch.device, amplitude: float, phase_rad: float) -> None:
    params = CTFParams.create(
        pixel_size_a=1.0,
        defocus_um=1.2,
        amplitude_contrast=amplitude,
        phase_shift_rad=phase_rad,
        scale=0.8,
        bfactor_a2=-50.0,
        device=device,
        dtype=F64,
    )
    value = float(ctf_2d(params, (16, 16))[0, 0])
    expected = 0.8 * math.sin(phase_rad + math.asin(amplitude))  # = 0.8·A without phase plate
    assert value == pytest.approx(expected, abs=1e-12)
    if phase_rad == 0.0:
        assert value == pytest.approx(0.8 * amplitude, abs=1e-12)


@pytest.mark.parametrize(("cs_mm", "phase_rad"), [(2.7, 0.0), (0.01, 0.5), (0.0, 0.0)])
def test_zeros_where_analytic_formula_puts_them(cs_mm: float, phase_rad: float) -> None:
    params = CTFParams.create(
        pixel_size_a=0.8,
        defocus_um=1.8,
        cs_mm=cs_mm,
        phase_shift_rad=phase_rad,
        amplitude_contrast=0.1,
        dtype=F64,
    )
    k = torch.linspace(0.0, 0.5 / 0.8, 100_001, dtype=F64)
    ctf = ctf_1d(params, k)
    crossing = torch.nonzero(torch.sign(ctf[:-1]) != torch.sign(ctf[1:])).flatten()
    # linear interpolation of each sign change
    k0, k1, c0, c1 = k[crossing], k[crossing + 1], ctf[crossing], ctf[crossing + 1]
    found = k0 - c0 * (k1 - k0) / (c1 - c0)
    analytic = ctf_zero_frequencies_a(params, 12)
    assert len(found) >= 12
    torch.testing.assert_close(found[:12], analytic, atol=1e-7, rtol=0)
    # χ(k_n) = nπ by construction of the formula; check with the model itself
    assert float(ctf_1d(params, analytic).abs().max()) < 1e-9


@given(
    u_a=st.floats(5000, 40000),
    v_a=st.floats(5000, 40000),
    angle_deg=st.floats(-180, 180),
)
def test_astigmatism_u_along_angle_v_perpendicular(
    u_a: float, v_a: float, angle_deg: float
) -> None:
    params = CTFParams.from_relion(
        defocus_u_a=u_a, defocus_v_a=v_a, defocus_angle_deg=angle_deg, pixel_size_a=1.0, dtype=F64
    )
    assert float(params.defocus_along_um(angle_deg)) * 1e4 == pytest.approx(u_a, rel=1e-9)
    assert float(params.defocus_along_um(angle_deg + 90)) * 1e4 == pytest.approx(v_a, rel=1e-9)
    k = torch.linspace(0, 0.5, 64, dtype=F64)
    for direction, defocus in ((angle_deg, u_a), (angle_deg + 90, v_a)):
        round_ = CTFParams.create(
            pixel_size_a=1.0, defocus_um=defocus * 1e-4, amplitude_contrast=0.1, dtype=F64
        )
        torch.testing.assert_close(
            ctf_1d(params, k, angle_deg=direction), ctf_1d(round_, k), atol=1e-9, rtol=0
        )


@given(
    u_a=st.floats(5000, 40000),
    v_a=st.floats(5000, 40000),
    angle_deg=st.floats(-180, 180),
)
def test_relion_round_trip(u_a: float, v_a: float, angle_deg: float) -> None:
    params = CTFParams.from_relion(
        defocus_u_a=u_a, defocus_v_a=v_a, defocus_angle_deg=angle_deg, pixel_size_a=1.0, dtype=F64
    )
    u2, v2, angle2 = (float(t) for t in params.to_relion_defocus())
    # (U, V, θ) ≡ (V, U, θ + 90°) ≡ (U, V, θ + 180°); the output has U ≥ V, θ in [−90, 90].
    if u_a < v_a:
        u_a, v_a, angle_deg = v_a, u_a, angle_deg + 90
    assert u2 == pytest.approx(u_a, rel=1e-9)
    assert v2 == pytest.approx(v_a, rel=1e-9)
    assert -90 - 1e-9 <= angle2 <= 90 + 1e-9
    if u_a - v_a > 1.0:
        difference = (angle2 - angle_deg + 90) % 180 - 90
        assert difference == pytest.approx(0.0, abs=1e-6)


def test_relion_bfactor_and_phase_units() -> None:
    params = CTFParams.from_relion(
        defocus_u_a=10000,
        defocus_v_a=10000,
        defocus_angle_deg=0,
        pixel_size_a=1.0,
        relion_bfactor_a2=50.0,  # RELION: exp(−B k²/4), positive attenuates
        phase_shift_deg=90.0,
    )
    assert float(params.bfactor_a2) == -50.0
    assert float(params.phase_shift_rad) == pytest.approx(math.pi / 2)
    warp = CTFParams.from_warp(
        defocus_um=1.0, defocus_delta_um=0, defocus_angle_deg=0, pixel_size_a=1, phase_shift_pi=0.5
    )
    assert float(warp.phase_shift_rad) == pytest.approx(math.pi / 2)


def test_negative_bfactor_attenuates() -> None:
    sharp = CTFParams.create(pixel_size_a=1.0, defocus_um=1.0, dtype=F64)
    blurred = CTFParams.create(pixel_size_a=1.0, defocus_um=1.0, bfactor_a2=-100.0, dtype=F64)
    ratio = ctf_1d(blurred, 65)[1:] / ctf_1d(sharp, 65)[1:]
    k = torch.linspace(0, 0.5, 65, dtype=F64)[1:]
    torch.testing.assert_close(ratio, torch.exp(-100.0 * k**2 / 4))


def test_gradients_exist_at_zero_astigmatism(device: torch.device) -> None:
    ax = torch.zeros((), dtype=F64, device=device, requires_grad=True)
    ay = torch.zeros((), dtype=F64, device=device, requires_grad=True)
    weights = torch.randn(32, 17, dtype=F64, device=device)

    def loss(ax_: torch.Tensor, ay_: torch.Tensor) -> torch.Tensor:
        params = CTFParams.create(
            pixel_size_a=1.3, defocus_um=1.1, astig_x_um=ax_, astig_y_um=ay_, device=device
        )
        return (ctf_2d(params, (32, 32)) * weights).sum()

    gx, gy = torch.autograd.grad(loss(ax, ay), (ax, ay))
    assert torch.isfinite(gx)
    assert torch.isfinite(gy)
    assert float(gx.abs()) > 1e-3
    assert float(gy.abs()) > 1e-3
    eps = 1e-6
    zero = torch.zeros((), dtype=F64, device=device)
    fd_x = (loss(zero + eps, zero) - loss(zero - eps, zero)) / (2 * eps)
    fd_y = (loss(zero, zero + eps) - loss(zero, zero - eps)) / (2 * eps)
    assert float(gx) == pytest.approx(float(fd_x), rel=1e-5)
    assert float(gy) == pytest.approx(float(fd_y), rel=1e-5)


def test_gradcheck_all_fitted_parameters() -> None:
    def model(
        defocus: torch.Tensor,
        astig: torch.Tensor,
        phase: torch.Tensor,
        bfactor: torch.Tensor,
        even: torch.Tensor,
        odd: torch.Tensor,
    ) -> torch.Tensor:
        params = CTFParams.create(
            pixel_size_a=2.0,
            defocus_um=defocus,
            astig_x_um=astig[0],
            astig_y_um=astig[1],
            phase_shift_rad=phase,
            bfactor_a2=bfactor,
            even_zernike=even,
            odd_zernike=odd,
        )
        return torch.view_as_real(ctf_2d(params, (8, 8)) * odd_phase_factor_2d(params, (8, 8)))

    inputs = (
        torch.tensor(1.2, dtype=F64),
        torch.tensor([0.0, 0.0], dtype=F64),
        torch.tensor(0.3, dtype=F64),
        torch.tensor(-20.0, dtype=F64),
        torch.tensor([0.1, 2.0, -1.0, 3.0], dtype=F64),
        torch.tensor([0.5, -0.2, 4.0, 1.0, -2.0, 0.7], dtype=F64),
    )
    inputs = tuple(t.requires_grad_() for t in inputs)
    assert torch.autograd.gradcheck(model, inputs)


def test_even_zernike_defocus_term_equals_defocus_change() -> None:
    # RELION adds Σ c Z to γ = −χ: c·(Z_2^0 + Z_0^0) = 2c k² shifts defocus by −2c/(πλ) Å.
    c = 3.0
    lam = electron_wavelength_a(300.0)
    base = dict(pixel_size_a=1.0, amplitude_contrast=0.1, dtype=F64)
    with_zernike = CTFParams.create(
        defocus_um=1.5, even_zernike=torch.tensor([c, 0.0, c], dtype=F64), **base
    )
    shifted = CTFParams.create(defocus_um=1.5 - 2 * c / (math.pi * lam) * 1e-4, **base)
    torch.testing.assert_close(ctf_2d(with_zernike, (64, 64)), ctf_2d(shifted, (64, 64)))


def test_beam_tilt_phase_factor(device: torch.device) -> None:
    tilt = torch.tensor([0.4, -0.9], dtype=F64, device=device)
    params = CTFParams.create(
        pixel_size_a=1.0, defocus_um=1.0, cs_mm=2.7, beam_tilt_mrad=tilt, device=device, dtype=F64
    )
    factor = odd_phase_factor_2d(params, (32, 32))
    assert factor.shape == (32, 17)
    assert factor.is_complex()
    k = frequency_grid((32, 32), nyquist_positive=True, device=device, dtype=F64)
    lam = electron_wavelength_a(300.0)
    k2 = k.square().sum(-1)
    phase = -2 * math.pi * 2.7e7 * lam**2 * k2 * (k @ tilt) * 1e-3
    torch.testing.assert_close(factor, torch.polar(torch.ones_like(phase), phase))
    torch.testing.assert_close(
        torch.angle(factor),
        torch.angle(torch.polar(torch.ones_like(phase), beam_tilt_phase_rad(k, tilt, 2.7, lam))),
    )
    plain = CTFParams.create(pixel_size_a=1.0, defocus_um=1.0, device=device, dtype=F64)
    torch.testing.assert_close(
        odd_phase_factor_2d(plain, (8, 8)), torch.ones(8, 5, dtype=torch.complex128, device=device)
    )


def test_batched_equals_loop(device: torch.device) -> None:
    n = 3
    values = dict(
        pixel_size_a=torch.tensor([1.0, 1.3, 2.0]),
        defocus_um=torch.tensor([0.8, 1.5, 3.0]),
        astig_x_um=torch.tensor([0.0, 0.1, -0.05]),
        astig_y_um=torch.tensor([0.02, 0.0, 0.1]),
        phase_shift_rad=torch.tensor([0.0, 0.5, 1.0]),
        bfactor_a2=torch.tensor([0.0, -30.0, -60.0]),
        voltage_kv=torch.tensor([300.0, 200.0, 300.0]),
        beam_tilt_mrad=torch.tensor([[0.1, 0.2], [0.0, 0.0], [-0.3, 0.5]]),
        even_zernike=torch.randn(3, 4),
        odd_zernike=torch.randn(3, 6),
    )
    batched = CTFParams.create(**{k: v.to(device) for k, v in values.items()})  # type: ignore[arg-type]
    assert batched.batch_shape == (n,)
    ctf = ctf_2d(batched, (24, 20))
    odd = odd_phase_factor_2d(batched, (24, 20))
    assert ctf.shape == (n, 24, 11)
    assert ctf.device.type == device.type
    for i in range(n):
        single = CTFParams.create(**{k: v[i].to(device) for k, v in values.items()})  # type: ignore[arg-type]
        torch.testing.assert_close(ctf[i], ctf_2d(single, (24, 20)))
        torch.testing.assert_close(odd[i], odd_phase_factor_2d(single, (24, 20)))
    # a 2-D batch broadcasts too
    grid = CTFParams.create(
        pixel_size_a=1.0, defocus_um=torch.ones(2, 1) * 1.2, scale=torch.ones(4)
    )
    assert ctf_2d(grid, (8, 8)).shape == (2, 4, 8, 5)


def test_layouts_agree(device: torch.device) -> None:
    params = CTFParams.create(
        pixel_size_a=1.2, defocus_um=1.4, astig_x_um=0.1, astig_y_um=-0.07, device=device
    )
    half = ctf_2d(params, (32, 32))
    full = ctf_2d(params, (32, 32), rfft=False)
    shifted = ctf_2d(params, (32, 32), rfft=False, fftshifted=True)
    torch.testing.assert_close(full[:, :17], half)
    torch.testing.assert_close(torch.fft.fftshift(full, dim=(-2, -1)), shifted)
    # the CTF is even, CTF(−k) = CTF(k), except on the Nyquist row/column (taken at +½)
    minus_k = torch.roll(torch.flip(full, dims=(0, 1)), shifts=(1, 1), dims=(0, 1))
    keep = torch.arange(32, device=device) != 16
    torch.testing.assert_close(minus_k[keep][:, keep], full[keep][:, keep])
    torch.testing.assert_close(ctf_1d(params, 17), half[0])


def test_three_d_frequencies_use_projection(device: torch.device) -> None:
    params = CTFParams.create(pixel_size_a=1.0, defocus_um=2.0, astig_x_um=0.2, device=device)
    k3 = torch.rand(10, 3, device=device) - 0.5
    torch.testing.assert_close(
        ctf_at_frequencies(params, k3), ctf_at_frequencies(params, k3[:, :2])
    )


def test_isotropic_magnification_is_a_pixel_size_change() -> None:
    s = 1.02
    params = CTFParams.create(
        pixel_size_a=1.0, defocus_um=1.3, mag_matrix=torch.eye(2, dtype=F64) * s, dtype=F64
    )
    rescaled = CTFParams.create(pixel_size_a=1.0 / s, defocus_um=1.3, dtype=F64)
    torch.testing.assert_close(ctf_2d(params, (32, 32)), ctf_2d(rescaled, (32, 32)))


def test_ignore_first_peak() -> None:
    params = CTFParams.create(pixel_size_a=1.0, defocus_um=2.0, bfactor_a2=-20.0, dtype=F64)
    k = torch.linspace(0, 0.5, 500, dtype=F64)
    flat = ctf_1d(params, k, ignore_first_peak=True)
    normal = ctf_1d(params, k)
    first_zero = float(ctf_zero_frequencies_a(params, 1))
    envelope = torch.exp(-20.0 * k**2 / 4)
    before_peak = k < 0.5 * first_zero
    torch.testing.assert_close(flat[before_peak], envelope[before_peak])
    torch.testing.assert_close(flat[k > first_zero], normal[k > first_zero])


def test_polar_coordinates() -> None:
    k2, angle = polar_frequency_coordinates(torch.tensor([[3.0, 4.0], [0.0, -2.0]]))
    torch.testing.assert_close(k2, torch.tensor([25.0, 4.0]))
    torch.testing.assert_close(angle, torch.tensor([math.atan2(4, 3), -math.pi / 2]))


def test_invalid_values_raise_typed_errors() -> None:
    with pytest.raises(InvalidValuesError):
        CTFParams.create(pixel_size_a=1.0, defocus_um=1.0, amplitude_contrast=1.0)
    with pytest.raises(InvalidValuesError):
        CTFParams.create(pixel_size_a=-1.0, defocus_um=1.0)
    with pytest.raises(InvalidValuesError):
        CTFParams.create(pixel_size_a=torch.ones(3), defocus_um=torch.ones(2))
    params = CTFParams.create(pixel_size_a=1.0, defocus_um=1.0)
    with pytest.raises(InvalidValuesError):
        ctf_at_frequencies(params, torch.zeros(5, 4))
