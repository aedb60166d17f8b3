"""Species: noise-free Coulomb potential maps (volts) of the particles a simulation contains.

A :class:`Species` holds a cubic map of the potential in volts, each voxel the average over
its volume, centred at index ``N//2`` (conventions §2), with its pixel size and point group.
Three sources:

- :func:`species_from_model` — an atomic model (PDB/mmCIF) through Peng et al. (1996)
  scattering factors (:mod:`cryowarp.simulate.potential`);
- :func:`species_from_map` — an MRC map, background-subtracted and scaled to volts;
- :func:`cryowarp.simulate.procedural.procedural_species` — a random "protein-like" shape of
  a given mass and symmetry.

Protein constants used to put arbitrary maps and procedural shapes on the absolute scale:
density ``0.81 Da/Å³`` (1.35 g/cm³) and the isolated-atom potential of the average amino-acid
residue ("averagine", Senko et al. 1995, J. Am. Soc. Mass Spectrom. 6, 229:
C 4.9384 H 7.7583 N 1.3577 O 1.4773 S 0.0417, 111.125 Da), which gives
:func:`protein_potential_per_kda_v_a3` ≈ 9.76·10³ V·Å³ per kDa **with** hydrogens, i.e. a
mean potential of ≈ 7.9 V inside protein.  Isolated-atom superposition ignores bonding, which
lowers the true mean inner potential (for vitreous ice ≈ 3.5 V measured against ≈ 4.5 V
computed this way).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from cryowarp.core._centred_coordinates import centred_grid
from cryowarp.core.resize import crop_or_pad, rescale
from cryowarp.core.symmetry import point_group_order
from cryowarp.errors import FileFormatError, InvalidValuesError
from cryowarp.io.atomic_model import read_atomic_model
from cryowarp.io.mrc import read_mrc
from cryowarp.simulate.potential import atomic_potential_v, centre_of_mass_a, fitting_box_size_px
from cryowarp.simulate.scattering import atomic_mass_da, potential_integral_v_a3

__all__ = [
    "PROTEIN_DENSITY_DA_PER_A3",
    "Species",
    "protein_potential_per_kda_v_a3",
    "species_from_map",
    "species_from_model",
]

#: Mass density of protein, Da/Å³ (1.35 g/cm³).
PROTEIN_DENSITY_DA_PER_A3 = 0.81
# Averagine composition per residue (Senko et al. 1995).
_AVERAGINE = {"C": 4.9384, "H": 7.7583, "N": 1.3577, "O": 1.4773, "S": 0.0417}


def protein_potential_per_kda_v_a3(*, include_hydrogens: bool = True) -> float:
    """``∫ V d³r`` per kDa of protein of average composition, V·Å³/kDa (mass with H)."""
    elements = [e for e in _AVERAGINE if include_hydrogens or e != "H"]
    counts = torch.tensor([_AVERAGINE[e] for e in elements], dtype=torch.float64)
    potential = float((potential_integral_v_a3(elements) * counts).sum())
    mass_da = float(
        (atomic_mass_da(list(_AVERAGINE)) * torch.tensor(list(_AVERAGINE.values()))).sum()
    )
    return potential / mass_da * 1000.0


def _mean_protein_potential_v() -> float:
    """Mean potential (V) inside protein of average composition at 0.81 Da/Å³ (≈ 7.9 V)."""
    return protein_potential_per_kda_v_a3() * PROTEIN_DENSITY_DA_PER_A3 / 1000.0


@dataclass(frozen=True, eq=False)
class Species:
    """A particle species: its potential map, pixel size and point group.

    Attributes
    ----------
    name:
        Label written to the ground truth.
    potential_v:
        ``(N, N, N)`` (z, y, x) Coulomb potential in volts (voxel averages), centre at ``N//2``.
    pixel_size_a:
        Voxel edge in Å.
    symmetry:
        Point group (RELION name, conventions §10).
    mass_kda:
        Mass in kDa, when known.
    source:
        Where it came from (file path or generator description).
    """

    name: str
    potential_v: torch.Tensor  # (N, N, N)
    pixel_size_a: float
    symmetry: str = "C1"
    mass_kda: float | None = None
    source: str = ""

    def __post_init__(self) -> None:
        shape = tuple(self.potential_v.shape)
        if len(shape) != 3 or len(set(shape)) != 1:
            raise InvalidValuesError(None, f"species {self.name!r}: map must be cubic, got {shape}")
        if not self.pixel_size_a > 0:
            raise InvalidValuesError(
                None, f"species {self.name!r}: pixel size must be positive, got {self.pixel_size_a}"
            )
        point_group_order(self.symmetry)  # raises on an unknown group

    @property
    def box_size_px(self) -> int:
        """Edge ``N`` of the cubic box."""
        return int(self.potential_v.shape[-1])

    @property
    def integral_v_a3(self) -> float:
        """``∫ V d³r`` = sum × voxel volume, in V·Å³."""
        return float(self.potential_v.double().sum()) * self.pixel_size_a**3

    def radius_a(self, threshold_fraction: float = 0.05) -> float:
        """Largest distance (Å) from the box centre of a voxel above ``fraction × max``."""
        volume = self.potential_v
        above = volume > threshold_fraction * volume.max()
        if not bool(above.any()):
            return 0.0
        r2 = (centred_grid(tuple(volume.shape), device=volume.device) ** 2).sum(-1)
        return math.sqrt(float(r2[above].max())) * self.pixel_size_a

    def at_pixel_size(self, pixel_size_a: float, box_size_px: int | None = None) -> Species:
        """The species resampled to ``pixel_size_a`` by Fourier cropping/padding (core.resize).

        The box is first zero-padded to a size ``N'`` for which ``N' · p / p'`` is an integer
        to within 10⁻³ (so the achieved pixel size is the requested one to that accuracy), and
        values are scaled so that ``∫ V d³r`` is kept exactly.  The result is cropped or
        padded to ``box_size_px`` (default ``ceil(N · p / p')``, the whole field of view).
        """
        if not pixel_size_a > 0:
            raise InvalidValuesError(None, f"pixel size must be positive, got {pixel_size_a}")
        n = self.box_size_px
        ratio = self.pixel_size_a / pixel_size_a
        padded = min(
            range(n, 2 * n + 64),
            key=lambda m: (abs(m * ratio - round(m * ratio)) / (m * ratio) > 1e-3, m),
        )
        target = max(1, round(padded * ratio))
        volume = crop_or_pad(self.potential_v, (padded,) * 3)
        volume = rescale(volume, (target,) * 3)
        volume = volume * (padded * self.pixel_size_a / (target * pixel_size_a)) ** 3
        out_box = max(1, math.ceil(n * ratio - 1e-6)) if box_size_px is None else box_size_px
        volume = crop_or_pad(volume, (out_box,) * 3)
        return replace(self, potential_v=volume.contiguous(), pixel_size_a=float(pixel_size_a))


def species_from_model(
    path: str | Path,
    *,
    pixel_size_a: float,
    box_size_px: int | None = None,
    bfactor_a2: float = 0.0,
    name: str | None = None,
    symmetry: str = "C1",
    include_hydrogens: bool = True,
    device: torch.device | str | None = None,
) -> Species:
    """Potential map of an atomic model, centred on its centre of mass.

    Parameters
    ----------
    path:
        PDB or mmCIF file (first model; see :mod:`cryowarp.io.atomic_model`).
    pixel_size_a:
        Voxel edge in Å.
    box_size_px:
        Box edge; default the smallest even box holding every atom plus 10 Å.
    bfactor_a2:
        Extra B-factor (Å²) added to every atom's own.
    symmetry:
        Point group of the model in RELION's orientation (not checked).
    include_hydrogens:
        Keep the model's hydrogens (absent hydrogens are not added).

    Returns
    -------
    Species
        ``mass_kda`` is the sum of the atomic weights × occupancies of the atoms present.
    """
    model = read_atomic_model(path, include_hydrogens=include_hydrogens)
    elements = [str(e) for e in model.elements]
    xyz = torch.as_tensor(model.xyz_a, device=device)
    occupancy = torch.as_tensor(model.occupancy, device=device)
    centre = centre_of_mass_a(xyz, elements, occupancy=occupancy)
    if box_size_px is None:
        box_size_px = fitting_box_size_px(xyz, centre, pixel_size_a=pixel_size_a)
    potential = atomic_potential_v(
        xyz,
        elements,
        pixel_size_a=pixel_size_a,
        box_size_px=box_size_px,
        centre_a=centre,
        bfactor_a2=torch.as_tensor(model.bfactor_a2, device=device),
        occupancy=occupancy,
        extra_bfactor_a2=bfactor_a2,
    )
    mass_kda = float((atomic_mass_da(elements) * occupancy.cpu()).sum()) / 1000.0
    return Species(
        name=name or Path(path).name.split(".")[0],
        potential_v=potential,
        pixel_size_a=float(pixel_size_a),
        symmetry=symmetry,
        mass_kda=mass_kda,
        source=str(path),
    )


def _otsu_threshold(values: torch.Tensor) -> float:
    """Threshold maximising the between-class variance of a 256-bin histogram."""
    lo, hi = float(values.min()), float(values.max())
    if hi <= lo:
        return hi
    hist = torch.histc(values.double(), bins=256, min=lo, max=hi)
    centres = lo + (torch.arange(256, dtype=torch.float64) + 0.5) * (hi - lo) / 256
    w0 = torch.cumsum(hist, 0)
    m0 = torch.cumsum(hist * centres, 0)
    total, mean_total = w0[-1], m0[-1]
    w1 = total - w0
    between = (mean_total * w0 / total - m0) ** 2 / (w0 * w1 / total).clamp(min=1e-12)
    return float(centres[int(torch.argmax(between[:-1]))])


def species_from_map(
    path: str | Path,
    *,
    name: str | None = None,
    pixel_size_a: float | None = None,
    potential_scale_v: float | None = None,
    mass_kda: float | None = None,
    symmetry: str = "C1",
) -> Species:
    """A species from an MRC map in arbitrary units.

    The background (median of the box faces) is subtracted and a non-cubic map is zero-padded
    to a cube about its centre.  Then values become volts by, in order of precedence:
    ``potential_scale_v`` (volts per map unit); otherwise a "protein" region is chosen — the
    highest voxels filling ``mass_kda / 0.81 Da/Å³`` when the mass is given, else the voxels
    above Otsu's threshold (whose volume then gives ``mass_kda``) — and the map is scaled so
    that the region's mean is the mean protein potential (0.81 Da/Å³ ×
    :func:`protein_potential_per_kda_v_a3` ≈ 7.9 V).  Filtered maps with negative lobes
    keep them (their integral is not the mass's).

    Raises
    ------
    FileFormatError
        Not a 3-D map, or no pixel size in the header and none given.
    InvalidValuesError
        Anisotropic voxels, NaN/Inf values, or a constant map.
    """
    data, header = read_mrc(path)
    if data.ndim != 3:
        raise FileFormatError(path, f"is a {data.ndim}-D image, not a 3-D map")
    if pixel_size_a is None:
        sizes = header.voxel_size_a
        if min(sizes) <= 0:
            raise FileFormatError(path, "header has no voxel size", "pass pixel_size_a= explicitly")
        if max(sizes) - min(sizes) > 1e-3 * max(sizes):
            raise InvalidValuesError(
                path,
                f"anisotropic voxels {sizes} Å (x, y, z) are not supported",
                "resample the map to cubic voxels first",
            )
        pixel_size_a = float(sizes[0])
    volume = torch.from_numpy(data.astype("float32"))
    if not bool(torch.isfinite(volume).all()):
        raise InvalidValuesError(path, "map contains NaN or Inf")
    faces = torch.cat([volume[[0, -1]].flatten(), volume[:, [0, -1]].flatten(),
                       volume[:, :, [0, -1]].flatten()])  # fmt: skip
    volume = volume - faces.median()
    volume = crop_or_pad(volume, (max(volume.shape),) * 3)
    if potential_scale_v is not None:
        volume = volume * potential_scale_v
    else:
        voxel_a3 = pixel_size_a**3
        if mass_kda is None:
            protein = volume > _otsu_threshold(volume)
            mass_kda = int(protein.sum()) * voxel_a3 * PROTEIN_DENSITY_DA_PER_A3 / 1000.0
        else:  # the mass's volume at protein density, the highest voxels first
            n_voxels = round(mass_kda * 1000.0 / PROTEIN_DENSITY_DA_PER_A3 / voxel_a3)
            n_voxels = min(max(n_voxels, 1), volume.numel())
            level = torch.topk(volume.flatten(), n_voxels).values[-1]
            protein = volume >= level
        if not bool(protein.any()) or float(volume[protein].mean()) <= 0:
            raise InvalidValuesError(path, "map has no density above its background")
        volume = volume * (_mean_protein_potential_v() / float(volume[protein].mean()))
    return Species(
        name=name or Path(path).name.split(".")[0],
        potential_v=volume.contiguous(),
        pixel_size_a=float(pixel_size_a),
        symmetry=symmetry,
        mass_kda=mass_kda,
        source=str(path),
    )
