"""What a movie brings besides its frames: the oriented gain, defects, dose per frame.

Private helpers of :func:`cryowarp.preprocess.motion.frames.load_movie`; conventions in
docs/conventions.md §7 (dose) and §14 (gain, defects), behaviour in docs/motion_input.md.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import numpy.typing as npt

from cryowarp.errors import DimensionMismatchError
from cryowarp.io.eer import EerReader, eer_fraction_groups
from cryowarp.io.files import require_file
from cryowarp.io.gain import (
    orient_gain,
    prepare_gain,
    read_defect_mask,
    read_gain,
    read_serialem_defects,
)
from cryowarp.preprocess.motion.settings import MovieInputSettings

__all__ = ["dead_lines", "dose_per_frame_e_per_a2", "read_defects", "read_oriented_gain"]

_IMAGE_SUFFIXES = {".mrc", ".mrcs", ".st", ".map", ".tif", ".tiff"}


def read_oriented_gain(
    settings: MovieInputSettings,
    frame_shape: tuple[int, int],
    *,
    movie_path: Path,
    flip_tiff_y: bool,
) -> tuple[npt.NDArray[np.float32] | None, npt.NDArray[np.float32] | None, npt.NDArray[np.bool_]]:
    """The gain as read, oriented and prepared, and its unusable pixels (``(h, w)``)."""
    no_defects = np.zeros(frame_shape, dtype=bool)
    if settings.gain_path is None:
        return None, None, no_defects
    raw = read_gain(require_file(settings.gain_path), flip_tiff_y=flip_tiff_y)
    oriented = orient_gain(
        raw,
        transpose=settings.gain_transpose,
        rotation_quarter_turns=settings.gain_rotation_quarter_turns,
        flip=settings.gain_flip,
    )
    gain, defects = prepare_gain(
        oriented, frame_shape=frame_shape, gain_path=settings.gain_path, movie_path=movie_path
    )
    return raw, gain, defects


def read_defects(
    settings: MovieInputSettings, frame_shape: tuple[int, int], *, movie_path: Path
) -> npt.NDArray[np.bool_]:
    """Defects from ``settings.defects_path``: an MRC/TIFF mask or a SerialEM text list."""
    if settings.defects_path is None:
        return np.zeros(frame_shape, dtype=bool)
    path = require_file(settings.defects_path)
    if path.suffix.lower() in _IMAGE_SUFFIXES:
        mask = read_defect_mask(path, flip_tiff_y=settings.flip_tiff_y)
    else:
        mask = read_serialem_defects(path, shape=frame_shape)
    if mask.shape != frame_shape:
        raise DimensionMismatchError(
            path,
            f"defect mask of shape {mask.shape} (h, w) does not match the frames of "
            f"{movie_path}, shape {frame_shape}",
        )
    return mask


def dead_lines(raw_sum: npt.NDArray[np.float64]) -> npt.NDArray[np.bool_]:
    """Columns and rows that recorded nothing in most pixels while the detector as a whole
    did (fewer than 5 % zero pixels overall, more than half of the line zero)."""
    zero = raw_sum == 0
    dead = np.zeros(raw_sum.shape, dtype=bool)
    if zero.mean() >= 0.05:
        return dead
    dead[:, zero.mean(axis=0) > 0.5] = True
    dead[zero.mean(axis=1) > 0.5, :] = True
    return dead


def dose_per_frame_e_per_a2(path: Path, settings: MovieInputSettings, *, is_eer: bool) -> float:
    """Dose per frame in e⁻/Å²; for EER movies with a known total dose, that of the actual
    fractions (total × raw frames per fraction / raw frames), which rounding may change."""
    if not is_eer or settings.eer_total_dose_e_per_a2 is None:
        return settings.dose_per_frame_e_per_a2
    total = settings.eer_total_dose_e_per_a2
    with EerReader(path) as probe:
        n_raw = probe.n_raw_frames
    if settings.eer_n_fractions is None and settings.eer_dose_per_fraction_e_per_a2 is None:
        return total / n_raw
    groups = eer_fraction_groups(
        n_raw,
        n_fractions=settings.eer_n_fractions,
        dose_per_fraction_e_per_a2=settings.eer_dose_per_fraction_e_per_a2,
        total_dose_e_per_a2=total,
    )
    first, last = groups.bounds[0]
    return total * (last - first) / n_raw
