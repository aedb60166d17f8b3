"""Refinement: reconstructions from particles with known poses, and (later) the refinement of
poses, CTF and motion against them (M).

Algorithms here build on :mod:`cryowarp.core` and :mod:`cryowarp.io` only (the layering
enforced by ``tests/test_layering.py``). :mod:`cryowarp.refine.reconstruction` reconstructs
half-maps and a full map from a RELION particle STAR file (``cryowarp reconstruct``,
docs/reconstruction.md).
"""
