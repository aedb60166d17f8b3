"""Interpolation of images and volumes at pixel coordinates (x, y[, z])."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st

from cryowarp.core.interpolate import interpolate_image, interpolate_nd, interpolate_volume
from cryowarp.errors import DimensionMismatchError

METHODS = ["linear", "cubic"]
BOUNDARIES = ["zero", "clamp", "periodic"]


def _pixel_grid(shape: tuple[int, ...], device: torch.device) -> torch.Tensor:
    """Integer pixel coordinates (x, y[, z]) of every element of an array of ``shape``."""
    axes = [torch.arange(n, device=device, dtype=torch.float64) for n in shape]
    return torch.stack(torch.meshgrid(*axes, indexing="ij")[::-1], dim=-1)


def _smooth_image(x: torch.Tensor, y: torch.Tensor, size: int) -> torch.Tensor:
    """A smooth image, negligible at the border, centred at pixel size // 2."""
    c = size // 2
    r2 = (x - c) ** 2 + (y - c) ** 2
    return torch.exp(-r2 / (2 * (size / 8) ** 2)) * torch.cos(0.25 * (x - c) + 0.1 * (y - c))


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("boundary", BOUNDARIES)
def test_integer_coordinates_return_stored_values(
    method: str, boundary: str, device: torch.device
) -> None:
    image = torch.randn(2, 5, 7, device=device, dtype=torch.float64)
    coords = _pixel_grid((5, 7), device)[None]
    torch.testing.assert_close(
        interpolate_image(image, coords, method=method, boundary=boundary),  # type: ignore[arg-type]
        image,
    )
    volume = torch.randn(4, 5, 6, device=device, dtype=torch.complex128)
    torch.testing.assert_close(
        interpolate_volume(volume, _pixel_grid((4, 5, 6), device), method=method),  # type: ignore[arg-type]
        volume,
    )


def test_coordinate_order_is_x_then_y(device: torch.device) -> None:
    image = torch.zeros(4, 6, device=device)
    image[1, 3] = 1.0  # row y = 1, column x = 3
    hit = interpolate_image(image, torch.tensor([[3.0, 1.0], [1.0, 3.0]], device=device))
    torch.testing.assert_close(hit, torch.tensor([1.0, 0.0], device=device))


@given(
    slope=st.tuples(*[st.floats(-3, 3)] * 3),
    offset=st.floats(-5, 5),
    seed=st.integers(0, 2**16),
)
def test_linear_ramp_is_exact(slope: tuple[float, float, float], offset: float, seed: int) -> None:
    shape = (6, 7, 8)
    grid = _pixel_grid(shape, torch.device("cpu"))
    a = torch.tensor(slope, dtype=torch.float64)
    volume = grid @ a + offset
    generator = torch.Generator().manual_seed(seed)
    points = torch.rand(50, 3, generator=generator, dtype=torch.float64)
    points = points * (torch.tensor(shape[::-1], dtype=torch.float64) - 1)
    for method in METHODS:
        if method == "cubic":  # Keys' kernel needs one more sample on each side
            points = 1 + points * (torch.tensor(shape[::-1], dtype=torch.float64) - 3) / (
                torch.tensor(shape[::-1], dtype=torch.float64) - 1
            )
        result = interpolate_volume(volume, points, method=method)  # type: ignore[arg-type]
        torch.testing.assert_close(result, points @ a + offset)


def test_cubic_reproduces_quadratics_and_beats_linear(device: torch.device) -> None:
    size = 32
    grid = _pixel_grid((size, size), device)
    quadratic = 0.01 * (grid[..., 0] - 10) ** 2 - 0.02 * grid[..., 0] * grid[..., 1]
    points = 2 + torch.rand(200, 2, device=device, dtype=torch.float64) * (size - 5)
    expected = 0.01 * (points[:, 0] - 10) ** 2 - 0.02 * points[:, 0] * points[:, 1]
    torch.testing.assert_close(interpolate_image(quadratic, points, method="cubic"), expected)

    smooth = _smooth_image(grid[..., 0], grid[..., 1], size)
    truth = _smooth_image(points[:, 0], points[:, 1], size)
    linear_error = (interpolate_image(smooth, points, method="linear") - truth).abs().max()
    cubic_error = (interpolate_image(smooth, points, method="cubic") - truth).abs().max()
    assert cubic_error < 0.25 * linear_error


def test_matches_torch_grid_sample_bilinear(device: torch.device) -> None:
    image = torch.randn(3, 9, 11, device=device, dtype=torch.float64)
    coords = torch.rand(3, 5, 4, 2, device=device, dtype=torch.float64) * 14 - 2  # some outside
    ours = interpolate_image(image, coords, method="linear", boundary="zero")
    normalised = 2 * coords / torch.tensor([10.0, 8.0], device=device, dtype=torch.float64) - 1
    reference = F.grid_sample(
        image[:, None], normalised, mode="bilinear", padding_mode="zeros", align_corners=True
    )[:, 0]
    torch.testing.assert_close(ours, reference)


@pytest.mark.parametrize("method", METHODS)
def test_boundary_modes(method: str, device: torch.device) -> None:
    image = torch.randn(5, 6, device=device, dtype=torch.float64)
    inside = torch.tensor([[1.3, 2.6], [4.2, 0.7]], device=device, dtype=torch.float64)
    wrapped = inside + torch.tensor([6.0, -5.0], device=device, dtype=torch.float64)
    torch.testing.assert_close(
        interpolate_image(image, wrapped, method=method, boundary="periodic"),  # type: ignore[arg-type]
        interpolate_image(image, inside, method=method, boundary="periodic"),  # type: ignore[arg-type]
    )
    far = torch.tensor([[-10.0, 2.0], [20.0, 4.0]], device=device, dtype=torch.float64)
    zero = interpolate_image(image, far, method=method, boundary="zero")  # type: ignore[arg-type]
    torch.testing.assert_close(zero, torch.zeros(2, device=device, dtype=torch.float64))
    clamp = interpolate_image(image, far, method=method, boundary="clamp")  # type: ignore[arg-type]
    torch.testing.assert_close(clamp, torch.stack([image[2, 0], image[4, -1]]))


def _rotate(image: torch.Tensor, angle_deg: float, method: str) -> torch.Tensor:
    """Rotate content by ``angle_deg`` about pixel ``n // 2`` by pulling samples."""
    n = image.shape[-1]
    grid = _pixel_grid((n, n), image.device) - n // 2
    a = math.radians(angle_deg)
    inverse = torch.tensor(
        [[math.cos(a), math.sin(a)], [-math.sin(a), math.cos(a)]],
        device=image.device,
        dtype=torch.float64,
    )
    source = grid @ inverse.T + n // 2
    return interpolate_image(image, source, method=method)  # type: ignore[arg-type]


def test_rotation_round_trip(device: torch.device) -> None:
    n = 48
    grid = _pixel_grid((n, n), device)
    image = _smooth_image(grid[..., 0], grid[..., 1], n)
    errors = {}
    for method in METHODS:
        back = _rotate(_rotate(image, 37.0, method), -37.0, method)
        errors[method] = (back - image).abs().max().item()
    assert errors["cubic"] < 0.01 * image.abs().max().item()
    assert errors["cubic"] < 0.5 * errors["linear"]
    # The rotation turns the content the right way: a spot at +x moves towards +y.
    spot = torch.zeros(n, n, device=device, dtype=torch.float64)
    spot[n // 2, n // 2 + 10] = 1.0
    turned = _rotate(spot, 90.0, "linear")
    assert turned.argmax().item() == (n // 2 + 10) * n + n // 2


@pytest.mark.parametrize("method", ["linear", "cubic", "cubic_bspline"])
def test_gradients_real_and_complex(method: str) -> None:
    image = torch.randn(2, 5, 6, dtype=torch.float64, requires_grad=True)
    coords = (0.5 + torch.rand(2, 3, 2, dtype=torch.float64) * 4).requires_grad_()

    def sample(img: torch.Tensor, xy: torch.Tensor) -> torch.Tensor:
        return interpolate_nd(img, xy, method=method, boundary="zero")  # type: ignore[arg-type]

    assert torch.autograd.gradcheck(sample, (image, coords))
    complex_volume = torch.randn(3, 4, 5, dtype=torch.complex128, requires_grad=True)
    xyz = (0.5 + torch.rand(4, 3, dtype=torch.float64) * 2).requires_grad_()
    assert torch.autograd.gradcheck(sample, (complex_volume, xyz), fast_mode=True)


def test_batched_coordinates_shared_or_own(device: torch.device) -> None:
    images = torch.randn(2, 3, 8, 8, device=device)
    own = torch.rand(2, 3, 10, 2, device=device) * 7
    result = interpolate_image(images, own, method="cubic")
    assert result.shape == (2, 3, 10)
    torch.testing.assert_close(
        result[1, 2], interpolate_image(images[1, 2], own[1, 2], method="cubic")
    )
    shared = interpolate_image(images, own[:1, 1:2], method="cubic")
    torch.testing.assert_close(
        shared[1, 0], interpolate_image(images[1, 0], own[0, 1], method="cubic")
    )
    assert result.device.type == device.type


def test_bad_inputs_raise_typed_errors() -> None:
    with pytest.raises(DimensionMismatchError):
        interpolate_image(torch.zeros(2, 4, 4), torch.zeros(3, 5, 2))
    with pytest.raises(DimensionMismatchError):
        interpolate_volume(torch.zeros(4, 4, 4), torch.zeros(5, 2))
    with pytest.raises(DimensionMismatchError):
        interpolate_image(torch.zeros(4, 4), torch.zeros(5, 2, dtype=torch.long))
    with pytest.raises(ValueError, match="method"):
        interpolate_image(torch.zeros(4, 4), torch.zeros(5, 2), method="nearest")  # type: ignore[arg-type]
