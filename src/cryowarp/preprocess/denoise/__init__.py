"""Images for looking at: CTF deconvolution and a Noise2Noise denoiser (docs/denoising.md).

Modules: ``n2n_network`` (the U-Net and its sizes), ``n2n_model_file`` (named model files,
the shipped default model), ``n2n_inference`` (normalisation and tiled denoising of a
micrograph of any size), ``n2n_training`` (Noise2Noise training on odd/even frame averages),
plus the deconvolution filter and the collection of training pairs from processed items.
Denoised images are for display only, never for averaging or refinement.
"""
