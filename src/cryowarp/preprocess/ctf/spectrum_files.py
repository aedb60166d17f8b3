"""The spectra behind a CTF fit as small files for viewers (the dashboard's item view).

Two files per fit, written atomically:

- ``<name>_ctf_spectrum.json``: the 1-D curves of :class:`~.result.CtfDiagnostics`
  (``frequencies_per_a`` in Å⁻¹, the background-subtracted rotational average ``spectrum``,
  the fitted ``simulated`` ``|CTF|·envelope``, their sliding-window ``correlation``), the fit
  range (Å⁻¹) and the resolution estimate (Å);
- ``<name>_ctf_spectrum.png``: the 2-D spectrum of :func:`~.plot.split_spectrum_image` as an
  8-bit grey image, DC at the centre, +y up: measured spectrum in the left half, fitted model in
  the right half.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from cryowarp.errors import CorruptFileError, InvalidValuesError
from cryowarp.io.files import atomic_output, require_file, write_text_atomically
from cryowarp.preprocess.ctf.plot import split_spectrum_image
from cryowarp.preprocess.ctf.result import CtfResult

__all__ = ["SPECTRUM_FORMAT", "read_spectrum_curves", "write_spectrum_files"]

SPECTRUM_FORMAT = "cryowarp-ctf-spectrum"
_CURVES = ("frequencies_per_a", "spectrum", "simulated", "correlation")


def write_spectrum_files(
    result: CtfResult, *, json_path: str | os.PathLike[str], png_path: str | os.PathLike[str]
) -> None:
    """Write the 1-D curves (JSON) and the split 2-D spectrum (PNG) of a successful fit.

    Raises
    ------
    InvalidValuesError
        The fit failed or carries no diagnostics.
    """
    diag = result.diagnostics
    if result.failed or diag is None:
        raise InvalidValuesError(None, "no spectra to write: the CTF fit failed or kept none")
    curves = {
        "frequencies_per_a": diag.frequencies_per_a,
        "spectrum": diag.spectrum_1d,
        "simulated": diag.simulated_1d,
        "correlation": diag.correlation_1d,
    }
    document: dict[str, Any] = {"format": SPECTRUM_FORMAT, "format_version": 1}
    for key, curve in curves.items():
        values = curve.detach().double().cpu().numpy()
        document[key] = [round(float(v), 6) if math.isfinite(v) else None for v in values]
    document["fit_range_per_a"] = [float(v) for v in diag.fit_range_per_a]
    document["resolution_a"] = result.resolution_a if math.isfinite(result.resolution_a) else None
    write_text_atomically(json_path, json.dumps(document) + "\n")

    image = split_spectrum_image(
        diag.spectrum_2d.detach().cpu(),
        diag.simulated_2d.detach().cpu(),
        pixel_size_a=result.pixel_size_a,
        fit_range_per_a=diag.fit_range_per_a,
    ).numpy()  # (s, s), values in ±2.5
    pixels = np.clip((image[::-1] + 2.5) / 5.0 * 255.0 + 0.5, 0, 255).astype(np.uint8)
    with atomic_output(png_path) as tmp:
        Image.fromarray(np.ascontiguousarray(pixels)).save(tmp, format="PNG")


def read_spectrum_curves(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The document :func:`write_spectrum_files` wrote (curves as lists, NaN as ``None``).

    Raises
    ------
    MissingFileError
        No such file.
    CorruptFileError
        Not such a document, or curves of different lengths.
    """
    file = require_file(path)
    try:
        document = json.loads(Path(file).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise CorruptFileError(file, f"not a CTF spectrum file ({error})") from error
    if not isinstance(document, dict) or document.get("format") != SPECTRUM_FORMAT:
        raise CorruptFileError(file, f"not a CTF spectrum file (format is not {SPECTRUM_FORMAT})")
    lengths = {len(document.get(k) or []) for k in _CURVES}
    if len(lengths) != 1 or not all(isinstance(document.get(k), list) for k in _CURVES):
        raise CorruptFileError(file, f"the curves {', '.join(_CURVES)} must be lists of one length")
    return document
