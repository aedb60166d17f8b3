"""Adapter for teamtomo's ``torch-motion-correction`` (optional; never a dependency).

Install it next to the pinned torch with
``pip install torch-motion-correction -c <(echo torch==$(python -c "import torch;
print(torch.__version__.split('+')[0])"))``. When it is missing the benchmark reports
"not installed" and why.

teamtomo's ``DeformationField`` holds ``(2, nt, nh, nw)`` shifts in Å ordered **(y, x)**
(teamtomo's zyx habit) on a Catmull-Rom (or B-spline) grid over normalised ``(t, y, x)`` with
``y = row / (h − 1)``, ``x = column / (w − 1)``, ``t = frame / (n − 1)``; its
``correct_motion`` samples ``frame(p + s(p))``, so a shift is where the content has moved to —
the direction of docs/conventions.md §4 (pinned by
``tests/benchmarks/test_xcorr_motion.py::test_teamtomo_shifts_are_content_displacements``).
:class:`TeamtomoMotion` re-expresses the field as a cryowarp ``MotionField`` (x, y order,
positions in Å from the centre of pixel (0, 0)).
"""

from __future__ import annotations

import importlib.metadata
from dataclasses import dataclass
from typing import Any

import torch

__all__ = ["TeamtomoMotion", "teamtomo_motion", "teamtomo_status"]


def teamtomo_status() -> tuple[bool, str]:
    """``(True, version)`` when ``torch_motion_correction`` imports, else ``(False, reason)``."""
    try:
        import torch_motion_correction  # noqa: F401
    except Exception as error:  # an import error of any kind means "cannot run it"
        return False, f"not installed ({type(error).__name__}: {error})"
    return True, importlib.metadata.version("torch-motion-correction")


@dataclass(frozen=True)
class TeamtomoMotion:
    """A teamtomo ``DeformationField`` seen as a cryowarp ``MotionField`` (module docstring).

    Attributes
    ----------
    field:
        The ``torch_motion_correction.DeformationField`` ((y, x) Å over normalised (t, y, x)).
    n_frames:
        Number of frames.
    frame_shape:
        ``(h, w)`` of the frames the field was fitted on.
    pixel_size_a:
        Their pixel size in Å.
    """

    field: Any
    n_frames: int
    frame_shape: tuple[int, int]
    pixel_size_a: float

    def shifts_at(
        self,
        positions_xy_a: torch.Tensor,  # (..., 2)
        frames: torch.Tensor | None = None,  # (m,)
    ) -> torch.Tensor:  # (..., m, 2) x, y in Å
        """Shift (Å, x then y) of the content at each position and frame (conventions §4)."""
        data = self.field.data
        if frames is None:
            frames = torch.arange(self.n_frames)
        h, w = self.frame_shape
        xy_px = positions_xy_a.to(device=data.device, dtype=torch.float32) / self.pixel_size_a
        y = xy_px[..., 1] / max(1, h - 1)
        x = xy_px[..., 0] / max(1, w - 1)
        t = frames.to(device=data.device, dtype=torch.float32) / max(1, self.n_frames - 1)
        batch = x.shape
        m = t.shape[0]
        tyx = torch.stack(
            [
                t.expand(*batch, m),
                y[..., None].expand(*batch, m),
                x[..., None].expand(*batch, m),
            ],
            dim=-1,
        )  # (..., m, 3)
        with torch.no_grad():
            yx = self.field(tyx.reshape(-1, 3)).reshape(*batch, m, 2)
        return yx.flip(-1).to(positions_xy_a.device)


def teamtomo_motion(
    frames: torch.Tensor,  # (n, h, w) gain-corrected
    *,
    pixel_size_a: float,
    min_resolution_a: float = 500.0,
    max_resolution_a: float = 7.0,
    bfactor_a2: float = -500.0,
    local_grid_xy: tuple[int, int] = (5, 5),
    temporal_nodes: int | None = None,
    patch_size_px: int = 512,
    patch_overlap: float = 0.5,
    max_iterations: int = 100,
    local: bool = True,
) -> TeamtomoMotion:
    """Global (whole-frame cross-correlation) then local (patch optimisation) motion with
    teamtomo's public API, band and B-factor matched to ours (teamtomo's B is positive for
    attenuation, ours negative).

    ``temporal_nodes`` of the refined field default to one per frame (teamtomo's examples
    use about one per frame); the local grid is ``local_grid_xy`` = (X, Y) nodes.
    """
    import torch_motion_correction as tmc

    n, h, w = frames.shape
    band = tmc.FourierFilterConfig(
        b_factor=-bfactor_a2, frequency_range=(min_resolution_a, max_resolution_a)
    )
    global_field = tmc.estimate_global_motion(
        frames, pixel_spacing=pixel_size_a, reference_frame=0, fourier_filter=band
    )
    if not local:
        return TeamtomoMotion(global_field, int(n), (int(h), int(w)), float(pixel_size_a))
    nodes = n if temporal_nodes is None else temporal_nodes
    size = min(patch_size_px, h, w)
    field, _ = tmc.estimate_local_motion(
        frames,
        pixel_spacing=pixel_size_a,
        deformation_field_resolution=(int(nodes), local_grid_xy[1], local_grid_xy[0]),
        patch_sampling=tmc.PatchSamplingConfig(patch_shape=(size, size), overlap=patch_overlap),
        initial_deformation_field=global_field,
        fourier_filter=band,
        optimization=tmc.OptimizationConfig(max_iterations=max_iterations),
    )
    return TeamtomoMotion(field, int(n), (int(h), int(w)), float(pixel_size_a))
