"""Rendering of simulated movies: the ice/artefact background, particles in boxes pasted
into frames, and the frame loop (MTF, dose, detector). Physics: docs/simulator.md; used by
:mod:`cryowarp.simulate.frame_series`."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from cryowarp.core.ctf import ctf_2d
from cryowarp.core.deform import bspline_prefilter_rfft, deform_image, field_node_positions_px
from cryowarp.core.dose import dose_weights
from cryowarp.core.fourier import irfft_centered, rfft_centered
from cryowarp.core.projection import project_real
from cryowarp.core.resize import crop_or_pad
from cryowarp.core.rotations import euler_to_matrix
from cryowarp.core.shift import shift_image, shift_rfft
from cryowarp.simulate._boxes import ctf_delocalisation_a, paste_boxes
from cryowarp.simulate._plane_ctf import apply_sample_ctf
from cryowarp.simulate.artefacts import Artefacts
from cryowarp.simulate.detector import DetectorDefects, load_mtf, mtf_filter, record_frames
from cryowarp.simulate.ground_truth import ParticleTruth
from cryowarp.simulate.ice import ice_projected_potential_va
from cryowarp.simulate.motion import MotionTruth
from cryowarp.simulate.presets import FrameSeriesSettings
from cryowarp.simulate.sample_ctf import SampleCTF
from cryowarp.simulate.species_like import SpeciesLike

__all__ = ["RenderGroup", "background_deviation", "render_frames", "render_groups"]

_PARTICLE_BATCH = 64  # particles rendered at once


# -- background ------------------------------------------------------------------------


def _smooth_field(
    shape: tuple[int, int], length_px: float, generator: torch.Generator
) -> torch.Tensor:
    """Zero-mean, unit-RMS Gaussian random field with a Gaussian correlation of ``length_px``."""
    noise = torch.randn(shape, generator=generator)
    spectrum = torch.fft.rfft2(noise)
    ky = torch.fft.fftfreq(shape[0])[:, None]
    kx = torch.fft.rfftfreq(shape[1])[None, :]
    spectrum *= torch.exp(-2 * (math.pi * length_px) ** 2 * (kx.square() + ky.square()))
    spectrum[0, 0] = 0
    field = torch.fft.irfft2(spectrum, s=shape)
    rms = float(field.square().mean().sqrt())
    return field / rms if rms > 0 else field


def background_deviation(
    settings: FrameSeriesSettings,
    ctf: SampleCTF,
    artefacts: Artefacts,
    sigma: float,
    generator: torch.Generator,
) -> torch.Tensor:  # (h, w)
    """``I − 1`` of the ice and the artefacts: ``−2·CTF ⊗ φ − amplitude loss``, with the CTF of
    the sample plane at each point (:func:`~cryowarp.simulate._plane_ctf.apply_sample_ctf`).

    The ice's path length is its thickness (plus smooth variations) over ``|n_z|`` of the
    tilted plane; its projected potential (mean and, with ``settings.ice_texture``, molecular
    texture) comes from :func:`~cryowarp.simulate.ice.ice_projected_potential_va`.
    """
    h, w = settings.shape_px
    thickness = torch.full((h, w), settings.ice_thickness_a)
    if settings.ice_thickness_variation_a > 0:
        length_px = settings.ice_variation_length_a / settings.pixel_size_a
        thickness += settings.ice_thickness_variation_a * _smooth_field(
            (h, w), length_px, generator
        )
    thickness /= abs(float(ctf.plane_normal()[2]))
    potential_va = ice_projected_potential_va(
        thickness,
        pixel_size_a=settings.pixel_size_a,
        generator=generator if settings.ice_texture else None,
        density_g_per_cm3=settings.ice_density_g_per_cm3,
    )
    del thickness
    potential_va += artefacts.projected_potential_va.to(torch.float32)
    deviation = apply_sample_ctf(potential_va.mul_(sigma), ctf).mul_(-2.0)
    return deviation - artefacts.amplitude_loss.to(torch.float32)


# -- particles -------------------------------------------------------------------------


def _render_box_px(box_px: int, settings: FrameSeriesSettings) -> int:
    """Box that holds a particle and its CTF delocalisation at Nyquist (clipped to 1.5–4×)."""
    px = settings.pixel_size_a
    defocus_a = max(abs(settings.defocus_range_um[1]), abs(settings.defocus_range_um[0])) * 1e4
    defocus_a += settings.astigmatism_range_um[1] * 1e4
    spread_a = ctf_delocalisation_a(
        defocus_a, pixel_size_a=px, voltage_kv=settings.voltage_kv, cs_mm=settings.cs_mm
    )
    size = box_px + 2 * spread_a / px
    size = min(max(size, 1.5 * box_px), 4.0 * box_px)
    return int(math.ceil(size / 2) * 2)


@dataclass
class RenderGroup:
    """The particles of one species, with their CTF-modulated spectra in a render box."""

    spectra: torch.Tensor  # (n, b, b//2+1) complex: −2 · CTF · F[φ] of each particle
    projections_va: torch.Tensor  # (n, s, s) projected potential (V·Å) in the species box
    positions_px: torch.Tensor  # (n, 2) (x, y) in pixels
    box_px: int

    def paste_clean(self, clean: torch.Tensor, potential: torch.Tensor) -> None:
        centre = torch.round(self.positions_px)
        fraction = self.positions_px - centre
        b = self.box_px
        for start in range(0, self.spectra.shape[0], _PARTICLE_BATCH):
            sl = slice(start, start + _PARTICLE_BATCH)
            shifted = shift_rfft(self.spectra[sl], fraction[sl].float(), shape=(b, b))
            paste_boxes(clean, irfft_centered(shifted, shape=(b, b)), centre[sl])
            paste_boxes(
                potential, shift_image(self.projections_va[sl], fraction[sl].float()), centre[sl]
            )

    def paste_frame(
        self,
        frame: torch.Tensor,  # (h, w)
        shifts_px: torch.Tensor,  # (n, 2)
        damage: torch.Tensor | None,  # (b, b//2+1)
    ) -> None:
        position = self.positions_px + shifts_px
        centre = torch.round(position)
        fraction = (position - centre).float()
        b = self.box_px
        for start in range(0, self.spectra.shape[0], _PARTICLE_BATCH):
            sl = slice(start, start + _PARTICLE_BATCH)
            spectra = self.spectra[sl] if damage is None else self.spectra[sl] * damage
            shifted = shift_rfft(spectra, fraction[sl], shape=(b, b))
            paste_boxes(frame, irfft_centered(shifted, shape=(b, b)), centre[sl])


def render_groups(
    species: Sequence[SpeciesLike],
    particles: ParticleTruth,
    species_index: torch.Tensor,
    settings: FrameSeriesSettings,
    ctf: SampleCTF,
    sigma: float,
) -> list[RenderGroup]:
    px = settings.pixel_size_a
    groups = []
    for k, entry in enumerate(species):
        chosen = torch.nonzero(species_index == k).flatten()
        if chosen.numel() == 0:
            continue
        volume = entry.potential_v.to(torch.float32)
        box = int(volume.shape[-1])
        rotations = euler_to_matrix(particles.euler_deg[chosen]).to(torch.float32)
        projections = project_real(volume, rotations) * px  # (n, s, s) V·Å
        b = _render_box_px(box, settings)
        defocus = (particles.defocus_u_a[chosen] + particles.defocus_v_a[chosen]) / 2e4
        ctfs = ctf_2d(ctf.ctf_params(defocus.to(torch.float32)), (b, b))
        spectra = rfft_centered(crop_or_pad(projections, (b, b)), ndim=2) * (ctfs * (-2 * sigma))
        groups.append(
            RenderGroup(
                spectra=spectra,
                projections_va=projections,
                positions_px=particles.positions_a[chosen, :2] / px,
                box_px=b,
            )
        )
    return groups


# -- frames ----------------------------------------------------------------------------


def render_frames(
    groups: Sequence[RenderGroup],
    background: torch.Tensor,  # (h, w)
    motion: MotionTruth,
    settings: FrameSeriesSettings,
    *,
    defects: DetectorDefects,
    noise: torch.Generator | None,
    radiation_damage: bool,
) -> torch.Tensor:  # (n_frames, h, w)
    h, w = settings.shape_px
    px = settings.pixel_size_a
    n_frames = settings.n_frames
    background_spectrum = torch.fft.rfft2(background)
    mtf = None
    if settings.detector_mtf is not None:
        mtf = mtf_filter((h, w), load_mtf(settings.detector_mtf))
    mid_dose = (
        torch.arange(n_frames, dtype=torch.float32) + 0.5
    ) * settings.dose_per_frame_e_per_a2
    damage = [
        dose_weights(mid_dose, (g.box_px, g.box_px), pixel_size_a=px, normalize=False)
        if radiation_damage
        else None
        for g in groups
    ]
    shifts = [motion.shifts_at(g.positions_px * px).to(torch.float64) / px for g in groups]
    global_px = motion.global_shifts_a.to(torch.float64) / px
    local_px = _local_field_px(motion, (h, w), px)
    counts_per_unit = settings.dose_per_frame_e_per_a2 * px * px
    # Noisy frames are whole counts: keep them as uint16 (a K3 movie is 1.9 GB, not 3.8 GB).
    frames = torch.empty(n_frames, h, w, dtype=torch.float32 if noise is None else torch.uint16)
    for start in range(0, n_frames, settings.frames_per_chunk):
        stop = min(start + settings.frames_per_chunk, n_frames)
        chunk = torch.zeros(stop - start, h, w)
        for f in range(start, stop):
            for g, group in enumerate(groups):
                frame_damage = None if damage[g] is None else damage[g][f]  # type: ignore[index]
                group.paste_frame(chunk[f - start], shifts[g][:, f], frame_damage)
        # The ice and the artefacts move with the specimen (global shift exactly in Fourier
        # space, the local field by real-space deformation) and are damaged like the rest.
        background_chunk = shift_rfft(
            background_spectrum, global_px[start:stop].float(), shape=(h, w)
        )
        if radiation_damage:
            background_chunk *= dose_weights(
                mid_dose[start:stop], (h, w), pixel_size_a=px, normalize=False
            )
        if local_px is not None:
            # B-spline coefficients straight from the spectrum (the prefilter costs no FFT).
            prefilter = bspline_prefilter_rfft((h, w), device=background_chunk.device)
            moved = torch.fft.irfft2(background_chunk * prefilter, s=(h, w))
            chunk += deform_image(moved, local_px[start:stop], prefiltered=True)
        else:
            chunk += torch.fft.irfft2(background_chunk, s=(h, w))
        del background_chunk
        spectrum = torch.fft.rfft2(chunk)
        if mtf is not None:
            spectrum *= mtf
        intensity = torch.fft.irfft2(spectrum, s=(h, w))
        del spectrum
        expected = intensity.add_(1.0).mul_(counts_per_unit).clamp_(min=0)
        if noise is None:
            frames[start:stop] = expected
        else:
            raw = record_frames(expected, defects, generator=noise)
            frames[start:stop] = raw.clamp_(max=65535).to(torch.uint16)
        del chunk, intensity, expected
    return frames


def _local_field_px(
    motion: MotionTruth, shape: tuple[int, int], pixel_size_a: float
) -> torch.Tensor | None:  # (n_frames, gh, gw, 2) or None
    """The local displacement (px) of every frame on a grid of nodes about every 32 px
    (the field is a smooth spline), or ``None`` when it is zero everywhere."""
    if float(motion.local_grid_a.abs().max()) == 0:
        return None
    h, w = shape
    field_shape = (max(2, h // 32 + 1), max(2, w // 32 + 1))
    nodes_px = field_node_positions_px(shape, field_shape, dtype=torch.float64)
    local_a = motion.local_shifts_at(nodes_px * pixel_size_a)  # (gh, gw, n, 2)
    return (local_a.movedim(-2, 0) / pixel_size_a).float()
