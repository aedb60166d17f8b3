"""One reader for MRC, TIFF and EER movies.

:func:`open_movie` picks the format from the file's first bytes (MRC has no magic number, so
anything that is neither TIFF nor EER is read as MRC) and returns a :class:`Movie`: the number
of frames, the frame shape ``(h, w)``, the pixel size in Å when the file records one, the
stored dtype, and :meth:`Movie.read_frames`, which reads a few frames at a time as float32
NumPy arrays or tensors. Frame axes follow docs/conventions.md §1: ``(frames, h, w)``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt
import torch

from cryowarp.errors import FileFormatError, InvalidValuesError
from cryowarp.io._reader import ClosingReader
from cryowarp.io.eer import EerReader, FractionGroups, eer_fraction_groups
from cryowarp.io.files import require_file
from cryowarp.io.mrc import MrcReader
from cryowarp.io.tiff import TiffReader

__all__ = ["FrameSource", "Movie", "check_frames", "open_movie"]

_TIFF_MAGICS = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")


class FrameSource(Protocol):
    """What a format reader offers :class:`Movie`."""

    path: Path
    n_frames: int
    frame_shape: tuple[int, int]
    dtype: np.dtype[Any]
    pixel_size_a: float | None

    def read_frames(self, start: int, stop: int) -> npt.NDArray[Any]: ...

    def close(self) -> None: ...


class _MrcFrames:
    """Adapter: the sections of an MRC file as movie frames."""

    def __init__(self, path: Path) -> None:
        self._reader = MrcReader(path)
        header = self._reader.header
        self.path = path
        self.n_frames = header.shape[0]
        self.frame_shape = (header.shape[1], header.shape[2])
        self.dtype = np.dtype(header.dtype.newbyteorder("="))
        self.pixel_size_a = header.pixel_size_a

    def read_frames(self, start: int, stop: int) -> npt.NDArray[Any]:
        return self._reader.read_sections(start, stop)

    def close(self) -> None:
        self._reader.close()


def check_frames(
    frames: npt.NDArray[Any] | torch.Tensor,  # (n, h, w)
    *,
    path: str | Path | None,
    first_index: int = 0,
) -> None:
    """Raise :class:`~cryowarp.errors.InvalidValuesError` naming the file and frame index if
    a frame holds NaN or Inf, or is entirely zero (a dropped or blank detector frame)."""
    tensor = torch.as_tensor(frames)
    flat = tensor.reshape(tensor.shape[0], -1)
    if flat.is_floating_point():
        finite = torch.isfinite(flat).all(dim=1)
        for i in torch.nonzero(~finite).flatten().tolist():
            n_bad = int((~torch.isfinite(flat[i])).sum())
            raise InvalidValuesError(path, f"frame {first_index + i} holds {n_bad} NaN/Inf values")
    blank = (flat == 0).all(dim=1)
    for i in torch.nonzero(blank).flatten().tolist():
        raise InvalidValuesError(
            path,
            f"frame {first_index + i} is entirely zero",
            "the detector may have dropped this frame",
        )


class Movie(ClosingReader):
    """A movie opened for streaming; use as a context manager.

    Attributes
    ----------
    path, n_frames, frame_shape, dtype, pixel_size_a:
        From the underlying reader; ``pixel_size_a`` is in Å or ``None``, ``dtype`` is the
        stored sample type.
    validate:
        Whether :meth:`read_frames` checks every frame with :func:`check_frames`.
    """

    def __init__(self, source: FrameSource, *, validate: bool = False) -> None:
        self._source = source
        self.path = source.path
        self.n_frames = source.n_frames
        self.frame_shape = source.frame_shape
        self.dtype = source.dtype
        self.pixel_size_a = source.pixel_size_a
        self.validate = validate

    def close(self) -> None:
        """Close the file."""
        self._source.close()

    def read_frames(self, start: int, stop: int) -> npt.NDArray[np.float32]:
        """Frames ``start … stop-1`` as a float32 ``(stop-start, h, w)`` array."""
        frames = self._source.read_frames(start, stop).astype(np.float32, copy=False)
        if self.validate:
            check_frames(frames, path=self.path, first_index=start)
        return frames

    def read_frames_tensor(
        self, start: int, stop: int, *, device: torch.device | str = "cpu"
    ) -> torch.Tensor:
        """Frames ``start … stop-1`` as a float32 ``(stop-start, h, w)`` tensor on ``device``."""
        return torch.from_numpy(self.read_frames(start, stop)).to(device)

    def iter_chunks(self, frames_per_chunk: int) -> Iterator[tuple[int, npt.NDArray[np.float32]]]:
        """Yield ``(first_index, frames)`` blocks of at most ``frames_per_chunk`` frames."""
        if frames_per_chunk < 1:
            raise ValueError(f"frames_per_chunk must be ≥ 1, got {frames_per_chunk}")
        for start in range(0, self.n_frames, frames_per_chunk):
            yield start, self.read_frames(start, min(start + frames_per_chunk, self.n_frames))


def _sniff(path: Path) -> str:
    try:
        with path.open("rb") as f:
            magic = f.read(4)
    except OSError as exc:
        raise FileFormatError(path, f"cannot be read ({exc.strerror})") from exc
    if magic in _TIFF_MAGICS:
        return "eer" if path.suffix.lower() == ".eer" or _is_eer(path) else "tiff"
    return "mrc"


def _is_eer(path: Path) -> bool:
    try:
        with EerReader(path):
            return True
    except FileFormatError:
        return False


def open_movie(
    path: str | Path,
    *,
    validate: bool = False,
    flip_tiff_y: bool = True,
    eer_upsampling: int = 1,
    eer_n_fractions: int | None = None,
    eer_dose_per_fraction_e_per_a2: float | None = None,
    eer_dose_per_raw_frame_e_per_a2: float | None = None,
    eer_total_dose_e_per_a2: float | None = None,
) -> Movie:
    """Open an MRC, TIFF or EER movie.

    Parameters
    ----------
    path:
        The movie.
    validate:
        Check every frame read for NaN/Inf and all-zero frames (:func:`check_frames`).
    flip_tiff_y:
        Flip TIFF frames along y (see :mod:`cryowarp.io.tiff`).
    eer_upsampling:
        EER rendering grid: 1 (physical pixels), 2 or 4.
    eer_n_fractions, eer_dose_per_fraction_e_per_a2:
        How raw EER frames are summed into fractions, with
    eer_dose_per_raw_frame_e_per_a2, eer_total_dose_e_per_a2:
        the doses that turn a dose per fraction into frames per fraction
        (:func:`~cryowarp.io.eer.eer_fraction_groups`; leftover frames are dropped). Without
        them every raw frame is a fraction.
    """
    path = require_file(path)
    kind = _sniff(path)
    source: FrameSource
    if kind == "eer":
        groups: FractionGroups | None = None
        if eer_n_fractions is not None or eer_dose_per_fraction_e_per_a2 is not None:
            with EerReader(path) as probe:
                n_raw = probe.n_raw_frames
            groups = eer_fraction_groups(
                n_raw,
                n_fractions=eer_n_fractions,
                dose_per_fraction_e_per_a2=eer_dose_per_fraction_e_per_a2,
                dose_per_raw_frame_e_per_a2=eer_dose_per_raw_frame_e_per_a2,
                total_dose_e_per_a2=eer_total_dose_e_per_a2,
            )
        source = EerReader(path, upsampling=eer_upsampling, groups=groups)
    elif kind == "tiff":
        source = TiffReader(path, flip_y=flip_tiff_y)
    else:
        source = _MrcFrames(path)
    return Movie(source, validate=validate)
