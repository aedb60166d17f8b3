"""Electron wavelength (docs/conventions.md §5) and interaction constant."""

from __future__ import annotations

import math

import pytest
import torch

from cryowarp.core.electron import electron_wavelength_a, interaction_constant_rad_per_va
from cryowarp.errors import InvalidValuesError

# CODATA 2018 exact values
_H = 6.62607015e-34
_M0 = 9.1093837015e-31
_E = 1.602176634e-19
_C = 299792458.0


def _codata_wavelength_a(voltage_kv: float) -> float:
    v = voltage_kv * 1e3
    return _H / math.sqrt(2 * _M0 * _E * v * (1 + _E * v / (2 * _M0 * _C**2))) * 1e10


@pytest.mark.parametrize(
    ("voltage_kv", "literature_a"), [(300.0, 0.019687), (200.0, 0.025079), (100.0, 0.037014)]
)
def test_wavelength_matches_literature(voltage_kv: float, literature_a: float) -> None:
    assert electron_wavelength_a(voltage_kv) == pytest.approx(literature_a, abs=1.5e-6)
    # RELION/Warp constants agree with CODATA to 1e-5 relative (they differ by ~6e-6).
    assert electron_wavelength_a(voltage_kv) == pytest.approx(
        _codata_wavelength_a(voltage_kv), rel=1e-5
    )


def test_wavelength_is_relativistic() -> None:
    nonrelativistic = 12.2643247 / math.sqrt(300e3)
    assert electron_wavelength_a(300.0) < 0.9 * nonrelativistic


def test_tensor_and_float_agree(device: torch.device) -> None:
    volts = torch.tensor([[100.0, 200.0], [300.0, 120.0]], device=device, dtype=torch.float64)
    out = electron_wavelength_a(volts)
    assert out.shape == volts.shape
    assert out.device == volts.device
    expected = [[electron_wavelength_a(float(v)) for v in row] for row in volts.tolist()]
    torch.testing.assert_close(out.cpu(), torch.tensor(expected, dtype=torch.float64))


def test_non_positive_voltage_is_rejected() -> None:
    with pytest.raises(InvalidValuesError):
        electron_wavelength_a(0.0)


@pytest.mark.parametrize(("voltage_kv", "kirkland"), [(300.0, 6.526e-4), (200.0, 7.288e-4)])
def test_interaction_constant_matches_kirkland(voltage_kv: float, kirkland: float) -> None:
    # Kirkland, Advanced Computing in Electron Microscopy (2010), eq. 5.6 / table 5.2.
    assert interaction_constant_rad_per_va(voltage_kv) == pytest.approx(kirkland, rel=1e-3)


@pytest.mark.parametrize("voltage_kv", [80.0, 100.0, 200.0, 300.0])
def test_interaction_constant_is_2pi_m_e_lambda_over_h2(voltage_kv: float) -> None:
    # σ = 2π m e λ / h² with the relativistic mass m = γ m0, from CODATA constants (SI → Å).
    v = voltage_kv * 1e3
    gamma = 1 + _E * v / (_M0 * _C**2)
    wavelength_m = _codata_wavelength_a(voltage_kv) * 1e-10
    sigma_per_a = 2 * math.pi * gamma * _M0 * _E * wavelength_m / _H**2 * 1e-10
    assert interaction_constant_rad_per_va(voltage_kv) == pytest.approx(sigma_per_a, rel=2e-5)


def test_interaction_constant_falls_with_voltage_and_rejects_zero() -> None:
    assert interaction_constant_rad_per_va(300.0) < interaction_constant_rad_per_va(200.0)
    with pytest.raises(InvalidValuesError):
        interaction_constant_rad_per_va(0.0)
