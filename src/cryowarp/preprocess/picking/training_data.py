"""Generic BoxNet training data: settings, the fast detector path, dataset files.

The simulation itself (species pool, one micrograph, a whole dataset) needs
:mod:`cryowarp.simulate` and therefore lives one layer up, in
:mod:`cryowarp.pipeline.picking_training_data` (algorithm packages may not import each
other, tests/test_layering.py). This module holds what does not simulate:

* :class:`GenericTrainingSettings` — every choice of the generic dataset, with units;
* :func:`prepared_from_clean` — the **fast path** from a noise-free simulated micrograph to
  what :func:`~cryowarp.preprocess.picking.prepare.prepare_micrograph` gives for a real
  dose-weighted average (docs/picking_training_data.md, "Equivalence");
* :func:`labelled_from_clean` — the same with labels from the ground truth;
* :func:`dataset_hash`, :func:`dataset_file`, :func:`load_dataset` — the ``.npz`` files of a
  dataset (one :class:`~cryowarp.preprocess.picking.labels.LabelledMicrograph` each).
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Sequence
from pathlib import Path

import torch
from pydantic import BaseModel, ConfigDict, Field, model_validator

from cryowarp.core.resize import rescale, rescaled_shape
from cryowarp.errors import CryowarpInputError, MissingFileError
from cryowarp.preprocess.picking.labels import (
    LabelledMicrograph,
    downsample_mask,
    labels_from_positions,
    load_labelled,
)
from cryowarp.preprocess.picking.prepare import (
    PICKING_PIXEL_SIZE_A,
    PreparedMicrograph,
    normalise_robust,
)

__all__ = [
    "DATA_VERSION",
    "GenericTrainingSettings",
    "dataset_file",
    "dataset_hash",
    "labelled_from_clean",
    "load_dataset",
    "prepared_from_clean",
]

DATA_VERSION = 1
"""Version of the way generic micrographs are made; part of :func:`dataset_hash`."""

_LOG = logging.getLogger(__name__)

_Range = tuple[float, float]


class GenericTrainingSettings(BaseModel):
    """How the generic BoxNet training set is simulated. Ranges ``(low, high)`` are drawn
    uniformly per micrograph (masses log-uniformly)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    n_micrographs: int = Field(default=200, ge=1, description="Micrographs in the dataset.")
    micrograph_size_px: tuple[int, int] = Field(
        default=(256, 256), description="Size (height, width) of each micrograph at 8 Å/px."
    )
    simulation_pixel_size_a: float = Field(
        default=4.0,
        gt=0,
        description="Pixel size (Å) the simulator renders at before Fourier-cropping to the "
        "picking pixel size.",
    )
    picking_pixel_size_a: float = Field(
        default=PICKING_PIXEL_SIZE_A, gt=0, description="Pixel size (Å) BoxNet sees."
    )
    # -- species pool -------------------------------------------------------------------
    n_procedural_species: int = Field(
        default=40, ge=0, description="Procedural species in the pool ('train' seeds)."
    )
    procedural_mass_range_kda: _Range = Field(
        default=(60.0, 4000.0), description="Mass range of procedural species in kDa."
    )
    min_mass_per_subunit_kda: float = Field(
        default=10.0,
        ge=0,
        description="Smallest mass per asymmetric unit in kDa (raises the lower mass bound "
        "of high symmetries).",
    )
    symmetries: tuple[str, ...] = Field(
        default=("C1", "C2", "C3", "C4", "C5", "C6", "D2", "D3", "D4", "D5", "D6", "D7", "T", "O"),
        description="Point groups of procedural species (RELION names), drawn uniformly.",
    )
    real_species_probability: float = Field(
        default=0.3,
        ge=0,
        le=1,
        description="Chance that a species slot of a micrograph takes one of the real maps or "
        "models (when the pool has any).",
    )
    displace_solvent: bool = Field(
        default=True,
        description="Subtract the ice a particle displaces from its potential (the simulator "
        "does not), so protein has its real contrast against ice.",
    )
    species_per_micrograph: tuple[int, int] = Field(
        default=(1, 3), description="Number of species per micrograph (low, high)."
    )
    # -- crowding -------------------------------------------------------------------------
    coverage_range: _Range = Field(
        default=(0.02, 0.45),
        description="Fraction of the field covered by particles (disks of their diameter), "
        "sparse to crowded; the simulator places fewer where they do not fit.",
    )
    max_particles: int = Field(default=600, ge=0, description="Most particles per micrograph.")
    particle_spacing: float = Field(
        default=1.05,
        ge=0,
        description="Minimal centre distance in units of the sum of the two particles' radii.",
    )
    # -- optics -------------------------------------------------------------------------
    voltage_kv: float = Field(default=300.0, gt=0, description="Acceleration voltage in kV.")
    cs_mm: float = Field(default=2.7, ge=0, description="Spherical aberration in mm.")
    amplitude_contrast: float = Field(
        default=0.07, ge=0, lt=1, description="Amplitude contrast (fraction)."
    )
    defocus_range_um: _Range = Field(
        default=(0.5, 4.0), description="Defocus (underfocus positive) in µm, no phase plate."
    )
    astigmatism_range_um: _Range = Field(
        default=(0.0, 0.15), description="Astigmatism (U − V)/2 in µm."
    )
    phase_plate_fraction: float = Field(
        default=0.2, ge=0, le=1, description="Fraction of micrographs with a phase plate."
    )
    phase_shift_range_deg: _Range = Field(
        default=(60.0, 120.0), description="Phase-plate shift in degrees."
    )
    phase_plate_defocus_range_um: _Range = Field(
        default=(0.5, 1.0), description="Defocus in µm of phase-plate micrographs."
    )
    # -- specimen -----------------------------------------------------------------------
    ice_thickness_range_a: _Range = Field(default=(150.0, 900.0), description="Ice thickness in Å.")
    ice_variation_range: _Range = Field(
        default=(0.0, 0.15),
        description="RMS of the smooth thickness variation as a fraction of the thickness.",
    )
    ice_variation_length_range_a: _Range = Field(
        default=(300.0, 2000.0), description="Correlation length of the variation in Å."
    )
    tilted_fraction: float = Field(
        default=0.3, ge=0, le=1, description="Fraction of micrographs with a tilted sample."
    )
    sample_tilt_range_deg: _Range = Field(
        default=(0.0, 20.0), description="Sample tilt of tilted micrographs in degrees."
    )
    dose_range_e_per_a2: _Range = Field(
        default=(15.0, 80.0), description="Total exposure in e⁻/Å²."
    )
    dqe_range: _Range = Field(
        default=(0.5, 0.9),
        description="Detective quantum efficiency at low frequency (fraction): the shot "
        "noise is that of dose × DQE.",
    )
    # -- artefacts ----------------------------------------------------------------------
    artefact_fraction: float = Field(
        default=0.5, ge=0, le=1, description="Fraction of micrographs with artefacts."
    )
    carbon_edge_probability: float = Field(
        default=0.5,
        ge=0,
        le=1,
        description="Chance of a carbon edge in a micrograph with artefacts.",
    )
    max_ethane_drops: int = Field(
        default=2, ge=0, description="Most ethane drops in a micrograph with artefacts."
    )
    max_aggregates: int = Field(
        default=3, ge=0, description="Most aggregates in a micrograph with artefacts."
    )

    @model_validator(mode="after")
    def _check(self) -> GenericTrainingSettings:
        for name, value in self:
            if "_range" in name and (value[0] > value[1] or value[0] < 0):
                raise ValueError(f"{name} must be (low, high) with 0 ≤ low ≤ high: {value}")
        lo, hi = self.species_per_micrograph
        if not 1 <= lo <= hi:
            raise ValueError(f"species_per_micrograph must be 1 ≤ low ≤ high: {(lo, hi)}")
        if self.simulation_pixel_size_a > self.picking_pixel_size_a:
            raise ValueError("simulation_pixel_size_a must not exceed picking_pixel_size_a")
        if min(self.micrograph_size_px) < 16:
            raise ValueError(f"micrograph_size_px must be ≥ 16: {self.micrograph_size_px}")
        if self.procedural_mass_range_kda[0] <= 0:
            raise ValueError("procedural masses must be positive")
        return self

    @property
    def simulation_shape_px(self) -> tuple[int, int]:
        """Simulated field (height, width) in pixels of ``simulation_pixel_size_a``."""
        ratio = self.picking_pixel_size_a / self.simulation_pixel_size_a
        h, w = self.micrograph_size_px
        return (round(h * ratio), round(w * ratio))


def prepared_from_clean(
    clean: torch.Tensor,  # (H, W) intensity per unit dose (vacuum 1)
    *,
    pixel_size_a: float,
    dose_e_per_a2: float,
    generator: torch.Generator,
    picking_pixel_size_a: float = PICKING_PIXEL_SIZE_A,
) -> PreparedMicrograph:
    """A noise-free simulated micrograph as :func:`prepare_micrograph` would give it for a
    recorded average of that total dose.

    The clean image is Fourier-cropped to the picking pixel size (the ideal low-pass of
    ``prepare_micrograph``), counts ``Poisson(dose × pixel area × I)`` are drawn at that pixel
    size (gain-free), and the result is normalised with
    :func:`~cryowarp.preprocess.picking.prepare.normalise_robust`. Shot noise that is white at
    the fine pixel and Fourier-cropped has the variance of Poisson counts drawn on the coarse
    pixel, so the two orders agree in first and second moments; what is left out (motion
    blur, detector MTF, radiation damage, gain) is listed in docs/picking_training_data.md.
    ``generator`` must live on ``clean``'s device.
    """
    h, w = (int(n) for n in clean.shape)
    new_shape = rescaled_shape(
        (h, w), pixel_size_a=pixel_size_a, new_pixel_size_a=picking_pixel_size_a
    )
    small = rescale(clean.to(torch.float32), tuple(new_shape))
    achieved = (pixel_size_a * w / new_shape[1], pixel_size_a * h / new_shape[0])
    expected = small.clamp(min=0.0) * (dose_e_per_a2 * achieved[0] * achieved[1])
    counts = torch.poisson(expected, generator=generator)
    return PreparedMicrograph(
        image=normalise_robust(counts),
        pixel_size_xy_a=achieved,
        original_shape=(h, w),
        original_pixel_size_a=float(pixel_size_a),
    )


def labelled_from_clean(
    clean: torch.Tensor,  # (H, W) intensity per unit dose
    *,
    pixel_size_a: float,
    positions_a: torch.Tensor,  # (n, 2) x, y in Å from the centre of pixel (0, 0)
    diameters_a: torch.Tensor,  # (n,)
    artefact_mask: torch.Tensor,  # (H, W) bool
    dose_e_per_a2: float,
    generator: torch.Generator,
    source: str,
    picking_pixel_size_a: float = PICKING_PIXEL_SIZE_A,
) -> LabelledMicrograph:
    """:func:`prepared_from_clean` plus labels from the ground truth (particle disks of
    :func:`~cryowarp.preprocess.picking.labels.label_radius_px`, artefact where ≥ 50 % of an
    8 Å pixel is artefact)."""
    prepared = prepared_from_clean(
        clean,
        pixel_size_a=pixel_size_a,
        dose_e_per_a2=dose_e_per_a2,
        generator=generator,
        picking_pixel_size_a=picking_pixel_size_a,
    )
    shape = (int(prepared.image.shape[0]), int(prepared.image.shape[1]))
    positions = prepared.to_prepared_px(positions_a.to(torch.float64).cpu() / pixel_size_a)
    mask = downsample_mask(artefact_mask.to(torch.bool).cpu(), shape)
    diameters = diameters_a.to(torch.float32).cpu()
    labels = labels_from_positions(
        shape,
        positions,
        diameters,
        pixel_size_a=sum(prepared.pixel_size_xy_a) / 2,
        artefact_mask=mask,
    )
    return LabelledMicrograph(
        image=prepared.image.cpu(),
        labels=labels,
        positions_px=positions.to(torch.float32),
        diameters_a=diameters,
        artefact_mask=mask,
        pixel_size_a=float(picking_pixel_size_a),
        source=source,
    )


def dataset_hash(
    settings: GenericTrainingSettings, *, seed: int, extra_species: Sequence[str] = ()
) -> str:
    """12 hex digits identifying a generic dataset: settings, seed, real-species paths (as
    given, with pixel-size overrides) and :data:`DATA_VERSION`."""
    text = json.dumps(
        {
            "settings": settings.model_dump(mode="json"),
            "seed": seed,
            "extra_species": [str(p) for p in extra_species],
            "data_version": DATA_VERSION,
        },
        sort_keys=True,
    )
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def dataset_file(folder: str | Path, digest: str, index: int) -> Path:
    """File of micrograph ``index`` of the dataset ``digest`` (:func:`dataset_hash`)."""
    return Path(folder) / f"generic_{digest}_{index:05d}.npz"


def load_dataset(
    folder: str | Path, *, pattern: str = "*.npz", skip_damaged: bool = True
) -> list[LabelledMicrograph]:
    """Every labelled micrograph (``.npz``) in ``folder``, in file-name order.

    Damaged or foreign files are skipped with a logged warning (``skip_damaged=False``
    raises their error instead).

    Raises
    ------
    MissingFileError
        ``folder`` is not a folder or holds no readable file matching ``pattern``.
    """
    where = Path(folder)
    if not where.is_dir():
        raise MissingFileError(where, "is not a folder of labelled micrographs")
    out: list[LabelledMicrograph] = []
    for file in sorted(where.glob(pattern)):
        try:
            out.append(load_labelled(file))
        except CryowarpInputError as error:
            if not skip_damaged:
                raise
            _LOG.warning("skipping %s", error)
    if not out:
        raise MissingFileError(where, f"holds no readable labelled micrograph ({pattern})")
    return out
