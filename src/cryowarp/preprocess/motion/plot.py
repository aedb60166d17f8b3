"""A PNG of a movie's motion: the global track and exaggerated local tracks on the field.

Uses matplotlib's object API (``Figure`` + ``FigureCanvasAgg``), never ``pyplot``, so that no
global state is touched and figures can be drawn from worker threads. Shifts follow
docs/conventions.md §4; both panels are drawn with y pointing down, as the image is shown.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import numpy.typing as npt
import torch
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.collections import LineCollection
from matplotlib.figure import Figure

from cryowarp.io.files import atomic_output
from cryowarp.preprocess.motion.model import MotionField
from cryowarp.preprocess.motion.summary import split_global_local

__all__ = ["LOCAL_TRACK_POINTS", "plot_motion_tracks"]

LOCAL_TRACK_POINTS = 5
"""Local tracks are drawn at a ``5 × 5`` grid of positions."""

_FIGURE_SIZE_IN = (11.0, 5.0)
_DPI = 100
_COLORMAP = "viridis"


def plot_motion_tracks(
    motion: MotionField,
    *,
    path: str | Path,
    n_frames: int,
    field_size_a: tuple[float, float],
    pixel_size_a: float,
    title: str = "",
) -> Path:
    """Draw the motion of a movie into a PNG file (written atomically; 1100 × 500 pixels).

    Left: the global track in Å, points coloured by frame, the first frame marked.
    Right: the field in pixels with the local tracks (local part of the motion only) at
    ``5 × 5`` positions, magnified so that the largest one spans about 40 % of the spacing
    of the positions; the magnification and a scale bar in Å are written on the panel.

    Parameters
    ----------
    motion:
        The motion (any :class:`~cryowarp.preprocess.motion.model.MotionField`).
    path:
        Destination ``.png``.
    n_frames:
        Number of frames to draw.
    field_size_a:
        ``(width, height)`` of the field in Å.
    pixel_size_a:
        Pixel size (Å) of the image the field is drawn as.
    title:
        Figure title (e.g. the movie name).

    Returns
    -------
    Path
        ``path``.
    """
    if n_frames < 1 or pixel_size_a <= 0 or min(field_size_a) <= 0:
        raise ValueError(
            f"need n_frames ≥ 1, a positive pixel size and field size; got {n_frames}, "
            f"{pixel_size_a} Å, {field_size_a} Å"
        )
    width_a, height_a = field_size_a
    fractions = (torch.arange(LOCAL_TRACK_POINTS, dtype=torch.float64) + 0.5) / LOCAL_TRACK_POINTS
    ys, xs = torch.meshgrid(fractions * height_a, fractions * width_a, indexing="ij")
    positions = torch.stack([xs, ys], dim=-1).reshape(-1, 2)  # (25, 2) Å
    frames = torch.arange(n_frames, dtype=torch.float64)
    track, local = split_global_local(motion, positions, frames)  # (n, 2), (25, n, 2) Å

    figure = Figure(figsize=_FIGURE_SIZE_IN, dpi=_DPI)
    FigureCanvasAgg(figure)
    left, right = figure.subplots(1, 2)
    _draw_global(left, track.numpy())
    _draw_local(
        right,
        positions.numpy() / pixel_size_a,
        local.numpy(),
        field_px=(width_a / pixel_size_a, height_a / pixel_size_a),
        spacing_px=min(width_a, height_a) / LOCAL_TRACK_POINTS / pixel_size_a,
    )
    if title:
        figure.suptitle(title)
    figure.subplots_adjust(left=0.07, right=0.97, bottom=0.11, top=0.86, wspace=0.3)
    destination = Path(path)
    with atomic_output(destination) as tmp:
        figure.savefig(tmp, format="png", dpi=_DPI)
    return destination


def _draw_global(axes: Axes, track_a: npt.NDArray[np.float64]) -> None:  # (n, 2)
    """Global track (Å), coloured by frame, the first frame marked."""
    n = track_a.shape[0]
    colours = np.arange(n)
    axes.plot(track_a[:, 0], track_a[:, 1], color="0.7", linewidth=1, zorder=1)
    points = axes.scatter(
        track_a[:, 0], track_a[:, 1], c=colours, cmap=_COLORMAP, s=14, zorder=2, vmin=0,
        vmax=max(1, n - 1),
    )  # fmt: skip
    axes.scatter(
        track_a[:1, 0], track_a[:1, 1], marker="o", s=80, facecolors="none", edgecolors="red",
        zorder=3, label="frame 0",
    )  # fmt: skip
    axes.figure.colorbar(points, ax=axes, label="frame")
    axes.set_xlabel("x shift (Å)")
    axes.set_ylabel("y shift (Å)")
    axes.set_title("global motion")
    axes.set_aspect("equal", adjustable="datalim")
    axes.invert_yaxis()
    axes.legend(loc="best", fontsize="small")


def _draw_local(
    axes: Axes,
    positions_px: npt.NDArray[np.float64],  # (p, 2)
    local_a: npt.NDArray[np.float64],  # (p, n, 2)
    *,
    field_px: tuple[float, float],
    spacing_px: float,
) -> None:
    """Local tracks magnified around their positions on the field (pixels)."""
    n = local_a.shape[1]
    largest_a = float(np.linalg.norm(local_a, axis=-1).max()) if local_a.size else 0.0
    scale_bar_a = _nice_length(largest_a) if largest_a > 0 else 1.0
    # Pixels of the drawing per Å of local motion: the largest track spans 40 % of a spacing.
    px_per_a = 0.4 * spacing_px / max(largest_a, scale_bar_a)
    drawn = positions_px[:, None, :] + local_a * px_per_a  # (p, n, 2)
    segments = np.stack([drawn[:, :-1], drawn[:, 1:]], axis=2).reshape(-1, 2, 2)  # (p·(n−1), 2, 2)
    if len(segments):
        lines = LineCollection(
            list(segments), cmap=_COLORMAP, array=np.tile(np.arange(n - 1), len(local_a))
        )
        lines.set_linewidth(1.5)
        axes.add_collection(lines)
    axes.scatter(positions_px[:, 0], positions_px[:, 1], s=6, color="red", zorder=3)
    width_px, height_px = field_px
    axes.set_xlim(0, width_px)
    axes.set_ylim(height_px, 0)  # y down, as the image is shown
    axes.set_aspect("equal")
    axes.set_xlabel("x (px)")
    axes.set_ylabel("y (px)")
    axes.set_title(
        f"local motion, magnified (bar: {scale_bar_a:g} Å; max {largest_a:.2f} Å)",
        fontsize="medium",
    )
    bar_px = scale_bar_a * px_per_a
    x0, y0 = 0.03 * width_px, 0.975 * height_px
    axes.plot([x0, x0 + bar_px], [y0, y0], color="black", linewidth=3)


def _nice_length(value: float) -> float:
    """A round length (1, 2 or 5 × 10^k) not larger than ``value``."""
    decade = 10.0 ** math.floor(math.log10(value))
    for mantissa in (5.0, 2.0):
        if mantissa * decade <= value:
            return mantissa * decade
    return decade
