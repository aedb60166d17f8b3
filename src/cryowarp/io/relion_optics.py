"""RELION optics groups: the ``data_optics`` block as typed :class:`OpticsGroup` records.

:func:`optics_from_block` turns a ``data_optics`` table into records, choosing the pixel-size
column by the kind of table it belongs to (particles: ``rlnImagePixelSize``; micrographs:
``rlnMicrographPixelSize``, else ``rlnMicrographOriginalPixelSize``; tomography:
``rlnImagePixelSize``, else ``rlnTomoTiltSeriesPixelSize``). :func:`optics_to_block` writes
them back in RELION 3.1+ column names, keeping columns cryowarp does not interpret
(``OpticsGroup.extra``). Tables and files are handled by :mod:`cryowarp.io.relion`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeAlias

import pandas as pd

from cryowarp.errors import FileFormatError, InvalidValuesError, MissingColumnError

__all__ = [
    "OPTICS_COLUMNS",
    "OpticsGroup",
    "TableKind",
    "optics_from_block",
    "optics_to_block",
]

TableKind: TypeAlias = Literal["particles", "micrographs", "tomo"]
"""The kind of RELION table an optics block belongs to (decides the pixel-size column)."""

OPTICS_COLUMNS = ("rlnVoltage", "rlnSphericalAberration", "rlnAmplitudeContrast")
"""Optics columns required besides the group number and a pixel size (also per row in
RELION 3.0 tables)."""

_MAG = ("rlnMagMat00", "rlnMagMat01", "rlnMagMat10", "rlnMagMat11")
_OPTICS_KNOWN = frozenset(
    {
        "rlnOpticsGroup", "rlnOpticsGroupName", "rlnImagePixelSize", "rlnMicrographPixelSize",
        "rlnMicrographOriginalPixelSize", "rlnVoltage", "rlnSphericalAberration",
        "rlnAmplitudeContrast", "rlnImageSize", "rlnImageDimensionality", "rlnBeamTiltX",
        "rlnBeamTiltY", "rlnOddZernike", "rlnEvenZernike", "rlnCtfDataAreCtfPremultiplied", *_MAG,
    }
)  # fmt: skip


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


def optics_from_block(file: Path, block: pd.DataFrame, kind: TableKind) -> list[OpticsGroup]:
    """The optics groups of a ``data_optics`` table read from ``file``.

    Raises
    ------
    MissingColumnError
        A required column is absent.
    InvalidValuesError
        A value cannot be converted (NaN or text where a number belongs).
    FileFormatError
        A Zernike list that is not written like ``[a,b,c]``.
    """
    try:
        return [_optics_from_row(file, row, kind) for row in _rows(block)]
    except (ValueError, TypeError) as error:  # e.g. a NaN or text where a number belongs
        raise InvalidValuesError(file, f"data_optics: {error}") from error


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


def _optics_from_row(file: Path, row: dict[str, Any], kind: TableKind) -> OpticsGroup:
    candidates: tuple[str, ...]
    if kind == "micrographs":
        candidates = ("rlnMicrographPixelSize", "rlnMicrographOriginalPixelSize")
    elif kind == "tomo":
        candidates = ("rlnImagePixelSize", "rlnTomoTiltSeriesPixelSize")
    else:
        candidates = ("rlnImagePixelSize",)
    pixel_column = next((c for c in candidates if c in row), None)
    missing = [c for c in ("rlnOpticsGroup", *OPTICS_COLUMNS) if c not in row]
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


def _zernike_text(values: tuple[float, ...] | None) -> str:
    return "[" + ",".join(f"{v:.12g}" for v in (values or ())) + "]"


def optics_to_block(optics: Sequence[OpticsGroup], kind: TableKind) -> pd.DataFrame:
    """A ``data_optics`` table for ``optics`` (RELION 3.1+ names; optional columns only when
    some group sets them)."""
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
