"""Cubic spline grids (Warp's CubicGrid) and 4-D linear grids."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import starfile
import torch
from hypothesis import given
from hypothesis import strategies as st

from cryowarp.core.linear_grid import LinearGrid4D, evaluate_linear_grid
from cryowarp.core.spline_grid import (
    CubicGrid,
    evaluate_cubic_grid,
    fit_cubic_grid,
    grid_node_coords,
    resize_cubic_grid,
)
from cryowarp.errors import DimensionMismatchError

AXES = ("x", "y", "z")


def _read_reference(path: Path, ndim: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Control values (array order), evaluation coordinates (x, y, z) and Warp's values."""
    blocks = starfile.read(path)
    grid, evaluation = blocks["grid"], blocks["eval"]
    axes = AXES[:ndim]
    index_columns = [f"i{a}" for a in reversed(axes)]  # array order (z, y, x)
    shape = tuple(int(grid[c].max()) + 1 for c in index_columns)
    values = torch.full(shape, float("nan"), dtype=torch.float32)
    index = tuple(
        torch.tensor(grid[c].to_numpy(copy=True), dtype=torch.long) for c in index_columns
    )
    values[index] = torch.tensor(grid["value"].to_numpy(copy=True), dtype=torch.float32)
    assert not values.isnan().any(), "every node of the golden grid must be given"
    coords = torch.tensor(evaluation[list(axes)].to_numpy(copy=True), dtype=torch.float32)
    expected = torch.tensor(evaluation["value"].to_numpy(copy=True), dtype=torch.float32)
    return values, coords, expected


@pytest.mark.parametrize("ndim", [1, 2, 3])
def test_matches_warp_golden(warp_reference: Path, ndim: int, device: torch.device) -> None:
    values, coords, expected = _read_reference(warp_reference / f"reference{ndim}d.star", ndim)
    result = evaluate_cubic_grid(values.to(device), coords.to(device))
    assert result.device.type == device.type
    max_abs_error = (result.cpu() - expected).abs().max().item()
    assert max_abs_error < 1e-5


def test_golden_values_are_not_those_of_catmull_rom(warp_reference: Path) -> None:
    # Guards the claim in spline_grid's docstring: the natural spline is needed.
    values, coords, expected = _read_reference(warp_reference / "reference1d.star", 1)
    t = coords[:, 0] * (values.shape[0] - 1)
    i = t.floor().clamp(max=values.shape[0] - 2).long()
    u = t - i
    p = [values[(i + k).clamp(0, values.shape[0] - 1)] for k in (-1, 0, 1, 2)]
    catmull_rom = 0.5 * (
        2 * p[1]
        + (p[2] - p[0]) * u
        + (2 * p[0] - 5 * p[1] + 4 * p[2] - p[3]) * u**2
        + (3 * p[1] - p[0] - 3 * p[2] + p[3]) * u**3
    )
    assert (catmull_rom - expected).abs().max() > 1e-3


@given(
    dims=st.lists(st.integers(1, 6), min_size=1, max_size=4).map(tuple),
    seed=st.integers(0, 2**16),
)
def test_passes_through_nodes(dims: tuple[int, ...], seed: int) -> None:
    generator = torch.Generator().manual_seed(seed)
    values = torch.randn(tuple(reversed(dims)), generator=generator, dtype=torch.float64)
    nodes = grid_node_coords(dims, dtype=torch.float64)
    torch.testing.assert_close(evaluate_cubic_grid(values, nodes), values)


def test_single_node_is_constant_and_two_nodes_linear() -> None:
    t = torch.linspace(0, 1, 11, dtype=torch.float64)[:, None]
    constant = evaluate_cubic_grid(torch.tensor([2.5], dtype=torch.float64), t)
    torch.testing.assert_close(constant, torch.full((11,), 2.5, dtype=torch.float64))
    linear = evaluate_cubic_grid(torch.tensor([1.0, 3.0], dtype=torch.float64), t)
    torch.testing.assert_close(linear, 1.0 + 2.0 * t[:, 0])


def test_reproduces_linear_functions_and_has_natural_ends() -> None:
    # A natural spline reproduces any function that is linear along each axis.
    dims = (5, 4, 3)
    nodes = grid_node_coords(dims, dtype=torch.float64)
    plane = 0.3 + 1.5 * nodes[..., 0] - 2.0 * nodes[..., 1] + 0.7 * nodes[..., 2]
    points = torch.rand(200, 3, dtype=torch.float64)
    expected = 0.3 + 1.5 * points[:, 0] - 2.0 * points[:, 1] + 0.7 * points[:, 2]
    torch.testing.assert_close(evaluate_cubic_grid(plane, points), expected)

    # Zero second derivative at the first and last node (natural boundary conditions).
    values = torch.tensor([0.0, 1.0, -1.0, 2.0, 0.5], dtype=torch.float64)
    h = 1e-5
    for x in ([0.0, h, 2 * h], [1 - 2 * h, 1 - h, 1.0]):
        f = evaluate_cubic_grid(values, torch.tensor(x, dtype=torch.float64)[:, None])
        second = (f[0] - 2 * f[1] + f[2]) / h**2
        assert abs(second.item()) < 0.05  # vs O(10) in the interior
    mid = evaluate_cubic_grid(values, torch.tensor([[0.5 - h], [0.5], [0.5 + h]]).double())
    assert abs(((mid[0] - 2 * mid[1] + mid[2]) / h**2).item()) > 1.0


def test_fit_to_sine(device: torch.device) -> None:
    x = torch.linspace(0, 1, 500, device=device)
    samples = torch.sin(2 * math.pi * x)
    values = fit_cubic_grid(x[:, None], samples, (8,))
    assert values.device.type == device.type
    fitted = evaluate_cubic_grid(values, x[:, None])
    assert (fitted - samples).abs().mean().item() < 0.02


def test_weighted_fit_recovers_grid_values() -> None:
    dims = (4, 3)
    truth = torch.randn(tuple(reversed(dims)), dtype=torch.float64)
    coords = torch.rand(300, 2, dtype=torch.float64)
    samples = evaluate_cubic_grid(truth, coords)
    weights = torch.rand(300, dtype=torch.float64) + 0.1
    grid = CubicGrid.fit(coords, samples, dims, weights=weights)
    torch.testing.assert_close(grid.values.detach(), truth)


def test_resize_refines_and_restores() -> None:
    # 3 → 7 nodes keeps the old nodes among the new ones, so going back is exact.
    values = torch.randn(3, 5, dtype=torch.float64)  # dims (x=5, y=3)
    finer = resize_cubic_grid(values, (9, 7))
    assert finer.shape == (7, 9)
    torch.testing.assert_close(finer[::3, ::2], values)
    torch.testing.assert_close(resize_cubic_grid(finer, (5, 3)), values)


def test_resize_temporal_steps_keep_a_linear_trend() -> None:
    # Warp refines temporal resolution 1 → 3 → 9 …; a linear drift survives every step.
    t = torch.linspace(0, 1, 3, dtype=torch.float64)
    grid = CubicGrid((3,), 2.0 * t - 1.0)
    for n in (9, 27):
        grid = grid.resized((n,))
        torch.testing.assert_close(
            grid.values.detach(), 2.0 * torch.linspace(0, 1, n, dtype=torch.float64) - 1.0
        )


def test_batched_values_share_or_take_own_coordinates(device: torch.device) -> None:
    values = torch.randn(2, 4, 5, device=device)  # two grids of dims (5, 4)
    coords = torch.rand(2, 7, 2, device=device)
    own = evaluate_cubic_grid(values, coords)
    for b in range(2):
        torch.testing.assert_close(own[b], evaluate_cubic_grid(values[b], coords[b]))
    shared = evaluate_cubic_grid(values, coords[:1])
    torch.testing.assert_close(shared[1], evaluate_cubic_grid(values[1], coords[0]))


def test_gradients_match_finite_differences() -> None:
    values = torch.randn(3, 4, 5, dtype=torch.float64, requires_grad=True)
    coords = (0.05 + 0.9 * torch.rand(6, 3, dtype=torch.float64)).requires_grad_()
    assert torch.autograd.gradcheck(evaluate_cubic_grid, (values, coords))
    values_4d = torch.randn(2, 3, 2, 4, dtype=torch.float64, requires_grad=True)
    coords_4d = (0.05 + 0.9 * torch.rand(5, 4, dtype=torch.float64)).requires_grad_()
    assert torch.autograd.gradcheck(evaluate_cubic_grid, (values_4d, coords_4d), fast_mode=True)


def test_module_trains_on_device(device: torch.device) -> None:
    grid = CubicGrid((4, 3), device=device)
    assert grid.values.shape == (3, 4)
    coords = torch.rand(50, 2, device=device)
    target = torch.sin(3 * coords[:, 0]) + coords[:, 1]
    optimiser = torch.optim.LBFGS(grid.parameters(), line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimiser.zero_grad()
        loss = ((grid(coords) - target) ** 2).mean()
        loss.backward()
        return loss

    initial = closure().item()
    optimiser.step(closure)
    assert closure().item() < 0.05 * initial
    assert grid.values.device.type == device.type


def test_shape_errors_are_typed() -> None:
    with pytest.raises(DimensionMismatchError):
        CubicGrid((3, 4), torch.zeros(3, 4))  # should be (4, 3)
    with pytest.raises(DimensionMismatchError):
        evaluate_cubic_grid(torch.zeros(4), torch.zeros(3, 2))
    with pytest.raises(DimensionMismatchError):
        fit_cubic_grid(torch.zeros(5, 2), torch.zeros(4), (3, 3))
    with pytest.raises(DimensionMismatchError):
        LinearGrid4D((2, 2, 2), None)  # type: ignore[arg-type]


# --- linear 4-D grids -------------------------------------------------------------------


def test_linear_grid_reproduces_linear_functions(device: torch.device) -> None:
    dims = (3, 4, 2, 5)  # x, y, z, t
    nodes = grid_node_coords(dims, device=device, dtype=torch.float64)
    slope = torch.tensor([1.0, -2.0, 0.5, 3.0], device=device, dtype=torch.float64)
    grid = LinearGrid4D(dims, nodes @ slope + 0.25)
    points = torch.rand(100, 4, device=device, dtype=torch.float64)
    torch.testing.assert_close(grid(points), points @ slope + 0.25)


def test_linear_grid_is_multilinear_and_passes_through_nodes() -> None:
    dims = (3, 2, 4, 3)
    values = torch.randn(tuple(reversed(dims)), dtype=torch.float64)
    nodes = grid_node_coords(dims, dtype=torch.float64)
    torch.testing.assert_close(evaluate_linear_grid(values, nodes), values)
    # Midway between two nodes along t (others on nodes) is their mean.
    mid = nodes[0, 1, 1, 2].clone()
    mid[3] = 0.25
    expected = 0.5 * (values[0, 1, 1, 2] + values[1, 1, 1, 2])
    torch.testing.assert_close(evaluate_linear_grid(values, mid[None])[0], expected)
    # A product x·t is reproduced (bilinear), which a cubic grid would also do but a
    # nearest-node scheme would not.
    product = nodes[..., 0] * nodes[..., 3]
    points = torch.rand(50, 4, dtype=torch.float64)
    torch.testing.assert_close(evaluate_linear_grid(product, points), points[:, 0] * points[:, 3])


def test_linear_grid_gradients() -> None:
    values = torch.randn(2, 3, 2, 3, dtype=torch.float64, requires_grad=True)
    coords = (0.05 + 0.9 * torch.rand(5, 4, dtype=torch.float64)).requires_grad_()
    assert torch.autograd.gradcheck(evaluate_linear_grid, (values, coords))
