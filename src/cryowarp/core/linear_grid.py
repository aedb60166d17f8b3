"""Linear grids in 1-4 dimensions, chiefly the 4-D (X, Y, Z, T) grids of volume warps.

Same coordinate convention as :mod:`cryowarp.core.spline_grid`: normalised coordinates in
``[0, 1]`` ordered (x, y, z, t), 0 at the first node and 1 at the last, clamped outside; values
stored in array order ``(…, t, z, y, x)`` (docs/conventions.md §1). Interpolation is
multilinear (quadrilinear for 4-D): it passes through the nodes and reproduces functions that
are linear in each coordinate exactly. A dimension with one node is constant.
"""

from __future__ import annotations

import torch
from torch import nn

from cryowarp.core._node_grids import grid_ndim, initial_values, node_counts
from cryowarp.core.interpolate import interpolate_nd
from cryowarp.errors import DimensionMismatchError

__all__ = ["LinearGrid4D", "evaluate_linear_grid"]


def evaluate_linear_grid(
    values: torch.Tensor,  # (*batch, [t,] [z,] y, x)
    coords: torch.Tensor,  # (*batch, *points, ndim) normalised (x, y, z, t)
) -> torch.Tensor:  # (*batch, *points)
    """Multilinear interpolation of grids at normalised coordinates.

    Parameters
    ----------
    values:
        Node values; the last ``ndim = coords.shape[-1]`` axes are the grid in array order.
    coords:
        ``(*batch, *points, ndim)`` positions in ``[0, 1]`` (clamped), ordered (x, y, z, t);
        batch dimensions equal those of ``values`` or are 1.

    Returns
    -------
    torch.Tensor
        ``(*batch, *points)``; differentiable w.r.t. both inputs.
    """
    ndim = grid_ndim(values, coords)
    last_index = node_counts(values, ndim, coords) - 1
    position_px = coords.clamp(0.0, 1.0) * last_index
    return interpolate_nd(values, position_px, method="linear", boundary="clamp")


class LinearGrid4D(nn.Module):
    """A trainable 4-D linear grid over (x, y, z, t), e.g. a volume warp of a tilt series.

    Parameters
    ----------
    dims:
        Node counts ``(x, y, z, t)``.
    values:
        Optional initial values of shape ``(t, z, y, x)``; zeros otherwise.
    device, dtype:
        Where to create the zero values when ``values`` is not given.

    Calling the grid with coordinates ``(*points, 4)`` in ``[0, 1]`` returns ``(*points)``.
    """

    values: nn.Parameter

    def __init__(
        self,
        dims: tuple[int, int, int, int],
        values: torch.Tensor | None = None,  # (t, z, y, x)
        *,
        device: torch.device | str | None = None,
        dtype: torch.dtype = torch.float32,
    ) -> None:
        super().__init__()
        if len(dims) != 4 or any(int(n) < 1 for n in dims):
            raise DimensionMismatchError(None, f"a 4-D grid needs 4 positive sizes, got {dims}")
        self.dims = (int(dims[0]), int(dims[1]), int(dims[2]), int(dims[3]))
        self.values = nn.Parameter(initial_values(self.dims, values, device=device, dtype=dtype))

    def forward(self, coords: torch.Tensor) -> torch.Tensor:  # (*points, 4) -> (*points)
        """Interpolated values at normalised coordinates (x, y, z, t)."""
        if coords.shape[-1] != 4:
            raise DimensionMismatchError(
                None, f"LinearGrid4D needs (x, y, z, t) coordinates, got {tuple(coords.shape)}"
            )
        return evaluate_linear_grid(self.values, coords.to(self.values.device))

    def extra_repr(self) -> str:
        return f"dims={self.dims}"
