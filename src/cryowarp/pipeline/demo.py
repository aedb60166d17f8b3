"""The demo job: simulate → export (MRC + RELION STAR) → read back → reconstruct → FSC.

It exercises every layer that exists today on an embedded default (a procedural phantom, so
no data are needed): CTF, Fourier-slice projection, back-projection with CTF weighting,
rotations, masks and FSC from :mod:`cryowarp.core`; MRC and STAR from :mod:`cryowarp.io`.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from pydantic import BaseModel, ConfigDict, Field

from cryowarp.core.backprojection import Reconstructor
from cryowarp.core.ctf import CTFParams, ctf_2d
from cryowarp.core.fourier import irfft_centered, rfft_centered
from cryowarp.core.fsc import fsc, fsc_resolution_a
from cryowarp.core.masks import spherical_mask
from cryowarp.core.projection import project_real
from cryowarp.core.rotations import euler_to_matrix, matrix_to_euler, random_rotations
from cryowarp.io.mrc import read_mrc, write_mrc
from cryowarp.io.relion import OpticsGroup, ParticleTable, read_particles, write_particles
from cryowarp.simulate.phantom import blob_phantom

__all__ = ["DemoResult", "DemoSettings", "run_demo"]


class DemoSettings(BaseModel):
    """Settings of the demo job; the CLI reads its defaults and help texts from here."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    n_particles: int = Field(
        default=1000, ge=20, description="Number of simulated particle images."
    )
    box_size_px: int = Field(default=48, ge=16, description="Box edge in pixels.")
    pixel_size_a: float = Field(default=2.0, gt=0, description="Pixel size in Å.")
    snr: float = Field(
        default=0.5,
        gt=0,
        description="Signal-to-noise ratio per image: variance of the CTF-affected "
        "projections over that of the added white noise.",
    )
    seed: int = Field(
        default=0, description="Seed of every random choice (the demo is deterministic)."
    )


@dataclass(frozen=True)
class DemoResult:
    """What the demo measured and wrote."""

    out_dir: Path
    n_particles: int
    box_size_px: int
    pixel_size_a: float
    resolution_halves_a: float  # FSC(half 1, half 2) = 0.143
    resolution_truth_a: float  # FSC(full map, truth) = 0.5
    nyquist_a: float
    files: tuple[Path, ...]


def _tensor(array: np.ndarray) -> torch.Tensor:
    """A float32 tensor copy of a (possibly read-only, memory-mapped) array."""
    return torch.tensor(np.asarray(array), dtype=torch.float32)


def run_demo(
    out_dir: str | Path,
    settings: DemoSettings | None = None,
    *,
    log: Callable[[str], None] = print,
) -> DemoResult:
    """Run the demo job (see :class:`DemoSettings`) and write its outputs into ``out_dir``.

    ``log`` receives one line per step.
    """
    settings = settings or DemoSettings()
    n_particles = settings.n_particles
    pixel_size_a = settings.pixel_size_a
    snr = settings.snr
    seed = settings.seed
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    g = torch.Generator().manual_seed(seed)
    box = settings.box_size_px

    log(f"phantom: {box}^3 voxels at {pixel_size_a} Å/px")
    truth = blob_phantom(box, seed=seed)
    rotations = random_rotations(n_particles, generator=g)
    defocus_um = 0.8 + 1.7 * torch.rand(n_particles, generator=g)
    astig_x_um = 0.05 * torch.randn(n_particles, generator=g)
    astig_y_um = 0.05 * torch.randn(n_particles, generator=g)
    ctf = CTFParams.create(
        pixel_size_a=pixel_size_a,
        defocus_um=defocus_um,
        astig_x_um=astig_x_um,
        astig_y_um=astig_y_um,
        voltage_kv=300.0,
        cs_mm=2.7,
        amplitude_contrast=0.07,
    )

    log(f"simulate: {n_particles} CTF-affected projections at SNR {snr}")
    projections = project_real(truth, rotations)
    images = irfft_centered(
        rfft_centered(projections, ndim=2) * ctf_2d(ctf, (box, box)), shape=(box, box)
    )
    noise_sigma = float(images.std()) / snr**0.5
    images = images + noise_sigma * torch.randn(images.shape, generator=g)

    log("export: particles.mrcs + particles.star (RELION 5)")
    stack = out / "particles.mrcs"
    star = out / "particles.star"
    write_mrc(stack, images.numpy(), voxel_size_a=pixel_size_a, is_stack=True)
    u_a, v_a, angle_deg = ctf.to_relion_defocus()
    euler = matrix_to_euler(rotations.double())
    optics = OpticsGroup(
        optics_group=1,
        name="opticsGroup1",
        pixel_size_a=pixel_size_a,
        voltage_kv=300.0,
        cs_mm=2.7,
        amplitude_contrast=0.07,
        image_size_px=box,
        image_dimensionality=2,
    )
    frame = pd.DataFrame(
        {
            "rlnImageName": [f"{i + 1:06d}@{stack.name}" for i in range(n_particles)],
            "rlnOpticsGroup": np.ones(n_particles, dtype=np.int64),
            "rlnAngleRot": euler[:, 0].numpy(),
            "rlnAngleTilt": euler[:, 1].numpy(),
            "rlnAnglePsi": euler[:, 2].numpy(),
            "rlnOriginXAngst": np.zeros(n_particles),
            "rlnOriginYAngst": np.zeros(n_particles),
            "rlnDefocusU": u_a.numpy(),
            "rlnDefocusV": v_a.numpy(),
            "rlnDefocusAngle": angle_deg.numpy(),
            "rlnRandomSubset": (np.arange(n_particles) % 2 + 1).astype(np.int64),
        }
    )
    write_particles(star, [optics], ParticleTable(frame, [optics]))

    log("read back: particles.star + particles.mrcs")
    (read_optics, table) = read_particles(star)
    stack_data, _ = read_mrc(stack)
    read_images = _tensor(stack_data)
    read_rotations = euler_to_matrix(_tensor(table.euler_deg()))
    group = read_optics[0]
    read_ctf = CTFParams.from_relion(
        defocus_u_a=_tensor(table.defocus_u_a()),
        defocus_v_a=_tensor(table.defocus_v_a()),
        defocus_angle_deg=_tensor(table.defocus_angle_deg()),
        pixel_size_a=group.pixel_size_a,
        voltage_kv=group.voltage_kv,
        cs_mm=group.cs_mm,
        amplitude_contrast=group.amplitude_contrast,
    )
    subsets = torch.tensor(table.random_subset())

    log("reconstruct: two half-maps, CTF-weighted Fourier back-projection")
    halves = []
    for subset in (1, 2):
        keep = subsets == subset
        reconstructor = Reconstructor((box, box, box))
        weights = ctf_2d(read_ctf, reconstructor.padded_image_shape)[keep]
        reconstructor.insert_images(read_images[keep], read_rotations[keep], ctf=weights)
        halves.append(reconstructor.reconstruct(snr=1.0))
    full = (halves[0] + halves[1]) / 2

    mask = spherical_mask((box, box, box), box / 2 - 4, soft_edge_px=4.0)
    curve_halves = fsc(halves[0] * mask, halves[1] * mask)
    curve_truth = fsc(full * mask, truth * mask)
    res_halves = fsc_resolution_a(curve_halves, box, pixel_size_a, threshold=0.143)
    res_truth = fsc_resolution_a(curve_truth, box, pixel_size_a, threshold=0.5)
    log(f"FSC(half 1, half 2) = 0.143 at {res_halves:.2f} Å")
    log(f"FSC(map, truth) = 0.5 at {res_truth:.2f} Å (Nyquist {2 * pixel_size_a:.2f} Å)")

    files = [stack, star]
    for name, volume in (("half1", halves[0]), ("half2", halves[1]), ("map", full)):
        path = out / f"{name}.mrc"
        write_mrc(path, volume.numpy(), voxel_size_a=pixel_size_a)
        files.append(path)
    fsc_path = out / "fsc.json"
    fsc_path.write_text(
        json.dumps(
            {
                "frequency_per_a": (torch.arange(box // 2 + 1) / (box * pixel_size_a)).tolist(),
                "fsc_half_maps": curve_halves.tolist(),
                "fsc_map_truth": curve_truth.tolist(),
                "resolution_half_maps_a": res_halves,
                "resolution_map_truth_a": res_truth,
            },
            indent=1,
        )
    )
    files.append(fsc_path)
    return DemoResult(
        out_dir=out,
        n_particles=n_particles,
        box_size_px=box,
        pixel_size_a=pixel_size_a,
        resolution_halves_a=res_halves,
        resolution_truth_a=res_truth,
        nyquist_a=2 * pixel_size_a,
        files=tuple(files),
    )
