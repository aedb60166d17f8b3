"""Read the ground truth of a simulated tilt series (written by
:func:`cryowarp.simulate.tilt_series_files.write_tilt_series_dataset`; the layout and every
field: docs/simulator.md, "Tilt series")."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from cryowarp.core.rotations import euler_to_matrix
from cryowarp.errors import FileFormatError
from cryowarp.simulate.ground_truth import (
    GROUND_TRUTH_FILE,
    GROUND_TRUTH_FOLDER,
    read_ground_truth_json,
)
from cryowarp.simulate.tilt_presets import TiltSeriesSettings
from cryowarp.simulate.tilt_series import SpecimenParticles, TiltSeriesGeometry

__all__ = [
    "TILT_GROUND_TRUTH_SCHEMA_VERSION",
    "TiltSeriesTruth",
    "read_tilt_series_truth",
]

TILT_GROUND_TRUTH_SCHEMA_VERSION = 1


@dataclass(frozen=True)
class TiltSeriesTruth:
    """The ground truth of a written tilt series, as read back.

    ``geometry`` is in **acquisition order**; ``stack_to_acquisition[i]`` is the acquisition
    index of stack image ``i``.  ``particle_defocus_um`` and ``particle_positions_px`` are
    ``(m, n)`` / ``(m, n, 2)`` in stack order.
    """

    document: dict[str, Any]
    settings: TiltSeriesSettings
    geometry: TiltSeriesGeometry
    particles: SpecimenParticles
    species_names: tuple[str, ...]
    stack_to_acquisition: torch.Tensor  # (n,) int64
    particle_defocus_um: torch.Tensor  # (m, n) float64, stack order
    particle_positions_px: torch.Tensor  # (m, n, 2) float64, stack order
    folder: Path

    def species_map_path(self, name: str) -> Path:
        """The noise-free map (V) of species ``name``."""
        for entry in self.document["species"]:
            if entry["name"] == name:
                return self.folder / GROUND_TRUTH_FOLDER / str(entry["map"])
        raise KeyError(f"no species {name!r}; have {list(self.species_names)}")


def read_tilt_series_truth(folder: str | Path) -> TiltSeriesTruth:
    """Read the ground truth of a tilt series written by :func:`write_tilt_series_dataset`.

    ``folder`` is the dataset folder or its ``ground_truth`` folder.

    Raises
    ------
    MissingFileError, FileFormatError
        No ``ground_truth.json``, not a tilt series, or an unknown schema version.
    """
    folder = Path(folder)
    if folder.name == GROUND_TRUTH_FOLDER:
        folder = folder.parent
    path = folder / GROUND_TRUTH_FOLDER / GROUND_TRUTH_FILE
    doc = read_ground_truth_json(path, hint="simulate a tilt series first")
    if doc.get("kind") != "tilt_series":
        raise FileFormatError(path, f"not a tilt-series ground truth (kind {doc.get('kind')!r})")
    if doc.get("schema_version") != TILT_GROUND_TRUTH_SCHEMA_VERSION:
        raise FileFormatError(path, f"unknown schema_version {doc.get('schema_version')!r}")
    settings = TiltSeriesSettings.model_validate(doc["settings"])
    tilts = doc["tilts"]
    to_acq = torch.tensor([t["acquisition_index"] for t in tilts], dtype=torch.int64)
    by_acq = sorted(tilts, key=lambda t: int(t["acquisition_index"]))

    def column(key: str) -> torch.Tensor:
        return torch.tensor([t[key] for t in by_acq], dtype=torch.float64)

    geometry = TiltSeriesGeometry(
        nominal_angles_deg=column("nominal_angle_deg"),
        angle_errors_deg=column("angle_error_deg"),
        tilt_axis_angle_deg=float(doc["tilt_axis_angle_deg"]),
        shifts_a=column("shift_a").reshape(-1, 2),
        defocus_um=column("defocus_um"),
        astig_x_um=column("astig_x_um"),
        astig_y_um=column("astig_y_um"),
        target_defocus_um=settings.target_defocus_um,
        dose_e_per_a2=column("dose_e_per_a2"),
        frame_shifts_a=column("frame_shifts_a").reshape(len(by_acq), -1, 2),
    )
    names = tuple(str(s["name"]) for s in doc["species"])
    rows = doc["particles"]
    euler = torch.tensor([r["euler_deg"] for r in rows], dtype=torch.float64).reshape(-1, 3)
    particles = SpecimenParticles(
        positions_a=torch.tensor([r["position_a"] for r in rows], dtype=torch.float64).reshape(
            -1, 3
        ),
        orientations=euler_to_matrix(euler),
        species_index=torch.tensor([names.index(r["species"]) for r in rows], dtype=torch.int64),
    )
    n = len(tilts)
    return TiltSeriesTruth(
        document=doc,
        settings=settings,
        geometry=geometry,
        particles=particles,
        species_names=names,
        stack_to_acquisition=to_acq,
        particle_defocus_um=torch.tensor(
            [r["defocus_um"] for r in rows], dtype=torch.float64
        ).reshape(-1, n),
        particle_positions_px=torch.tensor(
            [r["image_position_px"] for r in rows], dtype=torch.float64
        ).reshape(-1, n, 2),
        folder=folder,
    )
