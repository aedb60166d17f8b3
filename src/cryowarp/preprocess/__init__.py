"""Warp's pre-processing algorithms: motion correction, CTF estimation, picking, denoising.

Algorithms layer (docs/conventions.md; ../DESIGN.md): functions and small classes over typed
inputs; imports only :mod:`cryowarp.core` and :mod:`cryowarp.io`.
"""
