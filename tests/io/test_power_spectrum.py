"""Precomputed power spectra: layouts found and converted to the rfft layout (conventions §3)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from cryowarp.core.fourier import full_to_rfft, rfft_to_full
from cryowarp.errors import FileFormatError, InvalidValuesError, MissingFileError
from cryowarp.io.mrc import write_mrc
from cryowarp.io.power_spectrum import (
    centred_to_rfft,
    detect_spectrum_layout,
    read_power_spectrum,
)


def _image(shape: tuple[int, int], seed: int = 0) -> torch.Tensor:
    """Noise with a falling spectrum (as every micrograph has), so layouts can be told apart."""
    generator = torch.Generator().manual_seed(seed)
    noise = torch.randn(shape, generator=generator, dtype=torch.float64)
    fy = torch.fft.fftfreq(shape[0], dtype=torch.float64)[:, None]
    fx = torch.fft.fftfreq(shape[1], dtype=torch.float64)[None, :]
    envelope = torch.exp(-((fx**2 + fy**2) / 0.02))
    return torch.fft.ifft2(torch.fft.fft2(noise) * envelope).real


def _power(image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(full power spectrum in FFT order, its rfft half)."""
    full = torch.fft.fft2(image).abs().square()
    return full, torch.fft.rfft2(image).abs().square()


@pytest.mark.parametrize("size", [64, 65])
def test_centred_full_spectrum_reads_as_the_rfft_power(tmp_path: Path, size: int) -> None:
    full, expected = _power(_image((size, size)))
    path = tmp_path / "ps.mrc"
    write_mrc(path, torch.fft.fftshift(full).float(), voxel_size_a=1.34)
    spectrum = read_power_spectrum(path)
    assert spectrum.layout == "centred_full"
    assert spectrum.shape_px == (size, size)
    assert spectrum.pixel_size_a == pytest.approx(1.34, rel=1e-6)
    torch.testing.assert_close(spectrum.values.double(), expected, rtol=1e-5, atol=1e-3)


@pytest.mark.parametrize(
    ("layout", "make"),
    [
        ("centred_half", lambda full: torch.fft.fftshift(full, dim=0)[:, :33]),
        ("rfft", lambda full: full[:, :33]),
        ("fft_full", lambda full: full),
        ("centred_full", lambda full: torch.fft.fftshift(full)),
    ],
)
def test_every_layout_is_detected_and_converted(layout: str, make: object) -> None:
    full, expected = _power(_image((64, 64), seed=3))
    stored = make(full)  # type: ignore[operator]
    assert detect_spectrum_layout(stored) == layout
    torch.testing.assert_close(centred_to_rfft(stored, layout=layout), expected)  # type: ignore[arg-type]


def test_offsets_from_the_centre_are_frequencies_x_then_y() -> None:
    """A sample 3 columns right of the centre is kx = +3; 2 rows below it is ky = +2."""
    size = 32
    centred = torch.zeros(size, size)
    centred[size // 2, size // 2 + 3] = 1.0
    centred[size // 2 + 2, size // 2] = 2.0
    rfft = centred_to_rfft(centred, layout="centred_full")
    assert rfft.shape == (size, size // 2 + 1)
    assert rfft[0, 3] == 1.0
    assert rfft[2, 0] == 2.0
    assert rfft.sum() == 3.0
    # Point symmetry: the sample at (-3, 0) of the left half lands on the same rfft index.
    mirrored = torch.zeros(size, size)
    mirrored[size // 2 - 2, size // 2 - 3] = 1.0  # k = (-3, -2)
    assert centred_to_rfft(mirrored, layout="centred_full", use_half="left")[2, 3] == 1.0


def test_left_half_of_a_diagnostic_image_ignores_the_model_half(tmp_path: Path) -> None:
    """CTFFIND-like diagnostics draw a model in one half: ``use_half`` picks the data half."""
    full, expected = _power(_image((64, 64), seed=1))
    centred = torch.fft.fftshift(full).float()
    diagnostic = centred.clone()
    diagnostic[:, 33:] = -5.0  # anything: a fitted model drawn over the kx > 0 side
    write_mrc(tmp_path / "diag.mrc", diagnostic, voxel_size_a=1.0)
    spectrum = read_power_spectrum(tmp_path / "diag.mrc", layout="centred_full", use_half="left")
    # The kx = 0 column and the Nyquist column (index 0 of the centred image) are data in
    # both halves; everything else comes from the left half through P(k) = P(-k).
    torch.testing.assert_close(spectrum.values.double(), expected, rtol=1e-5, atol=1e-3)


def test_stack_of_spectra_keeps_its_leading_dimension(tmp_path: Path) -> None:
    fulls = [_power(_image((48, 48), seed=s)) for s in range(3)]
    stack = torch.stack([torch.fft.fftshift(f) for f, _ in fulls]).float()
    write_mrc(tmp_path / "stack.mrcs", stack, voxel_size_a=2.0)
    spectrum = read_power_spectrum(tmp_path / "stack.mrcs", pixel_size_a=1.1)
    assert spectrum.values.shape == (3, 48, 25)
    assert spectrum.pixel_size_a == 1.1  # the argument wins over the header
    torch.testing.assert_close(spectrum.values[2].double(), fulls[2][1], rtol=1e-5, atol=1e-3)


@given(
    h=st.integers(16, 40),
    w=st.integers(16, 40),
    lead=st.integers(1, 2),
    seed=st.integers(0, 1000),
)
def test_centred_to_rfft_agrees_with_the_core_fourier_helpers(
    h: int, w: int, lead: int, seed: int
) -> None:
    generator = torch.Generator().manual_seed(seed)
    image = torch.randn(lead, h, w, generator=generator, dtype=torch.float64)
    centred = torch.fft.fftshift(torch.fft.fft2(image).abs().square(), dim=(-2, -1))
    rfft = centred_to_rfft(centred, layout="centred_full")
    torch.testing.assert_close(rfft, full_to_rfft(centred, ndim=2, fftshifted=True))
    torch.testing.assert_close(rfft_to_full(rfft, shape=(h, w), fftshifted=True), centred)
    torch.testing.assert_close(
        centred_to_rfft(centred, layout="centred_full", use_half="left"), rfft
    )


def test_conversion_runs_on_the_device_of_the_data(device: torch.device) -> None:
    full, expected = _power(_image((32, 32)))
    rfft = centred_to_rfft(torch.fft.fftshift(full).to(device), layout="centred_full")
    assert rfft.device.type == device.type
    torch.testing.assert_close(rfft.cpu(), expected)


def test_bad_files_raise_typed_errors_naming_the_file(tmp_path: Path) -> None:
    rectangular = tmp_path / "rect.mrc"
    write_mrc(rectangular, np.ones((64, 40), np.float32), voxel_size_a=1.0)
    with pytest.raises(FileFormatError, match=r"rect\.mrc.*neither square"):
        read_power_spectrum(rectangular)
    with pytest.raises(FileFormatError, match="must have 33 columns"):
        read_power_spectrum(rectangular, layout="rfft")
    tiny = tmp_path / "tiny.mrc"
    write_mrc(tiny, np.ones((8, 8), np.float32), voxel_size_a=1.0)
    with pytest.raises(FileFormatError, match="too small"):
        read_power_spectrum(tiny)
    nan = tmp_path / "nan.mrc"
    values = np.ones((32, 32), np.float32)
    values[3, 4] = np.nan
    write_mrc(nan, values, voxel_size_a=1.0)
    with pytest.raises(InvalidValuesError, match=r"nan\.mrc: 1 NaN"):
        read_power_spectrum(nan)
    ok = tmp_path / "ok.mrc"
    write_mrc(ok, np.ones((32, 32), np.float32), voxel_size_a=1.0)
    with pytest.raises(InvalidValuesError, match="pixel size must be positive"):
        read_power_spectrum(ok, pixel_size_a=0.0)
    with pytest.raises(MissingFileError, match="file not found"):
        read_power_spectrum(tmp_path / "absent.mrc")
    not_mrc = tmp_path / "text.mrc"
    not_mrc.write_bytes(b"hello" * 300)
    with pytest.raises(FileFormatError, match=r"text\.mrc"):
        read_power_spectrum(not_mrc)


def test_header_without_pixel_size_gives_none(tmp_path: Path) -> None:
    full, _ = _power(_image((32, 32)))
    write_mrc(tmp_path / "ps.mrc", torch.fft.fftshift(full).float(), voxel_size_a=0.0)
    assert read_power_spectrum(tmp_path / "ps.mrc").pixel_size_a is None
