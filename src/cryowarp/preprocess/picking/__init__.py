"""Particle picking with BoxNet, Warp's residual U-Net that labels every pixel of a
micrograph as background, particle or artefact (docs/picking.md).

Modules: :mod:`.prepare` (8 Å/px and normalisation, shared by training and inference),
:mod:`.network` (the U-Net), :mod:`.model_file` (named models, shipped and retrained),
:mod:`.settings` and :mod:`.inference` (tiled prediction, picks, artefact mask),
:mod:`.outputs` (STAR/MRC/PNG files, re-thresholding), :mod:`.labels`, :mod:`.augment`,
:mod:`.training_data`, :mod:`.user_labels` (training examples), :mod:`.training` and
:mod:`.retraining`, and for comparison :mod:`.log_picker`, :mod:`.template_picker` and
:mod:`.metrics`.
"""
