"""Foundation layer: file formats (MRC, TIFF, EER, gain/defects, STAR, IMOD, mdoc, AreTomo,
Warp XML).  Imports nothing from cryowarp except :mod:`cryowarp.errors`.

Readers raise subclasses of :class:`cryowarp.errors.CryowarpInputError` naming the file and
the problem; they never let an opaque NumPy or library traceback reach the user. A missing path
or a folder given as a file raises :class:`cryowarp.errors.MissingFileError` in every reader
(``io/files.py``).
"""
