"""Smooth real-space deformation of images: every pixel moved by its own displacement.

A displacement field ``d`` (pixels, (x, y)) says where the content at each position has moved
to (docs/conventions.md §4). :func:`deform_image` returns ``out(y) = image(y − d(y))``, which
moves content by ``+d`` to first order in the field's gradient (exact for a constant field);
to undo a motion ``s`` (aligning), deform by ``−s``. Fields are given on a coarse regular grid
of nodes spanning the image from the centre of pixel (0, 0) to that of the last pixel and are
upsampled bilinearly (they are smooth: spline-grid motion, beam-induced deformation).
Sampling uses bicubic convolution (``torch.nn.functional.grid_sample``, Keys a = −0.75) with
border clamping.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["deform_image", "field_node_positions_px"]


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


def deform_image(
    image: torch.Tensor,  # (..., h, w)
    displacement_px: torch.Tensor,  # (..., gh, gw, 2) at field_node_positions_px
) -> torch.Tensor:  # (..., h, w)
    """``out(y) = image(y − d(y))`` with ``d`` upsampled bilinearly from its nodes.

    Parameters
    ----------
    image:
        ``(..., h, w)`` real images.
    displacement_px:
        ``(..., gh, gw, 2)`` displacement (x, y) in pixels at the nodes of
        :func:`field_node_positions_px`; leading dimensions broadcast with the image's.

    Returns
    -------
    torch.Tensor
        ``(..., h, w)`` deformed images in the dtype of ``image``.
    """
    h, w = image.shape[-2:]
    lead = torch.broadcast_shapes(image.shape[:-2], displacement_px.shape[:-3])
    images = image.expand(*lead, h, w).reshape(-1, 1, h, w)
    field = displacement_px.to(image.dtype).expand(*lead, *displacement_px.shape[-3:])
    field = field.reshape(-1, *displacement_px.shape[-3:]).permute(0, 3, 1, 2)  # (b, 2, gh, gw)
    dense = F.interpolate(field, size=(h, w), mode="bilinear", align_corners=True)
    ys = torch.arange(h, device=image.device, dtype=image.dtype)
    xs = torch.arange(w, device=image.device, dtype=image.dtype)
    source_x = xs[None, None, :] - dense[:, 0]  # (b, h, w)
    source_y = ys[None, :, None] - dense[:, 1]
    # grid_sample's normalised coordinates with align_corners=True: −1 ↔ pixel 0, 1 ↔ last.
    grid = torch.stack(
        [source_x * (2 / max(w - 1, 1)) - 1, source_y * (2 / max(h - 1, 1)) - 1], dim=-1
    )
    out = F.grid_sample(images, grid, mode="bicubic", padding_mode="border", align_corners=True)
    return out.reshape(*lead, h, w)
