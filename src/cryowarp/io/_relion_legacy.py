"""Conversion of RELION 3.0 tables (optics per row, origins in pixels) to the 3.1+ layout.

Optics groups are built from the distinct (voltage, Cs, amplitude contrast, pixel size)
combinations, numbered from 1 in order of first appearance; pixel origins ``rlnOriginX/Y/Z``
become ``rlnOriginX/Y/ZAngst`` (docs/conventions.md §4).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from cryowarp.errors import MissingColumnError
from cryowarp.io.relion_optics import OPTICS_COLUMNS, OpticsGroup, TableKind

__all__ = ["from_legacy", "origins_to_angstrom"]

_LEGACY_PIXEL = ("rlnPixelSize", "rlnDetectorPixelSize", "rlnMagnification")


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


def from_legacy(
    file: Path, frame: pd.DataFrame, kind: TableKind
) -> tuple[list[OpticsGroup], pd.DataFrame]:
    """Optics groups and the 3.1+ table of a RELION 3.0 table (module docstring)."""
    missing = [c for c in OPTICS_COLUMNS if c not in frame.columns]
    if missing:
        raise MissingColumnError(file, f"RELION 3.0 table lacks required column(s) {missing}")
    pixel_a = _legacy_pixel_size_a(file, frame)
    keys = np.stack([pd.to_numeric(frame[c]).to_numpy(np.float64) for c in OPTICS_COLUMNS], -1)
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
    converted = frame.drop(columns=[c for c in (*OPTICS_COLUMNS, *_LEGACY_PIXEL) if c in frame])
    converted["rlnOpticsGroup"] = group_of_row.astype(np.int64)
    return optics, origins_to_angstrom(file, converted, optics, pixel_a)


def origins_to_angstrom(
    file: Path,
    frame: pd.DataFrame,
    optics: Sequence[OpticsGroup],
    pixel_a: np.ndarray | None = None,  # (n,)
) -> pd.DataFrame:
    """Replace pixel origins ``rlnOriginX/Y/Z`` by ``rlnOriginX/Y/ZAngst`` (an existing Å
    column wins), using ``pixel_a`` per row or else each row's optics-group pixel size."""
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
