"""Micrograph names from paths, and grouping per-particle arrays into :class:`ParticleSet`s."""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import PurePosixPath

import numpy as np
import numpy.typing as npt
import pandas as pd
import torch

from cryowarp.preprocess.export.particle_set import ParticleSet

__all__ = ["FILE_SUFFIXES", "NAME_SUFFIXES", "group_by_micrograph", "micrograph_key"]

FILE_SUFFIXES = (
    ".mrc", ".mrcs", ".tif", ".tiff", ".eer", ".st", ".bz2", ".gz", ".star", ".box", ".cs", ".txt",
    ".json", ".png", ".xml",
)  # fmt: skip
"""File extensions removed (repeatedly, case-insensitively) from the end of a name."""

NAME_SUFFIXES = (
    "_patch_aligned_doseweighted",
    "_rigid_aligned_doseweighted",
    "_patch_aligned",
    "_rigid_aligned",
    "_doseweighted",
    "_autopick",
    "_manualpick",
    "_picks",
    "_noDW",
    "_DW",
)
"""Suffixes that motion correction (MotionCor2 ``_DW``/``_noDW``, cryoSPARC ``_patch_aligned``
…) or picking (RELION ``_autopick``/``_manualpick``, cryowarp ``_picks``) add to a movie's
stem; one is removed, after the extensions."""

_CRYOSPARC_UID = re.compile(r"^\d{10,}_")


def micrograph_key(path: str, *, cryosparc: bool = False) -> str:
    """The item name (movie file stem) a micrograph or coordinate path refers to.

    ``"MotionCorr/job002/Movies/abc_DW.mrc"`` → ``"abc"``; ``"average/abc.mrc"`` → ``"abc"``;
    ``"Picks/abc_autopick.star"`` → ``"abc"``. With ``cryosparc=True`` the numeric uid that
    cryoSPARC puts before file names (``"J3/motioncorrected/0123456789012_abc_patch_aligned_
    doseweighted.mrc"`` → ``"abc"``) is removed too. See :data:`FILE_SUFFIXES` and
    :data:`NAME_SUFFIXES` for what is stripped.
    """
    name = PurePosixPath(path.strip().replace("\\", "/")).name
    while True:
        lower = name.lower()
        suffix = next((s for s in FILE_SUFFIXES if lower.endswith(s) and len(name) > len(s)), None)
        if suffix is None:
            break
        name = name[: -len(suffix)]
    suffix = next((s for s in NAME_SUFFIXES if name.endswith(s) and len(name) > len(s)), None)
    if suffix is not None:
        name = name[: -len(suffix)]
    if cryosparc:
        name = _CRYOSPARC_UID.sub("", name, count=1) or name
    return name


def group_by_micrograph(
    micrographs: Sequence[str],
    positions_a: npt.NDArray[np.float64],  # (n, 2)
    *,
    euler_deg: npt.NDArray[np.float64] | None = None,  # (n, 3)
    origins_a: npt.NDArray[np.float64] | None = None,  # (n, 2)
    extra: pd.DataFrame | None = None,  # n rows
    source: str | None = None,
) -> list[ParticleSet]:
    """One :class:`ParticleSet` per distinct micrograph name, sorted by name, rows in input
    order."""
    names = np.asarray(list(micrographs), dtype=object)
    sets = []
    for name in sorted(set(names.tolist())):
        rows = np.flatnonzero(names == name)
        sets.append(
            ParticleSet(
                micrograph=str(name),
                positions_a=_tensor(positions_a[rows]),
                euler_deg=None if euler_deg is None else _tensor(euler_deg[rows]),
                origins_a=None if origins_a is None else _tensor(origins_a[rows]),
                extra=None if extra is None else extra.iloc[rows].reset_index(drop=True),
                source=source,
            )
        )
    return sets


def _tensor(values: npt.NDArray[np.float64]) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(values, dtype=np.float64))
