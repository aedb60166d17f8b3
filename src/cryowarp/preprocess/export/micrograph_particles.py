"""Extract the particles of one micrograph with its motion and local CTF (docs/relion_export.md).

:func:`extract_micrograph_particles` combines a :class:`~.sources.MicrographSource` (what motion
correction and CTF estimation recorded about one movie) with a
:class:`~.particle_set.ParticleSet` and returns the finished stacks together with each
particle's CTF: the mean defocus from the local defocus grid at the particle's position, the
micrograph's astigmatism and phase shift (RELION ``DefocusU/V/Angle``, docs/conventions.md §6).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from cryowarp.core.ctf import CTFParams
from cryowarp.errors import InvalidValuesError, MissingFileError
from cryowarp.io.mrc import read_mrc
from cryowarp.preprocess.export.extract import (
    BoxGeometry,
    box_geometry,
    extract_from_frames,
    extract_from_images,
    finish_particles,
)
from cryowarp.preprocess.export.particle_set import ParticleSet
from cryowarp.preprocess.export.settings import CtfCorrection, ExtractionSettings
from cryowarp.preprocess.export.sources import MicrographSource
from cryowarp.preprocess.motion.frames import load_movie

__all__ = ["ExtractedMicrograph", "ParticleCtf", "extract_micrograph_particles", "particle_ctf"]

_UM_TO_A = 1e4


@dataclass(frozen=True)
class ParticleCtf:
    """RELION CTF values of each particle (``(n,)`` float64 tensors; scalars per micrograph)."""

    defocus_u_a: torch.Tensor
    defocus_v_a: torch.Tensor
    defocus_angle_deg: torch.Tensor
    phase_shift_deg: float
    ctf_max_resolution_a: float
    ctf_figure_of_merit: float
    voltage_kv: float
    cs_mm: float
    amplitude_contrast: float

    def params(self, pixel_size_a: float) -> CTFParams:
        """:class:`CTFParams` of batch shape ``(n,)`` at ``pixel_size_a``, float32."""
        return CTFParams.from_relion(
            defocus_u_a=self.defocus_u_a,
            defocus_v_a=self.defocus_v_a,
            defocus_angle_deg=self.defocus_angle_deg,
            pixel_size_a=pixel_size_a,
            voltage_kv=self.voltage_kv,
            cs_mm=self.cs_mm,
            amplitude_contrast=self.amplitude_contrast,
            phase_shift_deg=self.phase_shift_deg,
            dtype=torch.float32,
        )


@dataclass(frozen=True)
class ExtractedMicrograph:
    """The finished particles of one micrograph.

    ``stack``/``odd``/``even`` are ``(n, box, box)`` float32 (``odd``/``even`` ``None`` when
    not made); ``particles`` are the particles kept (edge particles may be left out), in the
    order of the stack; ``micrograph_pixel_size_a`` is the pixel size of the average that
    ``rlnCoordinateX/Y`` refer to.
    """

    source: MicrographSource
    particles: ParticleSet
    stack: torch.Tensor
    odd: torch.Tensor | None
    even: torch.Tensor | None
    ctf: ParticleCtf
    geometry: BoxGeometry
    micrograph_pixel_size_a: float
    ctf_correction: CtfCorrection = "none"

    @property
    def pixel_size_a(self) -> float:
        """Pixel size (Å) of the particle images."""
        return self.geometry.pixel_size_a


def particle_ctf(source: MicrographSource, positions_a: torch.Tensor) -> ParticleCtf:
    """Each particle's CTF from the micrograph's estimate (``positions_a``: ``(n, 2)`` Å).

    Raises :class:`InvalidValuesError` when the micrograph has no usable CTF estimate.
    """
    ctf = source.ctf
    if ctf is None or ctf.failed:
        reason = "no CTF estimate" if ctf is None else f"the CTF fit failed ({ctf.failure_reason})"
        raise InvalidValuesError(source.ctf_path, f"{source.name}: {reason}")
    mean_um = ctf.defocus_at(positions_a.to(torch.float64))
    astig_um = ctf.astigmatism_um
    n = positions_a.shape[0]
    return ParticleCtf(
        defocus_u_a=(mean_um + astig_um) * _UM_TO_A,
        defocus_v_a=(mean_um - astig_um) * _UM_TO_A,
        defocus_angle_deg=torch.full((n,), ctf.astigmatism_angle_deg, dtype=torch.float64),
        phase_shift_deg=ctf.phase_shift_deg,
        ctf_max_resolution_a=ctf.resolution_a,
        ctf_figure_of_merit=ctf.fit_score,
        voltage_kv=ctf.voltage_kv,
        cs_mm=ctf.cs_mm,
        amplitude_contrast=ctf.amplitude_contrast,
    )


def _inside(
    positions_a: torch.Tensor, shape_px: tuple[int, int], pixel_size_a: float, half_box_a: float
) -> torch.Tensor:  # (n,) bool
    h, w = shape_px
    size = torch.tensor([w * pixel_size_a, h * pixel_size_a], dtype=torch.float64)
    p = positions_a.to(torch.float64)
    return ((p - half_box_a >= 0) & (p + half_box_a <= size)).all(dim=-1)


def _read_image(path: Path | None, what: str, name: str) -> torch.Tensor:
    if path is None:
        raise MissingFileError(None, f"{name}: no {what} recorded")
    data, _ = read_mrc(path)
    return torch.from_numpy(data.astype("float32", copy=False)).reshape(data.shape[-2:])


def extract_micrograph_particles(
    source: MicrographSource,
    particles: ParticleSet,
    settings: ExtractionSettings,
    *,
    device: torch.device | str = "cpu",
) -> ExtractedMicrograph:
    """Extract, CTF-correct, crop, invert and normalise the particles of one micrograph.

    Raises
    ------
    CryowarpInputError
        No CTF estimate, no motion or movie for ``source="frames"``, missing files; the
        message names the micrograph.
    """
    mic_px = source.output_pixel_size_a
    padding = 1 if settings.ctf_correction == "none" else 2
    keep = torch.ones(len(particles), dtype=torch.bool)
    if settings.skip_edge_particles:
        h, w = source.output_shape_px
        target = settings.pixel_size_a or mic_px
        keep = _inside(particles.positions_a, (h, w), mic_px, settings.box_size_px * target / 2)
    kept = particles.subset(keep)
    positions = kept.positions_a.to(torch.float64)
    ctf = particle_ctf(source, positions)
    if settings.source == "frames":
        if source.motion is None or source.input_settings is None or source.movie_path is None:
            raise InvalidValuesError(
                source.motion_metadata_path,
                f"{source.name}: extraction from frames needs the motion metadata and the movie",
            )
        movie = load_movie(source.movie_path, source.input_settings)
        boxes = extract_from_frames(
            movie,
            source.motion,
            positions,
            box_size_px=settings.box_size_px,
            pixel_size_a=settings.pixel_size_a or mic_px,
            padding=padding,
            dose_weighting=settings.dose_weighting,
            odd_even=settings.odd_even,
            device=device,
        )
        full, odd, even, geometry = boxes.full, boxes.odd, boxes.even, boxes.geometry
    else:
        images = [_read_image(source.average_path, "average", source.name).to(device)]
        if settings.odd_even:
            images += [
                _read_image(source.odd_path, "odd average", source.name).to(device),
                _read_image(source.even_path, "even average", source.name).to(device),
            ]
        cut = extract_from_images(
            images,
            positions,
            image_pixel_size_a=mic_px,
            box_size_px=settings.box_size_px,
            pixel_size_a=settings.pixel_size_a,
            padding=padding,
        )
        full = cut[0]
        odd, even = (cut[1], cut[2]) if settings.odd_even else (None, None)
        geometry = box_geometry(
            settings.box_size_px,
            input_pixel_size_a=mic_px,
            pixel_size_a=settings.pixel_size_a,
            padding=padding,
        )
    params = ctf.params(geometry.pixel_size_a).to(full.device)
    radius = (
        None
        if settings.particle_diameter_a is None
        else settings.particle_diameter_a / 2 / geometry.pixel_size_a
    )

    def finish(boxes: torch.Tensor | None) -> torch.Tensor | None:
        if boxes is None:
            return None
        return finish_particles(
            boxes,
            box_size_px=settings.box_size_px,
            ctf=params,
            ctf_correction=settings.ctf_correction,
            invert_contrast=settings.invert_contrast,
            normalize=settings.normalize,
            background_radius_px=radius,
        ).cpu()

    stack = finish(full)
    assert stack is not None
    return ExtractedMicrograph(
        source=source,
        particles=kept,
        stack=stack,
        odd=finish(odd),
        even=finish(even),
        ctf=ctf,
        geometry=geometry,
        micrograph_pixel_size_a=mic_px,
        ctf_correction=settings.ctf_correction,
    )
