"""Hand-made picking data for fast training tests: blobs on noise, labelled as BoxNet labels.

Two "species": ``dark`` Gaussian blobs (protein on a raw micrograph) and ``bright`` rings of a
larger radius (a contrast and shape a model trained on the dark blobs has never seen).
"""

from __future__ import annotations

import torch

from cryowarp.preprocess.picking.labels import LabelledMicrograph, labels_from_positions
from cryowarp.preprocess.picking.network import BoxNet, BoxNetArchitecture
from cryowarp.preprocess.picking.prepare import normalise_robust

TINY_ARCHITECTURE = BoxNetArchitecture(widths=(8, 16, 32), blocks_per_level=1)
DIAMETER_A = {"dark": 120.0, "bright": 160.0}  # label radii 3 px and 4 px at 8 Å


def blob_image(
    shape: tuple[int, int],
    positions_px: torch.Tensor,  # (n, 2) x, y
    *,
    kind: str,
    generator: torch.Generator,
    amplitude: float = 2.5,
) -> torch.Tensor:  # (h, w)
    """White noise plus one blob per position, robustly normalised (as prepare does)."""
    h, w = shape
    yy, xx = torch.meshgrid(
        torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32), indexing="ij"
    )
    image = torch.randn(h, w, generator=generator)
    for x, y in positions_px.tolist():
        r = ((xx - x) ** 2 + (yy - y) ** 2).sqrt()
        if kind == "dark":
            image -= amplitude * torch.exp(-(r**2) / (2 * 3.5**2))
        else:
            image += amplitude * torch.exp(-((r - 5.0) ** 2) / 2.0)
    return normalise_robust(image)


def spaced_positions(
    shape: tuple[int, int], n: int, *, generator: torch.Generator, min_distance_px: float = 14.0
) -> torch.Tensor:  # (m, 2) float32, m ≤ n
    """Up to ``n`` random (x, y) at least ``min_distance_px`` apart, 6 px inside the border."""
    h, w = shape
    kept: list[tuple[float, float]] = []
    for _ in range(20 * n):
        x = 6 + float(torch.rand((), generator=generator)) * (w - 12)
        y = 6 + float(torch.rand((), generator=generator)) * (h - 12)
        if all((x - a) ** 2 + (y - b) ** 2 >= min_distance_px**2 for a, b in kept):
            kept.append((x, y))
        if len(kept) == n:
            break
    return torch.tensor(kept, dtype=torch.float32).reshape(-1, 2)


def blob_micrographs(
    n: int, shape: tuple[int, int] = (96, 96), *, kind: str = "dark", seed: int = 0,
    particles: int = 14,
) -> list[LabelledMicrograph]:  # fmt: skip
    """``n`` labelled toy micrographs at 8 Å/px."""
    generator = torch.Generator().manual_seed(seed)
    out = []
    for i in range(n):
        positions = spaced_positions(shape, particles, generator=generator)
        image = blob_image(shape, positions, kind=kind, generator=generator)
        diameters = torch.full((positions.shape[0],), DIAMETER_A[kind])
        labels = labels_from_positions(shape, positions, diameters, pixel_size_a=8.0)
        out.append(
            LabelledMicrograph(
                image=image,
                labels=labels,
                positions_px=positions,
                diameters_a=diameters,
                artefact_mask=torch.zeros(shape, dtype=torch.bool),
                source=f"toy_{kind}_{seed}_{i}",
            )
        )
    return out


def tiny_network(seed: int = 0) -> BoxNet:
    torch.manual_seed(seed)
    return BoxNet(TINY_ARCHITECTURE)
