"""BoxNet: a fully convolutional residual U-Net that labels each pixel of a micrograph at
8 Å/px as background, particle or artefact (Tegunov & Cramer, Nat Methods 2019).

Architecture (sized to train on a laptop CPU and run fast on a GPU): an encoder of
``len(widths)`` levels, each a stride-2 3×3 convolution (except the first) followed by
``blocks_per_level`` residual blocks (3×3 conv → batch norm → ReLU → 3×3 conv → batch norm,
plus the input, → ReLU); a decoder that upsamples ×2 (bilinear), concatenates the encoder
features of that level, and applies one residual block; a 1×1 convolution to the three class
logits. Inputs need sides divisible by ``2 ** (len(widths) − 1)``; the tiler of the inference
takes care of that.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "ARTEFACT",
    "BACKGROUND",
    "CLASS_NAMES",
    "PARTICLE",
    "BoxNet",
    "BoxNetArchitecture",
]

BACKGROUND = 0
PARTICLE = 1
ARTEFACT = 2
CLASS_NAMES = ("background", "particle", "artefact")
"""Output channels, in order."""


@dataclass(frozen=True)
class BoxNetArchitecture:
    """Sizes of a :class:`BoxNet` (stored with every model file).

    Attributes
    ----------
    widths:
        Channels per level, finest first.
    blocks_per_level:
        Residual blocks per encoder level.
    """

    widths: tuple[int, ...] = (16, 32, 64, 128)
    blocks_per_level: int = 1

    def to_dict(self) -> dict[str, object]:
        return {"widths": list(self.widths), "blocks_per_level": self.blocks_per_level}

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> BoxNetArchitecture:
        widths = data["widths"]
        blocks = data["blocks_per_level"]
        if not isinstance(widths, list | tuple) or not isinstance(blocks, int):
            raise ValueError(f"not a BoxNet architecture: {data}")
        return cls(widths=tuple(int(w) for w in widths), blocks_per_level=blocks)

    @property
    def multiple_px(self) -> int:
        """Input sides must be multiples of this."""
        return int(2 ** (len(self.widths) - 1))


class _Residual(nn.Module):
    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.skip = nn.Conv2d(c_in, c_out, 1, bias=False) if c_in != c_out else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return F.relu(y + self.skip(x))


class _Down(nn.Module):
    def __init__(self, c_in: int, c_out: int, blocks: int, *, stride: int) -> None:
        super().__init__()
        self.entry = nn.Sequential(
            nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False),
            nn.BatchNorm2d(c_out),
            nn.ReLU(),
        )
        self.blocks = nn.Sequential(*(_Residual(c_out, c_out) for _ in range(blocks)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(self.entry(x))  # type: ignore[no-any-return]


class _Up(nn.Module):
    def __init__(self, c_coarse: int, c_skip: int) -> None:
        super().__init__()
        self.reduce = nn.Conv2d(c_coarse, c_skip, 1, bias=False)
        self.block = _Residual(2 * c_skip, c_skip)

    def forward(self, coarse: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        up = F.interpolate(self.reduce(coarse), size=skip.shape[-2:], mode="bilinear")
        return self.block(torch.cat([up, skip], dim=1))  # type: ignore[no-any-return]


class BoxNet(nn.Module):
    """The residual U-Net (module docstring).

    ``forward(images)``: ``(b, 1, h, w)`` prepared micrographs
    (:func:`~cryowarp.preprocess.picking.prepare.prepare_micrograph`) → ``(b, 3, h, w)``
    class logits (:data:`CLASS_NAMES`).
    """

    def __init__(self, architecture: BoxNetArchitecture | None = None) -> None:
        super().__init__()
        self.architecture = architecture or BoxNetArchitecture()
        widths = self.architecture.widths
        blocks = self.architecture.blocks_per_level
        self.down = nn.ModuleList(
            _Down(1 if i == 0 else widths[i - 1], w, blocks, stride=1 if i == 0 else 2)
            for i, w in enumerate(widths)
        )
        self.up = nn.ModuleList(
            _Up(widths[i + 1], widths[i]) for i in reversed(range(len(widths) - 1))
        )
        self.head = nn.Conv2d(widths[0], len(CLASS_NAMES), 1)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        multiple = self.architecture.multiple_px
        if images.dim() != 4 or images.shape[1] != 1:
            raise ValueError(f"BoxNet takes (b, 1, h, w) images, got {tuple(images.shape)}")
        if images.shape[-1] % multiple or images.shape[-2] % multiple:
            raise ValueError(
                f"BoxNet needs sides divisible by {multiple}, got {tuple(images.shape[-2:])}"
            )
        skips: list[torch.Tensor] = []
        x = images
        for level in self.down:
            x = level(x)
            skips.append(x)
        for up, skip in zip(self.up, reversed(skips[:-1]), strict=True):
            x = up(x, skip)
        return self.head(x)  # type: ignore[no-any-return]

    def n_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())
