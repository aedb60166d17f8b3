"""Import particle coordinates from other programs as :class:`ParticleSet`s in Å.

:func:`read_coordinates` reads RELION particle and coordinate STAR files, Warp 1.x STAR
files, cryoSPARC ``.cs`` files and EMAN/crYOLO ``.box`` files, converts the positions to Å
from the centre of pixel (0, 0) of the micrograph with the pixel size of the micrograph the
coordinates refer to, and groups them by micrograph. docs/particle_import.md describes every
format, its pixel size and its y origin; the micrograph name is the movie's stem
(:func:`micrograph_key`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal, TypeAlias

import pandas as pd

from cryowarp.errors import CryowarpInputError, FileFormatError
from cryowarp.io.eman_box import read_box
from cryowarp.io.files import require_file
from cryowarp.io.star import read_star
from cryowarp.preprocess.export._coordinates_cryosparc import (
    cs_pose_to_euler,
    euler_to_cs_pose,
    read_cryosparc_coordinates,
)
from cryowarp.preprocess.export._coordinates_names import group_by_micrograph, micrograph_key
from cryowarp.preprocess.export._coordinates_relion import (
    empty_set,
    is_warp_star,
    read_relion_coordinates,
    read_warp_coordinates,
)
from cryowarp.preprocess.export.particle_set import ParticleSet

__all__ = [
    "CoordinateKind",
    "cs_pose_to_euler",
    "euler_to_cs_pose",
    "guess_coordinate_kind",
    "micrograph_key",
    "read_coordinates",
]

CoordinateKind: TypeAlias = Literal["auto", "relion", "cryosparc", "box", "warp"]
"""File kinds :func:`read_coordinates` understands (``"auto"``: from the file)."""


def read_coordinates(
    path: str | os.PathLike[str],
    *,
    pixel_size_a: float | None = None,
    micrograph: str | None = None,
    kind: CoordinateKind = "auto",
    cryosparc_flipped_micrographs: bool = False,
) -> list[ParticleSet]:
    """Particles of a coordinate file, one :class:`ParticleSet` per micrograph.

    Parameters
    ----------
    path:
        A RELION particle STAR file (3.0, 3.1+, 5), a RELION coordinate STAR file
        (``*_autopick.star``, ``*_manualpick.star``, crYOLO STAR), a Warp 1.x STAR file, a
        cryoSPARC ``.cs`` file or an EMAN/crYOLO ``.box`` file.
    pixel_size_a:
        Pixel size (Å) of the micrographs the coordinates refer to, used when the file does
        not give it: a particle STAR file's optics group without ``rlnMicrographPixelSize``
        (always the case for RELION 3.0, whose only pixel size is the particle images'), a
        coordinate STAR or ``.box`` file (never give one), a ``.cs`` file without
        ``location/micrograph_psize_A``, a Warp file without ``rlnPixelSize`` or
        ``rlnDetectorPixelSize`` + ``rlnMagnification``. A pixel size in the file wins.
    micrograph:
        Micrograph (item) name for single-micrograph files (coordinate STAR, ``.box``);
        default: :func:`micrograph_key` of the file name (``abc_autopick.star`` → ``abc``).
        Files that name their micrographs (particle STAR, Warp, ``.cs``) reject it.
    kind:
        ``"auto"`` decides by :func:`guess_coordinate_kind`.
    cryosparc_flipped_micrographs:
        ``.cs`` only: the particles were picked on cryoSPARC Patch Motion micrographs, which
        are upside down relative to cryowarp's averages (and MotionCor2's and RELION's);
        ``False`` (default) when cryoSPARC picked on the very micrograph files cryowarp
        reads (e.g. cryowarp or Warp averages imported into cryoSPARC).

    Returns
    -------
    list[ParticleSet]
        Sorted by micrograph name; rows in file order. Positions in Å from the centre of
        pixel (0, 0); poses (RELION Euler, degrees) and origins (Å) when the file has them;
        other per-particle columns (RELION labels; not coordinates, images, optics or CTF) in
        ``extra``. A single-micrograph file without particles gives one empty set.

    Raises
    ------
    MissingFileError, FileFormatError, MissingColumnError, InvalidValuesError
        The file is absent, of an unknown or wrong format, lacks the coordinates or a pixel
        size, or holds unusable values; every message names the file.
    ValueError
        ``pixel_size_a`` is not positive, or ``micrograph`` is given for a file that names
        its micrographs.
    """
    file = require_file(path)
    if pixel_size_a is not None and not pixel_size_a > 0:
        raise ValueError(f"pixel_size_a must be positive, got {pixel_size_a}")
    chosen = guess_coordinate_kind(file) if kind == "auto" else kind
    if chosen == "relion":
        return read_relion_coordinates(file, pixel_size_a=pixel_size_a, micrograph=micrograph)
    if chosen == "warp":
        return read_warp_coordinates(file, pixel_size_a=pixel_size_a, micrograph=micrograph)
    if chosen == "cryosparc":
        if micrograph is not None:
            raise ValueError(f"{file}: a .cs file names its micrographs; do not pass micrograph=")
        return read_cryosparc_coordinates(
            file, pixel_size_a=pixel_size_a, flipped_micrographs=cryosparc_flipped_micrographs
        )
    if chosen == "box":
        return _read_box_coordinates(file, pixel_size_a=pixel_size_a, micrograph=micrograph)
    raise ValueError(f"unknown coordinate file kind {kind!r}")


def guess_coordinate_kind(
    path: str | os.PathLike[str],
) -> Literal["relion", "cryosparc", "box", "warp"]:
    """The kind of a coordinate file from its extension (``.cs``, ``.box``, ``.star``); a STAR
    file is ``"warp"`` when it has no ``data_optics`` and its ``rlnMicrographName`` points
    into Warp's ``average/`` folder, else ``"relion"``.

    Raises
    ------
    FileFormatError
        Any other extension.
    """
    file = Path(path)
    suffix = file.suffix.lower()
    if suffix == ".cs":
        return "cryosparc"
    if suffix == ".box":
        return "box"
    if suffix == ".star":
        return "warp" if is_warp_star(read_star(file)) else "relion"
    raise FileFormatError(
        file,
        f"cannot tell the coordinate format from the extension {suffix!r}",
        "use .star, .cs or .box, or pass kind=",
    )


def _read_box_coordinates(
    file: Path, *, pixel_size_a: float | None, micrograph: str | None
) -> list[ParticleSet]:
    if pixel_size_a is None:
        raise CryowarpInputError(
            file,
            ".box files carry no pixel size",
            "pass pixel_size_a, the pixel size (Å) of the micrograph the boxes refer to",
        )
    boxes = read_box(file)
    name = micrograph or micrograph_key(file.name)
    if len(boxes) == 0:
        return [empty_set(name, file)]
    extra = None
    if boxes.scores is not None:
        extra = pd.DataFrame({"rlnAutopickFigureOfMerit": boxes.scores})
    return group_by_micrograph(
        [name] * len(boxes), boxes.centres_px * pixel_size_a, extra=extra, source=str(file)
    )
