"""Rotational averages in shells (conventions §11) and radial profiles expanded onto grids."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from cryowarp.core.fourier import rfft_to_full
from cryowarp.core.fourier_grids import frequency_magnitude
from cryowarp.core.radial import (
    expand_radial_profile,
    expand_radial_profile_real,
    rotational_average,
    rotational_average_real,
)
from cryowarp.errors import DimensionMismatchError

shapes = st.lists(st.integers(min_value=2, max_value=12), min_size=2, max_size=3).map(tuple)


@pytest.mark.parametrize("shape", [(64, 64), (32, 32, 32)])
def test_average_of_radially_symmetric_function_is_its_profile(
    shape: tuple[int, ...], device: torch.device
) -> None:
    """A smooth function of |k| averages, shell by shell, to its value at the shell radius."""
    n = max(shape)
    radius = frequency_magnitude(shape, device=device, dtype=torch.float64) * n

    def profile(r: torch.Tensor) -> torch.Tensor:
        return torch.exp(-r.square() / (2 * 12.0**2))

    average = rotational_average(profile(radius), shape=shape)
    assert average.shape == (n // 2 + 1,)
    shells = torch.arange(n // 2 + 1, dtype=torch.float64, device=device)
    assert torch.allclose(average, profile(shells), rtol=0, atol=1e-2)
    # The residue is the spread of radii within a shell: at each shell's mean radius the
    # average equals the profile to second order.
    mean_radius = rotational_average(radius, shape=shape)
    assert (mean_radius - shells).abs().max() < 0.3
    assert torch.allclose(average, profile(mean_radius), rtol=0, atol=5e-4)
    assert average[0] == 1.0


@given(shape=shapes, rfft=st.booleans(), fftshifted=st.booleans())
def test_nearest_expansion_then_average_is_identity(
    shape: tuple[int, ...], rfft: bool, fftshifted: bool
) -> None:
    n_shells = max(shape) // 2 + 1
    profile = torch.randn(3, n_shells, dtype=torch.float64)
    grid = expand_radial_profile(
        profile, shape=shape, rfft=rfft, fftshifted=fftshifted, interpolation="nearest"
    )
    average = rotational_average(grid, shape=shape, rfft=rfft, fftshifted=fftshifted)
    assert torch.allclose(average, profile)


@given(shape=shapes)
def test_linear_expansion_of_a_linear_profile_is_exact(shape: tuple[int, ...]) -> None:
    n = max(shape)
    n_samples = n + 2  # covers the corners: no clamping
    profile = 2.0 - 0.3 * torch.arange(n_samples, dtype=torch.float64)
    grid = expand_radial_profile(profile, shape=shape)
    radius = frequency_magnitude(shape, dtype=torch.float64) * n
    assert torch.allclose(grid, 2.0 - 0.3 * radius)


@given(shape=shapes)
def test_layouts_agree(shape: tuple[int, ...]) -> None:
    profile = torch.rand(max(shape), dtype=torch.float64)
    half = expand_radial_profile(profile, shape=shape)
    full = expand_radial_profile(profile, shape=shape, rfft=False, fftshifted=True)
    assert torch.allclose(rfft_to_full(half, shape=shape, fftshifted=True), full)


def test_batched_average_equals_one_by_one(device: torch.device) -> None:
    values = torch.randn(2, 3, 10, 6, device=device)  # rfft of (10, 10)
    batched = rotational_average(values, shape=(10, 10))
    assert batched.shape == (2, 3, 6)
    assert torch.allclose(batched[1, 2], rotational_average(values[1, 2], shape=(10, 10)))


def test_real_space_average_about_box_centre(device: torch.device) -> None:
    profile = torch.tensor([5.0, 4.0, 3.0, 2.0, 1.0], device=device)
    for shape in [(9, 9), (8, 8), (6, 7, 8)]:
        image = expand_radial_profile_real(profile, shape=shape, interpolation="nearest")
        assert image[tuple(n // 2 for n in shape)] == 5.0
        average = rotational_average_real(image, ndim=len(shape), n_shells=5)
        assert torch.allclose(average, profile)
    linear = expand_radial_profile_real(profile, shape=(9, 9))
    assert linear[4, 6] == 3.0  # 2 px to the right of the centre
    assert linear[5, 5] == pytest.approx(5.0 - 2**0.5)


def test_wrong_grid_is_a_typed_error() -> None:
    with pytest.raises(DimensionMismatchError, match="expected"):
        rotational_average(torch.zeros(10, 10), shape=(10, 10))
