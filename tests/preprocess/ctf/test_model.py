"""The fast ``CTF²`` of the fits equals core.ctf's, and polar bins keep the spectrum's values."""

from __future__ import annotations

import math

import torch

from cryowarp.core.ctf import ctf_2d, ctf_at_frequencies
from cryowarp.preprocess.ctf.model import CtfSquaredModel
from cryowarp.preprocess.ctf.polar import polar_targets
from cryowarp.preprocess.ctf.search1d import Optics

from ._synthetic import optics_params

OPTICS = Optics(pixel_size_a=1.2, voltage_kv=300.0, cs_mm=2.7, amplitude_contrast=0.07)


def test_model_equals_the_core_ctf_squared(device: torch.device) -> None:
    generator = torch.Generator().manual_seed(1)
    k = ((torch.rand(500, 2, generator=generator, dtype=torch.float64) - 0.5) / 1.2).to(device)
    defocus = torch.tensor([0.6, 1.9, 3.4], dtype=torch.float64, device=device)
    for astig_um, angle_deg, phase_deg in ((0.0, 0.0, 0.0), (0.12, 35.0, 90.0)):
        two = math.radians(2 * angle_deg)
        ax, ay = astig_um * math.cos(two), astig_um * math.sin(two)
        fast = CtfSquaredModel(k, OPTICS)(defocus, ax, ay, math.radians(phase_deg))
        params = OPTICS.params(
            defocus, phase_shift_rad=math.radians(phase_deg), astig_x_um=ax, astig_y_um=ay
        )
        exact = ctf_at_frequencies(params, k).square()
        assert fast.shape == (3, 500)
        assert torch.allclose(fast, exact, atol=1e-9)


def test_model_gradient_reaches_the_defocus(device: torch.device) -> None:
    k = torch.tensor([[0.1, 0.05], [0.2, -0.1]], dtype=torch.float64, device=device)
    defocus = torch.tensor([1.5], dtype=torch.float64, device=device, requires_grad=True)
    CtfSquaredModel(k, OPTICS)(defocus).sum().backward()
    step = 1e-6
    plus = CtfSquaredModel(k, OPTICS)(defocus.detach() + step).sum()
    minus = CtfSquaredModel(k, OPTICS)(defocus.detach() - step).sum()
    assert defocus.grad is not None
    assert abs(float(defocus.grad[0]) - float(plus - minus) / (2 * step)) < 1e-4


def test_polar_bins_average_the_spectrum_and_count_every_sample(device: torch.device) -> None:
    # P = B (1 + CTF²) with a flat background B = 2: (P − B)/B is CTF² in every bin.
    s, pixel, fit_range = 128, 1.2, (1 / 30, 1 / 4)
    params = optics_params(pixel_size_a=pixel, defocus_um=1.0, astig_um=0.05, device=device)
    spectrum = 2.0 * (1.0 + ctf_2d(params, (s, s)).square())[None]
    ones = torch.ones(1, s // 2 + 1, dtype=torch.float64, device=device)
    coords = torch.tensor([[0.5, 0.5]], dtype=torch.float64, device=device)
    targets = polar_targets(
        spectrum, 2 * ones, ones, coords, pixel_size_a=pixel, fit_range_per_a=fit_range
    )
    radius = targets.k_xy_per_a.norm(dim=-1)
    assert float(radius.min()) >= fit_range[0] - 1 / (s * pixel)
    assert float(radius.max()) <= fit_range[1] + 1 / (s * pixel)
    model = CtfSquaredModel(targets.k_xy_per_a, OPTICS)(params.defocus_um.reshape(1), 0.05, 0.0)
    # A bin averages CTF² over 2.5° and one pixel; the model at its centre agrees closely.
    correlation = torch.corrcoef(torch.stack([targets.normalised[0], model[0]]))[0, 1]
    assert float(correlation) > 0.98
    k = torch.fft.fftfreq(s, dtype=torch.float64)[:, None] ** 2
    k = (k + torch.fft.rfftfreq(s, dtype=torch.float64)[None, :] ** 2).sqrt() / pixel
    inside = (k >= fit_range[0]) & (k <= fit_range[1])
    duplicates = inside[s // 2 + 1 :, 0].sum()  # the kx = 0 column holds ±ky twice
    assert float(targets.counts.sum()) == float(inside.sum() - duplicates)
