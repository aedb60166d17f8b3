"""Display images: the average Fourier-cropped to the working pixel size and deconvolved, the
denoiser run at its own pixel size on inputs deconvolved as its training data, and the files
(8-bit PNG with percentile contrast, float MRC with the pixel size) written where the pipeline
expects them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from cryowarp.core.ctf import CTFParams
from cryowarp.core.resize import rescale
from cryowarp.errors import DimensionMismatchError, InvalidValuesError
from cryowarp.io.mrc import read_mrc
from cryowarp.preprocess.denoise.deconvolution import (
    DENOISER_INPUT_DECONVOLUTION,
    DeconvolutionSettings,
    deconvolve,
)
from cryowarp.preprocess.denoise.display import (
    DISPLAY_PIXEL_SIZE_A,
    DisplayImages,
    DisplaySettings,
    display_file_names,
    display_images,
    robust_8bit,
    write_display_images,
)
from cryowarp.preprocess.denoise.n2n_inference import denoise_pair
from cryowarp.preprocess.denoise.n2n_model_file import DenoiserModel
from cryowarp.preprocess.denoise.n2n_network import DenoiserArchitecture, DenoiserUNet


class _Identity(nn.Module):
    """A stand-in network that returns its input: the denoised image is then exactly the
    denoiser's (deconvolved, resampled) input."""

    architecture = DenoiserArchitecture(widths=(4, 8), convs_per_level=1)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return images


def _micrograph(shape: tuple[int, int], seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return 10.0 + torch.randn(shape, generator=generator)


def _ctf(pixel_size_a: float = 1.0) -> CTFParams:
    return CTFParams.create(pixel_size_a=pixel_size_a, defocus_um=1.2, dtype=torch.float64)


def test_deconvolved_image_at_the_working_pixel_size() -> None:
    average = _micrograph((384, 512))
    settings = DeconvolutionSettings(strength=0.8)
    images = display_images(average, pixel_size_a=1.0, ctf=_ctf(), deconvolution=settings)
    assert DISPLAY_PIXEL_SIZE_A == 4.0
    assert images.pixel_size_a == 4.0
    assert images.deconvolved.shape == (96, 128)
    assert images.denoised is None
    assert images.model_name is None
    expected = deconvolve(
        rescale(average, (96, 128)), pixel_size_a=4.0, ctf=_ctf(), settings=settings
    )
    torch.testing.assert_close(images.deconvolved, expected)


def test_size_limit_and_coarse_micrographs() -> None:
    capped = display_images(
        _micrograph((400, 400)),
        pixel_size_a=1.0,
        ctf=_ctf(),
        settings=DisplaySettings(max_size_px=80),
    )
    assert capped.deconvolved.shape == (80, 80)
    assert capped.pixel_size_a == 5.0
    coarse = display_images(_micrograph((50, 60)), pixel_size_a=6.0, ctf=_ctf())
    assert coarse.deconvolved.shape == (50, 60)  # never upsampled
    assert coarse.pixel_size_a == 6.0


def test_denoiser_runs_at_its_pixel_size_on_its_own_deconvolution() -> None:
    """With an identity network the denoised image is the input deconvolved with the settings
    stored in the model (here DENOISER_INPUT_DECONVOLUTION's) at the model's 8 Å, shown on the
    4 Å display grid."""
    average = _micrograph((256, 256), seed=1)
    model = DenoiserModel(network=_Identity(), name="identity_v0", pixel_size_a=8.0)  # type: ignore[arg-type]
    model.metadata["deconvolution"] = DENOISER_INPUT_DECONVOLUTION.model_dump()
    images = display_images(average, pixel_size_a=2.0, ctf=_ctf(), denoiser=model)
    assert images.model_name == "identity_v0"
    assert images.denoised is not None
    assert images.denoised.shape == images.deconvolved.shape == (128, 128)
    at_8a = deconvolve(
        rescale(average, (64, 64)),
        pixel_size_a=8.0,
        ctf=_ctf(),
        settings=DENOISER_INPUT_DECONVOLUTION,
    )
    torch.testing.assert_close(images.denoised, rescale(at_8a, (128, 128)), rtol=1e-4, atol=1e-4)
    # the display deconvolution (defaults) is another filter
    assert not torch.allclose(images.denoised, images.deconvolved, atol=1e-2)


def test_odd_and_even_halves_are_denoised_as_a_pair() -> None:
    torch.manual_seed(0)
    network = DenoiserUNet(DenoiserArchitecture(widths=(4, 8), convs_per_level=1)).eval()
    model = DenoiserModel(network=network, name="tiny", pixel_size_a=4.0)
    odd, even = _micrograph((128, 128), seed=2), _micrograph((128, 128), seed=3)
    images = display_images(
        (odd + even) / 2, pixel_size_a=4.0, ctf=_ctf(), denoiser=model, odd=odd, even=even
    )
    halves = [
        deconvolve(h, pixel_size_a=4.0, ctf=_ctf(), settings=DENOISER_INPUT_DECONVOLUTION)
        for h in (odd, even)
    ]
    expected = denoise_pair(model, halves[0], halves[1], pixel_size_a=4.0)
    assert images.denoised is not None
    torch.testing.assert_close(images.denoised, expected)


def test_model_finer_than_the_micrograph_is_refused() -> None:
    model = DenoiserModel(network=_Identity(), name="fine_model", pixel_size_a=2.0)  # type: ignore[arg-type]
    with pytest.raises(InvalidValuesError, match=r"fine_model.*2 Å.*4 Å"):
        display_images(_micrograph((64, 64)), pixel_size_a=4.0, ctf=_ctf(), denoiser=model)


def test_bad_inputs() -> None:
    with pytest.raises(InvalidValuesError, match="NaN"):
        display_images(torch.full((32, 32), float("nan")), pixel_size_a=4.0, ctf=_ctf())
    with pytest.raises(DimensionMismatchError):
        display_images(
            _micrograph((32, 32)), pixel_size_a=4.0, ctf=_ctf(), odd=torch.zeros(16, 16), even=None
        )
    with pytest.raises(ValueError, match="below"):
        DisplaySettings(low_percentile=50, high_percentile=40)


def test_robust_8bit_maps_percentiles_to_black_and_white() -> None:
    ramp = torch.linspace(0, 999, 1000).reshape(10, 100)
    pixels = robust_8bit(ramp, low_percentile=10, high_percentile=90)
    values = ramp.numpy()
    low, high = np.percentile(values, [10, 90])  # 99.9 and 899.1
    expected = np.rint(np.clip((values - low) / (high - low), 0, 1) * 255).astype(np.uint8)
    np.testing.assert_array_equal(pixels, expected)
    assert bool((pixels[values <= low] == 0).all())  # the lowest 10 % are black
    assert bool((pixels[values >= high] == 255).all())  # the highest 10 % are white
    assert pixels[5, 0] == 128  # 500 sits half-way between the percentiles
    assert bool((np.diff(pixels.ravel().astype(int)) >= 0).all())  # monotonic
    assert robust_8bit(torch.full((4, 4), 3.0)).tolist() == [[128] * 4] * 4


def test_written_files_hold_the_images(tmp_path: Path) -> None:
    deconvolved = torch.zeros(30, 40)
    deconvolved[2, 5] = 10.0  # a bright pixel at x = 5, y = 2
    deconvolved[20:, :] = -1.0
    denoised = torch.linspace(-1, 1, 1200).reshape(30, 40)
    images = DisplayImages(deconvolved, denoised, pixel_size_a=4.0, model_name="m")
    settings = DisplaySettings(low_percentile=0.0, high_percentile=100.0)
    files = write_display_images(images, name="item_01", out_dir=tmp_path, settings=settings)
    assert {k: v.relative_to(tmp_path).as_posix() for k, v in files.items()} == display_file_names(
        "item_01", denoised=True
    )
    assert files["deconv_png"] == tmp_path / "display" / "item_01_deconv.png"
    with Image.open(files["deconv_png"]) as png:
        assert png.mode == "L"
        assert png.size == (40, 30)  # (width, height)
        assert png.getpixel((5, 2)) == 255  # row 0 at the top: array (y, x) = picture (x, y)
        assert png.getpixel((0, 25)) == 0
        assert png.getpixel((0, 0)) == round(255 / 11)
    data, header = read_mrc(files["denoised_mrc"])
    np.testing.assert_array_equal(data, denoised.numpy())
    assert header.pixel_size_a == pytest.approx(4.0)
    with Image.open(files["denoised_png"]) as png:
        picture = np.asarray(png)
    np.testing.assert_array_equal(
        picture, robust_8bit(denoised, low_percentile=0, high_percentile=100)
    )
    # without a denoised image only the deconvolved files, here straight into the folder
    only = write_display_images(
        DisplayImages(deconvolved, None, 4.0, None), name="b", out_dir=tmp_path / "flat", folder=""
    )
    assert sorted(p.name for p in only.values()) == ["b_deconv.mrc", "b_deconv.png"]
    assert all(p.parent == tmp_path / "flat" for p in only.values())
