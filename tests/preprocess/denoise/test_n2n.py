"""The denoising U-Net and its tiled inference: shapes, receptive field, exact tiling,
normalisation, pixel-size rule."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from cryowarp.errors import InvalidValuesError
from cryowarp.preprocess.denoise.n2n_inference import (
    Normalisation,
    apply_in_tiles,
    denoise_image,
    denoise_pair,
    normalisation,
)
from cryowarp.preprocess.denoise.n2n_model_file import DenoiserModel
from cryowarp.preprocess.denoise.n2n_network import DenoiserArchitecture, DenoiserUNet


class _IdentityUNet(DenoiserUNet):
    """A denoiser that returns its input (the tiling and scaling around it must be exact)."""

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return images


def _unet(widths: tuple[int, ...] = (16, 32, 48, 64), seed: int = 0) -> DenoiserUNet:
    torch.manual_seed(seed)
    network = DenoiserUNet(DenoiserArchitecture(widths=widths))
    # non-trivial batch-norm statistics, so that eval mode is not a plain identity scale
    for module in network.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.2, 0.2)
            module.running_var.uniform_(0.5, 2.0)
    return network.eval()


def test_network_maps_b1hw_to_b1hw_and_checks_its_input() -> None:
    network = _unet((4, 8, 16))
    assert network.architecture.multiple_px == 4
    out = network(torch.randn(2, 1, 24, 40))
    assert out.shape == (2, 1, 24, 40)
    with pytest.raises(ValueError, match="divisible by 4"):
        network(torch.randn(1, 1, 26, 40))
    with pytest.raises(ValueError, match=r"\(b, 1, h, w\)"):
        network(torch.randn(1, 2, 24, 40))
    architecture = DenoiserArchitecture(widths=(4, 8, 16), convs_per_level=3)
    assert DenoiserArchitecture.from_dict(architecture.to_dict()) == architecture
    with pytest.raises(ValueError, match="not a valid"):
        DenoiserArchitecture(widths=(8,))


def test_batch_norm_comes_before_every_leaky_relu() -> None:
    network = DenoiserUNet(DenoiserArchitecture(widths=(4, 8)))
    layers = [m for m in network.modules() if not list(m.children())]
    relus = [i for i, m in enumerate(layers) if isinstance(m, torch.nn.LeakyReLU)]
    assert len(relus) == 2 * 2 + 2  # two blocks per encoder level, two in the decoder level
    for i in relus:
        assert layers[i].negative_slope == pytest.approx(0.1)
        assert isinstance(layers[i - 1], torch.nn.BatchNorm2d)
        assert isinstance(layers[i - 2], torch.nn.Conv2d)


def test_receptive_radius_bounds_the_reach_of_one_input_pixel() -> None:
    network = _unet()
    radius = network.architecture.receptive_radius_px
    assert radius == 51
    size, centre = 256, 128
    x = torch.randn(1, 1, size, size, generator=torch.Generator().manual_seed(1))
    poked = x.clone()
    poked[0, 0, centre, centre] += 10.0
    with torch.no_grad():
        changed = (network(poked) - network(x))[0, 0] != 0  # exact: nothing beyond the reach
    ys, xs = torch.nonzero(changed, as_tuple=True)
    reach = int(torch.maximum((ys - centre).abs(), (xs - centre).abs()).max())
    assert radius - 8 <= reach <= radius  # a tight upper bound


@pytest.mark.parametrize(
    ("shape", "tile_px", "keep_px"),
    [((37, 301), 64, 32), ((129, 127), 64, 48), ((1, 5), 32, 16), ((200, 3), 256, 128)],
)
def test_tiling_with_identity_returns_the_image_exactly(
    shape: tuple[int, int], tile_px: int, keep_px: int
) -> None:
    image = torch.randn(shape, generator=torch.Generator().manual_seed(2))
    calls: list[int] = []

    def identity(tiles: torch.Tensor) -> torch.Tensor:
        calls.append(tiles.shape[0])
        assert tiles.shape[1:] == (1, tile_px, tile_px)
        return tiles.clone()

    out = apply_in_tiles(identity, image, tile_px=tile_px, keep_px=keep_px, batch_tiles=3)
    assert torch.equal(out, image)
    n_tiles = -(-shape[0] // keep_px) * -(-shape[1] // keep_px)
    assert sum(calls) == n_tiles
    assert max(calls) <= 3


def test_tiling_a_local_operator_equals_one_pass_over_the_reflected_image() -> None:
    generator = torch.Generator().manual_seed(3)
    kernel = torch.randn(1, 1, 3, 3, generator=generator)
    image = torch.randn(101, 77, generator=generator)

    def conv(tiles: torch.Tensor) -> torch.Tensor:
        return F.conv2d(tiles, kernel, padding=1)

    tiled = apply_in_tiles(conv, image, tile_px=32, keep_px=16)
    reflected = F.pad(image[None, None], (1, 1, 1, 1), mode="reflect")
    whole = F.conv2d(reflected, kernel)[0, 0]
    assert torch.allclose(tiled, whole, atol=1e-5)


def test_tiled_unet_equals_one_pass_when_the_margin_covers_the_receptive_field() -> None:
    network = _unet()
    h, w = 150, 131
    image = torch.randn(h, w, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        tiled = apply_in_tiles(network, image, tile_px=256, keep_px=128)
        # one pass over the image reflect-padded from the same origin (−64, −64) to sides
        # divisible by 8
        padded = np.pad(image.numpy(), ((64, 64 + 8 - h % 8), (64, 64 + 8 - w % 8)), "reflect")
        whole = network(torch.from_numpy(padded)[None, None])[0, 0, 64 : 64 + h, 64 : 64 + w]
        # a margin smaller than the receptive radius does not reach that agreement
        narrow = apply_in_tiles(network, image, tile_px=160, keep_px=128)
    spread = float(whole.std())  # the untrained network's output varies little
    assert float((tiled - whole).abs().max()) < 1e-4 * spread  # measured: 0 on the CPU
    assert float((narrow - whole).abs().max()) > 1e-3 * spread  # measured: 3e-3


def test_normalisation_of_a_pair_uses_the_average_and_refuses_bad_images() -> None:
    generator = torch.Generator().manual_seed(5)
    odd = 3 + 2 * torch.randn(64, 64, generator=generator)
    even = 5 + torch.randn(64, 64, generator=generator)
    scale = normalisation(odd, even)
    average = ((odd + even) / 2).double()
    assert scale.mean == pytest.approx(float(average.mean()), rel=1e-9)
    assert scale.std == pytest.approx(float(average.std(unbiased=False)), rel=1e-9)
    assert torch.allclose(scale.undo(scale.apply(odd)), odd, atol=1e-5)
    with pytest.raises(InvalidValuesError, match="constant"):
        normalisation(torch.full((8, 8), 2.0))
    bad = odd.clone()
    bad[3, 4] = float("nan")
    with pytest.raises(InvalidValuesError, match=r"a\.mrc: .*NaN"):
        normalisation(bad, source="a.mrc")


def test_denoise_image_with_an_identity_network_returns_the_image(device: torch.device) -> None:
    network = _IdentityUNet(DenoiserArchitecture(widths=(4, 8, 16)))
    network.train()
    model = DenoiserModel(network, "identity", 4.0)
    image = 100 + 7 * torch.randn(131, 97, generator=torch.Generator().manual_seed(6))
    out = denoise_image(model, image.to(device), pixel_size_a=4.02, tile_px=64, keep_px=32)
    assert out.device.type == device.type
    assert out.dtype == torch.float32
    assert torch.allclose(out.cpu(), image, rtol=0, atol=1e-4)
    assert network.training  # mode restored
    pair = denoise_pair(model, image, image + 2, pixel_size_a=4.0, tile_px=64, keep_px=32)
    assert torch.allclose(pair, image + 1, atol=1e-4)


def test_denoise_image_refuses_another_pixel_size() -> None:
    model = DenoiserModel(DenoiserUNet(DenoiserArchitecture(widths=(4, 8))), "n2n_test", 4.0)
    image = torch.randn(32, 32)
    denoise_image(model, image, pixel_size_a=4.039, tile_px=16, keep_px=8)  # within 1 %
    with pytest.raises(InvalidValuesError) as caught:
        denoise_image(model, image, pixel_size_a=4.05, source="mic.mrc")
    message = str(caught.value)
    assert message.startswith("mic.mrc: ")
    assert "n2n_test" in message
    assert "4.05 Å" in message
    assert "4 Å" in message
    with pytest.raises(ValueError, match="multiples of 2"):
        denoise_image(model, image, pixel_size_a=4.0, tile_px=15, keep_px=7)


def test_normalisation_is_an_exact_affine_map() -> None:
    scale = Normalisation(mean=10.0, std=4.0)
    x = torch.tensor([6.0, 10.0, 18.0])
    assert torch.equal(scale.apply(x), torch.tensor([-1.0, 0.0, 2.0]))
    assert torch.equal(scale.undo(torch.tensor([-1.0, 0.0, 2.0])), x)
