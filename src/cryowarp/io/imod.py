"""IMOD tilt-series alignment files: ``.xf`` transforms, ``.tlt``/``.rawtlt``/``.xtilt``
angle lists, and etomo's ``.edf`` project settings.

Formats (IMOD documentation, "xf file" and "tilt" man pages):

- ``.xf``: one line per view, six numbers ``A11 A12 A21 A22 DX DY``.  The view is mapped by
  ``x' = A11·x + A12·y + DX``, ``y' = A21·x + A22·y + DY`` with ``(x, y)`` measured from the
  centre of the image; ``DX, DY`` are in pixels of the stack the transform was computed for
  (the raw, unbinned stack for etomo's ``<name>.xf``).  A pure in-plane rotation by ``θ`` has
  ``A11 = A22 = cos θ`` and ``A21 = −A12 = sin θ``.
- ``.tlt`` (refined), ``.rawtlt`` (nominal), ``.xtilt`` (tilt about X): one angle per line,
  in degrees.
- ``.edf``: Java-properties style ``Key=value`` lines; ``#`` starts a comment.

Readers skip blank lines and raise :class:`~cryowarp.errors.FileFormatError` naming the file
and the line for anything else that does not parse.  Vector order is ``(x, y)``
(docs/conventions.md §1).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from cryowarp.errors import FileFormatError, InvalidValuesError
from cryowarp.io._text import numeric_table, read_lines

__all__ = [
    "XfTransforms",
    "read_edf",
    "read_tlt",
    "read_xf",
    "write_tlt",
    "write_xf",
]


@dataclass(frozen=True)
class XfTransforms:
    """The per-view 2D linear transforms of an IMOD ``.xf`` file.

    Attributes
    ----------
    matrices:
        ``(n_views, 2, 2)`` float64, ``[[A11, A12], [A21, A22]]`` per view.
    shifts_px:
        ``(n_views, 2)`` float64, ``(DX, DY)`` per view, in pixels of the stack the transform
        refers to.
    """

    matrices: npt.NDArray[np.float64]  # (n, 2, 2)
    shifts_px: npt.NDArray[np.float64]  # (n, 2)

    def __post_init__(self) -> None:
        n = self.matrices.shape[0] if self.matrices.ndim == 3 else -1
        if self.matrices.shape != (n, 2, 2) or self.shifts_px.shape != (n, 2):
            raise ValueError(
                "XfTransforms needs matrices (n, 2, 2) and shifts_px (n, 2), got "
                f"{self.matrices.shape} and {self.shifts_px.shape}"
            )

    @property
    def n_views(self) -> int:
        """Number of views (lines of the file)."""
        return int(self.matrices.shape[0])

    @property
    def rotation_deg(self) -> npt.NDArray[np.float64]:
        """``(n_views,)`` in-plane rotation ``atan2(A21, A11)`` in degrees (counter-clockwise
        from +x towards +y)."""
        return np.degrees(np.arctan2(self.matrices[:, 1, 0], self.matrices[:, 0, 0]))

    @property
    def magnification(self) -> npt.NDArray[np.float64]:
        """``(n_views,)`` isotropic scale ``sqrt(|det A|)``."""
        det: npt.NDArray[np.float64] = np.linalg.det(self.matrices)
        return np.sqrt(np.abs(det))


def read_xf(path: str | Path) -> XfTransforms:
    """Read an IMOD ``.xf`` file.

    Parameters
    ----------
    path:
        The ``.xf`` file (also ``.prexf``, ``.prexg``, ``_fid.xf``: same format).

    Returns
    -------
    XfTransforms
        Matrices ``(n, 2, 2)`` and shifts in pixels ``(n, 2)``, one per line.

    Raises
    ------
    FileFormatError
        Empty file, a line without six numbers, or a non-numeric value (the message names the
        line).
    InvalidValuesError
        NaN or Inf in the file.
    """
    table = numeric_table(path, 6, "an IMOD .xf transform (A11 A12 A21 A22 DX DY)")
    return XfTransforms(
        matrices=table[:, :4].reshape(-1, 2, 2).copy(), shifts_px=table[:, 4:].copy()
    )


def write_xf(path: str | Path, transforms: XfTransforms) -> None:
    """Write an IMOD ``.xf`` file: matrix elements with 7 decimals, shifts in pixels with 3,
    as IMOD writes them (every field separated by at least one space).

    Raises
    ------
    InvalidValuesError
        NaN or Inf in the transforms (nothing is written).
    """
    if not (np.all(np.isfinite(transforms.matrices)) and np.all(np.isfinite(transforms.shifts_px))):
        raise InvalidValuesError(path, "transforms contain NaN or Inf; nothing written")
    lines = []
    for matrix, shift in zip(transforms.matrices, transforms.shifts_px, strict=True):
        fields = [f"{v:11.7f}" for v in matrix.reshape(4)] + [f"{v:11.3f}" for v in shift]
        lines.append(" " + " ".join(fields) + "\n")
    Path(path).write_text("".join(lines), encoding="utf-8")


def read_tlt(path: str | Path) -> npt.NDArray[np.float64]:
    """Read an IMOD angle list (``.tlt``, ``.rawtlt``, ``.xtilt``): one angle per line.

    Returns
    -------
    numpy.ndarray
        ``(n_views,)`` float64 angles in degrees, in file (= stack) order.

    Raises
    ------
    FileFormatError
        Empty file, more than one value on a line, or a non-numeric value.
    InvalidValuesError
        NaN or Inf in the file.
    """
    return numeric_table(path, 1, "tilt angles (one angle in degrees per line)")[:, 0].copy()


def write_tlt(
    path: str | Path,
    tilt_angles_deg: npt.ArrayLike,  # (n,)
    *,
    decimals: int = 2,
) -> None:
    """Write an IMOD angle list, one angle in degrees per line, with ``decimals`` decimals
    (IMOD writes 2)."""
    angles = np.asarray(tilt_angles_deg, dtype=np.float64).reshape(-1)
    if not np.all(np.isfinite(angles)):
        raise InvalidValuesError(path, "tilt angles contain NaN or Inf; nothing written")
    text = "".join(f"{a:7.{decimals}f}\n" for a in angles)
    Path(path).write_text(text, encoding="utf-8")


def read_edf(path: str | Path) -> dict[str, str]:
    """Read an etomo ``.edf`` project file into ``{key: value}`` (values as written).

    Raises
    ------
    FileFormatError
        A non-comment line without ``=``, or a file with no settings at all.
    """
    path = Path(path)
    settings: dict[str, str] = {}
    for line_number, line in enumerate(read_lines(path), start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith(("#", "!")):
            continue
        key, sep, value = stripped.partition("=")
        if not sep or not key.strip():
            raise FileFormatError(
                path, f"line {line_number}: expected 'Key=value', found {stripped!r}"
            )
        settings[key.strip()] = value.strip()
    if not settings:
        raise FileFormatError(path, "empty file: no etomo settings found")
    return settings
