"""The images and maps that every item of the synthetic dashboard project shares
(:mod:`benchmarks.dashboard_project`), made once and hard-linked per item."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cryowarp.pipeline.project import Project

__all__ = ["N_FRAMES", "N_PICK_VARIANTS", "Templates"]

N_FRAMES = 40
"""Frames per synthetic movie."""
N_PICK_VARIANTS = 24
"""Different picking maps; each item's ``n_picks`` is that of one of them."""


# -- files shared by every item -------------------------------------------------------------


class Templates:
    """The images and maps made once (under ``.cryowarp/synthetic/``) and hard-linked per
    item. The motion, CTF and picking figures (PNG) are plain grey images."""

    def __init__(
        self,
        project: Project,
        rng: np.random.Generator,
        *,
        image_size_px: int,
        pixel_size_a: float,
    ) -> None:
        from cryowarp.io.mrc import write_mrc

        self.folder = project.folder / ".cryowarp" / "synthetic"
        self.folder.mkdir(parents=True, exist_ok=True)
        self.pixel_size_a = pixel_size_a
        self.shape_px = (image_size_px, image_size_px)
        self.field_a = image_size_px * self.pixel_size_a
        average = _micrograph(rng, image_size_px)
        self.average = self.folder / "average.mrc"
        write_mrc(self.average, average, voxel_size_a=self.pixel_size_a)
        self.motion_star = self._motion_star(project)
        grey = rng.integers(0, 255, (48, 64), dtype=np.uint8)
        self.motion_png, self.ctf_png, self.picks_png = (
            self._png(name, grey) for name in ("motion.png", "ctf.png", "picks.png")
        )
        self.spectrum_png, self.spectrum_frequencies = self._spectrum(project, rng)
        self.display, self.display_pixel_size_a = self._display(project, average)
        self.picking = self._picking(project, rng, average)

    def _png(self, name: str, pixels: np.ndarray) -> Path:
        from PIL import Image

        path = self.folder / name
        Image.fromarray(pixels).save(path, format="PNG")
        return path

    def _motion_star(self, project: Project) -> Path:
        from cryowarp.io.relion_motion import RelionMotion, write_relion_motion

        path = self.folder / "motion.star"
        movie = project.settings.data.movie
        motion = RelionMotion(
            image_size_xyz=(self.shape_px[1], self.shape_px[0], N_FRAMES),
            movie_name="synthetic",
            global_shifts_px=np.zeros((N_FRAMES, 2)),
            original_pixel_size_a=movie.pixel_size_a,
            dose_per_frame_e_per_a2=movie.dose_per_frame_e_per_a2,
            pre_exposure_e_per_a2=0.0,
            voltage_kv=project.settings.optics.voltage_kv,
        )
        write_relion_motion(path, motion)
        return path

    def _spectrum(self, project: Project, rng: np.random.Generator) -> tuple[Path, np.ndarray]:
        """The split 2-D spectrum of a 1.5 µm fit; the frequencies (Å⁻¹) of the 1-D curves."""
        from cryowarp.core.ctf import ctf_2d
        from cryowarp.preprocess.ctf.result import CtfDiagnostics, CtfResult
        from cryowarp.preprocess.ctf.spectrum_files import write_spectrum_files

        optics = project.settings.optics
        window = project.settings.ctf.window_size_px
        result = CtfResult(
            defocus_u_um=1.55,
            defocus_v_um=1.45,
            astigmatism_angle_deg=30.0,
            phase_shift_deg=0.0,
            defocus_grid_um=((1.5,),),
            image_size_xy_a=(self.field_a, self.field_a),
            resolution_a=4.0,
            fit_score=0.9,
            pixel_size_a=self.pixel_size_a,
            voltage_kv=optics.voltage_kv,
            cs_mm=optics.cs_mm,
            amplitude_contrast=optics.amplitude_contrast,
        )
        n = window // 2 + 1
        frequencies = torch.linspace(0.0, 0.5 / self.pixel_size_a, n, dtype=torch.float64)
        model = ctf_2d(result.ctf_params(), (window, window)).abs().double()
        curve = torch.ones(n, dtype=torch.float64)
        diagnostics = CtfDiagnostics(
            frequencies_per_a=frequencies,
            spectrum_1d=curve,
            simulated_1d=curve,
            background_1d=curve,
            envelope_1d=curve,
            correlation_1d=curve,
            spectrum_2d=model + torch.from_numpy(rng.normal(0, 0.3, tuple(model.shape))),
            simulated_2d=model,
            fit_range_per_a=(1 / 30.0, 1 / 4.0),
        )
        png = self.folder / "ctf_spectrum.png"
        write_spectrum_files(
            dataclasses.replace(result, diagnostics=diagnostics),
            json_path=self.folder / "ctf_spectrum.json",
            png_path=png,
        )
        return png, frequencies.numpy()

    def _display(self, project: Project, average: np.ndarray) -> tuple[dict[str, Path], float]:
        from cryowarp.preprocess.denoise.display import DisplayImages, write_display_images

        display = project.settings.display
        factor = max(1, round(display.image.pixel_size_a / self.pixel_size_a))
        h, w = (s // factor for s in average.shape)
        binned = average[: h * factor, : w * factor].reshape(h, factor, w, factor).mean((1, 3))
        images = DisplayImages(
            deconvolved=torch.from_numpy(binned.astype(np.float32)),
            denoised=torch.from_numpy((0.5 * binned).astype(np.float32)),
            pixel_size_a=self.pixel_size_a * factor,
            model_name=display.denoiser_model,
        )
        written = write_display_images(
            images, name="template", out_dir=self.folder, settings=display.image, folder=""
        )
        return {key: Path(path) for key, path in written.items()}, images.pixel_size_a

    def _picking(
        self, project: Project, rng: np.random.Generator, average: np.ndarray
    ) -> list[dict[str, Any]]:
        """:data:`N_PICK_VARIANTS` picking maps: Gaussian blobs of peak 0.2–1 a diameter
        apart, and an artefact in the lower left corner."""
        from cryowarp.preprocess.picking.inference import PickResult
        from cryowarp.preprocess.picking.outputs import write_picks
        from cryowarp.preprocess.picking.prepare import prepare_micrograph

        settings = project.settings.picking
        prepared = prepare_micrograph(torch.from_numpy(average), pixel_size_a=self.pixel_size_a)
        h, w = prepared.image.shape
        diameter_px = settings.diameter_a / prepared.pixel_size_xy_a[0]
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
        cell = 1.25 * diameter_px  # jittered grid: picks stay more than a diameter apart
        ny, nx = int(h // cell), int(w // cell)
        variants: list[dict[str, Any]] = []
        for k in range(N_PICK_VARIANTS):
            wanted = min(ny * nx, int(10 + (k + rng.uniform()) * 110 / N_PICK_VARIANTS))
            cells = rng.permutation(ny * nx)[:wanted]
            cx = (cells % nx + 0.5 + rng.uniform(-0.1, 0.1, wanted)) * cell
            cy = (cells // nx + 0.5 + rng.uniform(-0.1, 0.1, wanted)) * cell
            peaks = rng.uniform(0.2, 1.0, wanted)
            distance2 = (xx[..., None] - cx) ** 2 + (yy[..., None] - cy) ** 2  # (h, w, n)
            particle = (peaks * np.exp(-distance2 / (2 * (diameter_px / 5) ** 2))).max(-1)
            radius2 = rng.uniform(0.0, 0.25) * h * w * 4 / math.pi
            artefact = np.where(xx**2 + (yy - h) ** 2 < radius2, 0.9, 0.0)
            particle = np.where(artefact > 0, 0.0, particle)
            background = np.clip(1.0 - particle - artefact, 0.0, 1.0)
            result = PickResult.from_probabilities(
                torch.from_numpy(np.stack([background, particle, artefact])),
                prepared=prepared,
                settings=settings,
                model_name=settings.model,
            )
            out = self.folder / f"picking_{k:02d}"
            files = write_picks(result, micrograph_name="template", out_dir=out, png=False)
            variants.append(
                {
                    "n_picks": result.n_picks,
                    "masked_fraction": float(result.picks.masked_fraction),
                    "star": out / files.star,
                    "probabilities": out / files.probabilities,
                    "mask": out / files.mask,
                    "png": self.picks_png,
                    "metadata": json.loads((out / files.metadata).read_text()),
                }
            )
        return variants


def _micrograph(rng: np.random.Generator, size: int) -> np.ndarray:
    """A ``(size, size)`` float32 image: noise on smooth ice, dark blobs as particles."""
    k2 = np.fft.fftfreq(size)[:, None] ** 2 + np.fft.rfftfreq(size)[None, :] ** 2
    ice = np.fft.irfft2(np.fft.rfft2(rng.normal(0, 1, (size, size))) * np.exp(-k2 / 2e-4))
    centres = np.zeros((size, size))
    xy = rng.integers(0, size, (size // 16, 2))
    centres[xy[:, 1], xy[:, 0]] = 1.0
    sigma = size / 80.0
    blobs = np.fft.irfft2(np.fft.rfft2(centres) * np.exp(-2 * math.pi**2 * sigma**2 * k2))
    image = rng.normal(0, 1, (size, size)) + 8.0 * ice / max(float(np.abs(ice).max()), 1e-9)
    return (image - 1.5 * blobs / max(float(blobs.max()), 1e-9)).astype(np.float32)
