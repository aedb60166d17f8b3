"""Zernike terms, beam tilt and anisotropic magnification (RELION conventions)."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from cryowarp.core.aberrations import (
    apply_magnification,
    beam_tilt_phase_rad,
    beam_tilt_to_odd_zernike,
    even_zernike_index_to_nm,
    even_zernike_phase_rad,
    magnification_matrix_from_warp,
    odd_zernike_index_to_nm,
    odd_zernike_phase_rad,
    zernike_cartesian,
    zernike_radial,
)
from cryowarp.core.electron import electron_wavelength_a


def test_relion_zernike_ordering() -> None:
    assert [odd_zernike_index_to_nm(i) for i in range(6)] == [
        (1, -1), (1, 1), (3, -3), (3, -1), (3, 1), (3, 3)
    ]  # fmt: skip
    assert [even_zernike_index_to_nm(i) for i in range(9)] == [
        (0, 0), (2, -2), (2, 0), (2, 2), (4, -4), (4, -2), (4, 0), (4, 2), (4, 4)
    ]  # fmt: skip
    assert odd_zernike_index_to_nm(6) == (5, -5)
    assert even_zernike_index_to_nm(15) == (6, 6)


def test_closed_forms(device: torch.device) -> None:
    k = torch.rand(50, 2, device=device, dtype=torch.float64) - 0.5
    rho = k.norm(dim=-1)
    phi = torch.atan2(k[:, 1], k[:, 0])
    cases = {
        (0, 0): torch.ones_like(rho),
        (2, 0): 2 * rho**2 - 1,
        (2, -2): rho**2 * torch.sin(2 * phi),
        (3, 1): (3 * rho**3 - 2 * rho) * torch.cos(phi),
        (3, -1): (3 * rho**3 - 2 * rho) * torch.sin(phi),
        (4, 0): 6 * rho**4 - 6 * rho**2 + 1,
        (4, 4): rho**4 * torch.cos(4 * phi),
    }
    for (n, m), expected in cases.items():
        torch.testing.assert_close(zernike_cartesian(n, m, k), expected)


@given(
    n=st.integers(0, 6),
    m_raw=st.integers(0, 6),
    x=st.floats(-0.7, 0.7),
    y=st.floats(-0.7, 0.7),
    negative=st.booleans(),
)
def test_cartesian_matches_polar_definition(
    n: int, m_raw: int, x: float, y: float, negative: bool
) -> None:
    m = min(m_raw, n) * (-1 if negative else 1)
    k = torch.tensor([x, y], dtype=torch.float64)
    rho, phi = k.norm(), torch.atan2(k[1], k[0])
    angular = torch.cos(m * phi) if m >= 0 else torch.sin(-m * phi)
    expected = zernike_radial(n, m, rho) * angular
    torch.testing.assert_close(zernike_cartesian(n, m, k), expected, atol=1e-12, rtol=1e-9)


def test_odd_terms_are_odd_and_even_terms_even() -> None:
    k = torch.rand(100, 2, dtype=torch.float64) - 0.5
    odd = torch.randn(12, dtype=torch.float64)
    even = torch.randn(9, dtype=torch.float64)
    torch.testing.assert_close(odd_zernike_phase_rad(odd, -k), -odd_zernike_phase_rad(odd, k))
    torch.testing.assert_close(even_zernike_phase_rad(even, -k), even_zernike_phase_rad(even, k))


def test_beam_tilt_phase_formula(device: torch.device) -> None:
    # RELION: phase = −2π Cs λ² |k|² (k·t), Cs in Å, t in rad (TiltHelper::insertTilt).
    lam = electron_wavelength_a(300.0)
    k = torch.tensor([0.2, -0.1], dtype=torch.float64, device=device)
    tilt = torch.tensor([0.5, 1.5], dtype=torch.float64, device=device)
    expected = -2 * math.pi * 2.7e7 * lam**2 * 0.05 * (0.2 * 0.5e-3 - 0.1 * 1.5e-3)
    assert float(beam_tilt_phase_rad(k, tilt, 2.7, lam)) == pytest.approx(expected, rel=1e-12)


def test_beam_tilt_equals_its_odd_zernike_form(device: torch.device) -> None:
    lam = electron_wavelength_a(200.0)
    tilt = torch.tensor([[0.3, -0.7], [1.0, 0.2]], dtype=torch.float64, device=device)
    k = (torch.rand(2, 64, 2, dtype=torch.float64, device=device) - 0.5) * 0.8
    coefficients = beam_tilt_to_odd_zernike(tilt, 2.7, lam)  # (2, 6)
    assert coefficients.shape == (2, 6)
    torch.testing.assert_close(
        odd_zernike_phase_rad(coefficients[:, None, :], k),
        beam_tilt_phase_rad(k, tilt[:, None, :], 2.7, lam),
    )


def test_magnification_from_warp(device: torch.device) -> None:
    eye = magnification_matrix_from_warp(1.1, 0.0, 37.0)
    torch.testing.assert_close(eye, torch.eye(2, dtype=eye.dtype))
    p, delta, angle = 1.0, 0.02, 30.0
    m = magnification_matrix_from_warp(
        torch.tensor(p, dtype=torch.float64, device=device), delta, angle
    )
    torch.testing.assert_close(m, m.transpose(-1, -2))
    u = torch.tensor(
        [math.cos(math.radians(angle)), math.sin(math.radians(angle))],
        dtype=torch.float64,
        device=device,
    )
    v = torch.stack([-u[1], u[0]])
    # A frequency along the major axis shrinks by p / (p + δ/2); perpendicular grows.
    torch.testing.assert_close(apply_magnification(u, m), u * p / (p + delta / 2))
    torch.testing.assert_close(apply_magnification(v, m), v * p / (p - delta / 2))


def test_apply_magnification_is_matrix_times_vector() -> None:
    m = torch.tensor([[1.01, 0.02], [-0.01, 0.98]], dtype=torch.float64)
    k = torch.randn(5, 3, 2, dtype=torch.float64)
    torch.testing.assert_close(apply_magnification(k, m), k @ m.T)
