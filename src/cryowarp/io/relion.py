"""RELION particle and micrograph STAR files as typed records and tables.

Reads RELION 3.1+/5 files (``data_optics`` + ``data_particles`` / ``data_micrographs``) and
legacy RELION 3.0 files (one ``data_`` block with per-row voltage, Cs, amplitude contrast and
pixel size). Legacy files are converted on reading to the 3.1 layout: optics groups are built
from the distinct (voltage, Cs, amplitude contrast, pixel size) combinations, and pixel origins
``rlnOriginX/Y/Z`` become ``rlnOriginX/Y/ZAngst`` (docs/conventions.md §4). Writing always
produces the 3.1+ layout. Columns cryowarp does not interpret are kept and written back.

Required columns (anything else is optional; an accessor of an absent optional column raises
:class:`~cryowarp.errors.MissingColumnError` unless its docstring gives a default):

- optics: ``rlnOpticsGroup``, ``rlnVoltage``, ``rlnSphericalAberration``,
  ``rlnAmplitudeContrast`` and a pixel size (``rlnImagePixelSize`` for particles,
  ``rlnMicrographPixelSize`` or ``rlnMicrographOriginalPixelSize`` for micrographs;
  legacy: ``rlnPixelSize`` or ``rlnDetectorPixelSize`` µm × 10⁴ / ``rlnMagnification``);
- particles: ``rlnImageName`` and ``rlnOpticsGroup`` naming an existing optics group;
- tomogram particles: ``rlnTomoName`` and ``rlnCoordinateX/Y/Z`` (px) or
  ``rlnCenteredCoordinateX/Y/ZAngst``;
- micrographs: ``rlnMicrographName`` and ``rlnOpticsGroup``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import ClassVar, NamedTuple

import numpy as np
import pandas as pd

from cryowarp.errors import InvalidValuesError, MissingColumnError
from cryowarp.io._relion_legacy import from_legacy, origins_to_angstrom
from cryowarp.io.relion_optics import OpticsGroup, TableKind, optics_from_block, optics_to_block
from cryowarp.io.star import RELION_STAR_VERSION, StarBlock, read_star, write_star

__all__ = [
    "ImageLocation",
    "MicrographTable",
    "OpticsGroup",
    "ParticleTable",
    "TomoParticleTable",
    "parse_image_name",
    "read_micrographs",
    "read_particles",
    "read_tomo_particles",
    "write_micrographs",
    "write_particles",
]


class ImageLocation(NamedTuple):
    """Where one image lives: 1-based ``stack_index`` in the stack (``None``: whole file)."""

    stack_index: int | None
    path: Path


def parse_image_name(name: str, *, root: Path | None = None) -> ImageLocation:
    """Split ``"000012@Extract/a.mrcs"`` into ``ImageLocation(12, root / "Extract/a.mrcs")``.

    A name without ``@`` refers to a whole file (RELION-5/Warp 2D tilt stacks) and gets
    ``stack_index=None``. Relative paths are joined to ``root`` when given.
    """
    text = name.strip()
    index: int | None = None
    if "@" in text:
        head, text = text.split("@", 1)
        if not head.isdigit() or int(head) < 1:
            raise ValueError(f"image name {name!r}: index before '@' must be a positive integer")
        index = int(head)
    if not text:
        raise ValueError(f"image name {name!r} has no file path")
    path = Path(text)
    if root is not None and not path.is_absolute():
        path = root / path
    return ImageLocation(index, path)


class _RelionTable:
    """A DataFrame with RELION 3.1+ column names, its optics groups and its source file."""

    _required: ClassVar[tuple[str, ...]] = ()

    def __init__(
        self,
        frame: pd.DataFrame,
        optics: Sequence[OpticsGroup],
        *,
        source: str | os.PathLike[str] | None = None,
    ) -> None:
        self._source = Path(source) if source is not None else None
        self._frame = frame.reset_index(drop=True).copy()
        self._optics = tuple(optics)
        self._require(*self._required)
        self._by_id = {group.optics_group: group for group in self._optics}
        if len(self._by_id) != len(self._optics):
            raise InvalidValuesError(self._source, "two optics groups share one rlnOpticsGroup")
        if "rlnOpticsGroup" in self._frame.columns:
            unknown = sorted(set(self.optics_group_ids().tolist()) - set(self._by_id))
            if unknown:
                raise MissingColumnError(
                    self._source, f"no data_optics row for rlnOpticsGroup {unknown}"
                )
        self._check_columns()

    def _check_columns(self) -> None:
        """Further column checks of a subclass (run at the end of ``__init__``)."""

    def __len__(self) -> int:
        return len(self._frame)

    @property
    def frame(self) -> pd.DataFrame:
        """A copy of the table (RELION 3.1+ column names, origins in Å)."""
        return self._frame.copy()

    @property
    def optics(self) -> tuple[OpticsGroup, ...]:
        return self._optics

    @property
    def source(self) -> Path | None:
        """The STAR file the table was read from, if any."""
        return self._source

    def _require(self, *columns: str) -> None:
        missing = [c for c in columns if c not in self._frame.columns]
        if missing:
            raise MissingColumnError(self._source, f"missing required column(s) {missing}")

    def _numbers(self, column: str, default: float | None = None) -> np.ndarray:
        if column not in self._frame.columns:
            if default is None:
                raise MissingColumnError(self._source, f"missing column {column}")
            return np.full(len(self), default, dtype=np.float64)
        try:
            return pd.to_numeric(self._frame[column]).to_numpy(dtype=np.float64)
        except (ValueError, TypeError) as error:
            raise InvalidValuesError(self._source, f"column {column}: {error}") from error

    def _texts(self, column: str) -> list[str]:
        self._require(column)
        return [str(value) for value in self._frame[column].tolist()]

    def _root(self, root: str | os.PathLike[str] | None) -> Path | None:
        if root is not None:
            return Path(root)
        return self._source.parent if self._source is not None else None

    def optics_group_ids(self) -> np.ndarray:  # (n,) int64
        """``rlnOpticsGroup`` of every row."""
        return self._numbers("rlnOpticsGroup").astype(np.int64)

    def optics_per_row(self) -> list[OpticsGroup]:
        """The optics group of every row (the join of the table with ``data_optics``)."""
        return [self._by_id[int(i)] for i in self.optics_group_ids()]

    def _per_row(self, get: Callable[[OpticsGroup], float]) -> np.ndarray:
        values = {key: get(group) for key, group in self._by_id.items()}
        return np.array([values[int(i)] for i in self.optics_group_ids()], dtype=np.float64)

    def pixel_size_a(self) -> np.ndarray:  # (n,)
        """Pixel size of every row's images in Å, from its optics group."""
        return self._per_row(lambda group: group.pixel_size_a)

    def voltage_kv(self) -> np.ndarray:  # (n,)
        return self._per_row(lambda group: group.voltage_kv)

    def cs_mm(self) -> np.ndarray:  # (n,)
        return self._per_row(lambda group: group.cs_mm)

    def amplitude_contrast(self) -> np.ndarray:  # (n,)
        return self._per_row(lambda group: group.amplitude_contrast)

    def micrograph_names(self) -> list[str]:
        return self._texts("rlnMicrographName")

    def defocus_u_a(self) -> np.ndarray:  # (n,)
        """``rlnDefocusU`` in Å (underfocus positive, docs/conventions.md §6)."""
        return self._numbers("rlnDefocusU")

    def defocus_v_a(self) -> np.ndarray:  # (n,)
        return self._numbers("rlnDefocusV")

    def defocus_angle_deg(self) -> np.ndarray:  # (n,)
        return self._numbers("rlnDefocusAngle")

    def phase_shift_deg(self) -> np.ndarray:  # (n,)
        """``rlnPhaseShift`` in degrees; 0 when absent."""
        return self._numbers("rlnPhaseShift", 0.0)


class ParticleTable(_RelionTable):
    """Particles with RELION 3.1+ columns; see the module docstring for required columns."""

    _required: ClassVar[tuple[str, ...]] = ("rlnImageName", "rlnOpticsGroup")

    def image_locations(self, *, root: str | os.PathLike[str] | None = None) -> list[ImageLocation]:
        """Parsed ``rlnImageName`` of every particle.

        Relative paths are joined to ``root``, by default the STAR file's folder (RELION
        itself resolves them from its project folder: pass that as ``root`` for such files).
        """
        folder = self._root(root)
        try:
            return [parse_image_name(name, root=folder) for name in self._texts("rlnImageName")]
        except ValueError as error:
            raise InvalidValuesError(self._source, str(error)) from error

    def coordinates_px(self) -> np.ndarray:  # (n, 2) or (n, 3)
        """``rlnCoordinateX/Y`` (and ``Z`` when present) in pixels of the micrograph/tomogram."""
        axes = ("X", "Y", "Z") if "rlnCoordinateZ" in self._frame.columns else ("X", "Y")
        return np.stack([self._numbers(f"rlnCoordinate{a}") for a in axes], axis=-1)

    def origins_a(self) -> np.ndarray:  # (n, 2) or (n, 3)
        """``rlnOriginX/Y(/Z)Angst`` in Å (docs/conventions.md §4); zeros when absent."""
        axes = ("X", "Y", "Z") if "rlnOriginZAngst" in self._frame.columns else ("X", "Y")
        return np.stack([self._numbers(f"rlnOrigin{a}Angst", 0.0) for a in axes], axis=-1)

    def euler_deg(self) -> np.ndarray:  # (n, 3)
        """``(rlnAngleRot, rlnAngleTilt, rlnAnglePsi)`` in degrees (§8); 0 for absent ones."""
        names = ("rlnAngleRot", "rlnAngleTilt", "rlnAnglePsi")
        return np.stack([self._numbers(name, 0.0) for name in names], axis=-1)

    def ctf_bfactor_a2(self) -> np.ndarray:  # (n,)
        """``rlnCtfBfactor`` in Å² (negative attenuates, §6); 0 when absent."""
        return self._numbers("rlnCtfBfactor", 0.0)

    def ctf_scale(self) -> np.ndarray:  # (n,)
        """``rlnCtfScalefactor``; 1 when absent."""
        return self._numbers("rlnCtfScalefactor", 1.0)

    def random_subset(self) -> np.ndarray:  # (n,) int64
        """``rlnRandomSubset`` (1 or 2 for the two half sets)."""
        return self._numbers("rlnRandomSubset").astype(np.int64)

    def class_number(self) -> np.ndarray:  # (n,) int64
        return self._numbers("rlnClassNumber").astype(np.int64)


class TomoParticleTable(ParticleTable):
    """RELION-5 tomography particles: ``rlnImageName`` and optics are optional."""

    _required: ClassVar[tuple[str, ...]] = ("rlnTomoName",)

    def _check_columns(self) -> None:
        columns = set(self._frame.columns)
        if not ({f"rlnCoordinate{a}" for a in "XYZ"} <= columns) and not (
            {f"rlnCenteredCoordinate{a}Angst" for a in "XYZ"} <= columns
        ):
            raise MissingColumnError(
                self._source,
                "missing rlnCoordinateX/Y/Z or rlnCenteredCoordinateX/Y/ZAngst",
            )

    def tomo_names(self) -> list[str]:
        return self._texts("rlnTomoName")

    def centered_coordinates_a(self) -> np.ndarray:  # (n, 3)
        """``rlnCenteredCoordinateX/Y/ZAngst``: Å from the tomogram centre (RELION 5)."""
        return np.stack([self._numbers(f"rlnCenteredCoordinate{a}Angst") for a in "XYZ"], -1)


class MicrographTable(_RelionTable):
    """Micrographs with RELION 3.1+ columns; see the module docstring for required columns."""

    _required: ClassVar[tuple[str, ...]] = ("rlnMicrographName", "rlnOpticsGroup")

    def ctf_max_resolution_a(self) -> np.ndarray:  # (n,)
        return self._numbers("rlnCtfMaxResolution")

    def ctf_figure_of_merit(self) -> np.ndarray:  # (n,)
        return self._numbers("rlnCtfFigureOfMerit")

    def metadata_paths(self, *, root: str | os.PathLike[str] | None = None) -> list[Path]:
        """``rlnMicrographMetadata`` (motion STAR files), joined to ``root`` like images."""
        folder = self._root(root)
        paths = [Path(text) for text in self._texts("rlnMicrographMetadata")]
        return [p if folder is None or p.is_absolute() else folder / p for p in paths]


def read_particles(
    path: str | os.PathLike[str], *, amplitude_contrast_if_missing: float | None = None
) -> tuple[list[OpticsGroup], ParticleTable]:
    """Read a RELION 3.0, 3.1 or 5 single-particle STAR file.

    Parameters
    ----------
    path:
        The STAR file.
    amplitude_contrast_if_missing:
        Amplitude contrast to assume for a RELION 3.0 file without ``rlnAmplitudeContrast``
        (some exports omit it); ``None`` raises MissingColumnError instead of guessing.

    Returns
    -------
    (optics, table)
        The optics groups and the particles (converted to the 3.1+ layout).
    """
    optics, frame = _read_table(Path(path), "particles", amplitude_contrast_if_missing)
    return optics, ParticleTable(frame, optics, source=path)


def read_tomo_particles(
    path: str | os.PathLike[str],
) -> tuple[list[OpticsGroup], TomoParticleTable]:
    """Read a RELION-5 (or WarpTools) tomography particle STAR file.

    ``data_optics`` is optional (picking output has none); ``rlnImageName`` may be absent or
    name a whole 2D tilt stack.
    """
    optics, frame = _read_table(Path(path), "tomo")
    return optics, TomoParticleTable(frame, optics, source=path)


def read_micrographs(
    path: str | os.PathLike[str], *, amplitude_contrast_if_missing: float | None = None
) -> tuple[list[OpticsGroup], MicrographTable]:
    """Read a RELION 3.0, 3.1 or 5 micrograph STAR file (e.g. ``micrographs_ctf.star``).

    ``amplitude_contrast_if_missing`` is as in :func:`read_particles`.
    """
    optics, frame = _read_table(Path(path), "micrographs", amplitude_contrast_if_missing)
    return optics, MicrographTable(frame, optics, source=path)


def write_particles(
    path: str | os.PathLike[str], optics: Sequence[OpticsGroup], table: ParticleTable
) -> None:
    """Write ``data_optics`` + ``data_particles`` (RELION 3.1+ layout, each block preceded by
    RELION 5's ``# version 50001`` line), atomically."""
    _write_table(Path(path), optics, table, "particles")


def write_micrographs(
    path: str | os.PathLike[str], optics: Sequence[OpticsGroup], table: MicrographTable
) -> None:
    """Write ``data_optics`` + ``data_micrographs`` (RELION 3.1+ layout, each block preceded
    by RELION 5's ``# version 50001`` line), atomically."""
    _write_table(Path(path), optics, table, "micrographs")


# ---------------------------------------------------------------------------- reading


def _read_table(
    file: Path, kind: TableKind, amplitude_contrast_if_missing: float | None = None
) -> tuple[list[OpticsGroup], pd.DataFrame]:
    blocks = read_star(file)
    block_name = "micrographs" if kind == "micrographs" else "particles"
    table = blocks.get(block_name)
    optics_block = blocks.get("optics")
    if isinstance(table, pd.DataFrame) and isinstance(optics_block, pd.DataFrame):
        optics = optics_from_block(file, optics_block, kind)
        return optics, origins_to_angstrom(file, table, optics)
    if kind == "tomo" and isinstance(table, pd.DataFrame):
        return [], table
    key = "rlnMicrographName" if kind == "micrographs" else "rlnImageName"
    loops = [b for b in blocks.values() if isinstance(b, pd.DataFrame) and key in b.columns]
    if not loops:
        raise MissingColumnError(file, f"no data_{block_name} block and no table with {key}")
    frame = loops[0]
    if "rlnAmplitudeContrast" not in frame.columns and amplitude_contrast_if_missing is not None:
        frame = frame.assign(rlnAmplitudeContrast=float(amplitude_contrast_if_missing))
    return from_legacy(file, frame, kind)


# ---------------------------------------------------------------------------- writing


def _write_table(
    file: Path, optics: Sequence[OpticsGroup], table: _RelionTable, kind: TableKind
) -> None:
    frame = table.frame
    if "rlnOpticsGroup" in frame.columns:
        known = {g.optics_group for g in optics}
        unknown = sorted(set(pd.to_numeric(frame["rlnOpticsGroup"]).astype(int)) - known)
        if unknown:
            raise MissingColumnError(file, f"no optics group given for rlnOpticsGroup {unknown}")
    blocks: dict[str, StarBlock] = {}
    if optics:
        blocks["optics"] = optics_to_block(optics, kind)
    blocks["micrographs" if kind == "micrographs" else "particles"] = frame
    write_star(file, blocks, relion_version=RELION_STAR_VERSION)
