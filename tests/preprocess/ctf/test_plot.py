"""CTF diagnostic plots: the split 2-D image is geometrically right; PNGs are written."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from matplotlib.image import imread

from cryowarp.core.ctf import CTFParams, ctf_1d, ctf_2d
from cryowarp.errors import DimensionMismatchError, InvalidValuesError
from cryowarp.preprocess.ctf.plot import ctf_figure, split_spectrum_image, write_ctf_png
from cryowarp.preprocess.ctf.result import CtfDiagnostics, CtfResult

PIXEL_A = 1.5
SIZE = 128
FIT_RANGE = (1 / 30, 1 / 3.5)


def _params(angle_deg: float, device: torch.device | str = "cpu") -> CTFParams:
    delta, two_theta = 0.2, math.radians(2 * angle_deg)
    return CTFParams.create(
        pixel_size_a=PIXEL_A,
        defocus_um=1.2,
        astig_x_um=delta * math.cos(two_theta),
        astig_y_um=delta * math.sin(two_theta),
        device=device,
        dtype=torch.float64,
    )


def _ring(pixel_a: float = PIXEL_A) -> torch.Tensor:
    f = torch.fft.fftshift(torch.fft.fftfreq(SIZE, dtype=torch.float64)) / pixel_a
    k = (f[None, :] ** 2 + f[:, None] ** 2).sqrt()
    return (k >= FIT_RANGE[0]) & (k <= FIT_RANGE[1])


def _corr(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a - a.mean(), b - b.mean()
    return float((a * b).sum() / (a.norm() * b.norm()))


def test_left_half_is_the_spectrum_and_right_half_the_model(device: torch.device) -> None:
    """Checked against the CTF evaluated directly on the centred grid (DC at s//2, +y down the
    rows): an astigmatic CTF at 30° is not symmetric under x/y swaps or mirrors."""
    params = _params(30.0, device)
    ctf = ctf_2d(params, (SIZE, SIZE))  # rfft layout
    image = split_spectrum_image(
        ctf.square(), ctf.abs(), pixel_size_a=PIXEL_A, fit_range_per_a=FIT_RANGE
    )
    assert image.shape == (SIZE, SIZE)
    assert image.device.type == device.type
    direct = ctf_2d(params, (SIZE, SIZE), rfft=False, fftshifted=True).cpu()
    mirrored = ctf_2d(_params(-30.0), (SIZE, SIZE), rfft=False, fftshifted=True)
    ring, image = _ring(), image.cpu()
    left, right = ring.clone(), ring.clone()
    left[:, SIZE // 2 :] = False
    right[:, : SIZE // 2] = False
    assert _corr(image[left], direct.square()[left]) > 0.95
    assert _corr(image[right], direct.abs()[right]) > 0.95
    # the same check fails for the mirror image of the CTF: the test can tell them apart
    assert _corr(image[left], mirrored.square()[left]) < 0.5
    assert _corr(image[right], mirrored.abs()[right]) < 0.5
    assert float(image.abs().max()) <= 2.5  # clipped, one grey scale for both halves


def test_split_image_rejects_mismatched_shapes() -> None:
    with pytest.raises(DimensionMismatchError, match="rfft layout"):
        split_spectrum_image(
            torch.ones(64, 33), torch.ones(64, 64), pixel_size_a=1.0, fit_range_per_a=FIT_RANGE
        )


def _result_with_diagnostics() -> CtfResult:
    params = _params(30.0)
    ctf = ctf_2d(params, (SIZE, SIZE))
    k = torch.linspace(0, 0.5 / PIXEL_A, 65, dtype=torch.float64)
    model_1d = ctf_1d(params, k, angle_deg=30.0).abs()
    diagnostics = CtfDiagnostics(
        frequencies_per_a=k,
        spectrum_1d=model_1d.square() - 0.5,
        simulated_1d=model_1d,
        background_1d=torch.ones_like(k),
        envelope_1d=torch.ones_like(k),
        correlation_1d=torch.linspace(1.0, 0.0, 65, dtype=torch.float64),
        spectrum_2d=ctf.square(),
        simulated_2d=ctf.abs(),
        fit_range_per_a=FIT_RANGE,
    )
    return CtfResult(
        defocus_u_um=1.4,
        defocus_v_um=1.0,
        astigmatism_angle_deg=30.0,
        phase_shift_deg=0.0,
        defocus_grid_um=((1.2,),),
        image_size_xy_a=(SIZE * PIXEL_A, SIZE * PIXEL_A),
        resolution_a=4.1,
        fit_score=0.8,
        pixel_size_a=PIXEL_A,
        voltage_kv=300.0,
        cs_mm=2.7,
        amplitude_contrast=0.07,
        diagnostics=diagnostics,
    )


def test_png_is_written_atomically_with_both_panels(tmp_path: Path) -> None:
    path = tmp_path / "movie_000_ctf.png"
    write_ctf_png(_result_with_diagnostics(), path, title="movie_000", dpi=50)
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temporary file left
    pixels = imread(path)
    assert pixels.shape[:2] == (250, 550)  # 11 × 5 inches at 50 dpi
    grey = pixels[..., :3].mean(-1)
    left_panel, right_panel = grey[:, : grey.shape[1] // 2], grey[:, grey.shape[1] // 2 :]
    assert len(np.unique(np.round(left_panel, 2))) > 50  # the spectrum image, not a blank
    assert (right_panel < 0.95).mean() > 0.01  # curves drawn


def test_figure_axes_and_failed_results() -> None:
    figure = ctf_figure(_result_with_diagnostics())
    image_axes, curve_axes = figure.axes[:2]
    x0, x1, y0, y1 = image_axes.images[0].get_extent()
    step = 1 / (SIZE * PIXEL_A)
    assert (x0, x1) == pytest.approx((-(SIZE // 2 + 0.5) * step, (SIZE // 2 - 0.5) * step))
    assert (y0, y1) == (x0, x1)
    assert len(curve_axes.lines) >= 3
    failed = CtfResult.failure(
        "no Thon rings", pixel_size_a=1.0, voltage_kv=300.0, cs_mm=2.7, amplitude_contrast=0.07
    )
    with pytest.raises(InvalidValuesError, match="no Thon rings"):
        ctf_figure(failed)


def test_spectrum_files_round_trip_and_split_png(tmp_path: Path) -> None:
    """The viewer files: the 1-D curves read back to 1e-6, the PNG is the split image flipped
    to +y up (left: spectrum, right: model), 8-bit over ±2.5 σ; a failed fit writes none."""
    from PIL import Image

    from cryowarp.errors import CorruptFileError
    from cryowarp.preprocess.ctf.spectrum_files import read_spectrum_curves, write_spectrum_files

    result = _result_with_diagnostics()
    json_path, png_path = tmp_path / "m_ctf_spectrum.json", tmp_path / "m_ctf_spectrum.png"
    write_spectrum_files(result, json_path=json_path, png_path=png_path)
    curves = read_spectrum_curves(json_path)
    diag = result.diagnostics
    assert diag is not None
    for key, tensor in (
        ("frequencies_per_a", diag.frequencies_per_a),
        ("simulated", diag.simulated_1d),
        ("correlation", diag.correlation_1d),
    ):
        assert np.allclose(curves[key], tensor.numpy(), atol=1e-6)  # fmt: skip
    assert curves["fit_range_per_a"] == list(FIT_RANGE)
    assert curves["resolution_a"] == 4.1
    pixels = np.asarray(Image.open(png_path)).astype(np.float64)
    expected = split_spectrum_image(
        diag.spectrum_2d, diag.simulated_2d, pixel_size_a=PIXEL_A, fit_range_per_a=FIT_RANGE
    ).numpy()[::-1]
    assert pixels.shape == (SIZE, SIZE)
    assert np.abs(pixels - ((expected + 2.5) / 5 * 255)).max() <= 0.51
    with pytest.raises(InvalidValuesError, match="failed"):
        write_spectrum_files(
            CtfResult.failure("no rings", pixel_size_a=1.0, voltage_kv=300.0, cs_mm=2.7,
                              amplitude_contrast=0.07),
            json_path=tmp_path / "f.json", png_path=tmp_path / "f.png",
        )  # fmt: skip
    json_path.write_text('{"format": "other"}')
    with pytest.raises(CorruptFileError, match="not a CTF spectrum file"):
        read_spectrum_curves(json_path)
