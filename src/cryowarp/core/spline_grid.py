"""Cubic spline grids in 1-4 dimensions, as Warp's ``CubicGrid`` evaluates them.

A grid holds control values at equally spaced nodes. Positions are **normalised coordinates**
in ``[0, 1]`` per dimension, ordered (x, y, z, t) like Warp's grid dimensions (X, Y, Z, T):
0 is the first node, 1 the last; coordinates outside are clamped to ``[0, 1]``. The control
values are stored in array order ``(…, t, z, y, x)`` (docs/conventions.md §1), so a grid of
Warp dims ``(X, Y, Z)`` has ``values.shape == (Z, Y, X)``.

The surface is the tensor product of **natural cubic splines** (zero second derivative at the
end nodes) through the control values, which is what Warp's golden values show
(``tests/core/test_spline_grid.py::test_matches_warp_golden``). It passes through the values; a
dimension with one node is constant and one with two nodes is linear.

Implementation: a natural spline with unit knot spacing is a uniform cubic B-spline whose
``n + 2`` coefficients follow from the ``n`` values by a small linear solve per axis; the surface
is then evaluated locally (4 taps per axis) by :func:`cryowarp.core.interpolate.interpolate_nd`.
teamtomo's torch-cubic-spline-grids offers approximating B-spline and Catmull-Rom grids, neither
of which reproduces Warp's values, hence this module.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from cryowarp.core._node_grids import grid_ndim, initial_values, node_counts
from cryowarp.core.interpolate import interpolate_nd
from cryowarp.errors import DimensionMismatchError

__all__ = [
    "CubicGrid",
    "evaluate_cubic_grid",
    "fit_cubic_grid",
    "grid_node_coords",
    "resize_cubic_grid",
]


def evaluate_cubic_grid(
    values: torch.Tensor,  # (*batch, [t,] [z,] y, x)
    coords: torch.Tensor,  # (*batch, *points, ndim) normalised (x, y, z, t)
) -> torch.Tensor:  # (*batch, *points)
    """Evaluate natural cubic spline grids at normalised coordinates.

    Parameters
    ----------
    values:
        Control values; the last ``ndim = coords.shape[-1]`` axes are the grid in array order.
    coords:
        ``(*batch, *points, ndim)`` positions in ``[0, 1]`` (clamped), ordered (x, y, z, t);
        batch dimensions equal those of ``values`` or are 1.

    Returns
    -------
    torch.Tensor
        ``(*batch, *points)`` interpolated values; differentiable w.r.t. both inputs.
    """
    ndim = grid_ndim(values, coords)
    coefficients = _natural_bspline_coefficients(values, ndim)
    sizes = node_counts(values, ndim, coords)
    # Node i sits at coefficient index i + 1 (one padding coefficient on each side).
    position_px = coords.clamp(0.0, 1.0) * (sizes - 1).clamp(min=1.0) + 1.0
    return interpolate_nd(coefficients, position_px, method="cubic_bspline", boundary="clamp")


def grid_node_coords(
    dims: tuple[int, ...],
    *,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:  # (*reversed(dims), ndim)
    """Normalised coordinates (x, y, z, t) of every node of a grid of Warp ``dims``.

    ``dims`` is ordered (x, y, z, t); the result is in array order ``(…, y, x, ndim)``. A
    dimension with a single node sits at 0.5.
    """
    axes = [
        torch.linspace(0.0, 1.0, n, device=device, dtype=dtype)
        if n > 1
        else torch.full((1,), 0.5, device=device, dtype=dtype)
        for n in reversed(dims)
    ]
    mesh = torch.meshgrid(*axes, indexing="ij")  # array order (…, y, x)
    return torch.stack(mesh[::-1], dim=-1)


def resize_cubic_grid(
    values: torch.Tensor,  # (*batch, *grid)
    new_dims: tuple[int, ...],  # Warp order (x, y, z, t)
) -> torch.Tensor:  # (*batch, *reversed(new_dims))
    """Resample a grid to new node counts by evaluating it at the new nodes (Warp's resize)."""
    ndim = len(new_dims)
    if any(n < 1 for n in new_dims) or values.ndim < ndim:
        raise DimensionMismatchError(
            None, f"cannot resize values of shape {tuple(values.shape)} to dims {new_dims}"
        )
    floating = values.is_floating_point() or values.is_complex()
    dtype = values.real.dtype if floating else torch.float32
    nodes = grid_node_coords(new_dims, device=values.device, dtype=dtype)
    batch_ones = (1,) * (values.ndim - ndim)
    return evaluate_cubic_grid(values, nodes.reshape(*batch_ones, *nodes.shape))


def fit_cubic_grid(
    coords: torch.Tensor,  # (n, ndim) normalised (x, y, z, t)
    samples: torch.Tensor,  # (n,)
    dims: tuple[int, ...],  # Warp order (x, y, z, t)
    *,
    weights: torch.Tensor | None = None,  # (n,)
) -> torch.Tensor:  # reversed(dims)
    """Least-squares control values of a grid of ``dims`` that best reproduce ``samples``.

    The evaluation is linear in the values, so the fit is a (weighted) linear least-squares
    problem, solved with the pseudo-inverse (minimum-norm values when underdetermined).

    Returns
    -------
    torch.Tensor
        Control values in array order ``reversed(dims)``.
    """
    if coords.ndim != 2 or coords.shape[-1] != len(dims) or samples.shape != coords.shape[:1]:
        raise DimensionMismatchError(
            None,
            f"fit needs coords (n, {len(dims)}) and samples (n,), got {tuple(coords.shape)} "
            f"and {tuple(samples.shape)}",
        )
    if weights is not None and weights.shape != samples.shape:
        raise DimensionMismatchError(
            None, f"weights {tuple(weights.shape)} do not match samples {tuple(samples.shape)}"
        )
    shape = tuple(reversed(dims))
    n_nodes = math.prod(dims)
    basis = torch.eye(n_nodes, device=coords.device, dtype=coords.dtype).reshape(n_nodes, *shape)
    design = evaluate_cubic_grid(basis, coords[None]).T  # (n, n_nodes)
    rhs = samples.to(coords.dtype)
    if weights is not None:
        root = weights.to(coords.dtype).clamp(min=0).sqrt()
        design = design * root[:, None]
        rhs = rhs * root
    solution: torch.Tensor = torch.linalg.pinv(design) @ rhs
    return solution.reshape(shape)


class CubicGrid(nn.Module):
    """A trainable natural cubic spline grid (Warp's ``CubicGrid``).

    Parameters
    ----------
    dims:
        Node counts in Warp order (x, y, z, t); 1-4 dimensions.
    values:
        Optional initial control values of shape ``reversed(dims)``; zeros otherwise.
    device, dtype:
        Where to create the zero values when ``values`` is not given.

    Calling the grid with coordinates ``(*points, ndim)`` in ``[0, 1]`` returns ``(*points)``.
    """

    values: nn.Parameter

    def __init__(
        self,
        dims: tuple[int, ...],
        values: torch.Tensor | None = None,  # reversed(dims)
        *,
        device: torch.device | str | None = None,
        dtype: torch.dtype = torch.float32,
    ) -> None:
        super().__init__()
        dims = tuple(int(n) for n in dims)
        if not 1 <= len(dims) <= 4 or any(n < 1 for n in dims):
            raise DimensionMismatchError(None, f"grid dims must be 1-4 positive sizes, got {dims}")
        self.dims = dims
        self.values = nn.Parameter(initial_values(dims, values, device=device, dtype=dtype))

    def forward(self, coords: torch.Tensor) -> torch.Tensor:  # (*points, ndim) -> (*points)
        """Interpolated values at normalised coordinates (x, y, z, t)."""
        return evaluate_cubic_grid(self.values, coords.to(self.values.device))

    def resized(self, new_dims: tuple[int, ...]) -> CubicGrid:
        """A new grid of ``new_dims`` nodes sampling this one at its nodes."""
        with torch.no_grad():
            new_values = resize_cubic_grid(self.values, tuple(new_dims))
        return CubicGrid(tuple(new_dims), new_values)

    @classmethod
    def fit(
        cls,
        coords: torch.Tensor,  # (n, ndim)
        samples: torch.Tensor,  # (n,)
        dims: tuple[int, ...],
        *,
        weights: torch.Tensor | None = None,  # (n,)
    ) -> CubicGrid:
        """The grid of ``dims`` fitted to ``samples`` by least squares."""
        return cls(dims, fit_cubic_grid(coords, samples, dims, weights=weights))

    def extra_repr(self) -> str:
        return f"dims={self.dims}"


def _natural_bspline_coefficients(
    values: torch.Tensor,  # (*batch, *grid)
    ndim: int,
) -> torch.Tensor:  # (*batch, *(n + 2 for n in grid))
    """B-spline coefficients reproducing the natural cubic spline through ``values``."""
    coefficients = values
    for axis in range(values.ndim - ndim, values.ndim):
        size = values.shape[axis]
        matrix = _natural_spline_matrix(size, device=values.device).to(values.dtype)
        moved = coefficients.movedim(axis, -1)
        coefficients = (moved @ matrix.T).movedim(-1, axis)
    return coefficients


def _natural_spline_matrix(size: int, *, device: torch.device) -> torch.Tensor:  # (size+2, size)
    """Map from ``size`` node values to ``size + 2`` uniform cubic B-spline coefficients.

    With coefficients ``c_-1 … c_size`` the spline at node i is ``(c_i-1 + 4 c_i + c_i+1) / 6``
    and its second derivative ``c_i-1 - 2 c_i + c_i+1``; natural ends set the latter to 0 at
    the first and last node. A single node gives a constant.
    """
    if size == 1:
        return torch.ones((3, 1), dtype=torch.float64, device=device)
    n = size + 2
    system = torch.zeros((n, n), dtype=torch.float64)
    system[0, 0:3] = torch.tensor([1.0, -2.0, 1.0])
    system[-1, -3:] = torch.tensor([1.0, -2.0, 1.0])
    for i in range(size):
        system[i + 1, i : i + 3] = torch.tensor([1.0, 4.0, 1.0]) / 6
    rhs = torch.zeros((n, size), dtype=torch.float64)
    rhs[1:-1] = torch.eye(size, dtype=torch.float64)
    matrix: torch.Tensor = torch.linalg.solve(system, rhs)
    return matrix.to(device)
