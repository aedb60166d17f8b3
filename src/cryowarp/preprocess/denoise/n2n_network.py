"""The Noise2Noise denoising U-Net (after Lehtinen et al., ICML 2018; Warp uses the same idea).

Architecture: an encoder of ``len(widths)`` levels, each ``convs_per_level`` blocks of
3×3 convolution → batch normalisation → leaky ReLU (slope 0.1), with a 2×2 max-pool between
levels; a decoder that upsamples ×2 (nearest neighbour), concatenates the encoder features of
that level and applies ``convs_per_level`` blocks again; a 1×1 convolution to one channel.

The network predicts the clean image **directly** (no residual ``input + correction``): at the
signal-to-noise ratios of micrographs the clean image is a small part of the input, so
predicting it is a smaller job than subtracting nearly all of the input, and an untrained
network starts from a loss near the target's variance rather than twice it.

Inputs are ``(b, 1, h, w)`` normalised images (:func:`~cryowarp.preprocess.denoise.
n2n_inference.normalisation`) with sides divisible by :attr:`DenoiserArchitecture.multiple_px`;
the tiled inference takes care of both.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["LEAKY_SLOPE", "DenoiserArchitecture", "DenoiserUNet"]

LEAKY_SLOPE = 0.1
"""Negative slope of every leaky ReLU."""


@dataclass(frozen=True)
class DenoiserArchitecture:
    """Sizes of a :class:`DenoiserUNet` (stored with every model file).

    The default ``(16, 32, 48, 64)`` with two convolutions per level has 0.23 M parameters
    (a 0.5 MB model file) and a receptive radius of 51 px; one training step (forward,
    backward, Adam) on 8 crops of 128² took 0.47–0.70 s (best–median) on one thread of the
    shared development CPU (docs/denoising.md). Most of the time is spent at the finest level,
    so wider coarse levels cost little.

    Attributes
    ----------
    widths:
        Channels per level, finest first (at least two levels).
    convs_per_level:
        Convolution blocks per level, in the encoder and in the decoder.
    """

    widths: tuple[int, ...] = (16, 32, 48, 64)
    convs_per_level: int = 2

    def __post_init__(self) -> None:
        if len(self.widths) < 2 or min(self.widths) < 1 or self.convs_per_level < 1:
            raise ValueError(f"not a valid denoiser architecture: {self}")

    def to_dict(self) -> dict[str, object]:
        return {"widths": list(self.widths), "convs_per_level": self.convs_per_level}

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> DenoiserArchitecture:
        widths = data["widths"]
        convs = data["convs_per_level"]
        if not isinstance(widths, list | tuple) or not isinstance(convs, int):
            raise ValueError(f"not a denoiser architecture: {data}")
        return cls(widths=tuple(int(w) for w in widths), convs_per_level=convs)

    @property
    def multiple_px(self) -> int:
        """Input sides must be multiples of this."""
        return int(2 ** (len(self.widths) - 1))

    @property
    def receptive_radius_px(self) -> int:
        """An upper bound on how far (pixels) an output pixel sees into its input.

        Each 3×3 convolution at level ``l`` (pixels ``2**l`` apart) adds ``2**l``, each
        2×2 max-pool from level ``l`` adds ``2**l``; nearest upsampling adds nothing.
        Tiles whose discarded margin is at least this wide give the same result as one pass
        over the whole image.
        """
        levels = len(self.widths)
        encoder = sum(self.convs_per_level * 2**level for level in range(levels))
        pools = sum(2**level for level in range(levels - 1))
        decoder = sum(self.convs_per_level * 2**level for level in range(levels - 1))
        return int(encoder + pools + decoder)


def _block(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, padding=1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.LeakyReLU(LEAKY_SLOPE),
    )


def _stack(c_in: int, c_out: int, n: int) -> nn.Sequential:
    return nn.Sequential(*(_block(c_in if i == 0 else c_out, c_out) for i in range(n)))


class DenoiserUNet(nn.Module):
    """The U-Net (module docstring).

    ``forward(images)``: ``(b, 1, h, w)`` normalised images → ``(b, 1, h, w)`` estimates of
    the clean images, on the same normalised scale.
    """

    def __init__(self, architecture: DenoiserArchitecture | None = None) -> None:
        super().__init__()
        self.architecture = architecture or DenoiserArchitecture()
        widths = self.architecture.widths
        n = self.architecture.convs_per_level
        self.encoder = nn.ModuleList(
            _stack(1 if i == 0 else widths[i - 1], w, n) for i, w in enumerate(widths)
        )
        self.decoder = nn.ModuleList(
            _stack(widths[i + 1] + widths[i], widths[i], n)
            for i in reversed(range(len(widths) - 1))
        )
        self.head = nn.Conv2d(widths[0], 1, 1)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        multiple = self.architecture.multiple_px
        if images.dim() != 4 or images.shape[1] != 1:
            raise ValueError(f"the denoiser takes (b, 1, h, w) images, got {tuple(images.shape)}")
        if images.shape[-1] % multiple or images.shape[-2] % multiple:
            raise ValueError(
                f"the denoiser needs sides divisible by {multiple}, got {tuple(images.shape[-2:])}"
            )
        skips: list[torch.Tensor] = []
        x = images
        for i, level in enumerate(self.encoder):
            if i > 0:
                x = F.max_pool2d(x, 2)
            x = level(x)
            skips.append(x)
        for level, skip in zip(self.decoder, reversed(skips[:-1]), strict=True):
            x = F.interpolate(x, scale_factor=2.0, mode="nearest")
            x = level(torch.cat([x, skip], dim=1))
        return self.head(x)  # type: ignore[no-any-return]

    def n_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())
