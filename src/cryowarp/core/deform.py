"""Smooth real-space deformation of images: every pixel moved by its own displacement.

A displacement field ``d`` (pixels, (x, y)) says where the content at each position has moved
to (docs/conventions.md §4). :func:`deform_image` returns ``out(y) = image(y − d(y))``, which
moves content by ``+d`` (exact for a constant field, to first order in the field's gradient
otherwise); aligning a frame whose content moved by ``s`` deforms it by ``−s``. Boundaries are
periodic, like the Fourier shift that usually carries the global part of a motion.

Fields are given on a coarse regular grid of nodes spanning the image from the centre of pixel
(0, 0) to that of the last pixel (:func:`field_node_positions_px`). :func:`upsample_field`
interpolates them with Catmull-Rom splines (:func:`cubic_interpolation_matrix`) to a finer grid
of nodes (at most :data:`FINE_FIELD_SPACING_PX` apart) and bilinearly from there to every
pixel.

Interpolation of the image (``interpolation=``):

``"bspline"`` (default)
    Cubic B-spline: the image is prefiltered into spline coefficients
    (:func:`bspline_prefilter_rfft`, one multiplication of its spectrum) and the spline is
    evaluated with four bilinear ``grid_sample`` fetches (Sigg & Hadwiger, GPU Gems 2, ch. 20).
    Fourth-order accurate: a sub-pixel shift of content at 0.05 cycles/px is off by ~10⁻⁶ of
    its amplitude, ~1000× less than ``"cubic"``.
``"cubic"``
    ``grid_sample``'s bicubic convolution (Keys, a = −0.75): one fused kernel, ~2–3× faster
    per image on a CPU, but only first-order accurate (a position bias of up to ~0.04 px that
    depends on the sub-pixel fraction).

The measured accuracy and cost of both are in docs/motion_average.md.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F

__all__ = [
    "FINE_FIELD_SPACING_PX",
    "DeformInterpolation",
    "bspline_prefilter_rfft",
    "cubic_interpolation_matrix",
    "deform_image",
    "field_node_positions_px",
    "upsample_field",
]

DeformInterpolation = Literal["bspline", "cubic"]

#: Largest spacing (pixels) of the nodes from which :func:`upsample_field` interpolates
#: bilinearly; its error is at most ``spacing²/8 · max|∂²d|``.
FINE_FIELD_SPACING_PX = 4


def field_node_positions_px(
    image_shape: tuple[int, int],
    field_shape: tuple[int, int],
    *,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:  # (gh, gw, 2)
    """Pixel positions (x, y) of the nodes of a ``field_shape = (gh, gw)`` displacement grid
    over an image of ``image_shape = (h, w)`` (corners at the corner pixel centres)."""
    h, w = image_shape
    gh, gw = field_shape
    ys = torch.linspace(0, h - 1, gh, device=device, dtype=dtype)
    xs = torch.linspace(0, w - 1, gw, device=device, dtype=dtype)
    yy, xx = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack([xx, yy], dim=-1)


def cubic_interpolation_matrix(
    n_samples: int,
    n_nodes: int,
    *,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:  # (n_samples, n_nodes)
    """Weights that interpolate ``n_nodes`` evenly spaced values at ``n_samples`` evenly spaced
    points spanning the same interval (both ends included).

    Catmull-Rom (Keys' cubic convolution with a = −1/2, exact for quadratics); the missing
    neighbour beyond each end is extrapolated quadratically (``f₋₁ = 3f₀ − 3f₁ + f₂``). Two
    nodes interpolate linearly, one node is constant.
    """
    out = torch.zeros(n_samples, n_nodes, dtype=torch.float64)
    if n_nodes == 1:
        return out.add_(1.0).to(device=device, dtype=dtype)
    pos = torch.arange(n_samples, dtype=torch.float64) * (n_nodes - 1) / max(n_samples - 1, 1)
    first = pos.floor().clamp(max=n_nodes - 2)
    t = pos - first
    if n_nodes == 2:
        taps = [(0, 1 - t), (1, t)]
    else:
        taps = [
            (-1, (-(t**3) + 2 * t**2 - t) / 2),
            (0, (3 * t**3 - 5 * t**2 + 2) / 2),
            (1, (-3 * t**3 + 4 * t**2 + t) / 2),
            (2, (t**3 - t**2) / 2),
        ]
    rows, cols, values = [], [], []
    for offset, weight in taps:
        index = first.long() + offset
        inside = (index >= 0) & (index < n_nodes)
        rows.append(inside.nonzero()[:, 0])
        cols.append(index[inside])
        values.append(weight[inside])
        # A tap beyond an end stands for 3·(end) − 3·(next) + (next but one).
        for end, step, beyond in ((0, 1, index < 0), (n_nodes - 1, -1, index >= n_nodes)):
            hit = beyond.nonzero()[:, 0]
            for k, factor in enumerate((3.0, -3.0, 1.0)):
                rows.append(hit)
                cols.append(torch.full_like(hit, end + step * k))
                values.append(factor * weight[hit])
    out.index_put_((torch.cat(rows), torch.cat(cols)), torch.cat(values), accumulate=True)
    return out.to(device=device, dtype=dtype)


def upsample_field(
    displacement_px: torch.Tensor,  # (..., gh, gw, 2) at field_node_positions_px
    image_shape: tuple[int, int],
) -> torch.Tensor:  # (..., h, w, 2)
    """The displacement at every pixel of an ``image_shape = (h, w)`` image.

    Catmull-Rom interpolation (two small matrix products) to nodes at most
    :data:`FINE_FIELD_SPACING_PX` apart and at least 8 per interval of the given grid, then
    bilinear to every pixel (error ≲ 1/500 of the field's second difference between nodes).
    """
    h, w = image_shape
    gh, gw = displacement_px.shape[-3], displacement_px.shape[-2]
    fine = (_fine_nodes(h, gh), _fine_nodes(w, gw))
    dtype = displacement_px.dtype
    wy = cubic_interpolation_matrix(fine[0], gh, device=displacement_px.device, dtype=dtype)
    wx = cubic_interpolation_matrix(fine[1], gw, device=displacement_px.device, dtype=dtype)
    lead = displacement_px.shape[:-3]
    field = displacement_px.reshape(-1, gh, gw, 2).permute(0, 3, 1, 2)  # (b, 2, gh, gw)
    field = wy @ field @ wx.T  # (b, 2, fh, fw)
    if fine != (h, w):
        field = F.interpolate(field, size=(h, w), mode="bilinear", align_corners=True)
    return field.permute(0, 2, 3, 1).reshape(*lead, h, w, 2)


def _fine_nodes(n_px: int, n_nodes: int) -> int:
    # At most FINE_FIELD_SPACING_PX apart and at least 8 per interval of the given grid.
    wanted = max(math.ceil((n_px - 1) / FINE_FIELD_SPACING_PX), 8 * (n_nodes - 1)) + 1
    return min(n_px, wanted)


def bspline_prefilter_rfft(
    shape: tuple[int, int],
    *,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:  # (h, w//2 + 1)
    """Multiply an image's rfft spectrum by this to get the spectrum of its periodic cubic
    B-spline coefficients (the sampled B-spline responds ``(2 + cos 2πf) / 3`` per axis)."""
    h, w = shape
    fy = torch.fft.fftfreq(h, device=device, dtype=torch.float64)
    fx = torch.fft.rfftfreq(w, device=device, dtype=torch.float64)
    ry = 3.0 / (2.0 + torch.cos(2 * math.pi * fy))
    rx = 3.0 / (2.0 + torch.cos(2 * math.pi * fx))
    return (ry[:, None] * rx[None, :]).to(dtype)


def deform_image(
    image: torch.Tensor,  # (..., h, w)
    displacement_px: torch.Tensor,  # (..., gh, gw, 2) at field_node_positions_px
    *,
    interpolation: DeformInterpolation = "bspline",
    prefiltered: bool = False,
) -> torch.Tensor:  # (..., h, w)
    """``out(y) = image(y − d(y))`` with periodic boundaries (module docstring).

    Parameters
    ----------
    image:
        ``(..., h, w)`` real images; with ``prefiltered=True`` and ``"bspline"``, their
        B-spline coefficients (the inverse FFT of the spectrum times
        :func:`bspline_prefilter_rfft`, which saves two FFTs when the spectrum is at hand).
    displacement_px:
        ``(..., gh, gw, 2)`` displacement (x, y) in pixels at the nodes of
        :func:`field_node_positions_px`; leading dimensions broadcast with the image's. Images
        that share one field (no leading dimensions of their own in it) are sampled together.
    interpolation:
        ``"bspline"`` or ``"cubic"`` (module docstring).
    prefiltered:
        ``image`` already holds B-spline coefficients (ignored for ``"cubic"``).

    Returns
    -------
    torch.Tensor
        ``(..., h, w)`` deformed images in the dtype of ``image``.
    """
    if interpolation not in ("bspline", "cubic"):
        raise ValueError(f"interpolation must be 'bspline' or 'cubic', got {interpolation!r}")
    if displacement_px.ndim < 3 or displacement_px.shape[-1] != 2:
        raise ValueError(
            f"displacement_px must be (..., gh, gw, 2), got {tuple(displacement_px.shape)}"
        )
    h, w = image.shape[-2:]
    if interpolation == "bspline" and not prefiltered:
        spectrum = torch.fft.rfft2(image) * bspline_prefilter_rfft(
            (h, w), device=image.device, dtype=image.dtype
        )
        image = torch.fft.irfft2(spectrum, s=(h, w))
    field = displacement_px.to(image.dtype)
    field_lead = field.shape[:-3]
    lead = _broadcast(tuple(image.shape[:-2]), tuple(field_lead))
    if math.prod(field_lead) == 1:  # one field: the images are channels of one sample
        images = image.reshape(1, -1, h, w)
        field = field.reshape(1, *field.shape[-3:])
    else:
        images = image.expand(*lead, h, w).reshape(-1, 1, h, w)
        field = field.expand(*lead, *field.shape[-3:]).reshape(-1, *field.shape[-3:])
    dense = upsample_field(field, (h, w))  # (b, h, w, 2)
    margin = min(math.ceil(float(dense.abs().amax())) + 3, h - 1, w - 1)
    padded = F.pad(images, (margin, margin, margin, margin), mode="circular")
    # Sampling positions y − d(y) in padded pixels, then grid_sample's normalised coordinates
    # (align_corners=True: −1 ↔ padded pixel 0, 1 ↔ the last).
    scale = (2.0 / (w - 1 + 2 * margin), 2.0 / (h - 1 + 2 * margin))
    xs = torch.arange(w, device=image.device, dtype=image.dtype) + margin
    ys = torch.arange(h, device=image.device, dtype=image.dtype) + margin
    dense[..., 0].neg_().add_(xs)
    dense[..., 1].neg_().add_(ys[:, None])
    if interpolation == "cubic":
        grid = _normalised(dense, scale)
        out = F.grid_sample(padded, grid, mode="bicubic", padding_mode="border", align_corners=True)
    else:
        out = _bspline_sample(padded, dense, scale)
    return out.reshape(*lead, h, w)


def _broadcast(a: tuple[int, ...], b: tuple[int, ...]) -> tuple[int, ...]:
    """NumPy broadcasting of two shapes (``torch.broadcast_shapes`` imports sympy)."""
    n = max(len(a), len(b))
    a, b = (1,) * (n - len(a)) + a, (1,) * (n - len(b)) + b
    if any(x != y and 1 not in (x, y) for x, y in zip(a, b, strict=True)):
        raise ValueError(f"image and displacement leading shapes {a} and {b} do not broadcast")
    return tuple(max(x, y) if 1 in (x, y) else x for x, y in zip(a, b, strict=True))


def _normalised(positions_px: torch.Tensor, scale: tuple[float, float]) -> torch.Tensor:
    grid = torch.empty_like(positions_px)
    torch.mul(positions_px[..., 0], scale[0], out=grid[..., 0]).sub_(1.0)
    torch.mul(positions_px[..., 1], scale[1], out=grid[..., 1]).sub_(1.0)
    return grid


def _bspline_taps(
    p: torch.Tensor,  # (b, h, w) positions along one axis, pixels
    scale: float,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Weight ``g0`` of the first pair of taps and the normalised positions of the two
    bilinear fetches that evaluate a cubic B-spline at ``p`` (weights w0…w3 on taps
    ``i − 1 … i + 2``; ``g0 = w0 + w1``, fetches at ``i − 1 + w1/g0`` and
    ``i + 1 + w3/(1 − g0)``). In-place arithmetic: the cost is memory traffic."""
    start = torch.floor(p)
    t = torch.sub(p, start)
    t2 = t * t
    t3 = t2 * t
    # 6·g0 = 5 − 3t − 3t² + 2t³ and 6·w1 = 3t³ − 6t² + 4, 6·w3 = t³.
    g0 = torch.add(t, t2).mul_(-3.0).add_(5.0).add_(t3, alpha=2.0).div_(6.0)
    q0 = torch.mul(t3, 3.0).sub_(t2, alpha=6.0).add_(4.0).div_(g0).div_(6.0).add_(start)
    q1 = t3.div_(torch.sub(1.0, g0).mul_(6.0)).add_(start)
    # Normalised (align_corners=True): (i − 1 + …)·scale − 1 and (i + 1 + …)·scale − 1.
    q0.mul_(scale).sub_(1.0 + scale)
    q1.mul_(scale).sub_(1.0 - scale)
    return g0, q0, q1


def _bspline_sample(
    coefficients: torch.Tensor,  # (b, c, H, W)
    positions_px: torch.Tensor,  # (b, h, w, 2)
    scale: tuple[float, float],
) -> torch.Tensor:  # (b, c, h, w)
    g0x, q0x, q1x = _bspline_taps(positions_px[..., 0], scale[0])
    g0y, q0y, q1y = _bspline_taps(positions_px[..., 1], scale[1])
    grid = torch.stack([q0x, q0y], dim=-1)

    def fetch() -> torch.Tensor:
        return F.grid_sample(
            coefficients, grid, mode="bilinear", padding_mode="border", align_corners=True
        )

    f00 = fetch()
    grid[..., 0] = q1x
    f10 = fetch()
    grid[..., 1] = q1y
    f11 = fetch()
    grid[..., 0] = q0x
    f01 = fetch()
    # Σ g_a(x) g_b(y) f_ab with g1 = 1 − g0: three linear blends.
    wx, wy = g0x[:, None], g0y[:, None]
    return torch.lerp(torch.lerp(f11, f01, wx), f10.lerp_(f00, wx), wy)
