"""Real-space deformation (core/deform.py): direction, constant fields equal Fourier shifts,
field upsampling, periodic boundaries, batching and the accuracy of both interpolations."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from cryowarp.core.deform import (
    bspline_prefilter_rfft,
    cubic_interpolation_matrix,
    deform_image,
    field_node_positions_px,
    upsample_field,
)
from cryowarp.core.shift import shift_image


def _smooth_image(h: int, w: int, seed: int, width: float = 800.0) -> torch.Tensor:
    noise = torch.randn(h, w, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    ky = torch.fft.fftfreq(h, dtype=torch.float64)[:, None]
    kx = torch.fft.fftfreq(w, dtype=torch.float64)[None, :]
    return torch.fft.ifft2(torch.fft.fft2(noise) * torch.exp(-(ky**2 + kx**2) * width)).real


def test_a_delta_moves_by_the_local_displacement(device: torch.device) -> None:
    # A blob at (20, 40) under a field whose displacement there is (+3, −2 + 0.01·23): it lands
    # at (23, 38.23); the opposite sign would put it at (17, 42).
    n = 64
    ys, xs = torch.meshgrid(torch.arange(n), torch.arange(n), indexing="ij")
    blob = torch.exp(-((xs - 20.0) ** 2 + (ys - 40.0) ** 2) / 8).double().to(device)
    nodes = field_node_positions_px((n, n), (5, 5), dtype=torch.float64, device=device)
    field = torch.stack([3 + 0 * nodes[..., 0], -2 + 0.01 * nodes[..., 0]], dim=-1)
    for interpolation in ("bspline", "cubic"):
        out = deform_image(blob, field, interpolation=interpolation)
        weights = out.clamp(min=0)
        cx = float((weights * xs.to(device)).sum() / weights.sum())
        cy = float((weights * ys.to(device)).sum() / weights.sum())
        assert abs(cx - 23.0) < 0.05
        assert abs(cy - (40.0 - 2 + 0.01 * 23.0)) < 0.1


def test_constant_field_matches_a_fourier_shift(device: torch.device) -> None:
    image = _smooth_image(64, 80, seed=0).to(device)
    peak = float(image.abs().max())
    errors = {}
    for interpolation in ("bspline", "cubic"):
        for values in ([2.0, -3.0], [2.3, -1.6]):
            shift = torch.tensor(values, dtype=torch.float64, device=device)
            deformed = deform_image(image, shift.expand(3, 3, 2), interpolation=interpolation)
            # Periodic boundaries: the whole image equals the (periodic) Fourier shift.
            error = float((deformed - shift_image(image, shift)).abs().max()) / peak
            errors[(interpolation, values[0])] = error
    assert errors[("bspline", 2.0)] < 1e-10  # whole pixels: exact
    assert errors[("cubic", 2.0)] < 1e-10
    assert errors[("bspline", 2.3)] < 2e-5  # measured 6e-6
    assert 1e-3 < errors[("cubic", 2.3)] < 1e-2  # measured 6e-3: first-order kernel
    assert errors[("bspline", 2.3)] < errors[("cubic", 2.3)] / 100


@given(sx=st.floats(-5, 5), sy=st.floats(-5, 5))
def test_bspline_deformation_by_a_constant_is_a_shift(sx: float, sy: float) -> None:
    image = _smooth_image(24, 32, seed=1, width=1200.0)
    shift = torch.tensor([sx, sy], dtype=torch.float64)
    deformed = deform_image(image, shift.expand(2, 2, 2))
    error = (deformed - shift_image(image, shift)).abs().max() / image.abs().max()
    assert float(error) < 1e-5


def test_bspline_beats_cubic_below_a_quarter_of_nyquist() -> None:
    """Relative spectral error of a half-pixel shift of white noise, per frequency band."""
    n = 256
    image = torch.randn(n, n, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    shift = torch.tensor([0.5, 0.5], dtype=torch.float64)
    reference = torch.fft.rfft2(shift_image(image, shift))
    ky = torch.fft.fftfreq(n, dtype=torch.float64)[:, None]
    kx = torch.fft.rfftfreq(n, dtype=torch.float64)[None, :]
    band = (torch.sqrt(kx**2 + ky**2) >= 0.1) & (torch.sqrt(kx**2 + ky**2) < 0.15)

    def band_error(interpolation: str) -> float:
        out = torch.fft.rfft2(
            deform_image(image, shift.expand(2, 2, 2), interpolation=interpolation)
        )  # type: ignore[arg-type]
        difference = (out - reference)[band].abs().square().sum()
        return float(torch.sqrt(difference / reference[band].abs().square().sum()))

    bspline, cubic = band_error("bspline"), band_error("cubic")
    assert bspline < 3e-3  # measured 1.1e-3
    assert cubic > 10 * bspline  # measured 2.9e-2


def test_content_leaving_one_side_comes_back_on_the_other() -> None:
    image = torch.zeros(32, 40, dtype=torch.float64)
    image[10, 38] = 1.0
    out = deform_image(image, torch.tensor([5.0, 0.0], dtype=torch.float64).expand(2, 2, 2))
    assert float(out[10, 3]) == pytest.approx(1.0, abs=1e-9)  # (38 + 5) mod 40 = 3


def test_cubic_interpolation_matrix_is_exact_for_quadratics() -> None:
    for n_nodes in (3, 5, 9):
        nodes = torch.linspace(0, 1, n_nodes, dtype=torch.float64)
        samples = torch.linspace(0, 1, 37, dtype=torch.float64)
        matrix = cubic_interpolation_matrix(37, n_nodes, dtype=torch.float64)
        torch.testing.assert_close(matrix.sum(dim=1), torch.ones(37, dtype=torch.float64))
        f = lambda x: 2.0 - 3.0 * x + 5.0 * x**2  # noqa: E731
        torch.testing.assert_close(matrix @ f(nodes), f(samples), atol=1e-12, rtol=0)
    torch.testing.assert_close(
        cubic_interpolation_matrix(5, 2, dtype=torch.float64) @ torch.tensor([1.0, 3.0]).double(),
        torch.tensor([1.0, 1.5, 2.0, 2.5, 3.0], dtype=torch.float64),
    )
    assert bool((cubic_interpolation_matrix(4, 1) == 1).all())


def test_upsampled_field_follows_a_smooth_field() -> None:
    """A curved field (one period over the width, 3 px) sampled every ~28 px: Catmull-Rom
    upsampling is within 0.05 px of it, bilinear upsampling of the same nodes off by 0.24 px."""
    h, w = 200, 260
    amplitude_px = 3.0

    def field_at(xy: torch.Tensor) -> torch.Tensor:  # (..., 2) px -> (..., 2) px
        u, v = xy[..., 0] / w, xy[..., 1] / h
        return amplitude_px * torch.stack(
            [torch.sin(2 * math.pi * u) * torch.cos(math.pi * v), torch.cos(3 * u + 2 * v)], -1
        )

    nodes = field_node_positions_px((h, w), (8, 10), dtype=torch.float64)
    dense = upsample_field(field_at(nodes), (h, w))
    pixels = field_node_positions_px((h, w), (h, w), dtype=torch.float64)
    error = float((dense - field_at(pixels)).abs().max())
    bilinear = torch.nn.functional.interpolate(
        field_at(nodes).permute(2, 0, 1)[None], size=(h, w), mode="bilinear", align_corners=True
    )[0].permute(1, 2, 0)
    assert error < 0.07  # measured 0.052 (0.019 with 12×14 nodes: third order)
    assert float((bilinear - field_at(pixels)).abs().max()) > 4 * error


def test_images_sharing_a_field_equal_one_at_a_time(device: torch.device) -> None:
    images = torch.stack([_smooth_image(48, 40, seed=s) for s in range(3)]).to(device)
    fields = torch.randn(3, 4, 5, 2, generator=torch.Generator().manual_seed(3)).double()
    fields = fields.to(device)
    shared = deform_image(images, fields[0])
    separate = deform_image(images, fields)
    for i in range(3):
        torch.testing.assert_close(shared[i], deform_image(images[i], fields[0]))
        torch.testing.assert_close(separate[i], deform_image(images[i], fields[i]))
    assert separate.device.type == device.type


def test_prefiltered_coefficients_give_the_same_result() -> None:
    image = _smooth_image(40, 56, seed=4)
    field = torch.randn(3, 4, 2, generator=torch.Generator().manual_seed(5)).double()
    spectrum = torch.fft.rfft2(image) * bspline_prefilter_rfft((40, 56), dtype=torch.float64)
    coefficients = torch.fft.irfft2(spectrum, s=(40, 56))
    torch.testing.assert_close(
        deform_image(coefficients, field, prefiltered=True), deform_image(image, field)
    )


def test_bad_arguments_are_refused() -> None:
    image = torch.zeros(16, 16)
    with pytest.raises(ValueError, match="interpolation"):
        deform_image(image, torch.zeros(2, 2, 2), interpolation="linear")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="displacement_px"):
        deform_image(image, torch.zeros(2, 2, 3))
    with pytest.raises(ValueError, match="broadcast"):
        deform_image(torch.zeros(3, 16, 16), torch.zeros(2, 2, 2, 2))
