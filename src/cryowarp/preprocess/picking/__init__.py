"""Particle picking with BoxNet, Warp's residual U-Net that labels every pixel of a
micrograph as background, particle or artefact (docs/picking.md).

Modules: :mod:`.prepare` (downscaling to the picking pixel size and normalisation, shared by
training and inference), :mod:`.network` (the U-Net), :mod:`.model_file` (named models on
disk and the ones shipped in the package).
"""
