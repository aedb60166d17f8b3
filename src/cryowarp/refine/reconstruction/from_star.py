"""Particles of a RELION particle STAR file, read lazily in batches for a reconstruction.

What is read, and how (RELION 3.1+ semantics; legacy 3.0 files are converted by
:func:`cryowarp.io.relion.read_particles`):

- images: ``rlnImageName`` ``NNNNNN@stack.mrcs`` (1-based), paths relative to the STAR file's
  folder unless ``root`` is given (docs/conventions.md §4); stacks are memory-mapped and only
  the images of the current batch are read;
- poses: ``rlnAngleRot/Tilt/Psi`` (ZYZ, §8), ``rlnOriginX/YAngst`` (the image is shifted by
  ``+origin / pixel size`` to centre the particle, §4);
- CTF: ``rlnDefocusU/V`` (Å), ``rlnDefocusAngle``, ``rlnPhaseShift`` (deg), ``rlnCtfBfactor``
  (RELION's ``exp(−B k²/4)``), ``rlnCtfScalefactor``, and per optics group voltage, Cs,
  amplitude contrast, ``rlnImagePixelSize``, beam tilt, odd/even Zernike coefficients and the
  magnification matrix (applied to the CTF only, not to the slice geometry);
- what the images hold: optics flags ``rlnCtfDataAreCtfPremultiplied`` and
  ``rlnCtfDataArePhaseFlipped`` (:mod:`.half_maps`).

Every particle used must share one box size and one pixel size; otherwise a
:class:`~cryowarp.errors.DimensionMismatchError` names the file and the optics groups or stacks
that differ.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cryowarp.core.ctf_params import CTFParams
from cryowarp.core.rotations import euler_to_matrix
from cryowarp.errors import CryowarpInputError, DimensionMismatchError, InvalidValuesError
from cryowarp.io.files import require_file
from cryowarp.io.mrc import MrcReader, read_mrc_header
from cryowarp.io.relion import OpticsGroup, ParticleTable, read_particles

__all__ = ["ParticleBatch", "StarParticles"]

_PIXEL_TOLERANCE = 1e-4  # relative difference of pixel sizes still taken as equal


@dataclass(frozen=True, eq=False)
class ParticleBatch:
    """Particle images of one optics group with their poses and CTF.

    Attributes
    ----------
    rows:
        ``(n,)`` row numbers of the particles in the STAR table.
    images:
        ``(n, N, N)`` float32 images as stored (not yet centred).
    rotations:
        ``(n, 3, 3)`` poses ``A`` (docs/conventions.md §8).
    origins_a:
        ``(n, 2)`` ``rlnOriginX/YAngst`` in Å.
    ctf:
        CTF parameters, batch shape ``(n,)``.
    data_premultiplied, data_phase_flipped:
        The optics group's ``rlnCtfDataAreCtfPremultiplied`` / ``rlnCtfDataArePhaseFlipped``.
    """

    rows: np.ndarray  # (n,) int64
    images: torch.Tensor  # (n, N, N)
    rotations: torch.Tensor  # (n, 3, 3)
    origins_a: torch.Tensor  # (n, 2)
    ctf: CTFParams
    data_premultiplied: bool
    data_phase_flipped: bool


class StarParticles:
    """The particles of a STAR file: checked on opening, read in batches by :meth:`batches`.

    Parameters
    ----------
    star_path:
        RELION particle STAR file.
    root:
        Folder the image paths are relative to (default: the STAR file's folder).
    skip_bad_stacks:
        Skip the particles of stacks that are missing or unreadable, or too short for an
        index, and list them in :attr:`skipped`, instead of raising.

    Attributes
    ----------
    path, optics, table:
        The file, its optics groups and its particle table.
    box_size, pixel_size_a:
        Image edge (pixels) and pixel size (Å) shared by all particles.
    usable:
        ``(n_rows,)`` bool: the rows that will be read.
    skipped:
        One message per skipped stack or row (file and reason).
    """

    def __init__(
        self,
        star_path: str | os.PathLike[str],
        *,
        root: str | os.PathLike[str] | None = None,
        skip_bad_stacks: bool = False,
    ) -> None:
        self.path = require_file(star_path)
        optics, self.table = read_particles(self.path)
        self.optics = tuple(optics)
        self.skipped: list[str] = []
        n = len(self.table)
        if n == 0:
            raise InvalidValuesError(self.path, "the particle table is empty")
        locations = self.table.image_locations(root=root)
        self._stacks = list(dict.fromkeys(loc.path for loc in locations))
        number = {path: i for i, path in enumerate(self._stacks)}
        self._stack_of = np.array([number[loc.path] for loc in locations], dtype=np.int64)
        self._index = np.array(
            [0 if loc.stack_index is None else loc.stack_index - 1 for loc in locations],
            dtype=np.int64,
        )
        whole = np.array([loc.stack_index is None for loc in locations])
        self._group_ids = self.table.optics_group_ids()
        self.usable = np.ones(n, dtype=bool)
        self.box_size = self._check_stacks(skip_bad_stacks, whole)
        self.pixel_size_a = self._check_optics()
        self._columns = _Columns.of(self.table)

    # -- checks --------------------------------------------------------------------------

    def _check_stacks(self, skip: bool, whole: np.ndarray) -> int:
        """Read every stack's header; return the common image edge. Unreadable stacks and
        images past the end of their stack raise, or with ``skip`` are dropped and listed."""
        shapes: dict[Path, tuple[int, int]] = {}
        order = np.argsort(self._stack_of, kind="stable")
        bounds = np.searchsorted(self._stack_of[order], np.arange(len(self._stacks) + 1))
        for number, stack in enumerate(self._stacks):
            rows = order[bounds[number] : bounds[number + 1]]
            try:
                header = read_mrc_header(stack)
            except CryowarpInputError as error:
                self._drop(rows, error, skip)
                continue
            n_sections = header.shape[0]
            if whole[rows].any() and n_sections != 1:
                problem = f"named without an image index but holds {n_sections} images"
                self._drop(rows[whole[rows]], InvalidValuesError(stack, problem), skip)
            past = rows[self._index[rows] >= n_sections]
            if len(past):
                last = int(self._index[past].max()) + 1
                problem = f"holds {n_sections} images, the STAR file asks for image {last}"
                self._drop(past, InvalidValuesError(stack, problem), skip)
            if self.usable[rows].any():
                shapes[stack] = (header.shape[1], header.shape[2])
        if not self.usable.any():
            raise InvalidValuesError(self.path, "no particle image can be read")
        distinct = sorted(set(shapes.values()))
        if len(distinct) > 1:
            examples = {
                shape: next(p for p, s in shapes.items() if s == shape) for shape in distinct
            }
            listed = "; ".join(f"{h}x{w} px in {p}" for (h, w), p in examples.items())
            raise DimensionMismatchError(
                self.path, f"particle images of different sizes: {listed}",
                "re-extract or rescale the particles to one box size",
            )  # fmt: skip
        h, w = distinct[0]
        if h != w:
            raise DimensionMismatchError(self.path, f"particle images are not square ({h}x{w} px)")
        return h

    def _check_optics(self) -> float:
        groups = {g.optics_group: g for g in self.optics}
        used = sorted({int(i) for i in self._group_ids[self.usable]})
        pixels = {i: groups[i].pixel_size_a for i in used}
        first = pixels[used[0]]
        if any(abs(p - first) > _PIXEL_TOLERANCE * first for p in pixels.values()):
            listed = ", ".join(f"group {i} ({groups[i].name}): {p:g} Å" for i, p in pixels.items())
            raise DimensionMismatchError(
                self.path, f"optics groups have different pixel sizes: {listed}",
                "reconstruct the groups separately or rescale the particles to one pixel size",
            )  # fmt: skip
        for i in used:
            size = groups[i].image_size_px
            if size is not None and size != self.box_size:
                raise DimensionMismatchError(
                    self.path,
                    f"optics group {i} ({groups[i].name}) says rlnImageSize {size}, the "
                    f"stacks hold {self.box_size}x{self.box_size} px images",
                )
        return float(first)

    def _drop(self, rows: np.ndarray, error: CryowarpInputError, skip: bool) -> None:
        if not skip:
            raise error
        self.skipped.append(f"{error} ({len(rows)} particle(s) skipped)")
        self.usable[rows] = False

    # -- reading -------------------------------------------------------------------------

    def image_paths(self) -> list[Path]:
        """The resolved stack file of every row."""
        return [self._stacks[i] for i in self._stack_of]

    def stack_indices(self) -> np.ndarray:
        """``(n_rows,)`` 0-based image index of every row in its stack."""
        return self._index.copy()

    def batches(
        self, batch_size: int, *, device: torch.device | str = "cpu"
    ) -> Iterator[ParticleBatch]:
        """Usable particles in batches of at most ``batch_size``, one optics group per batch,
        ordered by stack and image index so that each stack is read in runs."""
        groups = {g.optics_group: g for g in self.optics}
        for group_id in sorted(set(self._group_ids[self.usable].tolist())):
            rows = np.flatnonzero(self.usable & (self._group_ids == group_id))
            order = rows[np.lexsort((self._index[rows], self._stack_of[rows]))]
            for start in range(0, len(order), batch_size):
                yield self._batch(order[start : start + batch_size], groups[group_id], device)

    def _batch(
        self, rows: np.ndarray, group: OpticsGroup, device: torch.device | str
    ) -> ParticleBatch:
        images = torch.from_numpy(self._read_images(rows)).to(device)
        c = self._columns
        euler = torch.from_numpy(c.euler_deg[rows]).to(device)
        return ParticleBatch(
            rows=rows,
            images=images,
            rotations=euler_to_matrix(euler).to(torch.float32),
            origins_a=torch.from_numpy(c.origins_a[rows]).to(device, torch.float32),
            ctf=_ctf(c, rows, group, device),
            data_premultiplied=_flag(group, "rlnCtfDataAreCtfPremultiplied"),
            data_phase_flipped=_flag(group, "rlnCtfDataArePhaseFlipped"),
        )

    def _read_images(self, rows: np.ndarray) -> np.ndarray:  # (n, N, N) float32
        out = np.empty((len(rows), self.box_size, self.box_size), dtype=np.float32)
        stacks = self._stack_of[rows]
        for number in dict.fromkeys(stacks.tolist()):
            positions = np.flatnonzero(stacks == number)
            indices = self._index[rows[positions]]
            breaks = np.flatnonzero(np.diff(indices) != 1) + 1
            with MrcReader(self._stacks[number]) as reader:
                for run, where in zip(
                    np.split(indices, breaks), np.split(positions, breaks), strict=True
                ):
                    out[where] = reader.read_sections(int(run[0]), int(run[0]) + len(run))
        return out


@dataclass(frozen=True)
class _Columns:
    """The per-particle columns a reconstruction needs, read once from the table."""

    euler_deg: np.ndarray  # (n, 3)
    origins_a: np.ndarray  # (n, 2)
    defocus_u_a: np.ndarray
    defocus_v_a: np.ndarray
    defocus_angle_deg: np.ndarray
    phase_shift_deg: np.ndarray
    bfactor_a2: np.ndarray
    scale: np.ndarray

    @classmethod
    def of(cls, table: ParticleTable) -> _Columns:
        return cls(
            euler_deg=table.euler_deg(),
            origins_a=np.ascontiguousarray(table.origins_a()[:, :2]),
            defocus_u_a=table.defocus_u_a(),
            defocus_v_a=table.defocus_v_a(),
            defocus_angle_deg=table.defocus_angle_deg(),
            phase_shift_deg=table.phase_shift_deg(),
            bfactor_a2=table.ctf_bfactor_a2(),
            scale=table.ctf_scale(),
        )


def _flag(group: OpticsGroup, column: str) -> bool:
    """An optics-group yes/no column (typed field or kept as an extra column); absent: no."""
    if column == "rlnCtfDataAreCtfPremultiplied" and group.ctf_premultiplied is not None:
        return bool(group.ctf_premultiplied)
    value: Any = group.extra.get(column)
    return value is not None and bool(int(float(value)))


def _ctf(
    c: _Columns, rows: np.ndarray, group: OpticsGroup, device: torch.device | str
) -> CTFParams:
    def t(values: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(values[rows])).to(device, torch.float64)

    def opt(values: tuple[float, ...] | None) -> torch.Tensor | None:
        return None if not values else torch.tensor(values, device=device, dtype=torch.float64)

    beam_tilt = None
    if group.beam_tilt_x_mrad is not None or group.beam_tilt_y_mrad is not None:
        beam_tilt = opt((group.beam_tilt_x_mrad or 0.0, group.beam_tilt_y_mrad or 0.0))
    mag = None
    if group.mag_matrix is not None:
        mag = torch.tensor(group.mag_matrix, device=device, dtype=torch.float64)
    params = CTFParams.from_relion(
        defocus_u_a=t(c.defocus_u_a),
        defocus_v_a=t(c.defocus_v_a),
        defocus_angle_deg=t(c.defocus_angle_deg),
        pixel_size_a=group.pixel_size_a,
        voltage_kv=group.voltage_kv,
        cs_mm=group.cs_mm,
        amplitude_contrast=group.amplitude_contrast,
        phase_shift_deg=t(c.phase_shift_deg),
        relion_bfactor_a2=t(c.bfactor_a2),
        scale=t(c.scale),
        mag_matrix=mag,
        beam_tilt_mrad=beam_tilt,
        odd_zernike=opt(group.odd_zernike),
        even_zernike=opt(group.even_zernike),
        device=device,
        dtype=torch.float64,
    )
    return params
