"""cryowarp: cryo-EM pre-processing (Warp) and multi-particle refinement (M) on PyTorch.

Importing the package has no side effects: it creates no folders, selects no device and
loads no data.  Conventions (axes, units, signs) are documented in ``docs/conventions.md``.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
