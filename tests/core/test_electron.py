"""Electron wavelength (docs/conventions.md §5)."""

from __future__ import annotations

import math

import pytest
import torch

from cryowarp.core.electron import electron_wavelength_a
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
