"""Simulated particle datasets written as RELION STAR + MRC stacks, with the ground truth.

Images are ``+CTF × projection`` (protein white, docs/conventions.md §6, §15) of a phantom at
random poses; each particle is placed at ``box centre − origin`` (the inverse of RELION's
origin rule, §4) and white noise is added. :func:`write_particles_star` writes them with the
true parameters, or with one convention deliberately broken (negative controls).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from cryowarp.core.ctf import ctf_2d
from cryowarp.core.ctf_params import CTFParams
from cryowarp.core.fourier import irfft_centered, rfft_centered
from cryowarp.core.projection import project_real
from cryowarp.core.rotations import matrix_to_euler, random_rotations
from cryowarp.core.shift import shift_image
from cryowarp.io.mrc import write_mrc
from cryowarp.io.relion import OpticsGroup, ParticleTable, write_particles


@dataclass(frozen=True)
class SimulatedParticles:
    """Images and the parameters that made them."""

    truth: torch.Tensor  # (N, N, N)
    pixel_size_a: float
    rotations: torch.Tensor  # (n, 3, 3)
    origins_a: torch.Tensor  # (n, 2)
    defocus_u_a: torch.Tensor  # (n,)
    defocus_v_a: torch.Tensor  # (n,)
    defocus_angle_deg: torch.Tensor  # (n,)
    ctf: torch.Tensor  # (n, N, N//2 + 1) on the image grid
    clean: torch.Tensor  # (n, N, N) CTF × projection, placed by the origin
    noise: torch.Tensor  # (n, N, N)
    relion_bfactor_a2: float = 0.0
    ctf_scale: float = 1.0

    @property
    def images(self) -> torch.Tensor:
        return self.clean + self.noise

    @property
    def box_size(self) -> int:
        return int(self.truth.shape[-1])


def simulate_particles(
    truth: torch.Tensor,  # (N, N, N)
    n: int,
    *,
    pixel_size_a: float,
    snr: float,
    seed: int = 0,
    max_origin_px: float = 2.5,
    astigmatism_a: float = 4000.0,
    relion_bfactor_a2: float = 0.0,
    ctf_scale: float = 1.0,
) -> SimulatedParticles:
    """``n`` noisy particle images of ``truth``; ``snr`` is the variance of the clean images
    over that of the noise; ``astigmatism_a`` is ``U − V``; ``relion_bfactor_a2`` and
    ``ctf_scale`` are RELION's ``rlnCtfBfactor`` and ``rlnCtfScalefactor``."""
    g = torch.Generator().manual_seed(seed)
    box = int(truth.shape[-1])
    rotations = random_rotations(n, generator=g, dtype=torch.float64)
    origins_a = (2 * torch.rand(n, 2, generator=g, dtype=torch.float64) - 1) * (
        max_origin_px * pixel_size_a
    )
    u = 10000.0 + 10000.0 * torch.rand(n, generator=g, dtype=torch.float64)
    v = u - astigmatism_a
    angle = 180.0 * torch.rand(n, generator=g, dtype=torch.float64) - 90.0
    params = CTFParams.from_relion(
        defocus_u_a=u, defocus_v_a=v, defocus_angle_deg=angle, pixel_size_a=pixel_size_a,
        amplitude_contrast=0.07, relion_bfactor_a2=relion_bfactor_a2, scale=ctf_scale,
    )  # fmt: skip
    ctf = ctf_2d(params, (box, box)).float()
    projections = project_real(truth, rotations.float())
    placed = shift_image(projections, (-origins_a / pixel_size_a).float())
    clean = irfft_centered(rfft_centered(placed, ndim=2) * ctf, shape=(box, box))
    sigma = float(clean.std()) / snr**0.5
    noise = sigma * torch.randn(clean.shape, generator=g)
    return SimulatedParticles(
        truth, pixel_size_a, rotations, origins_a, u, v, angle, ctf, clean, noise,
        relion_bfactor_a2, ctf_scale,
    )  # fmt: skip


def write_particles_star(
    folder: Path,
    sim: SimulatedParticles,
    *,
    images: torch.Tensor | None = None,
    rows: slice | np.ndarray | None = None,
    break_convention: str | None = None,
    premultiplied: bool | None = None,
    phase_flipped: bool | None = None,
    random_subset: bool = True,
    ctf_envelope_columns: bool = True,
    name: str = "particles",
) -> Path:
    """Write ``<name>.mrcs`` + ``<name>.star`` into ``folder`` and return the STAR path.

    ``break_convention``: ``"origin_sign"`` (origins negated), ``"euler_transposed"`` (the
    angles of ``Aᵀ``), ``"defocus_angle_90"`` (angle + 90°) or ``"contrast"`` (images negated).
    ``rlnCtfBfactor`` and ``rlnCtfScalefactor`` are written when they are not 0 and 1 and
    ``ctf_envelope_columns``.
    """
    folder.mkdir(parents=True, exist_ok=True)
    select = slice(None) if rows is None else rows
    stack = (sim.images if images is None else images)[select]
    rotations = sim.rotations[select]
    origins = sim.origins_a[select]
    angle = sim.defocus_angle_deg[select]
    if break_convention == "origin_sign":
        origins = -origins
    elif break_convention == "euler_transposed":
        rotations = rotations.transpose(-1, -2)
    elif break_convention == "defocus_angle_90":
        angle = angle + 90.0
    elif break_convention == "contrast":
        stack = -stack
    elif break_convention is not None:
        raise ValueError(break_convention)
    n = int(stack.shape[0])
    write_mrc(folder / f"{name}.mrcs", stack.numpy(), voxel_size_a=sim.pixel_size_a)
    euler = matrix_to_euler(rotations).numpy()
    columns: dict[str, object] = {
        "rlnImageName": [f"{i + 1:06d}@{name}.mrcs" for i in range(n)],
        "rlnOpticsGroup": np.ones(n, dtype=np.int64),
        "rlnAngleRot": euler[:, 0],
        "rlnAngleTilt": euler[:, 1],
        "rlnAnglePsi": euler[:, 2],
        "rlnOriginXAngst": origins[:, 0].numpy(),
        "rlnOriginYAngst": origins[:, 1].numpy(),
        "rlnDefocusU": sim.defocus_u_a[select].numpy(),
        "rlnDefocusV": sim.defocus_v_a[select].numpy(),
        "rlnDefocusAngle": angle.numpy(),
    }
    if ctf_envelope_columns and (sim.relion_bfactor_a2 != 0.0 or sim.ctf_scale != 1.0):
        columns["rlnCtfBfactor"] = np.full(n, sim.relion_bfactor_a2)
        columns["rlnCtfScalefactor"] = np.full(n, sim.ctf_scale)
    if random_subset:
        columns["rlnRandomSubset"] = (np.arange(n) % 2 + 1).astype(np.int64)
    extra = {} if phase_flipped is None else {"rlnCtfDataArePhaseFlipped": int(phase_flipped)}
    optics = OpticsGroup(
        optics_group=1,
        name="opticsGroup1",
        pixel_size_a=sim.pixel_size_a,
        voltage_kv=300.0,
        cs_mm=2.7,
        amplitude_contrast=0.07,
        image_size_px=sim.box_size,
        image_dimensionality=2,
        ctf_premultiplied=premultiplied,
        extra=extra,
    )
    star = folder / f"{name}.star"
    write_particles(star, [optics], ParticleTable(pd.DataFrame(columns), [optics]))
    return star
