"""The ground truth of simulated frame series: a versioned, documented on-disk format.

Layout (next to the movies)::

    OUT/
      movie_000.mrc | movie_000.tif        raw frames as the camera writes them
      gain.mrc                             multiplicative gain reference (conventions §14)
      ground_truth/
        ground_truth.json                  everything below, schema_version = 1
        species_<name>.mrc                 noise-free potential map of each species (V)
        movie_000_clean.mrc                clean micrograph (float32, unit dose)
        movie_000_potential.mrc            projected potential of the particles (V·Å)
        movie_000_artefact_mask.mrc        artefact mask (int8, 1 = artefact)

``ground_truth.json`` holds the settings, the species, the detector defects and, per movie,
the CTF (:class:`~cryowarp.simulate.sample_ctf.SampleCTF`: the defocus at any position), the
motion (:meth:`~cryowarp.simulate.motion.MotionTruth.to_dict`) and the particle table
(position x, y, z in Å; RELION Euler angles rot, tilt, psi in degrees; rlnDefocusU/V/Angle;
species).  docs/simulator.md describes every field.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cryowarp.errors import FileFormatError, MissingFileError
from cryowarp.io.files import write_text_atomically
from cryowarp.io.mrc import read_mrc, write_mrc
from cryowarp.simulate.motion import MotionTruth
from cryowarp.simulate.presets import FrameSeriesSettings
from cryowarp.simulate.sample_ctf import SampleCTF
from cryowarp.simulate.species_like import SpeciesLike

__all__ = [
    "GROUND_TRUTH_FILE",
    "GROUND_TRUTH_FOLDER",
    "GROUND_TRUTH_SCHEMA_VERSION",
    "FrameSeriesTruth",
    "ParticleTruth",
    "SpeciesTruth",
    "load_ground_truth",
    "particle_table_columns",
    "read_ground_truth_json",
    "write_ground_truth_json",
    "write_species_maps",
]

GROUND_TRUTH_SCHEMA_VERSION = 1
GROUND_TRUTH_FOLDER = "ground_truth"
GROUND_TRUTH_FILE = "ground_truth.json"

_PARTICLE_COLUMNS = (
    "x_a",
    "y_a",
    "z_a",
    "rot_deg",
    "tilt_deg",
    "psi_deg",
    "defocus_u_a",
    "defocus_v_a",
    "defocus_angle_deg",
)


@dataclass(frozen=True)
class ParticleTruth:
    """The particles of one movie (``n`` rows).

    Attributes
    ----------
    positions_a:
        ``(n, 3)`` float64 (x, y, z) in Å: x, y from the centre of pixel (0, 0) in the
        reference geometry (frame 0); z from the eucentric point, towards the source.
    euler_deg:
        ``(n, 3)`` RELION (rot, tilt, psi) in degrees (docs/conventions.md §8): the
        projection of species map ``V`` is ``∫ V(Aᵀ r) dz`` with ``A = euler_to_matrix``.
    defocus_u_a, defocus_v_a, defocus_angle_deg:
        ``(n,)`` RELION per-particle defocus (Å, Å, degrees).
    species:
        Name of each particle's species.
    """

    positions_a: torch.Tensor  # (n, 3)
    euler_deg: torch.Tensor  # (n, 3)
    defocus_u_a: torch.Tensor  # (n,)
    defocus_v_a: torch.Tensor  # (n,)
    defocus_angle_deg: torch.Tensor  # (n,)
    species: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.species)

    def positions_px(self, pixel_size_a: float) -> torch.Tensor:
        """``(n, 2)`` (x, y) positions in pixels (RELION's rlnCoordinateX/Y)."""
        return self.positions_a[:, :2] / pixel_size_a

    def to_dict(self) -> dict[str, list[Any]]:
        columns = torch.cat(
            [
                self.positions_a,
                self.euler_deg,
                torch.stack([self.defocus_u_a, self.defocus_v_a, self.defocus_angle_deg], -1),
            ],
            dim=-1,
        ).to(torch.float64)
        table: dict[str, list[Any]] = {
            name: columns[:, i].tolist() for i, name in enumerate(_PARTICLE_COLUMNS)
        }
        table["species"] = list(self.species)
        return table

    @classmethod
    def from_dict(cls, table: dict[str, list[Any]]) -> ParticleTruth:
        cols = {k: torch.tensor(table[k], dtype=torch.float64) for k in _PARTICLE_COLUMNS}
        return cls(
            positions_a=torch.stack([cols["x_a"], cols["y_a"], cols["z_a"]], -1).reshape(-1, 3),
            euler_deg=torch.stack([cols["rot_deg"], cols["tilt_deg"], cols["psi_deg"]], -1).reshape(
                -1, 3
            ),
            defocus_u_a=cols["defocus_u_a"],
            defocus_v_a=cols["defocus_v_a"],
            defocus_angle_deg=cols["defocus_angle_deg"],
            species=tuple(str(s) for s in table["species"]),
        )


def particle_table_columns() -> tuple[str, ...]:
    """Names of the numeric columns of the particle table in ``ground_truth.json``."""
    return _PARTICLE_COLUMNS


@dataclass(frozen=True)
class SpeciesTruth:
    """A species of the dataset and its noise-free map (potential in V, centred at N//2)."""

    name: str
    map_path: Path
    pixel_size_a: float
    box_size_px: int
    symmetry: str
    source: str


@dataclass(frozen=True)
class FrameSeriesTruth:
    """Everything that made one simulated movie.

    Evaluate the truth with :meth:`defocus_at` and :meth:`shifts_at`; read the maps with
    :meth:`read_clean_micrograph`, :meth:`read_artefact_mask`, :meth:`read_species_map`,
    :meth:`read_gain`.
    """

    movie_path: Path
    settings: FrameSeriesSettings
    seed: int
    movie_index: int
    ctf: SampleCTF
    motion: MotionTruth
    particles: ParticleTruth
    species: tuple[SpeciesTruth, ...]
    gain_path: Path
    hot_pixels_xy: torch.Tensor  # (m, 2) int64 (x, y)
    dead_columns: torch.Tensor  # (k,) int64
    clean_micrograph_path: Path
    projected_potential_path: Path
    artefact_mask_path: Path

    def defocus_at(self, positions_a: torch.Tensor) -> torch.Tensor:
        """Mean defocus (µm) at ``(..., 2)`` image positions on the ice mid-plane or
        ``(..., 3)`` specimen points (x, y, z) in Å; see :class:`SampleCTF`."""
        return self.ctf.defocus_at(positions_a)

    def shifts_at(
        self, positions_xy_a: torch.Tensor, frames: torch.Tensor | None = None
    ) -> torch.Tensor:
        """``(..., m, 2)`` total shift (Å) of the content at ``(..., 2)`` positions (Å) and
        frames (all by default): :meth:`MotionTruth.shifts_at`."""
        return self.motion.shifts_at(positions_xy_a, frames)

    def read_clean_micrograph(self) -> torch.Tensor:
        """``(h, w)`` clean micrograph: intensity per unit dose, no motion, damage, MTF or noise."""
        return _read_tensor(self.clean_micrograph_path)

    def read_projected_potential(self) -> torch.Tensor:
        """``(h, w)`` projected potential (V·Å) of the particles, before the CTF."""
        return _read_tensor(self.projected_potential_path)

    def read_artefact_mask(self) -> torch.Tensor:
        """``(h, w)`` bool mask of the artefacts (reference geometry of frame 0)."""
        return _read_tensor(self.artefact_mask_path) > 0.5

    def read_gain(self) -> torch.Tensor:
        """``(h, w)`` multiplicative gain reference."""
        return _read_tensor(self.gain_path)

    def read_species_map(self, name: str) -> torch.Tensor:
        """``(d, h, w)`` noise-free potential (V) of species ``name``."""
        for entry in self.species:
            if entry.name == name:
                return _read_tensor(entry.map_path)
        raise KeyError(f"no species {name!r}; have {[s.name for s in self.species]}")


def write_ground_truth_json(folder: Path, document: dict[str, Any]) -> Path:
    """Write ``ground_truth.json`` atomically into ``folder`` (keys sorted, stable bytes)."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / GROUND_TRUTH_FILE
    text = json.dumps(document, indent=1, sort_keys=True, allow_nan=False) + "\n"
    write_text_atomically(path, text)
    return path


def read_ground_truth_json(path: Path, *, hint: str) -> dict[str, Any]:
    """The document of a ``ground_truth.json`` (schema not checked).

    Raises
    ------
    MissingFileError
        No file at ``path`` (the error carries ``hint``).
    FileFormatError
        Not valid JSON, or not a JSON object.
    """
    if not path.is_file():
        raise MissingFileError(path, "no ground_truth.json", hint)
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise FileFormatError(path, f"not valid JSON ({error})") from error
    if not isinstance(document, dict):
        raise FileFormatError(path, "is not a JSON object")
    return document


def write_species_maps(folder: Path, species: Sequence[SpeciesLike]) -> list[dict[str, Any]]:
    """Write the noise-free map of each species as ``species_<name>.mrc`` (a float32 volume)
    into ``folder`` and return their ground-truth entries."""
    entries = []
    for entry in species:
        name = f"species_{entry.name}.mrc"
        volume = entry.potential_v.detach().cpu().float().numpy()
        write_mrc(folder / name, volume, voxel_size_a=entry.pixel_size_a)
        entries.append(
            {
                "name": entry.name,
                "map": name,
                "pixel_size_a": float(entry.pixel_size_a),
                "box_size_px": int(entry.potential_v.shape[-1]),
                "symmetry": str(getattr(entry, "symmetry", "C1")),
                "source": str(getattr(entry, "source", "")),
            }
        )
    return entries


def load_ground_truth(folder: str | Path, movie: int | str = 0) -> FrameSeriesTruth:
    """Load the ground truth of one movie of a simulated dataset.

    Parameters
    ----------
    folder:
        The ``ground_truth`` folder, or the dataset folder that contains it.
    movie:
        Index of the movie, or its file name (e.g. ``"movie_000.mrc"``).

    Raises
    ------
    MissingFileError, FileFormatError
        No ``ground_truth.json``, an unknown schema version or an unknown movie.
    """
    folder = Path(folder)
    if not (folder / GROUND_TRUTH_FILE).is_file() and (folder / GROUND_TRUTH_FOLDER).is_dir():
        folder = folder / GROUND_TRUTH_FOLDER
    path = folder / GROUND_TRUTH_FILE
    document = read_ground_truth_json(path, hint="simulate a dataset first")
    version = document.get("schema_version")
    if version != GROUND_TRUTH_SCHEMA_VERSION:
        raise FileFormatError(
            path, f"ground-truth schema_version {version!r} is not {GROUND_TRUTH_SCHEMA_VERSION}"
        )
    movies = document["movies"]
    if isinstance(movie, str):
        index = next((i for i, m in enumerate(movies) if m["movie"] == movie), None)
        if index is None:
            raise FileFormatError(path, f"no movie named {movie!r}")
    else:
        index = movie
        if not 0 <= index < len(movies):
            raise FileFormatError(path, f"movie index {index} outside 0 … {len(movies) - 1}")
    entry = movies[index]
    dataset = folder.parent
    species = tuple(
        SpeciesTruth(
            name=s["name"],
            map_path=folder / s["map"],
            pixel_size_a=float(s["pixel_size_a"]),
            box_size_px=int(s["box_size_px"]),
            symmetry=str(s["symmetry"]),
            source=str(s["source"]),
        )
        for s in document["species"]
    )
    detector = document["detector"]
    return FrameSeriesTruth(
        movie_path=dataset / entry["movie"],
        settings=FrameSeriesSettings.model_validate(document["settings"]),
        seed=int(document["seed"]),
        movie_index=int(entry["index"]),
        ctf=SampleCTF.from_dict(entry["ctf"]),
        motion=MotionTruth.from_dict(entry["motion"]),
        particles=ParticleTruth.from_dict(entry["particles"]),
        species=species,
        gain_path=dataset / detector["gain"],
        hot_pixels_xy=torch.tensor(detector["hot_pixels_xy"], dtype=torch.int64).reshape(-1, 2),
        dead_columns=torch.tensor(detector["dead_columns"], dtype=torch.int64),
        clean_micrograph_path=folder / entry["files"]["clean_micrograph"],
        projected_potential_path=folder / entry["files"]["projected_potential"],
        artefact_mask_path=folder / entry["files"]["artefact_mask"],
    )


def _read_tensor(path: Path) -> torch.Tensor:
    data, _ = read_mrc(path)
    return torch.from_numpy(np.array(data, dtype=np.float32))
