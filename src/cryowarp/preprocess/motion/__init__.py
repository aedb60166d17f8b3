"""Motion correction of frame series (Warp's model: global 1×1×T + local X×Y×T spline grids).

User page: docs/motion.md. Shifts follow docs/conventions.md §4.
"""

from __future__ import annotations

from cryowarp.preprocess.motion.model import MOTION_MODEL_VERSION, FrameMotion, MotionField
from cryowarp.preprocess.motion.plot import plot_motion_tracks
from cryowarp.preprocess.motion.settings import (
    MOTION_SETTINGS_VERSION,
    MotionSettings,
    MovieInputSettings,
)
from cryowarp.preprocess.motion.summary import MotionSummary, motion_summary

__all__ = [
    "MOTION_MODEL_VERSION",
    "MOTION_SETTINGS_VERSION",
    "FrameMotion",
    "MotionField",
    "MotionSettings",
    "MotionSummary",
    "MovieInputSettings",
    "motion_summary",
    "plot_motion_tracks",
]
