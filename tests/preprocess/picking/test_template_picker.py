"""2-D template picking recovers planted CTF-modulated projections of a procedural species."""

from __future__ import annotations

import math
from functools import cache

import pytest
import torch

from cryowarp.core.ctf import CTFParams, ctf_2d
from cryowarp.core.electron import interaction_constant_rad_per_va
from cryowarp.core.fourier import irfft_centered, rfft_centered
from cryowarp.core.projection import project_real
from cryowarp.core.rotations import random_rotations
from cryowarp.core.so3_sampling import so3_grid
from cryowarp.errors import InvalidValuesError
from cryowarp.preprocess.picking.metrics import match_picks
from cryowarp.preprocess.picking.template_picker import pick_templates, templates_from_map
from cryowarp.simulate.procedural import procedural_species
from cryowarp.simulate.species import Species

PIXEL_A = 4.0
DEFOCUS_UM = 1.5
SHAPE = (224, 224)
DOSE_E_PER_A2 = 30.0


@cache
def _species() -> Species:
    return procedural_species(mass_kda=150.0, symmetry="C2", seed=3, pixel_size_a=PIXEL_A)


@cache
def _micrograph() -> tuple[torch.Tensor, torch.Tensor]:
    """Raw-contrast micrograph ``1 − 2·CTF ⊗ φ`` of 9 particles at random orientations on a
    3 × 3 grid, shot noise at 30 e⁻/Å²; returns (image, true centres in Å)."""
    species = _species()
    g = torch.Generator().manual_seed(0)
    projections = project_real(species.potential_v, random_rotations(9, generator=g))
    box = projections.shape[-1]
    potential = torch.zeros(SHAPE)
    centres = []
    for i in range(9):
        x, y = 40 + 72 * (i % 3) + (i * 7) % 9, 40 + 72 * (i // 3) + (i * 5) % 11
        potential[y - box // 2 : y - box // 2 + box, x - box // 2 : x - box // 2 + box] += (
            projections[i] * PIXEL_A
        )  # V·Å
        centres.append((x * PIXEL_A, y * PIXEL_A))
    phase = potential * interaction_constant_rad_per_va(300.0)
    ctf = CTFParams.create(pixel_size_a=PIXEL_A, defocus_um=DEFOCUS_UM)
    contrast = irfft_centered(rfft_centered(phase, ndim=2) * ctf_2d(ctf, SHAPE), shape=SHAPE)
    expected = (1 - 2 * contrast) * DOSE_E_PER_A2 * PIXEL_A**2
    image = torch.poisson(expected.clamp_min(0), generator=g)
    return image, torch.tensor(centres, dtype=torch.float64)


def _diameter_a() -> float:
    return 2 * _species().radius_a()


def test_templates_are_projections_on_the_so3_grid() -> None:
    species = _species()
    templates, pixel_a = templates_from_map(
        species.potential_v, pixel_size_a=PIXEL_A, angular_step_deg=30.0, symmetry="C2"
    )
    assert pixel_a == PIXEL_A
    assert templates.shape[0] == so3_grid(30.0, symmetry="C2").shape[0]
    # Line integrals: every projection carries the same total, that of the map (to the
    # projector's gridding accuracy).
    sums = templates.sum(dim=(1, 2))
    assert sums.tolist() == pytest.approx([float(sums[0])] * len(templates), rel=1e-4)
    assert float(sums[0]) == pytest.approx(float(species.potential_v.sum()), rel=0.05)
    coarse, coarse_pixel_a = templates_from_map(
        species.potential_v, pixel_size_a=PIXEL_A, output_pixel_size_a=8.0
    )
    assert coarse_pixel_a == pytest.approx(8.0, rel=0.05)
    assert coarse.shape[-1] == round(species.box_size_px * PIXEL_A / 8.0)


def test_recovers_planted_ctf_modulated_projections() -> None:
    image, truth = _micrograph()
    templates, pixel_a = templates_from_map(
        _species().potential_v, pixel_size_a=PIXEL_A, angular_step_deg=30.0, symmetry="C2"
    )
    picks = pick_templates(
        image,
        pixel_size_a=PIXEL_A,
        templates=templates,
        template_pixel_size_a=pixel_a,
        diameter_a=_diameter_a(),
        defocus_um=DEFOCUS_UM,
    )  # the default threshold
    match = match_picks(picks.positions_a, truth, diameter_a=_diameter_a())
    assert match.f1 == 1.0, match.summary()
    assert match.distances_a.max() < 0.1 * _diameter_a()
    assert bool((picks.scores > 1.0).all())  # clearly above the default threshold (0)


def test_wrong_contrast_sign_is_not_picked() -> None:
    """Pins the sign convention: templates are negated (protein dark in raw micrographs), so
    a contrast-inverted micrograph correlates poorly."""
    image, truth = _micrograph()
    templates, pixel_a = templates_from_map(
        _species().potential_v, pixel_size_a=PIXEL_A, angular_step_deg=30.0, symmetry="C2"
    )
    options = dict(
        pixel_size_a=PIXEL_A,
        templates=templates,
        template_pixel_size_a=pixel_a,
        diameter_a=_diameter_a(),
        defocus_um=DEFOCUS_UM,
        threshold=-math.inf,
    )
    right = pick_templates(image, **options)  # type: ignore[arg-type]
    inverted = pick_templates(2 * image.mean() - image, **options)  # type: ignore[arg-type]
    top_right = match_picks(right.positions_a[:9], truth, diameter_a=_diameter_a())
    top_inverted = match_picks(inverted.positions_a[:9], truth, diameter_a=_diameter_a())
    assert top_right.n_matched == 9
    assert float(inverted.scores[0]) < float(right.scores[8])
    assert top_inverted.n_matched < 9


def test_bad_inputs_raise_typed_errors() -> None:
    image = torch.randn(64, 64)
    templates = torch.randn(3, 16, 16)
    options = dict(pixel_size_a=2.0, templates=templates, template_pixel_size_a=2.0)
    with pytest.raises(InvalidValuesError, match="exceeds"):
        pick_templates(image, diameter_a=500.0, defocus_um=1.0, **options)  # type: ignore[arg-type]
    bad = dict(options, templates=torch.full((1, 8, 8), math.nan))
    with pytest.raises(InvalidValuesError, match="NaN"):
        pick_templates(image, diameter_a=30.0, defocus_um=1.0, **bad)  # type: ignore[arg-type]
