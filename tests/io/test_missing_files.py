"""Every public reader in cryowarp.io rejects a missing path and a folder the same way."""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import cryowarp.io
from cryowarp.errors import CryowarpInputError, MissingFileError
from cryowarp.io.aretomo import read_aln
from cryowarp.io.atomic_model import read_atomic_model, read_mmcif, read_pdb
from cryowarp.io.cryosparc import read_cs
from cryowarp.io.eer import EerReader
from cryowarp.io.eman_box import read_box
from cryowarp.io.gain import read_defect_mask, read_gain, read_serialem_defects
from cryowarp.io.imod import read_edf, read_tlt, read_xf
from cryowarp.io.mdoc import read_mdoc
from cryowarp.io.movie import open_movie
from cryowarp.io.mrc import MrcReader, read_mrc, read_mrc_header
from cryowarp.io.power_spectrum import read_power_spectrum
from cryowarp.io.relion import read_micrographs, read_particles, read_tomo_particles
from cryowarp.io.relion_motion import read_relion_motion
from cryowarp.io.star import read_star
from cryowarp.io.tiff import TiffReader, read_tiff
from cryowarp.io.warp_xml import read_warp_xml

# reader -> a file name it would normally be given (the suffix matters to some readers)
READERS: dict[str, tuple[Callable[[Path], Any], str]] = {
    "read_atomic_model": (read_atomic_model, "model.pdb"),
    "read_mmcif": (read_mmcif, "model.cif"),
    "read_pdb": (read_pdb, "model.pdb"),
    "read_mrc": (read_mrc, "map.mrc"),
    "read_mrc_header": (read_mrc_header, "map.mrc"),
    "MrcReader": (MrcReader, "movie.mrcs"),
    "read_tiff": (read_tiff, "movie.tif"),
    "TiffReader": (TiffReader, "movie.tiff"),
    "EerReader": (EerReader, "movie.eer"),
    "open_movie": (open_movie, "movie.tif"),
    "read_gain": (read_gain, "gain.gain"),
    "read_defect_mask": (read_defect_mask, "defects.mrc"),
    "read_serialem_defects": (read_serialem_defects, "defects.txt"),
    "read_xf": (read_xf, "ts.xf"),
    "read_tlt": (read_tlt, "ts.tlt"),
    "read_edf": (read_edf, "ts.edf"),
    "read_mdoc": (read_mdoc, "ts.mrc.mdoc"),
    "read_aln": (read_aln, "ts.aln"),
    "read_warp_xml": (read_warp_xml, "movie.xml"),
    "read_star": (read_star, "table.star"),
    "read_particles": (read_particles, "particles.star"),
    "read_tomo_particles": (read_tomo_particles, "particles.star"),
    "read_micrographs": (read_micrographs, "micrographs_ctf.star"),
    "read_relion_motion": (read_relion_motion, "movie_001.star"),
    "read_power_spectrum": (read_power_spectrum, "spectrum.mrc"),
    "read_cs": (read_cs, "particles.cs"),
    "read_box": (read_box, "micrograph.box"),
}


def _is_reader(name: str) -> bool:
    return name.startswith(("read_", "open_")) or name.endswith("Reader")


def test_every_public_reader_is_listed() -> None:
    found = set()
    for module_info in pkgutil.iter_modules(cryowarp.io.__path__):
        if module_info.name.startswith("_"):
            continue
        module = importlib.import_module(f"cryowarp.io.{module_info.name}")
        found |= {name for name in getattr(module, "__all__", ()) if _is_reader(name)}
    unlisted = sorted(found - set(READERS))
    assert not unlisted, (
        f"readers {unlisted}: check the path with cryowarp.io.files.require_file and add "
        "them to READERS in this file"
    )
    assert set(READERS) <= found


@pytest.mark.parametrize("name", sorted(READERS))
def test_missing_path(tmp_path: Path, name: str) -> None:
    reader, file_name = READERS[name]
    path = tmp_path / "absent" / file_name
    with pytest.raises(MissingFileError, match="file not found") as info:
        reader(path)
    assert isinstance(info.value, FileNotFoundError)
    assert isinstance(info.value, CryowarpInputError)
    assert info.value.path == path
    assert str(path) in str(info.value)


@pytest.mark.parametrize("name", sorted(READERS))
def test_folder_given_as_file(tmp_path: Path, name: str) -> None:
    reader, file_name = READERS[name]
    path = tmp_path / file_name
    path.mkdir()
    with pytest.raises(MissingFileError, match="is a folder") as info:
        reader(path)
    assert info.value.path == path
    assert str(path) in str(info.value)
