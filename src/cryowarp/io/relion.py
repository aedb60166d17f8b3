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
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal, NamedTuple

import numpy as np
import pandas as pd

from cryowarp.errors import FileFormatError, InvalidValuesError, MissingColumnError
from cryowarp.io.star import StarBlock, read_star, write_star

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

_Kind = Literal["particles", "micrographs", "tomo"]
_MAG = ("rlnMagMat00", "rlnMagMat01", "rlnMagMat10", "rlnMagMat11")
_OPTICS_KNOWN = frozenset(
    {
        "rlnOpticsGroup", "rlnOpticsGroupName", "rlnImagePixelSize", "rlnMicrographPixelSize",
        "rlnMicrographOriginalPixelSize", "rlnVoltage", "rlnSphericalAberration",
        "rlnAmplitudeContrast", "rlnImageSize", "rlnImageDimensionality", "rlnBeamTiltX",
        "rlnBeamTiltY", "rlnOddZernike", "rlnEvenZernike", "rlnCtfDataAreCtfPremultiplied", *_MAG,
    }
)  # fmt: skip
_LEGACY_OPTICS = ("rlnVoltage", "rlnSphericalAberration", "rlnAmplitudeContrast")
_LEGACY_PIXEL = ("rlnPixelSize", "rlnDetectorPixelSize", "rlnMagnification")


@dataclass(frozen=True)
class OpticsGroup:
    """One row of ``data_optics``. ``None`` marks a column absent from the file.

    ``pixel_size_a`` is the pixel size of the images the table refers to: particle images
    (``rlnImagePixelSize``) for particle tables, micrographs (``rlnMicrographPixelSize``, else
    ``rlnMicrographOriginalPixelSize``) for micrograph tables. Zernike coefficients are in
    radians, ordered as in RELION; ``mag_matrix`` is ``((M00, M01), (M10, M11))``
    (docs/conventions.md §6). ``extra`` holds every other column, written back unchanged.
    """

    optics_group: int
    name: str
    pixel_size_a: float
    voltage_kv: float
    cs_mm: float
    amplitude_contrast: float
    image_size_px: int | None = None
    image_dimensionality: int | None = None
    micrograph_pixel_size_a: float | None = None
    micrograph_original_pixel_size_a: float | None = None
    beam_tilt_x_mrad: float | None = None
    beam_tilt_y_mrad: float | None = None
    odd_zernike: tuple[float, ...] | None = None
    even_zernike: tuple[float, ...] | None = None
    mag_matrix: tuple[tuple[float, float], tuple[float, float]] | None = None
    ctf_premultiplied: bool | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)


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

    def __init__(
        self,
        frame: pd.DataFrame,
        optics: Sequence[OpticsGroup],
        *,
        source: str | os.PathLike[str] | None = None,
    ) -> None:
        super().__init__(frame, optics, source=source)
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
    """Write ``data_optics`` + ``data_particles`` (RELION 3.1+ layout), atomically."""
    _write_table(Path(path), optics, table, "particles")


def write_micrographs(
    path: str | os.PathLike[str], optics: Sequence[OpticsGroup], table: MicrographTable
) -> None:
    """Write ``data_optics`` + ``data_micrographs`` (RELION 3.1+ layout), atomically."""
    _write_table(Path(path), optics, table, "micrographs")


# ---------------------------------------------------------------------------- reading


def _read_table(
    file: Path, kind: _Kind, amplitude_contrast_if_missing: float | None = None
) -> tuple[list[OpticsGroup], pd.DataFrame]:
    blocks = read_star(file)
    block_name = "micrographs" if kind == "micrographs" else "particles"
    table = blocks.get(block_name)
    optics_block = blocks.get("optics")
    if isinstance(table, pd.DataFrame) and isinstance(optics_block, pd.DataFrame):
        try:
            optics = [_optics_from_row(file, row, kind) for row in _rows(optics_block)]
        except (ValueError, TypeError) as error:  # e.g. a NaN or text where a number belongs
            raise InvalidValuesError(file, f"data_optics: {error}") from error
        return optics, _origins_to_angstrom(file, table, optics)
    if kind == "tomo" and isinstance(table, pd.DataFrame):
        return [], table
    key = "rlnMicrographName" if kind == "micrographs" else "rlnImageName"
    loops = [b for b in blocks.values() if isinstance(b, pd.DataFrame) and key in b.columns]
    if not loops:
        raise MissingColumnError(file, f"no data_{block_name} block and no table with {key}")
    frame = loops[0]
    if "rlnAmplitudeContrast" not in frame.columns and amplitude_contrast_if_missing is not None:
        frame = frame.assign(rlnAmplitudeContrast=float(amplitude_contrast_if_missing))
    return _from_legacy(file, frame, kind)


def _rows(frame: pd.DataFrame) -> list[dict[str, Any]]:
    return [{str(k): v for k, v in row.items()} for row in frame.to_dict(orient="records")]


def _zernike(file: Path, column: str, value: Any) -> tuple[float, ...]:
    text = str(value).strip()
    try:
        if not (text.startswith("[") and text.endswith("]")):
            raise ValueError(text)
        inner = text[1:-1].strip()
        return tuple(float(item) for item in inner.split(",")) if inner else ()
    except ValueError as error:
        raise FileFormatError(file, f"{column}: {text!r} is not a list like [a,b,c]") from error


def _optics_from_row(file: Path, row: dict[str, Any], kind: _Kind) -> OpticsGroup:
    candidates: tuple[str, ...]
    if kind == "micrographs":
        candidates = ("rlnMicrographPixelSize", "rlnMicrographOriginalPixelSize")
    elif kind == "tomo":
        candidates = ("rlnImagePixelSize", "rlnTomoTiltSeriesPixelSize")
    else:
        candidates = ("rlnImagePixelSize",)
    pixel_column = next((c for c in candidates if c in row), None)
    missing = [c for c in ("rlnOpticsGroup", *_LEGACY_OPTICS) if c not in row]
    if pixel_column is None or missing:
        missing += [] if pixel_column is not None else [" or ".join(candidates)]
        raise MissingColumnError(file, f"data_optics lacks required column(s) {missing}")

    def number(column: str) -> float | None:
        return float(row[column]) if column in row else None

    def integer(column: str) -> int | None:
        return int(row[column]) if column in row else None

    mag = None
    if all(c in row for c in _MAG):
        m00, m01, m10, m11 = (float(row[c]) for c in _MAG)
        mag = ((m00, m01), (m10, m11))
    group = int(row["rlnOpticsGroup"])
    return OpticsGroup(
        optics_group=group,
        name=str(row.get("rlnOpticsGroupName", f"opticsGroup{group}")),
        pixel_size_a=float(row[pixel_column]),
        voltage_kv=float(row["rlnVoltage"]),
        cs_mm=float(row["rlnSphericalAberration"]),
        amplitude_contrast=float(row["rlnAmplitudeContrast"]),
        image_size_px=integer("rlnImageSize"),
        image_dimensionality=integer("rlnImageDimensionality"),
        micrograph_pixel_size_a=number("rlnMicrographPixelSize"),
        micrograph_original_pixel_size_a=number("rlnMicrographOriginalPixelSize"),
        beam_tilt_x_mrad=number("rlnBeamTiltX"),
        beam_tilt_y_mrad=number("rlnBeamTiltY"),
        odd_zernike=_zernike(file, "rlnOddZernike", row["rlnOddZernike"])
        if "rlnOddZernike" in row
        else None,
        even_zernike=_zernike(file, "rlnEvenZernike", row["rlnEvenZernike"])
        if "rlnEvenZernike" in row
        else None,
        mag_matrix=mag,
        ctf_premultiplied=bool(int(row["rlnCtfDataAreCtfPremultiplied"]))
        if "rlnCtfDataAreCtfPremultiplied" in row
        else None,
        extra={k: v for k, v in row.items() if k not in _OPTICS_KNOWN},
    )


def _legacy_pixel_size_a(file: Path, frame: pd.DataFrame) -> np.ndarray:  # (n,)
    if "rlnPixelSize" in frame.columns:
        return np.asarray(pd.to_numeric(frame["rlnPixelSize"]), dtype=np.float64)
    if {"rlnDetectorPixelSize", "rlnMagnification"} <= set(frame.columns):
        detector_um = pd.to_numeric(frame["rlnDetectorPixelSize"]).to_numpy(dtype=np.float64)
        magnification = pd.to_numeric(frame["rlnMagnification"]).to_numpy(dtype=np.float64)
        pixel_a: np.ndarray = detector_um * 1e4 / magnification
        return pixel_a
    raise MissingColumnError(
        file, "RELION 3.0 table without a pixel size (rlnPixelSize or rlnDetectorPixelSize + "
        "rlnMagnification)"
    )  # fmt: skip


def _from_legacy(
    file: Path, frame: pd.DataFrame, kind: _Kind
) -> tuple[list[OpticsGroup], pd.DataFrame]:
    missing = [c for c in _LEGACY_OPTICS if c not in frame.columns]
    if missing:
        raise MissingColumnError(file, f"RELION 3.0 table lacks required column(s) {missing}")
    pixel_a = _legacy_pixel_size_a(file, frame)
    keys = np.stack([pd.to_numeric(frame[c]).to_numpy(np.float64) for c in _LEGACY_OPTICS], -1)
    combos = np.concatenate([keys, pixel_a[:, None]], axis=-1)  # (n, 4)
    ids: dict[tuple[float, ...], int] = {}
    group_of_row = np.array([ids.setdefault(tuple(r), len(ids) + 1) for r in combos.tolist()])
    optics = [
        OpticsGroup(
            optics_group=group,
            name=f"opticsGroup{group}",
            pixel_size_a=pixel,
            voltage_kv=voltage,
            cs_mm=cs,
            amplitude_contrast=contrast,
            micrograph_pixel_size_a=pixel if kind == "micrographs" else None,
        )
        for (voltage, cs, contrast, pixel), group in ids.items()
    ]
    converted = frame.drop(columns=[c for c in (*_LEGACY_OPTICS, *_LEGACY_PIXEL) if c in frame])
    converted["rlnOpticsGroup"] = group_of_row.astype(np.int64)
    return optics, _origins_to_angstrom(file, converted, optics, pixel_a)


def _origins_to_angstrom(
    file: Path,
    frame: pd.DataFrame,
    optics: Sequence[OpticsGroup],
    pixel_a: np.ndarray | None = None,  # (n,)
) -> pd.DataFrame:
    legacy = [a for a in "XYZ" if f"rlnOrigin{a}" in frame.columns]
    if not legacy:
        return frame
    if pixel_a is None:
        by_id = {g.optics_group: g.pixel_size_a for g in optics}
        ids = pd.to_numeric(frame["rlnOpticsGroup"]).to_numpy(np.int64)
        if not set(ids.tolist()) <= set(by_id):
            raise MissingColumnError(file, "rlnOpticsGroup names a group absent from data_optics")
        pixel_a = np.array([by_id[int(i)] for i in ids], dtype=np.float64)
    converted = frame.copy()
    for axis in legacy:
        origin_px = pd.to_numeric(converted.pop(f"rlnOrigin{axis}")).to_numpy(np.float64)
        if f"rlnOrigin{axis}Angst" not in converted.columns:
            converted[f"rlnOrigin{axis}Angst"] = origin_px * pixel_a
    return converted


# ---------------------------------------------------------------------------- writing


def _zernike_text(values: tuple[float, ...] | None) -> str:
    return "[" + ",".join(f"{v:.12g}" for v in (values or ())) + "]"


def _optics_frame(optics: Sequence[OpticsGroup], kind: _Kind) -> pd.DataFrame:
    pixel_column = "rlnMicrographPixelSize" if kind == "micrographs" else "rlnImagePixelSize"

    def present(attribute: str) -> bool:
        return any(getattr(g, attribute) is not None for g in optics)

    records: list[dict[str, Any]] = []
    for g in optics:
        record: dict[str, Any] = {
            "rlnOpticsGroup": g.optics_group,
            "rlnOpticsGroupName": g.name,
            pixel_column: g.pixel_size_a,
            "rlnVoltage": g.voltage_kv,
            "rlnSphericalAberration": g.cs_mm,
            "rlnAmplitudeContrast": g.amplitude_contrast,
        }
        if present("image_size_px"):
            record["rlnImageSize"] = g.image_size_px or 0
        if present("image_dimensionality"):
            record["rlnImageDimensionality"] = g.image_dimensionality or 2
        if kind != "micrographs" and present("micrograph_pixel_size_a"):
            record["rlnMicrographPixelSize"] = g.micrograph_pixel_size_a or g.pixel_size_a
        if present("micrograph_original_pixel_size_a"):
            original = g.micrograph_original_pixel_size_a
            record["rlnMicrographOriginalPixelSize"] = original or g.pixel_size_a
        if present("ctf_premultiplied"):
            record["rlnCtfDataAreCtfPremultiplied"] = int(bool(g.ctf_premultiplied))
        if present("beam_tilt_x_mrad") or present("beam_tilt_y_mrad"):
            record["rlnBeamTiltX"] = float(g.beam_tilt_x_mrad or 0.0)
            record["rlnBeamTiltY"] = float(g.beam_tilt_y_mrad or 0.0)
        if present("odd_zernike"):
            record["rlnOddZernike"] = _zernike_text(g.odd_zernike)
        if present("even_zernike"):
            record["rlnEvenZernike"] = _zernike_text(g.even_zernike)
        if present("mag_matrix"):
            (m00, m01), (m10, m11) = g.mag_matrix or ((1.0, 0.0), (0.0, 1.0))
            record.update(zip(_MAG, (m00, m01, m10, m11), strict=True))
        record.update(g.extra)
        records.append(record)
    return pd.DataFrame.from_records(records)


def _write_table(
    file: Path, optics: Sequence[OpticsGroup], table: _RelionTable, kind: _Kind
) -> None:
    frame = table.frame
    if "rlnOpticsGroup" in frame.columns:
        known = {g.optics_group for g in optics}
        unknown = sorted(set(pd.to_numeric(frame["rlnOpticsGroup"]).astype(int)) - known)
        if unknown:
            raise MissingColumnError(file, f"no optics group given for rlnOpticsGroup {unknown}")
    blocks: dict[str, StarBlock] = {}
    if optics:
        blocks["optics"] = _optics_frame(optics, kind)
    blocks["micrographs" if kind == "micrographs" else "particles"] = frame
    write_star(file, blocks)
