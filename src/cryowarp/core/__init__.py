"""Foundation layer: tensor math (CTF, Fourier utilities, grids, interpolation, projection,
rotations, symmetry, FSC, masks).  Imports nothing from cryowarp except :mod:`cryowarp.errors`.

Every routine takes and returns :class:`torch.Tensor`, is batched over leading dimensions and
runs on the device of its input.  Conventions: ``docs/conventions.md``.
"""
