"""Gain references and detector defects.

Gain references are **multiplicative**: a gain-corrected frame is ``raw × gain`` (MotionCor2,
RELION and Warp use the same). A gain is read from MRC or TIFF (:func:`read_gain`; TIFF is
flipped along y like TIFF movies, see :mod:`cryowarp.io.tiff`), then oriented to the movie
(:func:`orient_gain`) in the order **transpose → rotate → flip**:

* ``rotation_quarter_turns`` = MotionCor2 ``-RotGain`` / RELION ``--gain_rot``: 0 none, 1, 2,
  3 = 90°, 180°, 270° counter-clockwise as displayed with y up (MRC display convention):
  the content at ``(x, y)`` moves to ``(−y, x)`` about the centre.
* ``flip`` = MotionCor2 ``-FlipGain`` / RELION ``--gain_flip`` after rotation: ``"y"`` (1,
  upside down: rows reversed) or ``"x"`` (2, left-right: columns reversed).

Gain pixels that are zero, negative, NaN or Inf become **defects** (:func:`prepare_gain`):
their gain is set to 1 and they are filled from good neighbours by :func:`correct_defects`.

Defect masks (``True`` = bad pixel, shape ``(h, w)``) come from a SerialEM defect list
(:func:`read_serialem_defects`), from an MRC/TIFF mask (:func:`read_defect_mask`) or from
hot-pixel detection on a frame sum (:func:`detect_hot_pixels`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import torch

from cryowarp.errors import DimensionMismatchError, FileFormatError, InvalidValuesError
from cryowarp.io.files import require_file
from cryowarp.io.mrc import read_mrc
from cryowarp.io.tiff import read_tiff

__all__ = [
    "check_gain_shape",
    "correct_defects",
    "detect_hot_pixels",
    "orient_gain",
    "prepare_gain",
    "read_defect_mask",
    "read_gain",
    "read_serialem_defects",
]

_TIFF_SUFFIXES = {".tif", ".tiff", ".gain"}
_MOTIONCOR_FLIPS: dict[int, Literal["none", "x", "y"]] = {0: "none", 1: "y", 2: "x"}


def _read_image(path: Path, *, flip_tiff_y: bool) -> npt.NDArray[Any]:
    if path.suffix.lower() in _TIFF_SUFFIXES:
        data, _ = read_tiff(path, flip_y=flip_tiff_y)
    else:
        data, _ = read_mrc(path)
    if data.ndim != 2:
        raise FileFormatError(path, f"expected a single 2-D image, got shape {data.shape}")
    return data


def read_gain(path: str | Path, *, flip_tiff_y: bool = True) -> npt.NDArray[np.float32]:
    """Read a gain reference (MRC, or TIFF including EER ``.gain``) as a float32 ``(h, w)``
    array, unoriented and unchecked."""
    return _read_image(Path(path), flip_tiff_y=flip_tiff_y).astype(np.float32)


def orient_gain(
    gain: npt.NDArray[Any],  # (h, w)
    *,
    transpose: bool = False,
    rotation_quarter_turns: int = 0,
    flip: Literal["none", "x", "y"] | int = "none",
) -> npt.NDArray[Any]:
    """Orient a gain reference: transpose, then rotate, then flip (module docstring).

    ``flip`` also accepts MotionCor2/RELION integers (0 none, 1 upside down = ``"y"``,
    2 left-right = ``"x"``).
    """
    if isinstance(flip, int):
        if flip not in _MOTIONCOR_FLIPS:
            raise ValueError(f"gain flip must be 0, 1 or 2, got {flip}")
        flip = _MOTIONCOR_FLIPS[flip]
    if rotation_quarter_turns not in (0, 1, 2, 3):
        raise ValueError(
            f"gain rotation must be 0, 1, 2 or 3 quarter turns, got {rotation_quarter_turns}"
        )
    out = gain.T if transpose else gain
    # np.rot90(k=1) turns rows into columns such that (x, y) -> (y, -x) in array indices
    # with y = row; with y drawn upward that is clockwise, so counter-clockwise is k = -1.
    out = np.rot90(out, k=-rotation_quarter_turns)
    if flip == "y":
        out = out[::-1, :]
    elif flip == "x":
        out = out[:, ::-1]
    elif flip != "none":
        raise ValueError(f"gain flip must be 'none', 'x' or 'y', got {flip!r}")
    return np.ascontiguousarray(out)


def check_gain_shape(
    gain_shape: tuple[int, ...],
    frame_shape: tuple[int, ...],
    *,
    gain_path: str | Path | None,
    movie_path: str | Path | None,
) -> None:
    """Raise :class:`~cryowarp.errors.DimensionMismatchError` naming both files and shapes
    (with a hint on the likely fix) if the oriented gain does not match the frames."""
    gain_shape, frame_shape = tuple(gain_shape), tuple(frame_shape)
    if gain_shape == frame_shape:
        return
    hint = None
    if gain_shape[::-1] == frame_shape:
        hint = "try --gain-transpose or a 90° gain rotation (--gain-rot 1 or 3)"
    elif all(g == 2 * f for g, f in zip(gain_shape, frame_shape, strict=False)):
        hint = "the gain is at twice the movie's resolution (super-resolution gain?)"
    elif all(2 * g == f for g, f in zip(gain_shape, frame_shape, strict=False)):
        hint = "the movie is at twice the gain's resolution (super-resolution movie?)"
    raise DimensionMismatchError(
        gain_path,
        f"gain reference of shape {gain_shape} (h, w) does not match the frames of "
        f"{movie_path}, shape {frame_shape}",
        hint,
    )


def prepare_gain(
    gain: npt.NDArray[Any],  # (h, w), already oriented
    *,
    frame_shape: tuple[int, int],
    gain_path: str | Path | None = None,
    movie_path: str | Path | None = None,
    max_defect_fraction: float = 0.05,
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.bool_]]:
    """Check an oriented gain against the movie and split off its unusable pixels.

    Returns
    -------
    gain, defects:
        float32 gain with unusable pixels (≤ 0, NaN, Inf) set to 1, and the ``(h, w)`` mask
        of those pixels.

    Raises
    ------
    DimensionMismatchError
        Shapes differ (see :func:`check_gain_shape`).
    InvalidValuesError
        More than ``max_defect_fraction`` of the gain is unusable.
    """
    check_gain_shape(gain.shape, frame_shape, gain_path=gain_path, movie_path=movie_path)
    values = np.asarray(gain, dtype=np.float32)
    defects = ~np.isfinite(values) | (values <= 0)
    fraction = float(defects.mean())
    if fraction > max_defect_fraction:
        raise InvalidValuesError(
            gain_path,
            f"{fraction:.1%} of the gain reference is zero, negative, NaN or Inf",
            "is this really a gain reference?",
        )
    return np.where(defects, np.float32(1), values).astype(np.float32), defects


def read_defect_mask(path: str | Path, *, flip_tiff_y: bool = True) -> npt.NDArray[np.bool_]:
    """Read a defect mask from an MRC or TIFF image: non-zero pixels are defects."""
    mask: npt.NDArray[np.bool_] = np.asarray(_read_image(Path(path), flip_tiff_y=flip_tiff_y)) != 0
    return mask


def read_serialem_defects(
    path: str | Path, *, shape: tuple[int, int] | None = None
) -> npt.NDArray[np.bool_]:
    """Read a SerialEM camera defect list (text) into a ``(h, w)`` mask.

    Understood lines (x = column, y = row index of the array, 0-based)::

        CameraSizeX 4096            CameraSizeY 4096
        BadColumns c1 c2 ...        BadRows r1 r2 ...
        BadPixels x1 y1 x2 y2 ...
        PartialBadColumn x width y_start y_end   (inclusive ends)
        PartialBadRow    y height x_start x_end

    ``shape`` is required when the file does not give ``CameraSizeX/Y``.
    """
    path = require_file(path)
    try:
        lines = path.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise FileFormatError(path, f"cannot be read as a text defect list ({exc})") from exc
    entries: list[tuple[int, str, list[int]]] = []
    size: dict[str, int] = {}
    ignored = {"k2type", "falcontype", "wasscaled", "rotationflip", "numavgsuperres"}
    for number, line in enumerate(lines, start=1):
        parts = line.split()
        if not parts or parts[0].startswith("#"):
            continue
        key = parts[0].lower()
        try:
            values = [int(v) for v in parts[1:]]
        except ValueError as exc:
            raise FileFormatError(path, f"line {number}: non-integer value in {line!r}") from exc
        if key in ("camerasizex", "cameraxsize") and values:
            size["x"] = values[0]
        elif key in ("camerasizey", "cameraysize") and values:
            size["y"] = values[0]
        elif key in ignored:
            continue
        else:
            entries.append((number, key, values))
    if shape is None:
        if set(size) != {"x", "y"}:
            raise FileFormatError(
                path, "defect list gives no CameraSizeX/CameraSizeY", "pass the frame shape"
            )
        shape = (size["y"], size["x"])
    mask = np.zeros(shape, dtype=bool)
    for number, key, values in entries:
        _apply_defect(mask, key, values, path=path, line=number)
    return mask


def _apply_defect(
    mask: npt.NDArray[np.bool_], key: str, values: list[int], *, path: Path, line: int
) -> None:
    h, w = mask.shape

    def bad(problem: str) -> FileFormatError:
        return FileFormatError(path, f"line {line}: {problem}")

    def check(index: int, limit: int, what: str) -> int:
        if not 0 <= index < limit:
            raise bad(f"{what} {index} outside the frame (size {limit})")
        return index

    if key == "badcolumns":
        for c in values:
            mask[:, check(c, w, "column")] = True
    elif key == "badrows":
        for r in values:
            mask[check(r, h, "row"), :] = True
    elif key == "badpixels":
        if len(values) % 2:
            raise bad("BadPixels needs x y pairs")
        for x, y in zip(values[0::2], values[1::2], strict=True):
            mask[check(y, h, "row"), check(x, w, "column")] = True
    elif key in ("partialbadcolumn", "partialbadcol"):
        if len(values) != 4:
            raise bad("PartialBadColumn needs x width y_start y_end")
        x, width, y0, y1 = values
        mask[
            check(y0, h, "row") : check(y1, h, "row") + 1,
            check(x, w, "column") : check(x + width - 1, w, "column") + 1,
        ] = True
    elif key == "partialbadrow":
        if len(values) != 4:
            raise bad("PartialBadRow needs y height x_start x_end")
        y, height, x0, x1 = values
        mask[
            check(y, h, "row") : check(y + height - 1, h, "row") + 1,
            check(x0, w, "column") : check(x1, w, "column") + 1,
        ] = True
    else:
        raise bad(f"unsupported defect entry {key!r}")


def detect_hot_pixels(
    frame_sum: npt.NDArray[Any] | torch.Tensor,  # (h, w)
    *,
    n_sigma: float = 8.0,
) -> npt.NDArray[np.bool_]:
    """Pixels of a frame sum brighter than ``median + n_sigma · σ``, with σ estimated
    robustly as 1.4826 × the median absolute deviation (σ ≥ √median for counting data)."""
    values = np.asarray(torch.as_tensor(frame_sum).detach().cpu(), dtype=np.float64)
    median = float(np.median(values))
    sigma = 1.4826 * float(np.median(np.abs(values - median)))
    sigma = max(sigma, float(np.sqrt(max(median, 0.0))), 1e-12)
    hot: npt.NDArray[np.bool_] = values > median + n_sigma * sigma
    return hot


def correct_defects(
    frames: torch.Tensor,  # (..., h, w)
    defects: torch.Tensor | npt.NDArray[np.bool_],  # (h, w) bool
    *,
    method: Literal["median", "mean"] = "median",
    max_radius_px: int = 8,
) -> torch.Tensor:
    """Replace defect pixels by the median (or mean) of the good pixels in the smallest
    square window (radius 1, 2, … ``max_radius_px``) that holds any. Returns a new tensor;
    the input is not modified. Runs on the device of ``frames``."""
    mask = torch.as_tensor(defects, device=frames.device).bool()
    if mask.shape != frames.shape[-2:]:
        raise ValueError(
            f"defect mask {tuple(mask.shape)} does not match frames {tuple(frames.shape[-2:])}"
        )
    out = frames.clone()
    todo = torch.nonzero(mask)  # (k, 2) rows, cols
    if todo.numel() == 0:
        return out
    h, w = mask.shape
    lead = frames.shape[:-2]
    flat = frames.reshape(-1, h, w)
    result = out.reshape(-1, h, w)
    for radius in range(1, max_radius_px + 1):
        if todo.numel() == 0:
            break
        offsets = torch.arange(-radius, radius + 1, device=frames.device)
        dy, dx = torch.meshgrid(offsets, offsets, indexing="ij")
        ys = todo[:, :1] + dy.reshape(1, -1)  # (k, window)
        xs = todo[:, 1:] + dx.reshape(1, -1)
        inside = (ys >= 0) & (ys < h) & (xs >= 0) & (xs < w)
        ys_c, xs_c = ys.clamp(0, h - 1), xs.clamp(0, w - 1)
        good = inside & ~mask[ys_c, xs_c]
        has_good = good.any(dim=1)
        if has_good.any():
            idx = has_good.nonzero().flatten()
            vals = flat[:, ys_c[idx], xs_c[idx]]  # (b, k', window)
            keep = good[idx].unsqueeze(0).expand_as(vals)
            masked = torch.where(keep, vals, torch.full_like(vals, float("nan")))
            if method == "median":  # mean of the two middle values for even counts
                ordered = torch.sort(masked, dim=-1).values  # NaN sort last
                n_good = good[idx].sum(dim=1).expand(ordered.shape[:-1]).unsqueeze(-1)
                low = torch.gather(ordered, -1, (n_good - 1) // 2)
                high = torch.gather(ordered, -1, n_good // 2)
                fill = (0.5 * (low + high)).squeeze(-1)
            elif method == "mean":
                fill = torch.nanmean(masked, dim=-1)
            else:
                raise ValueError(f"method must be 'median' or 'mean', got {method!r}")
            result[:, todo[idx, 0], todo[idx, 1]] = fill.to(result.dtype)
        todo = todo[~has_good]
    if todo.numel():
        raise ValueError(
            f"{todo.shape[0]} defect pixels have no good pixel within {max_radius_px} px"
        )
    return result.reshape(*lead, h, w)
