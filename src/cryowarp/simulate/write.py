"""Write a simulated frame-series dataset as real users' files plus its ground truth.

Movies are written as a counting camera writes them: whole-number counts in MRC (mode 0,
signed bytes, when every value fits in 0…127, else mode 6, uint16) or LZW-compressed TIFF
(uint8, or uint16 when a count exceeds 255), flipped along y so that readers following
docs/conventions.md §14 see the frames in the simulator's orientation.  The gain reference
is a float32 MRC.  The layout of the ``ground_truth`` folder: :mod:`.ground_truth`.
Same seed and settings → the same bytes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import tifffile
import torch

from cryowarp.io.files import atomic_output
from cryowarp.io.mrc import write_mrc
from cryowarp.simulate.build_species import build_species
from cryowarp.simulate.detector import DetectorDefects
from cryowarp.simulate.frame_series import (
    SimulatedFrameSeries,
    SpeciesLike,
    detector_for,
    simulate_frame_series,
)
from cryowarp.simulate.ground_truth import (
    GROUND_TRUTH_FOLDER,
    GROUND_TRUTH_SCHEMA_VERSION,
    write_ground_truth_json,
    write_species_maps,
)
from cryowarp.simulate.presets import FrameSeriesSettings

__all__ = ["FrameSeriesDataset", "write_frame_series_dataset", "write_movie"]

GAIN_FILE = "gain.mrc"


@dataclass(frozen=True)
class FrameSeriesDataset:
    """What :func:`write_frame_series_dataset` wrote."""

    folder: Path
    movies: tuple[Path, ...]
    gain: Path
    ground_truth: Path


def write_frame_series_dataset(
    folder: str | Path,
    settings: FrameSeriesSettings,
    *,
    n_movies: int,
    seed: int,
    species: Sequence[SpeciesLike] | None = None,
    log: Callable[[str], None] | None = None,
) -> FrameSeriesDataset:
    """Simulate ``n_movies`` movies and write them, the gain and the ground truth.

    Parameters
    ----------
    folder:
        Output folder (created).
    settings:
        Physics, sizes and output format.
    n_movies, seed:
        Number of movies; every random draw derives from ``seed``.
    species:
        Pre-built species (default:
        :func:`~cryowarp.simulate.build_species.build_species`).
    log:
        Receives one line per movie.
    """
    if n_movies < 1:
        raise ValueError(f"n_movies must be at least 1, got {n_movies}")
    out = Path(folder)
    truth_dir = out / GROUND_TRUTH_FOLDER
    truth_dir.mkdir(parents=True, exist_ok=True)
    built = list(species) if species is not None else build_species(settings, seed=seed)
    defects = detector_for(settings, seed=seed)
    gain_path = out / GAIN_FILE
    write_mrc(gain_path, defects.gain.numpy(), voxel_size_a=settings.pixel_size_a)

    movies: list[Path] = []
    entries: list[dict[str, Any]] = []
    rendered: Sequence[SpeciesLike] = built
    for index in range(n_movies):
        result = simulate_frame_series(
            built, settings, seed=seed, movie_index=index, defects=defects
        )
        rendered = result.species
        suffix = ".tif" if settings.output_format == "tiff" else ".mrc"
        movie = out / f"movie_{index:03d}{suffix}"
        write_movie(movie, result.frames, pixel_size_a=settings.pixel_size_a)
        entries.append(_write_movie_truth(truth_dir, movie, index, result, settings))
        movies.append(movie)
        if log is not None:
            log(f"{movie.name}: {len(result.particles)} particles, {settings.n_frames} frames")
        del result

    species_entries = write_species_maps(truth_dir, rendered)
    document = {
        "schema_version": GROUND_TRUTH_SCHEMA_VERSION,
        "generator": "cryowarp simulate frame-series",
        "seed": seed,
        "settings": settings.model_dump(mode="json"),
        "species": species_entries,
        "detector": _detector_entry(defects),
        "movies": entries,
    }
    truth = write_ground_truth_json(truth_dir, document)
    return FrameSeriesDataset(out, tuple(movies), gain_path, truth)


def write_movie(path: Path, frames: torch.Tensor, *, pixel_size_a: float) -> None:
    """Write ``(n, h, w)`` counts as MRC or TIFF (by the suffix), atomically."""
    array = frames.detach().cpu().numpy()
    floating = frames.dtype.is_floating_point
    high = 0 if floating or array.size == 0 else int(array.max())
    data: np.ndarray
    if path.suffix.lower() in (".tif", ".tiff"):
        data = array.astype(np.float32 if floating else np.uint8 if high <= 255 else np.uint16)
        _write_tiff(path, np.ascontiguousarray(data[:, ::-1, :]), pixel_size_a=pixel_size_a)
        return
    if floating:
        data, mode = array.astype(np.float32), 2
    elif high <= 127:
        data, mode = array.astype(np.int8), 0
    else:
        data, mode = array.astype(np.uint16), 6
    write_mrc(path, data, voxel_size_a=pixel_size_a, mode=mode, is_stack=True)


def _write_tiff(path: Path, data: np.ndarray, *, pixel_size_a: float) -> None:
    pixels_per_cm = 1e8 / pixel_size_a
    with atomic_output(path) as tmp:
        tifffile.imwrite(
            tmp,
            data,
            photometric="minisblack",
            compression="lzw",
            resolution=(pixels_per_cm, pixels_per_cm),
            resolutionunit="CENTIMETER",
            metadata=None,
        )


def _detector_entry(defects: DetectorDefects) -> dict[str, Any]:
    yx = torch.nonzero(defects.hot_pixels)
    return {
        "gain": GAIN_FILE,
        "gain_convention": "multiplicative: corrected = raw * gain (docs/conventions.md §14)",
        "hot_pixels_xy": yx.flip(-1).tolist(),
        "dead_columns": defects.dead_columns.tolist(),
    }


def _write_movie_truth(
    folder: Path,
    movie: Path,
    index: int,
    result: SimulatedFrameSeries,
    settings: FrameSeriesSettings,
) -> dict[str, Any]:
    stem = movie.stem
    px = settings.pixel_size_a
    files = {
        "clean_micrograph": f"{stem}_clean.mrc",
        "projected_potential": f"{stem}_potential.mrc",
        "artefact_mask": f"{stem}_artefact_mask.mrc",
    }
    write_mrc(folder / files["clean_micrograph"], result.clean_micrograph.numpy(), voxel_size_a=px)
    write_mrc(
        folder / files["projected_potential"],
        result.projected_potential_va.numpy(),
        voxel_size_a=px,
    )
    write_mrc(
        folder / files["artefact_mask"],
        result.artefact_mask.numpy().astype(np.int8),
        voxel_size_a=px,
        mode=0,
    )
    return {
        "index": index,
        "movie": movie.name,
        "n_frames": settings.n_frames,
        "dose_per_frame_e_per_a2": settings.dose_per_frame_e_per_a2,
        "ctf": result.ctf.to_dict(),
        "motion": result.motion.to_dict(),
        "particles": result.particles.to_dict(),
        "files": files,
    }
