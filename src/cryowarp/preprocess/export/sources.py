"""The micrographs available for export, read back from the metadata processing wrote.

Export is regenerable at any time: everything it needs about one item (a movie's
motion-corrected average, its half-averages, motion, dose, CTF) is read from the per-item
files of motion correction (``OUT/motion/<stem>.json``, docs/motion.md) and CTF estimation
(``OUT/ctf/<stem>_ctf.json``, docs/ctf.md) into a :class:`MicrographSource`. The paths in the
motion metadata (``files``) are relative to the output folder ``OUT`` and are resolved against
where the metadata lies now, so a processing folder can be moved. Items that cannot be read
are reported as :class:`SourceProblem` and the others go on (docs/relion_export_filters.md).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field, replace
from pathlib import Path, PurePosixPath
from typing import Any

from pydantic import ValidationError

from cryowarp.errors import (
    CorruptFileError,
    CryowarpError,
    CryowarpInputError,
    FileFormatError,
    InvalidValuesError,
    MissingFileError,
)
from cryowarp.io.files import require_file
from cryowarp.io.mrc import read_mrc_header
from cryowarp.preprocess.ctf.result import CtfResult
from cryowarp.preprocess.motion import (
    MOTION_METADATA_VERSION,
    FrameMotion,
    MovieInputSettings,
    motion_output_paths,
)

__all__ = [
    "MicrographSource",
    "SourceProblem",
    "read_ctf_json",
    "read_micrograph_source",
    "scan_processing_folder",
    "source_from_average",
]

_REQUIRED_KEYS = (
    "schema_version",
    "movie",
    "input_settings",
    "frame_shape_px",
    "output_shape_px",
    "raw_pixel_size_a",
    "output_pixel_size_a",
    "dose",
    "motion",
    "summary",
)
_MASKED_FRACTION_KEY = "masked_fraction"  # optional; written once picking masks exist


@dataclass(frozen=True, eq=False)
class MicrographSource:
    """One exportable micrograph and what is known about it.

    Attributes
    ----------
    name:
        The item's name: the movie's file stem (``movie_000`` for ``movie_000.tif``).
    movie_path, average_path, odd_path, even_path, motion_metadata_path, motion_star_path:
        The raw movie (as motion correction recorded it; it may since have gone), the
        motion-corrected average, the odd/even half-averages (frames 1, 3, … / 0, 2, …), the
        metadata JSON and RELION's motion STAR file; ``None`` when not written or not present.
    motion:
        The fitted motion (docs/conventions.md §4), ``None`` for an imported average.
    input_settings:
        How the raw frames were read (gain, binning, dose …), ``None`` for an imported average.
    raw_pixel_size_a, output_pixel_size_a:
        Pixel size (Å) of the raw frames and of the average.
    frame_shape_px, output_shape_px:
        ``(h, w)`` of a raw frame and of the average.
    accumulated_dose_e_per_a2:
        Dose (e⁻/Å²) of each frame as motion correction recorded it (middle of the frame,
        docs/conventions.md §7); empty for an imported average.
    motion_summary:
        :class:`~cryowarp.preprocess.motion.summary.MotionSummary` figures by name
        (``early_motion_a_per_frame``, ``total_drift_a``, …); empty without motion.
    ctf, ctf_path:
        The CTF estimate and its JSON, or ``None``.
    acquired_at:
        Modification time (s since the epoch) of the movie, or of the metadata (the average
        for an imported one) when the movie is gone.
    masked_fraction:
        Fraction (0–1) of the micrograph masked out (ice, carbon), or ``None`` when unknown;
        read from the optional ``masked_fraction`` key of the motion metadata.
    """

    name: str
    movie_path: Path | None
    average_path: Path | None
    odd_path: Path | None
    even_path: Path | None
    motion_metadata_path: Path | None
    motion_star_path: Path | None
    motion: FrameMotion | None
    input_settings: MovieInputSettings | None
    raw_pixel_size_a: float
    output_pixel_size_a: float
    frame_shape_px: tuple[int, int]
    output_shape_px: tuple[int, int]
    accumulated_dose_e_per_a2: tuple[float, ...]
    motion_summary: dict[str, float] = field(default_factory=dict)
    ctf: CtfResult | None = None
    ctf_path: Path | None = None
    acquired_at: float = 0.0
    masked_fraction: float | None = None


@dataclass(frozen=True)
class SourceProblem:
    """An item that could not be read: the offending file and what is wrong with it."""

    path: Path
    message: str


def read_micrograph_source(motion_json: Path, *, ctf_json: Path | None = None) -> MicrographSource:
    """Read one movie's motion metadata (and optionally its CTF estimate).

    Parameters
    ----------
    motion_json:
        ``OUT/motion/<stem>.json`` written by motion correction (schema
        :data:`~cryowarp.preprocess.motion.MOTION_METADATA_VERSION`).
    ctf_json:
        ``<stem>_ctf.json`` written by ``cryowarp ctf estimate`` (read with
        :meth:`CtfResult.from_dict`), or ``None``.

    Raises
    ------
    MissingFileError
        A JSON file or the average it names is missing.
    CorruptFileError
        A JSON file cannot be decoded.
    FileFormatError
        The metadata lacks keys, has another schema version or malformed values.
    """
    path = Path(motion_json)
    document = _load_json(path)
    missing = [key for key in _REQUIRED_KEYS if key not in document]
    if missing:
        raise FileFormatError(
            path, f"motion metadata lacks keys {missing}", "re-run cryowarp motion on the movie"
        )
    version = document["schema_version"]
    if version != MOTION_METADATA_VERSION:
        raise FileFormatError(
            path,
            f"motion metadata schema_version {version!r} is not supported "
            f"(this cryowarp reads version {MOTION_METADATA_VERSION})",
        )
    try:
        source = _parse_motion(path, document)
    except CryowarpError:
        raise
    except (KeyError, TypeError, ValueError, IndexError) as error:
        problem = f"malformed motion metadata: {_describe(error)}"
        raise FileFormatError(path, problem) from error
    if ctf_json is None:
        return source
    ctf = read_ctf_json(Path(ctf_json))
    return _with_ctf(source, ctf, Path(ctf_json))


def source_from_average(
    average_mrc: Path, *, ctf_json: Path | None = None, pixel_size_a: float | None = None
) -> MicrographSource:
    """An exportable item made from a motion-corrected average alone (e.g. MotionCor2's).

    The name is the file stem; there is no motion, dose or movie. ``pixel_size_a`` (Å)
    overrides the MRC header's.

    Raises
    ------
    MissingFileError, FileFormatError
        The average is missing, not a single MRC image, or has no pixel size.
    """
    path = Path(average_mrc)
    header = read_mrc_header(path)
    sizes = dict(zip(header.axis_order, reversed(header.shape), strict=True))  # axis -> size
    if sizes[3] != 1:
        raise FileFormatError(path, f"holds {sizes[3]} sections, not one micrograph")
    px = pixel_size_a if pixel_size_a is not None else header.pixel_size_a
    if px is None or not px > 0:
        raise FileFormatError(
            path, "the header records no pixel size", "give the pixel size in Å explicitly"
        )
    shape = (sizes[2], sizes[1])
    source = MicrographSource(
        name=path.stem,
        movie_path=None,
        average_path=path,
        odd_path=None,
        even_path=None,
        motion_metadata_path=None,
        motion_star_path=None,
        motion=None,
        input_settings=None,
        raw_pixel_size_a=float(px),
        output_pixel_size_a=float(px),
        frame_shape_px=shape,
        output_shape_px=shape,
        accumulated_dose_e_per_a2=(),
        acquired_at=path.stat().st_mtime,
    )
    if ctf_json is None:
        return source
    return _with_ctf(source, read_ctf_json(Path(ctf_json)), Path(ctf_json))


def scan_processing_folder(
    folder: Path, *, ctf_dir: Path | None = None
) -> tuple[list[MicrographSource], list[SourceProblem]]:
    """Every item of a processing folder: ``folder/motion/*.json`` with its CTF estimate
    ``<ctf_dir or folder/ctf>/<stem>_ctf.json`` when there is one.

    An item that cannot be read becomes a :class:`SourceProblem` and the others go on. Both
    lists are sorted by item name. A folder without ``motion/`` (nothing processed yet) gives
    two empty lists.

    Raises
    ------
    MissingFileError
        ``folder`` is not a folder.
    """
    root = Path(folder)
    if not root.is_dir():
        raise MissingFileError(root, "is not a folder")
    ctf_folder = Path(ctf_dir) if ctf_dir is not None else root / "ctf"
    sources: list[MicrographSource] = []
    problems: list[SourceProblem] = []
    motion_folder = root / "motion"
    candidates = list(motion_folder.glob("*.json")) if motion_folder.is_dir() else []
    for motion_json in sorted(candidates, key=lambda p: p.stem):
        ctf_json = ctf_folder / f"{motion_json.stem}_ctf.json"
        try:
            sources.append(
                read_micrograph_source(
                    motion_json, ctf_json=ctf_json if ctf_json.is_file() else None
                )
            )
        except CryowarpInputError as error:
            problems.append(SourceProblem(error.path or motion_json, str(error)))
        except OSError as error:
            problems.append(SourceProblem(motion_json, f"{motion_json}: {_describe(error)}"))
    return sources, problems


def read_ctf_json(path: Path) -> CtfResult:
    """A :class:`CtfResult` from ``<stem>_ctf.json``; errors name the file."""
    document = _load_json(path)
    try:
        return CtfResult.from_dict(document)
    except InvalidValuesError as error:
        raise FileFormatError(path, error.problem) from error
    except (TypeError, ValueError) as error:
        raise FileFormatError(path, f"malformed CTF result: {_describe(error)}") from error


# -- helpers -------------------------------------------------------------------------------


def _load_json(path: Path) -> dict[str, Any]:
    require_file(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise CorruptFileError(path, f"cannot be read ({_describe(error)})") from error
    except UnicodeDecodeError as error:
        raise CorruptFileError(path, "is not UTF-8 text") from error
    try:
        document = json.loads(text)
    except json.JSONDecodeError as error:
        raise CorruptFileError(
            path, f"is not valid JSON ({error.msg} at line {error.lineno})"
        ) from error
    if not isinstance(document, dict):
        raise FileFormatError(path, f"holds a JSON {type(document).__name__}, not an object")
    return document


def _parse_motion(path: Path, document: dict[str, Any]) -> MicrographSource:
    root = _output_root(path, document.get("files"))
    name = path.stem
    files = _relative_files(root, name, document.get("files"))
    average = files.get("average")
    if average is None or not average.is_file():
        raise MissingFileError(
            average or path, "the motion-corrected average is missing", "re-run cryowarp motion"
        )
    movie = Path(str(document["movie"]))
    try:
        input_settings = MovieInputSettings.model_validate(document["input_settings"])
    except ValidationError as error:
        raise FileFormatError(path, f"invalid input_settings: {error}") from error
    masked = document.get(_MASKED_FRACTION_KEY)
    acquired_from = movie if movie.is_file() else path
    return MicrographSource(
        name=name,
        movie_path=movie,
        average_path=average,
        odd_path=_existing(files.get("odd")),
        even_path=_existing(files.get("even")),
        motion_metadata_path=path,
        motion_star_path=_existing(files.get("star")),
        motion=FrameMotion.from_dict(document["motion"]),
        input_settings=input_settings,
        raw_pixel_size_a=_positive(document["raw_pixel_size_a"], "raw_pixel_size_a"),
        output_pixel_size_a=_positive(document["output_pixel_size_a"], "output_pixel_size_a"),
        frame_shape_px=_shape(document["frame_shape_px"]),
        output_shape_px=_shape(document["output_shape_px"]),
        accumulated_dose_e_per_a2=tuple(
            float(v) for v in document["dose"]["accumulated_dose_e_per_a2"]
        ),
        motion_summary={str(k): float(v) for k, v in dict(document["summary"]).items()},
        acquired_at=acquired_from.stat().st_mtime,
        masked_fraction=None if masked is None else _fraction(masked),
    )


def _output_root(path: Path, files: Any) -> Path:
    """The output folder: the metadata's path with its recorded relative path taken off."""
    if isinstance(files, dict) and isinstance(files.get("metadata"), str):
        parts = PurePosixPath(files["metadata"]).parts
        if 0 < len(parts) <= len(path.parts) and path.parts[-len(parts) :] == parts:
            return path.parents[len(parts) - 1]
    return path.parent.parent


def _relative_files(root: Path, name: str, files: Any) -> dict[str, Path | None]:
    """The recorded outputs under ``root``; the standard layout when none are recorded."""
    if files is None:
        paths = motion_output_paths(root, name)
        return {"average": paths.average, "odd": paths.odd, "even": paths.even, "star": paths.star}
    if not isinstance(files, dict):
        raise TypeError(f"'files' must be an object, got {type(files).__name__}")
    return {str(k): None if v is None else root / str(v) for k, v in files.items()}


def _with_ctf(source: MicrographSource, ctf: CtfResult, ctf_path: Path) -> MicrographSource:
    return replace(source, ctf=ctf, ctf_path=ctf_path)


def _existing(path: Path | None) -> Path | None:
    return path if path is not None and path.is_file() else None


def _positive(value: Any, key: str) -> float:
    number = float(value)
    if not (math.isfinite(number) and number > 0):
        raise ValueError(f"{key} must be a positive number, got {value!r}")
    return number


def _fraction(value: Any) -> float:
    number = float(value)
    if not 0.0 <= number <= 1.0:
        raise ValueError(f"{_MASKED_FRACTION_KEY} must lie in [0, 1], got {value!r}")
    return number


def _shape(value: Any) -> tuple[int, int]:
    h, w = (int(v) for v in value)
    if h < 1 or w < 1:
        raise ValueError(f"shape must be positive (h, w), got {value!r}")
    return (h, w)


def _describe(error: BaseException) -> str:
    if isinstance(error, KeyError):
        return f"missing key {error.args[0]!r}"
    if isinstance(error, OSError) and error.strerror:
        return error.strerror
    return str(error)
