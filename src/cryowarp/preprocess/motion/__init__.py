"""Motion correction of frame series (Warp's model: global 1×1×T + local X×Y×T spline grids).

User page: docs/motion.md. Shifts follow docs/conventions.md §4.
"""

from __future__ import annotations

from cryowarp.preprocess.motion._outputs import (
    MOTION_METADATA_VERSION,
    MotionPaths,
    motion_output_paths,
)
from cryowarp.preprocess.motion.average import MotionAverages, average_frames
from cryowarp.preprocess.motion.correct import (
    MotionOutcome,
    MotionResult,
    alignment_patch_size_px,
    alignment_pixel_size_a,
    correct_movie,
    correct_movies,
)
from cryowarp.preprocess.motion.fit import MotionFit, StageReport, estimate_motion
from cryowarp.preprocess.motion.frames import (
    LoadedMovie,
    alignment_frames,
    binned_shape,
    load_movie,
)
from cryowarp.preprocess.motion.model import MOTION_MODEL_VERSION, FrameMotion, MotionField
from cryowarp.preprocess.motion.plot import plot_motion_tracks
from cryowarp.preprocess.motion.settings import (
    MOTION_SETTINGS_VERSION,
    MotionSettings,
    MovieInputSettings,
)
from cryowarp.preprocess.motion.summary import MotionSummary, motion_summary

__all__ = [
    "MOTION_METADATA_VERSION",
    "MOTION_MODEL_VERSION",
    "MOTION_SETTINGS_VERSION",
    "FrameMotion",
    "LoadedMovie",
    "MotionAverages",
    "MotionField",
    "MotionFit",
    "MotionOutcome",
    "MotionPaths",
    "MotionResult",
    "MotionSettings",
    "MotionSummary",
    "MovieInputSettings",
    "StageReport",
    "alignment_frames",
    "alignment_patch_size_px",
    "alignment_pixel_size_a",
    "average_frames",
    "binned_shape",
    "correct_movie",
    "correct_movies",
    "estimate_motion",
    "load_movie",
    "motion_output_paths",
    "motion_summary",
    "plot_motion_tracks",
]
