"""A user's micrographs, picks and painted regions as BoxNet training examples.

:func:`read_user_examples` reads micrographs (MRC), coordinate files (every format of
:func:`~cryowarp.preprocess.export.coordinates.read_coordinates`: RELION/Warp STAR, cryoSPARC
``.cs``, EMAN ``.box``) and optional painted masks (MRC or PNG, nonzero = painted:
:func:`~cryowarp.preprocess.picking.labels.read_painted_mask`) and turns each micrograph with
picks into a :class:`~cryowarp.preprocess.picking.labels.LabelledMicrograph`
(:func:`~cryowarp.preprocess.picking.labels.labelled_from_micrograph`).

Files are matched to micrographs by name: the micrograph's key is
:func:`~cryowarp.preprocess.export.coordinates.micrograph_key` of its path (the movie stem:
``abc_DW.mrc`` → ``abc``); coordinates carry micrograph names (or are named after the
micrograph: ``abc_autopick.star``); a painted mask belongs to the micrograph whose key its
file stem equals or starts with, followed by ``_``, ``-`` or ``.`` (``abc_ignore.png``).
A micrograph without picks is not used (all its particles would be taught as background).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from cryowarp.errors import CryowarpInputError, FileFormatError, InvalidValuesError
from cryowarp.io.mrc import read_mrc
from cryowarp.preprocess.export.coordinates import micrograph_key, read_coordinates
from cryowarp.preprocess.picking.labels import (
    LabelledMicrograph,
    labelled_from_micrograph,
    read_painted_mask,
)

__all__ = ["UserExamples", "read_user_examples"]


@dataclass(frozen=True)
class UserExamples:
    """What :func:`read_user_examples` made.

    Attributes
    ----------
    examples:
        One labelled micrograph per micrograph with picks, in the order given.
    skipped:
        Micrographs without any pick (not used).
    """

    examples: list[LabelledMicrograph]
    skipped: list[Path]

    @property
    def n_particles(self) -> int:
        return int(sum(e.positions_px.shape[0] for e in self.examples))


def _read_micrograph(path: Path, pixel_size_a: float | None) -> tuple[torch.Tensor, float]:
    data, header = read_mrc(path)
    image = np.asarray(data)
    if image.ndim == 3 and image.shape[0] == 1:
        image = image[0]
    if image.ndim != 2:
        raise FileFormatError(
            path, f"holds {image.shape[0]} sections; a micrograph is one image", "average it"
        )
    pixel = pixel_size_a if pixel_size_a is not None else header.pixel_size_a
    if pixel is None or not pixel > 0:
        raise InvalidValuesError(path, "the header gives no pixel size", "give --pixel-size")
    return torch.from_numpy(image.astype(np.float32)), float(pixel)


def _owner(stem_key: str, keys: Sequence[str]) -> str | None:
    """The longest micrograph key that ``stem_key`` equals or starts with (+ ``_ - .``)."""
    matches = [
        k for k in keys if stem_key == k or (stem_key.startswith(k) and stem_key[len(k)] in "_-.")
    ]
    return max(matches, key=len) if matches else None


def _masks(paths: Sequence[Path], keys: Sequence[str], what: str) -> dict[str, Path]:
    found: dict[str, Path] = {}
    for path in paths:
        owner = _owner(micrograph_key(str(path)), keys)
        if owner is None:
            raise CryowarpInputError(
                path,
                f"this painted {what} mask belongs to none of the micrographs given",
                "name it after its micrograph, e.g. <micrograph>_" + what + ".png",
            )
        if owner in found:
            raise CryowarpInputError(
                path, f"a second painted {what} mask for micrograph {owner} ({found[owner]})"
            )
        found[owner] = path
    return found


def _with_path(error: CryowarpInputError, path: Path) -> CryowarpInputError:
    if error.path is not None:
        return error
    return type(error)(path, error.problem, error.hint)


def read_user_examples(
    micrographs: Sequence[Path],
    coordinates: Sequence[Path],
    *,
    diameter_a: float,
    pixel_size_a: float | None = None,
    painted_artefacts: Sequence[Path] = (),
    painted_ignore: Sequence[Path] = (),
) -> UserExamples:
    """Labelled examples from user files (module docstring for the matching).

    Parameters
    ----------
    micrographs:
        Micrograph files (MRC, one image each).
    coordinates:
        Coordinate files; positions are read with the pixel size of the micrograph a file
        is named after, else ``pixel_size_a``, else the first micrograph's.
    diameter_a:
        Particle diameter in Å (sets the label disks).
    pixel_size_a:
        Pixel size of the micrographs in Å; default: each file's header.
    painted_artefacts, painted_ignore:
        Painted masks: regions that are artefacts, and regions the user did not pick in
        (excluded from training).

    Raises
    ------
    CryowarpInputError
        Any unusable file, a coordinate file or mask that matches no micrograph, or no
        micrograph with picks; the message names the file.
    """
    images: dict[str, tuple[Path, torch.Tensor, float]] = {}
    for path in micrographs:
        key = micrograph_key(str(path))
        if key in images:
            raise CryowarpInputError(
                path, f"has the same name ({key}) as {images[key][0]}; names must be unique"
            )
        image, pixel = _read_micrograph(Path(path), pixel_size_a)
        images[key] = (Path(path), image, pixel)
    if not images:
        raise ValueError("no micrograph given")
    keys = list(images)
    default_pixel = pixel_size_a or images[keys[0]][2]
    positions: dict[str, list[torch.Tensor]] = {}
    for path in coordinates:
        named = _owner(micrograph_key(str(path)), keys)
        pixel = images[named][2] if named is not None else default_pixel
        sets = read_coordinates(path, pixel_size_a=pixel)
        matched = [s for s in sets if s.micrograph in images]
        if not matched:
            names = sorted({s.micrograph for s in sets})
            raise CryowarpInputError(
                path,
                f"its particles belong to micrographs {names[:5]}"
                f"{' …' if len(names) > 5 else ''}, none of which is among the micrographs "
                f"given ({keys[:5]}{' …' if len(keys) > 5 else ''})",
                "coordinates are matched to micrographs by file stem",
            )
        for particle_set in matched:
            positions.setdefault(particle_set.micrograph, []).append(particle_set.positions_a)
    artefacts = _masks([Path(p) for p in painted_artefacts], keys, "artefacts")
    ignore = _masks([Path(p) for p in painted_ignore], keys, "ignore")
    examples, skipped = [], []
    for key, (path, image, pixel) in images.items():
        picks = torch.cat(positions[key]) if key in positions else torch.zeros(0, 2)
        if picks.shape[0] == 0:
            skipped.append(path)
            continue
        shape = (int(image.shape[0]), int(image.shape[1]))
        try:
            examples.append(
                labelled_from_micrograph(
                    image,
                    pixel_size_a=pixel,
                    positions_a=picks,
                    diameter_a=diameter_a,
                    painted_artefacts=(
                        read_painted_mask(artefacts[key], shape) if key in artefacts else None
                    ),
                    painted_ignore=read_painted_mask(ignore[key], shape) if key in ignore else None,
                    source=str(path),
                )
            )
        except CryowarpInputError as error:
            raise _with_path(error, path) from error
    if not examples:
        raise CryowarpInputError(
            None, f"none of the {len(images)} micrographs has picks in the coordinate files"
        )
    return UserExamples(examples=examples, skipped=skipped)
