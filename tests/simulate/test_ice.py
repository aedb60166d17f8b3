"""Amorphous ice of uncorrelated water molecules, and the CTF of the tilted sample plane."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
import torch

from cryowarp.core.ctf import ctf_2d
from cryowarp.core.fourier_grids import frequency_magnitude
from cryowarp.errors import InvalidValuesError
from cryowarp.simulate._plane_ctf import apply_sample_ctf
from cryowarp.simulate.ice import (
    ice_mean_inner_potential_v,
    ice_projected_potential_va,
    ice_texture_std_va,
    water_form_factor,
    water_molecules_per_a3,
    water_potential_integral_v_a3,
)
from cryowarp.simulate.sample_ctf import SampleCTF
from cryowarp.simulate.scattering import POTENTIAL_PREFACTOR_V_A2


def test_water_constants() -> None:
    # 0.92 g/cm³ / 18.015 g/mol × N_A = 0.03075 molecules/Å³
    assert water_molecules_per_a3(0.92) == pytest.approx(0.92 / 18.015 * 0.602214076, rel=1e-9)
    assert water_molecules_per_a3(0.92) == pytest.approx(0.03075, abs=1e-5)
    # Peng et al. (1996): f_O(0) = 1.9834 Å, f_H(0) = 0.5288 Å → U_w = 47.8776 × 3.041 V·Å³
    assert water_potential_integral_v_a3() == pytest.approx(
        POTENTIAL_PREFACTOR_V_A2 * (1.9834 + 2 * 0.5288), rel=1e-6
    )
    assert water_potential_integral_v_a3() == pytest.approx(145.6, abs=0.1)
    # mean inner potential n·U_w: 4.48 V (liquid water measured 4.48 ± 0.19 V)
    assert ice_mean_inner_potential_v(0.92) == pytest.approx(4.478, abs=0.002)
    assert water_form_factor(torch.zeros(())) == pytest.approx(1.0)
    q = torch.linspace(0, 1, 50, dtype=torch.float64)
    assert torch.all(water_form_factor(q).diff() < 0)  # falls monotonically


@pytest.mark.parametrize(("thickness_a", "pixel_size_a"), [(500.0, 1.0), (300.0, 1.5)])
def test_projected_ice_has_the_poisson_mean_and_variance(
    thickness_a: float, pixel_size_a: float, device: torch.device
) -> None:
    thickness = torch.full((512, 512), thickness_a, device=device)
    potential = ice_projected_potential_va(
        thickness,
        pixel_size_a=pixel_size_a,
        generator=torch.Generator().manual_seed(1),
        form_factor=False,
    ).double()
    n, u_w = water_molecules_per_a3(), water_potential_integral_v_a3()
    std = math.sqrt(n * pixel_size_a**2 * thickness_a) * u_w / pixel_size_a**2
    assert ice_texture_std_va(thickness_a, pixel_size_a=pixel_size_a) == pytest.approx(std)
    assert float(potential.mean()) == pytest.approx(n * thickness_a * u_w, rel=2e-3)
    assert float(potential.std()) == pytest.approx(std, rel=0.01)
    # white: neighbouring pixels are uncorrelated
    centred = potential - potential.mean()
    correlation = float((centred[:, 1:] * centred[:, :-1]).mean() / centred.var())
    assert abs(correlation) < 0.01
    mean_only = ice_projected_potential_va(thickness, pixel_size_a=pixel_size_a, generator=None)
    assert torch.allclose(mean_only, torch.full_like(mean_only, n * thickness_a * u_w))


def test_ice_texture_spectrum_follows_the_molecular_form_factor(device: torch.device) -> None:
    px, thickness_a = 1.0, 400.0
    shape = (512, 512)
    texture = ice_projected_potential_va(
        torch.full(shape, thickness_a, device=device),
        pixel_size_a=px,
        generator=torch.Generator().manual_seed(2),
        mean=False,
    ).double()
    power = torch.fft.rfft2(texture).abs().square() / (shape[0] * shape[1])  # white: σ²
    q = frequency_magnitude(shape, device=device, dtype=torch.float64) / px
    expected = ice_texture_std_va(thickness_a, pixel_size_a=px) ** 2 * water_form_factor(q) ** 2
    edges = torch.linspace(0.05, 0.5, 10)
    for low, high in zip(edges[:-1].tolist(), edges[1:].tolist(), strict=True):
        shell = (q >= low) & (q < high)
        ratio = float(power[shell].mean() / expected[shell].mean())
        assert ratio == pytest.approx(1.0, abs=0.04), (low, high, ratio)
    # the form factor matters: at Nyquist the power is a third of the white level
    assert float(water_form_factor(torch.tensor(0.5)) ** 2) == pytest.approx(0.32, abs=0.01)


def test_ice_texture_is_reproducible_and_checks_its_input() -> None:
    thickness = torch.full((64, 64), 200.0)
    a = ice_projected_potential_va(
        thickness, pixel_size_a=1.0, generator=torch.Generator().manual_seed(3)
    )
    b = ice_projected_potential_va(
        thickness, pixel_size_a=1.0, generator=torch.Generator().manual_seed(3)
    )
    assert torch.equal(a, b)
    with pytest.raises(InvalidValuesError):
        ice_projected_potential_va(torch.ones(4, 8, 8), pixel_size_a=1.0, generator=None)
    with pytest.raises(InvalidValuesError):
        ice_projected_potential_va(thickness, pixel_size_a=0.0, generator=None)


# -- the CTF of the tilted sample plane ---------------------------------------------------


def _sample_ctf(tilt_deg: float, shape: tuple[int, int], px: float) -> SampleCTF:
    h, w = shape
    return SampleCTF(
        pixel_size_a=px,
        voltage_kv=300.0,
        cs_mm=2.7,
        amplitude_contrast=0.07,
        defocus_um=1.5,
        astigmatism_um=0.05,
        astigmatism_angle_deg=25.0,
        phase_shift_deg=0.0,
        sample_tilt_deg=tilt_deg,
        sample_tilt_axis_deg=70.0,
        centre_xy_a=((w // 2) * px, (h // 2) * px),
    )


def _filter(image: torch.Tensor, ctf: SampleCTF, defocus_um: float) -> torch.Tensor:
    h, w = image.shape
    kernel = ctf_2d(ctf.ctf_params(defocus_um), (h, w)).to(image.device)
    return torch.fft.irfft2(torch.fft.rfft2(image) * kernel, s=(h, w))


def test_untilted_plane_is_one_whole_field_ctf(device: torch.device) -> None:
    shape, px = (96, 128), 1.5
    image = torch.randn(shape, generator=torch.Generator().manual_seed(4)).to(device)
    ctf = _sample_ctf(0.0, shape, px)
    assert torch.allclose(apply_sample_ctf(image, ctf), _filter(image, ctf, 1.5), atol=1e-5)
    # a negligible tilt goes through the strips and gives the same image
    nearly = apply_sample_ctf(image, replace(ctf, sample_tilt_deg=1e-6))
    assert torch.allclose(nearly, _filter(image, ctf, 1.5), atol=1e-4)


@pytest.mark.parametrize("where_px", [(20, 30), (200, 150), (240, 10)])
def test_each_point_gets_the_ctf_of_its_height_in_the_tilted_ice(
    where_px: tuple[int, int], device: torch.device
) -> None:
    shape, px = (160, 256), 1.5
    ctf = _sample_ctf(40.0, shape, px)  # defocus spans ≈ 0.3 µm over the field
    x, y = where_px
    impulse = torch.zeros(shape, device=device)
    impulse[y, x] = 1.0
    response = apply_sample_ctf(impulse, ctf)
    local = float(ctf.defocus_at(torch.tensor([[x * px, y * px]], dtype=torch.float64)))
    expected = _filter(impulse, ctf, local)
    error = float((response - expected).norm() / expected.norm())
    assert error < 0.03, error  # defocus interpolated between nodes ≤ 0.5 rad apart at Nyquist
    centre = _filter(impulse, ctf, 1.5)  # the field-centre CTF is clearly wrong here
    assert float((response - centre).norm() / expected.norm()) > 10 * error
