"""RELION's per-movie motion STAR files (``MotionCorr/job*/.../<movie>.star``), read and written
for Bayesian polishing, and RELION's third-order polynomial model of local motion.

What the file holds (facts read from RELION's ``src/micrograph_model.cpp`` ``Micrograph::write``
/ ``read`` and ``src/motioncorr_runner.cpp``, github 3dem/relion, RELION 4/5; checked against
the RELION 5 tutorial files in ``../shared/data/metadata/relion5_tomo_tutorial_empiar10164_
skeleton/MotionCorr/job002/``):

``data_general`` (key-value pairs)
    ``rlnImageSizeX/Y`` (movie width/height in unbinned movie pixels), ``rlnImageSizeZ``
    (frames), ``rlnMicrographMovieName`` — required; ``rlnMicrographGainName``,
    ``rlnMicrographDefectFile``, ``rlnMicrographBinning`` (default 1),
    ``rlnMicrographOriginalPixelSize`` (Å, unbinned), ``rlnMicrographDoseRate`` (e⁻/Å² per
    frame), ``rlnMicrographPreExposure`` (e⁻/Å²), ``rlnVoltage`` (kV),
    ``rlnMicrographStartFrame`` (1-based first frame used, default 1), ``rlnEERUpsampling``,
    ``rlnEERGrouping``, ``rlnMotionModelVersion`` (0 = none, 1 = third-order polynomial).
``data_global_shift`` (loop)
    ``rlnMicrographFrameNumber`` (1-based, one row for each of the ``rlnImageSizeZ`` frames),
    ``rlnMicrographShiftX/Y`` in **unbinned movie pixels**; frames RELION did not align
    (before the start frame) hold ``-9999`` (read here as NaN). The first aligned frame is 0.
``data_local_motion_model`` (loop, only with model version 1)
    36 rows ``rlnMotionModelCoeffsIdx`` 0…35, ``rlnMotionModelCoeff``: 0–17 are the x
    coefficients, 18–35 the y coefficients.
``data_hot_pixels`` (loop)
    ``rlnCoordinateX/Y``: integer pixel indices of hot pixels RELION replaced.
``data_local_shift`` (diagnostic patch tracks) is not read or written.

**Sign.** The stored shift is the **correction**, the negative of cryowarp's shift
(docs/conventions.md §4): RELION sums aligned frames as ``aligned(x) = frame(x − s)``
(``realSpaceInterpolation``: the frame is sampled at ``ix − shift``; the global shift comes
from the cross-correlation peak of frame against reference and is applied as a Fourier shift
that moves the content by ``+s``), and polishing initialises particle tracks as
``−shift × movie pixel size / pixel size`` (``src/jaz/micrograph_handler.cpp``). Hence
``rlnMicrographShiftX/Y = −s_a / rlnMicrographOriginalPixelSize``.

**Local model.** RELION's total shift at pixel ``(x, y)`` of frame ``f`` (1-based) is
``global[f] + local(z, x̂, ŷ)`` with ``x̂ = x / rlnImageSizeX − 0.5``, ``ŷ = y / rlnImageSizeY −
0.5`` (``x, y`` unbinned pixel indices from the centre of pixel (0, 0)), ``z = f −
rlnMicrographStartFrame``, and for each axis ``local = Σ_i Σ_j c[3i + j] · m_i(x̂, ŷ) ·
z^(j+1)`` with the monomials ``m = (1, x̂, x̂², ŷ, ŷ², x̂ŷ)``; so local motion is zero at the
start frame. RELION fits the coefficients by least squares to the patch shifts left after the
global alignment.

Uncertain: RELION's own fit uses the group centre ``group_start + size/2`` as ``z`` (half a frame
late) unless ``--interpolate_shifts``; with ``--early_binning`` its coefficients come out in
binned pixels; files from UCSF MotionCor2 copy its log shifts unchanged (assumed to have the
same sign). This module writes no ``# version 50001`` line (RELION does not need it here;
not checked against a RELION binary).
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
import torch

from cryowarp.errors import (
    CryowarpInputError,
    DimensionMismatchError,
    FileFormatError,
    InvalidValuesError,
    MissingColumnError,
    TruncatedFileError,
)
from cryowarp.io.star import StarBlock, read_star, write_star

__all__ = [
    "N_LOCAL_MODEL_COEFFICIENTS",
    "RELION_NOT_OBSERVED",
    "RelionMotion",
    "evaluate_relion_local_model",
    "fit_relion_local_model",
    "read_relion_motion",
    "relion_global_shifts_px",
    "relion_shifts_px_at",
    "shifts_a_from_relion_px",
    "write_relion_motion",
]

RELION_NOT_OBSERVED = -9999.0
"""Value RELION writes for the shift of a frame it did not align."""

N_LOCAL_MODEL_COEFFICIENTS = 36
"""Coefficients of RELION's ThirdOrderPolynomialModel: 18 for x, then 18 for y."""

_PER_AXIS = 18
_TEXT_KEYS = ("rlnMicrographGainName", "rlnMicrographDefectFile")
ArrayLike = npt.ArrayLike | torch.Tensor


@dataclass(frozen=True, eq=False, kw_only=True)
class RelionMotion:
    """Content of one RELION motion STAR file, in RELION's own units and sign.

    Arrays are copied to read-only float64 (int64 for hot pixels) on construction.

    Attributes
    ----------
    image_size_xyz:
        Movie ``(width, height, n_frames)`` in unbinned movie pixels.
    global_shifts_px:
        ``(n_frames, 2)`` correction shifts (x, y) in unbinned pixels, RELION's sign (the
        negative of docs/conventions.md §4); NaN for frames RELION did not align.
    local_model_coefficients:
        ``(36,)`` polynomial coefficients indexed as ``rlnMotionModelCoeffsIdx``, or None.
    hot_pixels_xy:
        ``(k, 2)`` integer pixel indices (x, y) of hot pixels, or None.
    """

    image_size_xyz: tuple[int, int, int]
    movie_name: str
    global_shifts_px: npt.NDArray[np.float64]  # (n_frames, 2)
    gain_name: str | None = None
    defect_file: str | None = None
    binning: float = 1.0
    original_pixel_size_a: float | None = None
    dose_per_frame_e_per_a2: float | None = None
    pre_exposure_e_per_a2: float | None = None
    voltage_kv: float | None = None
    start_frame: int = 1
    eer_upsampling: int | None = None
    eer_grouping: int | None = None
    local_model_coefficients: npt.NDArray[np.float64] | None = None  # (36,)
    hot_pixels_xy: npt.NDArray[np.int64] | None = field(default=None)  # (k, 2)

    def __post_init__(self) -> None:
        width, height, n_frames = (int(v) for v in self.image_size_xyz)
        if min(width, height, n_frames) < 1:
            raise InvalidValuesError(
                None, f"image_size_xyz must be positive, got {self.image_size_xyz}"
            )
        object.__setattr__(self, "image_size_xyz", (width, height, n_frames))
        shifts = _frozen(np.asarray(self.global_shifts_px, dtype=np.float64))
        if shifts.shape != (n_frames, 2):
            raise DimensionMismatchError(
                None,
                f"global_shifts_px must be ({n_frames}, 2) for {n_frames} frames, "
                f"got {shifts.shape}",
            )
        object.__setattr__(self, "global_shifts_px", shifts)
        if not 1 <= self.start_frame <= n_frames:
            raise InvalidValuesError(
                None, f"start_frame must be within 1..{n_frames}, got {self.start_frame}"
            )
        if self.local_model_coefficients is not None:
            coefficients = _frozen(np.asarray(self.local_model_coefficients, dtype=np.float64))
            if coefficients.shape != (N_LOCAL_MODEL_COEFFICIENTS,):
                raise DimensionMismatchError(
                    None, f"local_model_coefficients must be (36,), got {coefficients.shape}"
                )
            object.__setattr__(self, "local_model_coefficients", coefficients)
        if self.hot_pixels_xy is not None:
            hot = np.asarray(self.hot_pixels_xy).astype(np.int64)
            hot = hot.reshape(0, 2) if hot.size == 0 else hot
            if hot.ndim != 2 or hot.shape[1] != 2:
                raise DimensionMismatchError(None, f"hot_pixels_xy must be (k, 2), got {hot.shape}")
            object.__setattr__(self, "hot_pixels_xy", _frozen(hot))

    @property
    def n_frames(self) -> int:
        """Number of frames of the movie (``rlnImageSizeZ``)."""
        return self.image_size_xyz[2]

    @property
    def image_size_xy(self) -> tuple[int, int]:
        """Movie ``(width, height)`` in unbinned pixels."""
        return self.image_size_xyz[0], self.image_size_xyz[1]


def read_relion_motion(path: str | os.PathLike[str]) -> RelionMotion:
    """Read a RELION motion STAR file (see the module docstring for its layout).

    Raises
    ------
    MissingFileError, TruncatedFileError, FileFormatError
        From :func:`cryowarp.io.star.read_star`; also FileFormatError when ``data_general``,
        ``data_global_shift`` or a declared ``data_local_motion_model`` block is missing.
    MissingColumnError
        A required key or column is absent.
    TruncatedFileError
        Fewer global-shift rows than frames, or fewer than 36 coefficients.
    InvalidValuesError
        Non-numeric values, frame numbers or coefficient indices out of range, an unknown
        motion model version.
    """
    file = Path(path)
    blocks = read_star(file, parse_as_string=_TEXT_KEYS)
    general = _general_block(file, blocks)
    n_frames = _required_int(file, general, "rlnImageSizeZ")
    if "rlnMicrographMovieName" not in general:
        raise MissingColumnError(file, "data_general has no rlnMicrographMovieName")
    version = _optional_int(file, general, "rlnMotionModelVersion") or 0
    if version not in (0, 1):
        raise InvalidValuesError(file, f"unknown rlnMotionModelVersion {version} (0 or 1 known)")
    start_frame = _optional_int(file, general, "rlnMicrographStartFrame")
    binning = _float_key(file, general, "rlnMicrographBinning")
    hot = blocks.get("hot_pixels")
    fields: dict[str, Any] = {
        "image_size_xyz": (
            _required_int(file, general, "rlnImageSizeX"),
            _required_int(file, general, "rlnImageSizeY"),
            n_frames,
        ),
        "movie_name": str(general["rlnMicrographMovieName"]),
        "global_shifts_px": _global_shifts(file, blocks, n_frames),
        "gain_name": _text_key(general, "rlnMicrographGainName"),
        "defect_file": _text_key(general, "rlnMicrographDefectFile"),
        "binning": 1.0 if binning is None else binning,
        "original_pixel_size_a": _float_key(file, general, "rlnMicrographOriginalPixelSize"),
        "dose_per_frame_e_per_a2": _float_key(file, general, "rlnMicrographDoseRate"),
        "pre_exposure_e_per_a2": _float_key(file, general, "rlnMicrographPreExposure"),
        "voltage_kv": _float_key(file, general, "rlnVoltage"),
        "start_frame": 1 if start_frame is None else start_frame,
        "eer_upsampling": _optional_int(file, general, "rlnEERUpsampling"),
        "eer_grouping": _optional_int(file, general, "rlnEERGrouping"),
        "local_model_coefficients": _local_coefficients(file, blocks) if version else None,
        "hot_pixels_xy": None if hot is None else _hot_pixels(file, hot),
    }
    try:
        return RelionMotion(**fields)
    except CryowarpInputError as error:  # a check of RelionMotion: name the file
        if error.path is not None:
            raise
        raise type(error)(file, error.problem, error.hint) from None


def write_relion_motion(
    path: str | os.PathLike[str], motion: RelionMotion, *, overwrite: bool = True
) -> None:
    """Write ``motion`` as a RELION motion STAR file, atomically (:func:`write_star`).

    Blocks are written in RELION's order (general, global_shift, local_motion_model,
    hot_pixels); optional keys that are None are left out, NaN shifts become ``-9999``.
    """
    general: dict[str, Any] = {
        "rlnImageSizeX": motion.image_size_xyz[0],
        "rlnImageSizeY": motion.image_size_xyz[1],
        "rlnImageSizeZ": motion.image_size_xyz[2],
        "rlnMicrographMovieName": motion.movie_name,
        "rlnMicrographGainName": motion.gain_name,
        "rlnMicrographDefectFile": motion.defect_file,
        "rlnMicrographBinning": float(motion.binning),
        "rlnMicrographOriginalPixelSize": motion.original_pixel_size_a,
        "rlnMicrographDoseRate": motion.dose_per_frame_e_per_a2,
        "rlnMicrographPreExposure": motion.pre_exposure_e_per_a2,
        "rlnVoltage": motion.voltage_kv,
        "rlnMicrographStartFrame": int(motion.start_frame),
        "rlnEERUpsampling": motion.eer_upsampling,
        "rlnEERGrouping": motion.eer_grouping,
        "rlnMotionModelVersion": 0 if motion.local_model_coefficients is None else 1,
    }
    shifts = np.where(
        np.isnan(motion.global_shifts_px), RELION_NOT_OBSERVED, motion.global_shifts_px
    )
    blocks: dict[str, StarBlock] = {
        "general": {key: value for key, value in general.items() if value is not None},
        "global_shift": pd.DataFrame(
            {
                "rlnMicrographFrameNumber": np.arange(1, motion.n_frames + 1, dtype=np.int64),
                "rlnMicrographShiftX": shifts[:, 0],
                "rlnMicrographShiftY": shifts[:, 1],
            }
        ),
    }
    if motion.local_model_coefficients is not None:
        blocks["local_motion_model"] = pd.DataFrame(
            {
                "rlnMotionModelCoeffsIdx": np.arange(N_LOCAL_MODEL_COEFFICIENTS, dtype=np.int64),
                "rlnMotionModelCoeff": motion.local_model_coefficients,
            }
        )
    if motion.hot_pixels_xy is not None:
        blocks["hot_pixels"] = pd.DataFrame(
            {
                "rlnCoordinateX": motion.hot_pixels_xy[:, 0].astype(np.float64),
                "rlnCoordinateY": motion.hot_pixels_xy[:, 1].astype(np.float64),
            }
        )
    write_star(path, blocks, overwrite=overwrite)


def relion_global_shifts_px(
    shifts_a: ArrayLike,  # (..., 2)
    *,
    original_pixel_size_a: float,
) -> npt.NDArray[np.float64]:  # (..., 2)
    """Convert cryowarp shifts (Å, content displacement, docs/conventions.md §4) into RELION's
    ``rlnMicrographShiftX/Y`` (correction, unbinned pixels): ``−shifts_a / pixel size``.

    The gauge is kept: cryowarp's frame 0 is RELION's frame 1 (start frame 1).
    """
    return -_xy_array(shifts_a, "shifts_a") / _pixel_size(original_pixel_size_a)


def shifts_a_from_relion_px(
    shifts_px: ArrayLike,  # (..., 2)
    *,
    original_pixel_size_a: float,
) -> npt.NDArray[np.float64]:  # (..., 2)
    """Inverse of :func:`relion_global_shifts_px`: ``−shifts_px × pixel size`` in Å, for global
    or total (global + local) RELION shifts; NaN (not observed) stays NaN."""
    return -_xy_array(shifts_px, "shifts_px") * _pixel_size(original_pixel_size_a)


def evaluate_relion_local_model(
    coefficients: ArrayLike,  # (36,)
    x_px: ArrayLike,  # (...)
    y_px: ArrayLike,  # (...)
    frame: ArrayLike,  # (...)
    *,
    image_size_xy: tuple[int, int],
    start_frame: int = 1,
) -> npt.NDArray[np.float64]:  # (..., 2)
    """RELION's local (polynomial) correction shift in unbinned pixels, RELION's sign.

    Parameters
    ----------
    coefficients:
        ``(36,)`` coefficients in ``rlnMotionModelCoeffsIdx`` order.
    x_px, y_px:
        Positions in unbinned movie pixels (centre of pixel (0, 0) at 0); broadcast together
        with ``frame``.
    frame:
        0-based movie frame indices (fractions allowed); RELION's time variable is
        ``z = frame + 1 − start_frame``.
    image_size_xy:
        Movie ``(width, height)`` in unbinned pixels (``rlnImageSizeX/Y``).
    start_frame:
        ``rlnMicrographStartFrame`` (1-based).

    Returns
    -------
    numpy.ndarray
        ``(..., 2)`` local shift (x, y) in pixels, float64.
    """
    c = _coefficients(coefficients)
    basis = _local_basis(x_px, y_px, frame, image_size_xy, start_frame)  # (..., 18)
    return np.stack([basis @ c[:_PER_AXIS], basis @ c[_PER_AXIS:]], axis=-1)


def fit_relion_local_model(
    positions_px: ArrayLike,  # (p, 2)
    frames: ArrayLike,  # (m,)
    local_shifts_px: ArrayLike,  # (p, m, 2)
    *,
    image_size_xy: tuple[int, int],
    start_frame: int = 1,
) -> npt.NDArray[np.float64]:  # (36,)
    """Least-squares fit of RELION's 36 polynomial coefficients to local shifts.

    Parameters
    ----------
    positions_px:
        ``(p, 2)`` sample positions (x, y) in unbinned pixels.
    frames:
        ``(m,)`` 0-based frame indices of the samples (see :func:`evaluate_relion_local_model`).
    local_shifts_px:
        ``(p, m, 2)`` local correction shifts in pixels, RELION's sign, i.e. the total shift
        minus the global shift of the frame.
    image_size_xy, start_frame:
        As in :func:`evaluate_relion_local_model`.

    Raises
    ------
    DimensionMismatchError
        Shapes that do not agree.
    InvalidValuesError
        Non-finite values, or samples that do not determine all 18 coefficients per axis
        (needs ≥ 6 positions not on one conic and ≥ 3 distinct frames after the start frame).
    """
    xy = _xy_array(positions_px, "positions_px").reshape(-1, 2)
    t = np.asarray(_numpy(frames), dtype=np.float64).reshape(-1)
    shifts = np.asarray(_numpy(local_shifts_px), dtype=np.float64)
    if shifts.shape != (xy.shape[0], t.shape[0], 2):
        raise DimensionMismatchError(
            None,
            f"local_shifts_px must be ({xy.shape[0]}, {t.shape[0]}, 2) for "
            f"{xy.shape[0]} positions and {t.shape[0]} frames, got {shifts.shape}",
        )
    if not (np.isfinite(xy).all() and np.isfinite(t).all() and np.isfinite(shifts).all()):
        raise InvalidValuesError(None, "positions, frames and local shifts must be finite")
    design = _local_basis(
        xy[:, None, 0], xy[:, None, 1], t[None, :], image_size_xy, start_frame
    ).reshape(-1, _PER_AXIS)
    solution, _, rank, _ = np.linalg.lstsq(design, shifts.reshape(-1, 2), rcond=None)
    if rank < _PER_AXIS:
        raise InvalidValuesError(
            None,
            f"the samples determine only {rank} of the 18 coefficients per axis",
            hint="use ≥ 6 positions spread over the image and ≥ 3 frames after the start frame",
        )
    return np.concatenate([solution[:, 0], solution[:, 1]])


def relion_shifts_px_at(
    motion: RelionMotion,
    positions_px: ArrayLike,  # (..., 2)
    frames: ArrayLike | None = None,  # (m,) 0-based frame indices
) -> npt.NDArray[np.float64]:  # (..., m, 2)
    """RELION's total correction shift (global + local, pixels) at positions and frames, as
    polishing computes it (``Micrograph::getShiftAt``); all frames when ``frames`` is None.

    Same argument layout as ``MotionTruth.shifts_at``, but in unbinned pixels and RELION's
    sign; convert with :func:`shifts_a_from_relion_px`. Frames RELION did not align give NaN.
    """
    xy = _xy_array(positions_px, "positions_px")
    wanted = np.arange(motion.n_frames) if frames is None else np.asarray(_numpy(frames))
    index = wanted.astype(np.int64).reshape(-1)
    if not np.array_equal(index, wanted.reshape(-1)) or (
        index.size and (index.min() < 0 or index.max() >= motion.n_frames)
    ):
        raise InvalidValuesError(
            None, f"frames must be whole frame indices within 0..{motion.n_frames - 1}"
        )
    total = np.broadcast_to(motion.global_shifts_px[index], (*xy.shape[:-1], index.size, 2))
    if motion.local_model_coefficients is None:
        return total.copy()
    local = evaluate_relion_local_model(
        motion.local_model_coefficients,
        xy[..., None, 0],
        xy[..., None, 1],
        index.astype(np.float64),
        image_size_xy=motion.image_size_xy,
        start_frame=motion.start_frame,
    )
    return total + local


def _local_basis(
    x_px: ArrayLike,
    y_px: ArrayLike,
    frame: ArrayLike,
    image_size_xy: tuple[int, int],
    start_frame: int,
) -> npt.NDArray[np.float64]:  # (..., 18)
    width, height = image_size_xy
    if width < 1 or height < 1:
        raise InvalidValuesError(None, f"image_size_xy must be positive, got {image_size_xy}")
    x, y, f = np.broadcast_arrays(
        *(np.asarray(_numpy(v), dtype=np.float64) for v in (x_px, y_px, frame))
    )
    xn, yn, z = x / width - 0.5, y / height - 0.5, f + 1.0 - start_frame
    spatial = (np.ones_like(xn), xn, xn * xn, yn, yn * yn, xn * yn)
    temporal = (z, z * z, z * z * z)
    return np.stack([m * p for m in spatial for p in temporal], axis=-1)


def _coefficients(coefficients: ArrayLike) -> npt.NDArray[np.float64]:
    c = np.asarray(_numpy(coefficients), dtype=np.float64)
    if c.shape != (N_LOCAL_MODEL_COEFFICIENTS,):
        raise DimensionMismatchError(None, f"coefficients must be (36,), got {c.shape}")
    return c


def _numpy(values: ArrayLike) -> npt.ArrayLike:
    return values.detach().cpu().numpy() if isinstance(values, torch.Tensor) else values


def _xy_array(values: ArrayLike, name: str) -> npt.NDArray[np.float64]:
    array = np.asarray(_numpy(values), dtype=np.float64)
    if array.ndim < 1 or array.shape[-1] != 2:
        raise DimensionMismatchError(None, f"{name} must be (..., 2) (x, y), got {array.shape}")
    return array


def _pixel_size(pixel_size_a: float) -> float:
    if not (math.isfinite(pixel_size_a) and pixel_size_a > 0):
        raise InvalidValuesError(None, f"original_pixel_size_a must be > 0, got {pixel_size_a}")
    return float(pixel_size_a)


def _frozen(array: npt.NDArray[Any]) -> npt.NDArray[Any]:
    copy = array.copy()
    copy.flags.writeable = False
    return copy


def _general_block(file: Path, blocks: Mapping[str, StarBlock]) -> dict[str, Any]:
    general = blocks.get("general")
    if general is None:
        raise FileFormatError(file, "not a RELION motion STAR file: no data_general block")
    if isinstance(general, pd.DataFrame):  # written as a one-row loop
        if len(general) != 1:
            raise FileFormatError(file, f"data_general has {len(general)} rows, expected 1")
        return {str(key): general[key].iloc[0] for key in general.columns}
    return general


def _text_key(general: Mapping[str, Any], key: str) -> str | None:
    return None if key not in general else str(general[key])


def _float_key(
    file: Path, general: Mapping[str, Any], key: str, default: float | None = None
) -> float | None:
    if key not in general:
        return default
    try:
        return float(general[key])
    except (TypeError, ValueError):
        raise InvalidValuesError(file, f"{key} is not a number: {general[key]!r}") from None


def _required_int(file: Path, general: Mapping[str, Any], key: str) -> int:
    if key not in general:
        raise MissingColumnError(file, f"data_general has no {key}")
    value = _float_key(file, general, key)
    if value is None or not value.is_integer():
        raise InvalidValuesError(file, f"{key} is not an integer: {general[key]!r}")
    return int(value)


def _optional_int(file: Path, general: Mapping[str, Any], key: str) -> int | None:
    return _required_int(file, general, key) if key in general else None


def _loop(file: Path, blocks: Mapping[str, StarBlock], name: str) -> pd.DataFrame:
    block = blocks.get(name)
    if block is None:
        raise FileFormatError(file, f"not a complete RELION motion STAR file: no data_{name}")
    return _as_table(block)


def _as_table(block: StarBlock) -> pd.DataFrame:
    if isinstance(block, dict):  # a one-row table written as key-value pairs
        return pd.DataFrame({key: [value] for key, value in block.items()})
    return block


def _column(file: Path, table: pd.DataFrame, block: str, label: str) -> npt.NDArray[np.float64]:
    if label not in table.columns:
        raise MissingColumnError(file, f"data_{block} has no column {label}")
    values = pd.to_numeric(table[label], errors="coerce").to_numpy(dtype=np.float64)
    if (np.isnan(values) & ~table[label].isna().to_numpy()).any():
        raise InvalidValuesError(file, f"data_{block} column {label} holds non-numeric values")
    return values


def _indices(
    file: Path, values: npt.NDArray[np.float64], what: str, upper: int
) -> npt.NDArray[np.int64]:
    if not (np.all(values == np.round(values)) and values.min() >= 0 and values.max() < upper):
        raise InvalidValuesError(file, f"{what} outside 0..{upper - 1} or not integers")
    if np.unique(values).size != values.size:
        raise InvalidValuesError(file, f"{what} repeated")
    return values.astype(np.int64)


def _global_shifts(
    file: Path, blocks: Mapping[str, StarBlock], n_frames: int
) -> npt.NDArray[np.float64]:
    table = _loop(file, blocks, "global_shift")
    frame = _column(file, table, "global_shift", "rlnMicrographFrameNumber")
    x = _column(file, table, "global_shift", "rlnMicrographShiftX")
    y = _column(file, table, "global_shift", "rlnMicrographShiftY")
    if len(table) < n_frames:
        raise TruncatedFileError(
            file, f"data_global_shift has {len(table)} rows but rlnImageSizeZ is {n_frames}"
        )
    rows = _indices(file, frame - 1, "rlnMicrographFrameNumber - 1", n_frames)
    shifts = np.full((n_frames, 2), np.nan)
    shifts[rows] = np.stack([x, y], axis=-1)
    shifts[(shifts == RELION_NOT_OBSERVED).any(axis=1)] = np.nan
    return shifts


def _local_coefficients(file: Path, blocks: Mapping[str, StarBlock]) -> npt.NDArray[np.float64]:
    table = _loop(file, blocks, "local_motion_model")
    index = _column(file, table, "local_motion_model", "rlnMotionModelCoeffsIdx")
    value = _column(file, table, "local_motion_model", "rlnMotionModelCoeff")
    if len(table) < N_LOCAL_MODEL_COEFFICIENTS:
        raise TruncatedFileError(
            file, f"data_local_motion_model has {len(table)} of 36 coefficients"
        )
    coefficients = np.zeros(N_LOCAL_MODEL_COEFFICIENTS)
    coefficients[_indices(file, index, "rlnMotionModelCoeffsIdx", N_LOCAL_MODEL_COEFFICIENTS)] = (
        value
    )
    return coefficients


def _hot_pixels(file: Path, block: StarBlock) -> npt.NDArray[np.int64]:
    table = _as_table(block)
    if table.empty:
        return np.zeros((0, 2), dtype=np.int64)
    x = _column(file, table, "hot_pixels", "rlnCoordinateX")
    y = _column(file, table, "hot_pixels", "rlnCoordinateY")
    return np.stack([x, y], axis=-1).astype(np.int64)
