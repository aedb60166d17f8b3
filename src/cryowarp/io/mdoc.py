"""SerialEM ``.mdoc`` autodoc files (tilt series, frame sets, montages).

Format (SerialEM help, "Metadata autodoc files"): global ``Key = value`` lines first, then
``[T = ...]`` title lines, then sections opened by ``[ZValue = n]`` (one per image of the
stack), ``[FrameSet = n]`` (frame-series saving) or ``[MontSection = n]`` (montage
overviews), each followed by its ``Key = value`` lines.  Values are text; several numbers on
one line are space-separated.

SerialEM's units and signs are kept, with the units in the field names: stage position in
µm, ``PixelSpacing`` in Å, ``ExposureDose`` in e⁻/Å², ``ExposureTime`` in s.  **SerialEM's
``Defocus`` and ``TargetDefocus`` are the microscope's focus setting (negative =
underfocus, relative to an arbitrary zero)** — the opposite sign of cryowarp's
``defocus_um`` (docs/conventions.md §6) and not a measured defocus; they are therefore named
``microscope_defocus_um`` and ``target_defocus_um``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt

from cryowarp.errors import FileFormatError
from cryowarp.io._text import read_lines

__all__ = ["Mdoc", "MdocSection", "read_mdoc"]

_SECTION = re.compile(r"^\[\s*([A-Za-z][A-Za-z0-9_]*)\s*=\s*(.*?)\s*\]$")
_TILT_AXIS = re.compile(r"Tilt axis angle\s*=\s*([-+]?\d+(?:\.\d*)?)")


@dataclass(frozen=True)
class _Entries:
    """``Key = value`` lines of one block, remembering line numbers for error messages."""

    path: Path
    values: Mapping[str, str]
    lines: Mapping[str, int]

    def floats(self, key: str, count: int | None = None) -> tuple[float, ...] | None:
        raw = self.values.get(key)
        if raw is None:
            return None
        try:
            numbers = tuple(float(v) for v in raw.split())
        except ValueError:
            raise FileFormatError(
                self.path, f"line {self.lines[key]}: {key} = {raw!r} is not numeric"
            ) from None
        if count is not None and len(numbers) != count:
            raise FileFormatError(
                self.path,
                f"line {self.lines[key]}: {key} needs {count} number(s), found {len(numbers)}",
            )
        return numbers

    def number(self, key: str) -> float | None:
        numbers = self.floats(key, 1)
        return None if numbers is None else numbers[0]

    def integer(self, key: str) -> int | None:
        value = self.number(key)
        if value is None:
            return None
        if value != int(value):
            raise FileFormatError(
                self.path, f"line {self.lines[key]}: {key} = {value} is not an integer"
            )
        return int(value)


@dataclass(frozen=True)
class MdocSection:
    """One ``[ZValue]``, ``[FrameSet]`` or ``[MontSection]`` block.

    ``entries`` holds every ``Key = value`` line as written; the typed fields are ``None``
    where the key is absent.
    """

    kind: str  # "ZValue", "FrameSet", "MontSection" (or another bracketed section name)
    index: int
    line_number: int
    entries: Mapping[str, str]
    tilt_angle_deg: float | None
    stage_position_um: tuple[float, float] | None  # (x, y)
    stage_z_um: float | None
    image_shift: tuple[float, float] | None  # microscope image-shift units
    magnification: float | None
    pixel_size_a: float | None
    exposure_dose_e_per_a2: float | None
    prior_record_dose_e_per_a2: float | None
    exposure_time_s: float | None
    dose_rate: float | None  # SerialEM: electrons per unbinned pixel per second
    microscope_defocus_um: float | None  # SerialEM sign: negative = underfocus
    target_defocus_um: float | None  # SerialEM sign: negative = underfocus
    rotation_angle_deg: float | None
    binning: float | None
    spot_size: int | None
    intensity: float | None
    min_max_mean: tuple[float, float, float] | None
    sub_frame_path: str | None
    num_sub_frames: int | None
    frame_doses_and_number: tuple[float, ...] | None
    piece_coordinates_px: tuple[int, ...] | None  # montage piece (x, y, z)
    date_time: str | None
    navigator_label: str | None

    @property
    def frame_file_name(self) -> str | None:
        """Base name of ``SubFramePath`` (SerialEM writes Windows paths)."""
        if self.sub_frame_path is None:
            return None
        return re.split(r"[\\/]", self.sub_frame_path)[-1]


@dataclass(frozen=True)
class Mdoc:
    """A parsed ``.mdoc`` file.

    Attributes
    ----------
    header:
        Global ``Key = value`` lines before the first section (e.g. ``PixelSpacing``,
        ``ImageFile``, ``ImageSize``, ``Voltage``).
    titles:
        The ``[T = ...]`` title lines (and an unbracketed global ``T = ...``), in order.
    z_values, frame_sets, montage_sections:
        Sections of each kind in file order; ``other_sections`` holds any other bracketed
        section kind.
    """

    path: Path
    header: Mapping[str, str]
    titles: tuple[str, ...]
    z_values: tuple[MdocSection, ...]
    frame_sets: tuple[MdocSection, ...]
    montage_sections: tuple[MdocSection, ...]
    other_sections: tuple[MdocSection, ...] = field(default=())
    pixel_size_a: float | None = None
    voltage_kv: float | None = None
    image_file: str | None = None
    image_size_px: tuple[int, int] | None = None  # (width, height)
    tilt_axis_angle_deg: float | None = None  # from the "Tilt axis angle = ..." title

    def column(self, name: str) -> npt.NDArray[np.float64]:
        """``(n_z_values,)`` float64 of a typed numeric field of the ``[ZValue]`` sections
        (e.g. ``"tilt_angle_deg"``), NaN where absent."""
        out = np.full(len(self.z_values), np.nan)
        for i, section in enumerate(self.z_values):
            value = getattr(section, name)
            if value is not None:
                out[i] = float(value)
        return out

    @property
    def tilt_angles_deg(self) -> npt.NDArray[np.float64]:
        """``(n_z_values,)`` tilt angles in degrees, in stack (``ZValue``) order."""
        return self.column("tilt_angle_deg")

    @property
    def exposure_doses_e_per_a2(self) -> npt.NDArray[np.float64]:
        """``(n_z_values,)`` exposure dose of each image in e⁻/Å² (0 where SerialEM had no
        dose calibration)."""
        return self.column("exposure_dose_e_per_a2")


def _section(kind: str, index: int, line_number: int, entries: _Entries) -> MdocSection:
    stage = entries.floats("StagePosition", 2)
    shift = entries.floats("ImageShift", 2)
    mmm = entries.floats("MinMaxMean", 3)
    pieces = entries.floats("PieceCoordinates")
    return MdocSection(
        kind=kind,
        index=index,
        line_number=line_number,
        entries=dict(entries.values),
        tilt_angle_deg=entries.number("TiltAngle"),
        stage_position_um=None if stage is None else (stage[0], stage[1]),
        stage_z_um=entries.number("StageZ"),
        image_shift=None if shift is None else (shift[0], shift[1]),
        magnification=entries.number("Magnification"),
        pixel_size_a=entries.number("PixelSpacing"),
        exposure_dose_e_per_a2=entries.number("ExposureDose"),
        prior_record_dose_e_per_a2=entries.number("PriorRecordDose"),
        exposure_time_s=entries.number("ExposureTime"),
        dose_rate=entries.number("DoseRate"),
        microscope_defocus_um=entries.number("Defocus"),
        target_defocus_um=entries.number("TargetDefocus"),
        rotation_angle_deg=entries.number("RotationAngle"),
        binning=entries.number("Binning"),
        spot_size=entries.integer("SpotSize"),
        intensity=entries.number("Intensity"),
        min_max_mean=None if mmm is None else (mmm[0], mmm[1], mmm[2]),
        sub_frame_path=entries.values.get("SubFramePath"),
        num_sub_frames=entries.integer("NumSubFrames"),
        frame_doses_and_number=entries.floats("FrameDosesAndNumber"),
        piece_coordinates_px=None if pieces is None else tuple(int(v) for v in pieces),
        date_time=entries.values.get("DateTime"),
        navigator_label=entries.values.get("NavigatorLabel"),
    )


def read_mdoc(path: str | Path) -> Mdoc:
    """Read a SerialEM ``.mdoc`` file.

    Parameters
    ----------
    path:
        The ``.mdoc`` file.

    Returns
    -------
    Mdoc
        Header, titles and typed sections; see the module docstring for units and signs.

    Raises
    ------
    FileFormatError
        Empty file, a line that is neither ``Key = value`` nor ``[Section = n]``, a
        non-integer section index, or a non-numeric value where a number is expected (the
        message names the line).
    """
    path = Path(path)
    lines = read_lines(path)
    header: dict[str, str] = {}
    header_lines: dict[str, int] = {}
    titles: list[str] = []
    blocks: list[tuple[str, int, int, dict[str, str], dict[str, int]]] = []
    current_values, current_lines = header, header_lines
    for line_number, raw in enumerate(lines, start=1):
        line = raw.strip()
        if not line:
            continue
        if line.startswith("["):
            match = _SECTION.match(line)
            if match is None:
                raise FileFormatError(
                    path, f"line {line_number}: malformed section header {line!r}"
                )
            kind, value = match.group(1), match.group(2)
            if kind == "T":
                titles.append(value)
                continue
            try:
                index = int(value)
            except ValueError:
                raise FileFormatError(
                    path, f"line {line_number}: section index {value!r} is not an integer"
                ) from None
            current_values, current_lines = {}, {}
            blocks.append((kind, index, line_number, current_values, current_lines))
            continue
        key, sep, value = line.partition("=")
        key = key.strip()
        if not sep or not key or " " in key:
            raise FileFormatError(
                path, f"line {line_number}: expected 'Key = value', found {line!r}"
            )
        if key == "T" and current_values is header:
            titles.append(value.strip())
            continue
        current_values[key] = value.strip()
        current_lines[key] = line_number
    if not header and not titles and not blocks:
        raise FileFormatError(path, "empty file: no mdoc entries found")

    sections = [
        _section(kind, index, line_number, _Entries(path, values, numbers))
        for kind, index, line_number, values, numbers in blocks
    ]
    head = _Entries(path, header, header_lines)
    size = head.floats("ImageSize", 2)
    tilt_axis = None
    for title in titles:
        axis_match = _TILT_AXIS.search(title)
        if axis_match is not None:
            tilt_axis = float(axis_match.group(1))
            break
    voltage = head.number("Voltage")
    pixel = head.number("PixelSpacing")
    if pixel is not None and not (math.isfinite(pixel) and pixel > 0):
        raise FileFormatError(path, f"line {header_lines['PixelSpacing']}: pixel size {pixel}")
    return Mdoc(
        path=path,
        header=header,
        titles=tuple(titles),
        z_values=tuple(s for s in sections if s.kind == "ZValue"),
        frame_sets=tuple(s for s in sections if s.kind == "FrameSet"),
        montage_sections=tuple(s for s in sections if s.kind == "MontSection"),
        other_sections=tuple(
            s for s in sections if s.kind not in ("ZValue", "FrameSet", "MontSection")
        ),
        pixel_size_a=pixel,
        voltage_kv=voltage,
        image_file=header.get("ImageFile"),
        image_size_px=None if size is None else (int(size[0]), int(size[1])),
        tilt_axis_angle_deg=tilt_axis,
    )
