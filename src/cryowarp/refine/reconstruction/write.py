"""Write a reconstruction: MRC maps, RELION's ``fsc.star`` and a JSON summary.

Files (all written atomically through :mod:`cryowarp.io.files`):

- ``half1.mrc``, ``half2.mrc``, ``map.mrc``: the half-maps and the full map, voxel size in
  the header (Å);
- ``fsc.star``: ``data_general`` (``rlnFinalResolution``: masked when a mask was set, else
  unmasked; ``rlnUnfilteredMapHalf1/2``) and ``data_fsc`` in the form of RELION's
  postprocessing: ``rlnSpectralIndex``, ``rlnResolution`` (Å⁻¹), ``rlnAngstromResolution``
  (Å; 999 for the zero shell, as RELION writes), ``rlnFourierShellCorrelationUnmaskedMaps``
  and, with a mask, ``rlnFourierShellCorrelationMaskedMaps`` (no phase-randomisation
  correction is made, so no ``rlnFourierShellCorrelationCorrected``); with a reference,
  ``data_fsc_reference`` with ``rlnFourierShellCorrelation`` of the full map against it;
- ``reconstruction.json``: :meth:`ReconstructionResult.summary`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd

from cryowarp.io.files import write_text_atomically
from cryowarp.io.mrc import write_mrc
from cryowarp.io.star import StarBlock, write_star
from cryowarp.refine.reconstruction.result import ReconstructionResult

__all__ = ["MAP_NAMES", "write_reconstruction"]

MAP_NAMES = ("half1.mrc", "half2.mrc", "map.mrc")
"""File names of the half-maps and of the full map."""

_NO_RESOLUTION_A = 999.0  # RELION's rlnAngstromResolution of the zero-frequency shell


def write_reconstruction(
    result: ReconstructionResult, out_dir: str | os.PathLike[str]
) -> tuple[Path, ...]:
    """Write the maps, ``fsc.star`` and ``reconstruction.json`` into ``out_dir`` (created).

    Returns the paths written, maps first.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / name for name in MAP_NAMES]
    for path, volume in zip(paths, (result.half1, result.half2, result.full), strict=True):
        write_mrc(path, volume.detach().cpu().float().numpy(), voxel_size_a=result.pixel_size_a)
    fsc_path = out / "fsc.star"
    write_star(fsc_path, _fsc_blocks(result))
    json_path = out / "reconstruction.json"
    files = (*paths, fsc_path, json_path)
    summary = result.summary()
    summary["files"] = [str(f) for f in files]
    write_text_atomically(json_path, json.dumps(summary, indent=1) + "\n")
    return files


def _shell_columns(result: ReconstructionResult) -> dict[str, np.ndarray]:
    frequency = result.frequencies_per_a().numpy()
    angstrom = np.full_like(frequency, _NO_RESOLUTION_A)
    angstrom[1:] = 1.0 / frequency[1:]
    return {
        "rlnSpectralIndex": np.arange(len(frequency), dtype=np.int64),
        "rlnResolution": frequency,
        "rlnAngstromResolution": angstrom,
    }


def _fsc_blocks(result: ReconstructionResult) -> dict[str, StarBlock]:
    final = result.resolution_masked_a
    if final is None:
        final = result.resolution_a
    general: dict[str, object] = {
        "rlnFinalResolution": float(final),
        "rlnUnfilteredMapHalf1": MAP_NAMES[0],
        "rlnUnfilteredMapHalf2": MAP_NAMES[1],
    }
    table = _shell_columns(result)
    table["rlnFourierShellCorrelationUnmaskedMaps"] = result.fsc.detach().cpu().double().numpy()
    if result.fsc_masked is not None:
        table["rlnFourierShellCorrelationMaskedMaps"] = (
            result.fsc_masked.detach().cpu().double().numpy()
        )
    blocks: dict[str, StarBlock] = {"general": general, "fsc": pd.DataFrame(table)}
    if result.fsc_reference is not None:
        reference = _shell_columns(result)
        reference["rlnFourierShellCorrelation"] = (
            result.fsc_reference.detach().cpu().double().numpy()
        )
        blocks["fsc_reference"] = pd.DataFrame(reference)
    return blocks
