"""Training labels for BoxNet: one class per pixel of a micrograph prepared at 8 Å/px.

Classes (:mod:`~cryowarp.preprocess.picking.network`): ``0`` background, ``1`` particle — a
disk of :func:`label_radius_px` around each centre, ``2`` artefact, and ``-1`` *ignore*
(pixels that neither the loss nor the accuracies see). Precedence, lowest first: background,
ignore, particle, artefact — a pick inside a region painted "ignore" is still a particle, and
artefact always wins. An 8 Å pixel is artefact (or ignore) when at least half of its area is
painted in the original-resolution mask (:func:`downsample_mask`).

Positions are ``(n, 2)`` (x, y) (docs/conventions.md §1); in Å they are measured from the
centre of pixel (0, 0) of the original micrograph, in pixels they are those of the prepared
image (:meth:`PreparedMicrograph.to_prepared_px`, box centres ``N//2 ↔ M//2``, conventions §2).

A :class:`LabelledMicrograph` is saved as one ``.npz`` (:func:`save_labelled`): a zip of
``.npy`` arrays with fixed time stamps, so the same content gives the same bytes.
"""

from __future__ import annotations

import io
import math
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch

from cryowarp.errors import (
    CorruptFileError,
    DimensionMismatchError,
    FileFormatError,
    InvalidValuesError,
)
from cryowarp.io.files import atomic_output, require_file
from cryowarp.io.mrc import read_mrc
from cryowarp.preprocess.picking.network import ARTEFACT, PARTICLE
from cryowarp.preprocess.picking.prepare import PICKING_PIXEL_SIZE_A, prepare_micrograph

__all__ = [
    "IGNORE",
    "LabelledMicrograph",
    "downsample_mask",
    "label_radius_px",
    "labelled_from_micrograph",
    "labels_from_positions",
    "load_labelled",
    "read_painted_mask",
    "save_labelled",
]

IGNORE = -1
"""Label of pixels the loss and the accuracies skip."""

_LABEL_RADIUS_FRACTION = 0.2  # of the diameter
_LABEL_RADIUS_RANGE_PX = (1.5, 5.0)
_FORMAT = "cryowarp-labelled-micrograph"
_FORMAT_VERSION = 1
_ARRAYS = ("image", "labels", "positions_px", "diameters_a", "artefact_mask")
_ZIP_DATE = (1980, 1, 1, 0, 0, 0)  # fixed time stamp: same content, same bytes


def label_radius_px(diameter_a: float, pixel_size_a: float) -> float:
    """Radius (px) of a particle's label disk: ``clamp(0.2 · diameter / pixel, 1.5, 5)``."""
    lo, hi = _LABEL_RADIUS_RANGE_PX
    return min(max(_LABEL_RADIUS_FRACTION * diameter_a / pixel_size_a, lo), hi)


def _overlap_matrix(n_in: int, n_out: int) -> torch.Tensor:  # (n_out, n_in) float64
    """Fraction of each output pixel's in-image length covered by each input pixel.

    Output pixel ``j`` is centred on input coordinate ``(j − n_out//2)·s + n_in//2`` with
    ``s = n_in / n_out`` (the box-centre mapping of :func:`~cryowarp.core.resize.rescale`) and
    spans ``±s/2``; input pixel ``i`` spans ``i ± 1/2``.
    """
    s = n_in / n_out
    centre = (torch.arange(n_out, dtype=torch.float64) - n_out // 2) * s + n_in // 2
    lo, hi = (centre - s / 2)[:, None], (centre + s / 2)[:, None]
    i = torch.arange(n_in, dtype=torch.float64)[None, :]
    overlap = (torch.minimum(hi, i + 0.5) - torch.maximum(lo, i - 0.5)).clamp(min=0.0)
    return overlap / overlap.sum(dim=1, keepdim=True).clamp(min=1e-300)


def downsample_mask(mask: torch.Tensor, shape: tuple[int, int]) -> torch.Tensor:
    """``(H, W)`` bool mask → ``(h, w)`` bool on the grid of the prepared image.

    A coarse pixel is ``True`` when at least 50 % of its area (the part inside the image) is
    ``True`` in ``mask``; pixel centres follow the box-centre mapping of
    :func:`~cryowarp.core.resize.rescale` (``N//2 ↔ M//2``), so the result lies on the pixels
    of :func:`~cryowarp.preprocess.picking.prepare.prepare_micrograph`'s image.
    """
    if mask.dim() != 2:
        raise DimensionMismatchError(None, f"a mask must be 2-D, got shape {tuple(mask.shape)}")
    h_in, w_in = (int(n) for n in mask.shape)
    h, w = shape
    rows = _overlap_matrix(h_in, h).to(mask.device)
    cols = _overlap_matrix(w_in, w).to(mask.device)
    fraction = rows @ mask.to(torch.float64) @ cols.T
    return fraction >= 0.5 - 1e-9


def labels_from_positions(
    shape: tuple[int, int],
    positions_px: torch.Tensor,  # (n, 2) x, y at the label grid's pixels
    diameters_a: torch.Tensor | float,  # (n,) or one value
    *,
    pixel_size_a: float,
    artefact_mask: torch.Tensor | None = None,  # (h, w) bool
    ignore_mask: torch.Tensor | None = None,  # (h, w) bool
) -> torch.Tensor:  # (h, w) int64
    """Label image: disks of :func:`label_radius_px` (pixels whose centre lies within the
    radius of a position) on background, then ignore and artefact (module docstring for the
    precedence). Disks are clipped at the border. Device: that of ``positions_px``.
    """
    h, w = shape
    device = positions_px.device
    positions = positions_px.to(torch.float64).reshape(-1, 2)
    diameters = torch.as_tensor(diameters_a, dtype=torch.float64).flatten()
    if diameters.numel() == 1:
        diameters = diameters.expand(positions.shape[0])
    if diameters.numel() != positions.shape[0]:
        raise ValueError(f"{diameters.numel()} diameters for {positions.shape[0]} positions")
    labels = torch.zeros(h, w, dtype=torch.int64, device=device)
    for mask, what in ((ignore_mask, "ignore"), (artefact_mask, "artefact")):
        if mask is not None and tuple(mask.shape) != (h, w):
            raise DimensionMismatchError(
                None, f"{what} mask of shape {tuple(mask.shape)} for labels of shape {(h, w)}"
            )
    if ignore_mask is not None:
        labels[ignore_mask.to(device, torch.bool)] = IGNORE
    for (x, y), d in zip(positions.tolist(), diameters.tolist(), strict=True):
        r = label_radius_px(d, pixel_size_a)
        x0, x1 = max(0, math.ceil(x - r)), min(w, math.floor(x + r) + 1)
        y0, y1 = max(0, math.ceil(y - r)), min(h, math.floor(y + r) + 1)
        if x0 >= x1 or y0 >= y1:
            continue
        dx = torch.arange(x0, x1, dtype=torch.float64, device=device) - x
        dy = torch.arange(y0, y1, dtype=torch.float64, device=device) - y
        inside = dy[:, None] ** 2 + dx[None, :] ** 2 <= r * r
        labels[y0:y1, x0:x1][inside] = PARTICLE
    if artefact_mask is not None:
        labels[artefact_mask.to(device, torch.bool)] = ARTEFACT
    return labels


@dataclass(frozen=True, eq=False)
class LabelledMicrograph:
    """A prepared micrograph with its labels: one training example for BoxNet.

    Attributes
    ----------
    image:
        ``(h, w)`` float32, as :func:`~cryowarp.preprocess.picking.prepare.prepare_micrograph`
        makes it (median 0, robust std 1, protein dark).
    labels:
        ``(h, w)`` int64: ``-1`` ignore, ``0`` background, ``1`` particle, ``2`` artefact.
    positions_px:
        ``(n, 2)`` float32 (x, y) particle centres at the image's pixels.
    diameters_a:
        ``(n,)`` float32 particle diameters in Å.
    artefact_mask:
        ``(h, w)`` bool.
    pixel_size_a:
        Pixel size of ``image`` in Å (8).
    source:
        Where it came from (a file, or the simulation that made it).
    """

    image: torch.Tensor  # (h, w)
    labels: torch.Tensor  # (h, w)
    positions_px: torch.Tensor  # (n, 2)
    diameters_a: torch.Tensor  # (n,)
    artefact_mask: torch.Tensor  # (h, w)
    pixel_size_a: float = PICKING_PIXEL_SIZE_A
    source: str = ""

    def __post_init__(self) -> None:
        shape = tuple(self.image.shape)
        problems = []
        if len(shape) != 2:
            problems.append(f"image must be 2-D, got {shape}")
        if tuple(self.labels.shape) != shape or tuple(self.artefact_mask.shape) != shape:
            problems.append(
                f"labels {tuple(self.labels.shape)} and artefact mask "
                f"{tuple(self.artefact_mask.shape)} must have the image's shape {shape}"
            )
        n = self.positions_px.shape[0] if self.positions_px.dim() == 2 else -1
        if self.positions_px.dim() != 2 or self.positions_px.shape[1] != 2:
            problems.append(f"positions must be (n, 2), got {tuple(self.positions_px.shape)}")
        if tuple(self.diameters_a.shape) != (n,):
            problems.append(f"diameters {tuple(self.diameters_a.shape)} for {n} positions")
        if self.image.dtype != torch.float32 or self.labels.dtype != torch.int64:
            problems.append(f"dtypes {self.image.dtype}/{self.labels.dtype}, need float32/int64")
        if self.artefact_mask.dtype != torch.bool:
            problems.append(f"artefact mask dtype {self.artefact_mask.dtype}, need bool")
        if not self.pixel_size_a > 0:
            problems.append(f"pixel size {self.pixel_size_a} Å")
        if problems:
            raise ValueError("invalid LabelledMicrograph: " + "; ".join(problems))


def save_labelled(labelled: LabelledMicrograph, path: str | Path) -> Path:
    """Write ``labelled`` to ``path`` (``.npz``) atomically; returns the path.

    Labels are stored as int8 and read back as int64: the round trip is exact.
    """
    arrays: dict[str, npt.NDArray[Any]] = {
        "format": np.array(_FORMAT),
        "format_version": np.array(_FORMAT_VERSION),
        "image": labelled.image.detach().cpu().numpy().astype(np.float32),
        "labels": labelled.labels.detach().cpu().numpy().astype(np.int8),
        "positions_px": labelled.positions_px.detach().cpu().numpy().astype(np.float32),
        "diameters_a": labelled.diameters_a.detach().cpu().numpy().astype(np.float32),
        "artefact_mask": labelled.artefact_mask.detach().cpu().numpy().astype(np.bool_),
        "pixel_size_a": np.array(float(labelled.pixel_size_a)),
        "source": np.array(labelled.source),
    }
    out = Path(path)
    with atomic_output(out) as tmp, zipfile.ZipFile(tmp, "w") as archive:
        for name, array in arrays.items():
            buffer = io.BytesIO()
            np.lib.format.write_array(buffer, array, allow_pickle=False)
            info = zipfile.ZipInfo(f"{name}.npy", date_time=_ZIP_DATE)
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, buffer.getvalue())
    return out


def load_labelled(path: str | Path) -> LabelledMicrograph:
    """Read a file written by :func:`save_labelled`.

    Raises
    ------
    MissingFileError
        No such file.
    FileFormatError
        Not a labelled micrograph (another ``.npz``, or a newer format version).
    CorruptFileError
        The file is damaged (truncated, bad checksum, inconsistent arrays).
    """
    file = require_file(path)
    try:
        with file.open("rb") as handle, np.load(handle, allow_pickle=False) as data:
            keys = set(data.files)
            if "format" not in keys or str(data["format"]) != _FORMAT:
                raise FileFormatError(file, "is not a labelled micrograph (.npz of cryowarp)")
            if int(data["format_version"]) > _FORMAT_VERSION:
                raise FileFormatError(
                    file,
                    f"format version {int(data['format_version'])} is newer than this "
                    f"cryowarp reads ({_FORMAT_VERSION})",
                    "update cryowarp",
                )
            missing = [k for k in (*_ARRAYS, "pixel_size_a", "source") if k not in keys]
            if missing:
                raise CorruptFileError(file, f"lacks the arrays {missing}")
            arrays = {k: data[k] for k in _ARRAYS}
            pixel_size_a = float(data["pixel_size_a"])
            source = str(data["source"])
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError) as error:
        raise CorruptFileError(file, f"cannot be decoded ({error})") from error
    labels = arrays["labels"]
    if labels.size and (labels.min() < IGNORE or labels.max() > ARTEFACT):
        raise CorruptFileError(file, f"labels outside -1…2 ({labels.min()}…{labels.max()})")
    try:
        return LabelledMicrograph(
            image=torch.from_numpy(arrays["image"].astype(np.float32)),
            labels=torch.from_numpy(labels.astype(np.int64)),
            positions_px=torch.from_numpy(arrays["positions_px"].astype(np.float32)),
            diameters_a=torch.from_numpy(arrays["diameters_a"].astype(np.float32)),
            artefact_mask=torch.from_numpy(arrays["artefact_mask"].astype(np.bool_)),
            pixel_size_a=pixel_size_a,
            source=source,
        )
    except ValueError as error:
        raise CorruptFileError(file, str(error)) from error


def read_painted_mask(
    path: str | Path, shape: tuple[int, int], *, threshold: float = 0.0, flip_y: bool = False
) -> torch.Tensor:  # (h, w) bool
    """A region painted over a micrograph: MRC (``.mrc``, ``.mrcs``, ``.map``) or PNG.

    A pixel is painted when its value is above ``threshold`` (default: nonzero, for
    non-negative masks; give 0.5 for a probability map). For a PNG, the value is the largest
    colour channel, and a pixel with an alpha channel of 0 is never painted. Rows are taken as
    stored (PNG row 0, the top, = the micrograph array's row 0); ``flip_y=True`` for a PNG
    painted on a picture drawn with y up (row 0 at the bottom, as IMOD shows MRC files).

    Raises
    ------
    MissingFileError, FileFormatError, CorruptFileError
        No file, an unknown suffix, or an unreadable image.
    DimensionMismatchError
        The mask's size differs from ``shape`` ``(h, w)`` of the micrograph.
    """
    file = require_file(path)
    suffix = file.suffix.lower()
    if suffix in (".mrc", ".mrcs", ".map"):
        data, _ = read_mrc(file)
        values = np.squeeze(np.asarray(data, dtype=np.float32))
        alpha = None
    elif suffix == ".png":
        values, alpha = _read_png(file)
    else:
        raise FileFormatError(file, f"unknown mask format {suffix!r}", "use an MRC or PNG file")
    if values.ndim != 2 or tuple(values.shape) != tuple(shape):
        raise DimensionMismatchError(
            file,
            f"painted mask of shape {tuple(values.shape)} does not match the micrograph's "
            f"{tuple(shape)} (h, w)",
            "paint on the full-size micrograph",
        )
    painted = values > threshold
    if alpha is not None:
        painted &= alpha > 0
    return torch.from_numpy(np.ascontiguousarray(painted[::-1] if flip_y else painted))


def _read_png(file: Path) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32] | None]:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(file) as image:
            image.load()
            has_alpha = "A" in image.getbands() or "transparency" in image.info
            pixels = np.asarray(image.convert("RGBA" if has_alpha else image.mode))
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
        raise CorruptFileError(file, f"cannot be read as a PNG image ({error})") from error
    pixels = pixels.astype(np.float32)
    if pixels.ndim == 2:
        return pixels, None
    if has_alpha:
        return pixels[..., :3].max(axis=-1), pixels[..., 3]
    return pixels.max(axis=-1), None


def labelled_from_micrograph(
    image: torch.Tensor,  # (H, W)
    *,
    pixel_size_a: float,
    positions_a: torch.Tensor,  # (n, 2) x, y in Å from the centre of pixel (0, 0)
    diameter_a: float,
    painted_artefacts: torch.Tensor | None = None,  # (H, W) bool
    painted_ignore: torch.Tensor | None = None,  # (H, W) bool
    source: str = "",
    picking_pixel_size_a: float = PICKING_PIXEL_SIZE_A,
) -> LabelledMicrograph:
    """A user's micrograph and picks as a training example.

    The image goes through :func:`~cryowarp.preprocess.picking.prepare.prepare_micrograph`
    (as at inference); positions are mapped to its pixels, painted regions reduced by
    :func:`downsample_mask`. Positions outside the micrograph are dropped.

    Raises
    ------
    InvalidValuesError
        A diameter that is not positive or exceeds the micrograph, every position outside
        the micrograph (a wrong pixel size?), or the errors of ``prepare_micrograph``.
    DimensionMismatchError
        A painted mask of another size than the image.
    """
    prepared = prepare_micrograph(
        image, pixel_size_a=pixel_size_a, picking_pixel_size_a=picking_pixel_size_a
    )
    h_in, w_in = prepared.original_shape
    if not (math.isfinite(diameter_a) and 0 < diameter_a <= min(h_in, w_in) * pixel_size_a):
        raise InvalidValuesError(
            None,
            f"particle diameter {diameter_a} Å must be positive and fit in the micrograph "
            f"({w_in * pixel_size_a:.0f} × {h_in * pixel_size_a:.0f} Å)",
        )
    positions = torch.as_tensor(positions_a, dtype=torch.float64).cpu().reshape(-1, 2)
    positions = positions / pixel_size_a
    inside = (positions >= -0.5).all(dim=1) & (positions[:, 0] < w_in - 0.5)
    inside &= positions[:, 1] < h_in - 0.5
    if positions.shape[0] and not bool(inside.any()):
        raise InvalidValuesError(
            None,
            f"none of the {positions.shape[0]} positions lies on the {w_in} × {h_in} px "
            f"micrograph at {pixel_size_a} Å/px",
            "check the pixel size of the coordinates",
        )
    small = prepared.to_prepared_px(positions[inside]).to(torch.float32)
    shape = (int(prepared.image.shape[0]), int(prepared.image.shape[1]))
    masks = []
    for painted, what in ((painted_artefacts, "artefact"), (painted_ignore, "ignore")):
        if painted is not None and tuple(painted.shape) != (h_in, w_in):
            raise DimensionMismatchError(
                None, f"painted {what} mask {tuple(painted.shape)} for a micrograph {(h_in, w_in)}"
            )
        masks.append(None if painted is None else downsample_mask(painted.bool().cpu(), shape))
    artefact = masks[0] if masks[0] is not None else torch.zeros(shape, dtype=torch.bool)
    label_pixel_a = sum(prepared.pixel_size_xy_a) / 2
    diameters = torch.full((small.shape[0],), float(diameter_a), dtype=torch.float32)
    labels = labels_from_positions(
        shape,
        small,
        diameters,
        pixel_size_a=label_pixel_a,
        artefact_mask=artefact,
        ignore_mask=masks[1],
    )
    return LabelledMicrograph(
        image=prepared.image.cpu(),
        labels=labels,
        positions_px=small,
        diameters_a=diameters,
        artefact_mask=artefact,
        pixel_size_a=float(picking_pixel_size_a),
        source=source,
    )
