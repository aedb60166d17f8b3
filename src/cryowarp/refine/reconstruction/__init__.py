"""Reconstruction of half-maps and a full map from posed particle images (``cryowarp
reconstruct``): CTF-weighted Fourier back-projection with symmetry, RELION-like Wiener
regularisation from the half-set FSC, and FSC reporting. See docs/reconstruction.md.
"""

from cryowarp.refine.reconstruction.half_maps import HalfMapAccumulator, reconstruct_half_maps
from cryowarp.refine.reconstruction.reconstruct import reconstruct_from_star
from cryowarp.refine.reconstruction.result import ReconstructionResult
from cryowarp.refine.reconstruction.settings import ReconstructionSettings
from cryowarp.refine.reconstruction.write import write_reconstruction

__all__ = [
    "HalfMapAccumulator",
    "ReconstructionResult",
    "ReconstructionSettings",
    "reconstruct_from_star",
    "reconstruct_half_maps",
    "write_reconstruction",
]
