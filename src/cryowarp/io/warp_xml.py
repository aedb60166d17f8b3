"""Warp / WarpTools item metadata (``<Movie>`` and ``<TiltSeries>`` XML files).

Layout as Warp writes it (see docs/io_tomo.md):

- The root element's attributes are item-level values (``UnselectFilter``,
  ``CTFResolutionEstimate``, ``MeanFrameMovement``, ``PlaneNormal``, ...).
- ``<Name><Param Name=".." Value=".."/>...</Name>`` blocks hold settings (``OptionsCTF``,
  ``OptionsMovement``, ...) and the fitted ``CTF``.
- Tilt series carry per-tilt lists as newline-separated element text: ``Angles``, ``Dose``,
  ``UseTilt``, ``AxisAngle``, ``AxisOffsetX``, ``AxisOffsetY``, ``MoviePath``,
  ``FOVFraction``.
- ``PS1D``/``SimulatedScale`` (and per-tilt ``TiltPS1D``/``TiltSimulatedScale`` with an
  ``ID``) are curves written as ``x|y;x|y;...``.
- Grid models (``GridCTF``, ``GridMovementX``, ``GridLocalX``, ``GridAngleX``, ...) have
  ``Width``/``Height``/``Depth`` (and ``Duration`` for 4D grids) attributes and one
  ``<Node X= Y= Z= [W=] Value=/>`` per control point.  :class:`WarpGrid` keeps them as
  dimensions plus a flat value list with **X running fastest, then Y, Z, W** — the order in
  which Warp lists the nodes; each value is placed by its explicit node indices.

Every other element is kept as a generic :class:`WarpElement` tree.  Units are Warp's, named
in the fields: defocus in µm (underfocus positive, docs/conventions.md §6), phase shift in
units of π, Cs in mm, voltage in kV, pixel size in Å, dose in e⁻/Å², axis offsets in Å.
"""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from cryowarp.errors import FileFormatError
from cryowarp.io.files import require_file

__all__ = [
    "WarpCTF",
    "WarpElement",
    "WarpGrid",
    "WarpItemMetadata",
    "WarpTiltArrays",
    "read_warp_xml",
]

_TILT_NUMERIC = {
    "Angles": "angles_deg",
    "Dose": "dose_e_per_a2",
    "AxisAngle": "axis_angle_deg",
    "AxisOffsetX": "axis_offset_x_a",
    "AxisOffsetY": "axis_offset_y_a",
    "FOVFraction": "fov_fraction",
}
_TILT_TEXT = ("UseTilt", "MoviePath")
_CURVES = ("PS1D", "SimulatedScale")
_TILT_CURVES = ("TiltPS1D", "TiltSimulatedScale")
_GRID_DIMS = ("Width", "Height", "Depth", "Duration")
_NODE_AXES = ("X", "Y", "Z", "W")


@dataclass(frozen=True)
class WarpElement:
    """An element the reader has no typed record for, kept as written."""

    tag: str
    attributes: Mapping[str, str]
    text: str
    children: tuple[WarpElement, ...]


@dataclass(frozen=True)
class WarpGrid:
    """A Warp control-point grid, not evaluated.

    Attributes
    ----------
    dims:
        ``(width, height, depth)`` or ``(width, height, depth, duration)``: node counts
        along X, Y, Z (and W).
    values:
        ``(prod(dims),)`` float64, X fastest, then Y, Z, W (``as_array`` reshapes it).
    margins:
        ``MarginX/Y/Z`` attributes when present (fractions of the item's extent).
    """

    name: str
    dims: tuple[int, ...]
    values: npt.NDArray[np.float64]
    margins: tuple[float, ...] | None

    def as_array(self) -> npt.NDArray[np.float64]:
        """The values as ``(depth, height, width)`` or ``(duration, depth, height, width)``
        (docs/conventions.md §1 axis order)."""
        return self.values.reshape(tuple(reversed(self.dims)))


@dataclass(frozen=True)
class WarpCTF:
    """Warp's ``<CTF>`` block; ``params`` keeps every ``Param`` as written."""

    pixel_size_a: float
    pixel_size_delta_percent: float
    pixel_size_angle_deg: float
    voltage_kv: float
    cs_mm: float
    cc_mm: float | None
    amplitude: float
    defocus_um: float
    defocus_delta_um: float
    defocus_angle_deg: float
    phase_shift_pi: float  # units of π
    bfactor_a2: float
    bfactor_delta_a2: float
    bfactor_angle_deg: float
    scale: float
    beam_tilt_mrad: tuple[float, ...]
    zernike_coeffs_odd: tuple[float, ...]
    zernike_coeffs_even: tuple[float, ...]
    distortion: tuple[float, ...]
    params: Mapping[str, str]


@dataclass(frozen=True)
class WarpTiltArrays:
    """Per-tilt lists of a ``<TiltSeries>``, all ``(n_tilts,)`` in file order."""

    angles_deg: npt.NDArray[np.float64]
    dose_e_per_a2: npt.NDArray[np.float64]
    use_tilt: npt.NDArray[np.bool_]
    axis_angle_deg: npt.NDArray[np.float64]
    axis_offset_x_a: npt.NDArray[np.float64]
    axis_offset_y_a: npt.NDArray[np.float64]
    movie_paths: tuple[str, ...]
    fov_fraction: npt.NDArray[np.float64] | None

    @property
    def n_tilts(self) -> int:
        """Number of tilts."""
        return int(self.angles_deg.shape[0])


@dataclass(frozen=True)
class WarpItemMetadata:
    """A parsed Warp item XML.

    ``kind`` is the root tag (``"Movie"`` or ``"TiltSeries"``); ``attributes`` all root
    attributes as written, with the common ones also typed.
    """

    path: Path
    kind: str
    attributes: Mapping[str, str]
    unselect_filter: bool | None
    unselect_manual: bool | None  # None when empty (no manual decision)
    ctf_resolution_estimate_a: float | None
    mean_frame_movement_a: float | None
    ctf: WarpCTF | None
    param_blocks: Mapping[str, Mapping[str, str]]
    grids: Mapping[str, WarpGrid]
    tilts: WarpTiltArrays | None
    curves: Mapping[str, npt.NDArray[np.float64]]  # name -> (n_points, 2)
    tilt_curves: Mapping[str, tuple[npt.NDArray[np.float64], ...]]  # name -> per tilt (n, 2)
    other: tuple[WarpElement, ...]


class _Reader:
    """Conversion of XML text to typed values with errors that name the file and element."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def error(self, where: str, problem: str) -> FileFormatError:
        return FileFormatError(self.path, f"{where}: {problem}")

    def number(self, text: str, where: str) -> float:
        try:
            value = float(text.strip())
        except ValueError:
            raise self.error(where, f"{text.strip()!r} is not a number") from None
        if not math.isfinite(value):
            raise self.error(where, f"{text.strip()!r} is not finite")
        return value

    def numbers(self, text: str, where: str, separator: str | None = None) -> tuple[float, ...]:
        parts = [p for p in (text.split(separator) if separator else text.split()) if p.strip()]
        return tuple(self.number(p, where) for p in parts)

    def integer(self, text: str, where: str) -> int:
        value = self.number(text, where)
        if value != int(value) or value < 0:
            raise self.error(where, f"{text!r} is not a non-negative integer")
        return int(value)

    def boolean(self, text: str, where: str) -> bool:
        lowered = text.strip().lower()
        if lowered not in ("true", "false"):
            raise self.error(where, f"{text.strip()!r} is not True/False")
        return lowered == "true"

    def grid(self, element: ET.Element) -> WarpGrid:
        where = f"<{element.tag}>"
        dims = tuple(
            self.integer(element.attrib[d], f"{where} {d}")
            for d in _GRID_DIMS
            if d in element.attrib
        )
        axes = _NODE_AXES[: len(dims)]
        size = math.prod(dims)
        values = np.full(size, np.nan)
        filled = np.zeros(size, dtype=bool)
        for node in element.findall("Node"):
            if "Value" not in node.attrib:
                raise self.error(where, "a <Node> has no Value")
            index = 0
            stride = 1
            for axis, dim in zip(axes, dims, strict=True):
                i = self.integer(node.attrib.get(axis, "0"), f"{where} Node {axis}")
                if i >= dim:
                    raise self.error(where, f"Node {axis}={i} outside the grid size {dim}")
                index += i * stride
                stride *= dim
            if filled[index]:
                raise self.error(where, f"two nodes at the same position {node.attrib}")
            values[index] = self.number(node.attrib["Value"], f"{where} Node Value")
            filled[index] = True
        if not filled.all():
            raise self.error(
                where, f"{int(filled.sum())} nodes for a {'×'.join(map(str, dims))} grid"
            )
        margins = tuple(
            self.number(element.attrib[m], f"{where} {m}")
            for m in ("MarginX", "MarginY", "MarginZ")
            if m in element.attrib
        )
        return WarpGrid(element.tag, dims, values, margins or None)

    def curve(self, element: ET.Element) -> npt.NDArray[np.float64]:
        where = f"<{element.tag}>"
        points = []
        for pair in (element.text or "").strip().split(";"):
            if not pair.strip():
                continue
            x, sep, y = pair.partition("|")
            if not sep:
                raise self.error(where, f"curve point {pair!r} is not 'x|y'")
            points.append((self.number(x, where), self.number(y, where)))
        return np.asarray(points, dtype=np.float64).reshape(len(points), 2)

    def ctf(self, params: Mapping[str, str]) -> WarpCTF:
        def get(name: str, default: str | None = None) -> float:
            if name not in params and default is None:
                raise self.error("<CTF>", f"Param {name} is missing")
            return self.number(params.get(name, default or ""), f"<CTF> Param {name}")

        def listed(name: str, separator: str) -> tuple[float, ...]:
            return self.numbers(params.get(name, ""), f"<CTF> Param {name}", separator)

        return WarpCTF(
            pixel_size_a=get("PixelSize"),
            pixel_size_delta_percent=get("PixelSizeDeltaPercent", "0"),
            pixel_size_angle_deg=get("PixelSizeAngle", "0"),
            voltage_kv=get("Voltage"),
            cs_mm=get("Cs"),
            cc_mm=get("Cc") if "Cc" in params else None,
            amplitude=get("Amplitude"),
            defocus_um=get("Defocus"),
            defocus_delta_um=get("DefocusDelta", "0"),
            defocus_angle_deg=get("DefocusAngle", "0"),
            phase_shift_pi=get("PhaseShift", "0"),
            bfactor_a2=get("Bfactor", "0"),
            bfactor_delta_a2=get("BfactorDelta", "0"),
            bfactor_angle_deg=get("BfactorAngle", "0"),
            scale=get("Scale", "1"),
            beam_tilt_mrad=listed("BeamTilt", ","),
            zernike_coeffs_odd=listed("ZernikeCoeffsOdd", ";"),
            zernike_coeffs_even=listed("ZernikeCoeffsEven", ";"),
            distortion=listed("Distortion", ","),
            params=dict(params),
        )

    def tilts(self, lists: Mapping[str, str]) -> WarpTiltArrays:
        def lines(name: str) -> list[str]:
            return [v.strip() for v in lists[name].splitlines() if v.strip()]

        missing = [n for n in ("Angles", "Dose", "UseTilt", "AxisAngle") if n not in lists]
        if missing:
            raise self.error("<TiltSeries>", f"per-tilt lists missing: {', '.join(missing)}")
        numeric = {
            field: np.asarray([self.number(v, f"<{name}>") for v in lines(name)])
            for name, field in _TILT_NUMERIC.items()
            if name in lists
        }
        use_tilt = np.asarray([self.boolean(v, "<UseTilt>") for v in lines("UseTilt")], bool)
        movie_paths = tuple(lines("MoviePath")) if "MoviePath" in lists else ()
        n = numeric["angles_deg"].shape[0]
        lengths = {name: len(lines(name)) for name in lists}
        wrong = {name: count for name, count in lengths.items() if count != n}
        if wrong:
            raise self.error("<TiltSeries>", f"{n} Angles but per-tilt lists of sizes {wrong}")
        return WarpTiltArrays(
            angles_deg=numeric["angles_deg"],
            dose_e_per_a2=numeric["dose_e_per_a2"],
            use_tilt=use_tilt,
            axis_angle_deg=numeric["axis_angle_deg"],
            axis_offset_x_a=numeric.get("axis_offset_x_a", np.zeros(n)),
            axis_offset_y_a=numeric.get("axis_offset_y_a", np.zeros(n)),
            movie_paths=movie_paths,
            fov_fraction=numeric.get("fov_fraction"),
        )


def _generic(element: ET.Element) -> WarpElement:
    return WarpElement(
        tag=element.tag,
        attributes=dict(element.attrib),
        text=(element.text or "").strip(),
        children=tuple(_generic(child) for child in element),
    )


def _optional_bool(reader: _Reader, attributes: Mapping[str, str], name: str) -> bool | None:
    value = attributes.get(name, "").strip()
    return reader.boolean(value, f"attribute {name}") if value else None


def _optional_float(reader: _Reader, attributes: Mapping[str, str], name: str) -> float | None:
    value = attributes.get(name, "").strip()
    return reader.number(value, f"attribute {name}") if value else None


def read_warp_xml(path: str | Path) -> WarpItemMetadata:
    """Read a Warp/WarpTools ``<Movie>`` or ``<TiltSeries>`` metadata XML.

    Returns
    -------
    WarpItemMetadata
        Typed item attributes, CTF, per-tilt arrays, grids and curves; everything else as
        :class:`WarpElement`.

    Raises
    ------
    FileFormatError
        Not well-formed XML (the message names line and column), an unexpected root
        element, a non-numeric value, a grid whose nodes do not fill its dimensions, or
        per-tilt lists of different lengths (the message names the element).
    """
    path = require_file(path)
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as error:
        line, column = error.position
        raise FileFormatError(
            path, f"line {line}, column {column}: not well-formed XML ({error})"
        ) from None
    if root.tag not in ("Movie", "TiltSeries"):
        raise FileFormatError(
            path, f"root element <{root.tag}> is neither <Movie> nor <TiltSeries>"
        )
    reader = _Reader(path)
    param_blocks: dict[str, dict[str, str]] = {}
    grids: dict[str, WarpGrid] = {}
    curves: dict[str, npt.NDArray[np.float64]] = {}
    tilt_curves: dict[str, list[tuple[int, npt.NDArray[np.float64]]]] = {}
    tilt_lists: dict[str, str] = {}
    other: list[WarpElement] = []
    for child in root:
        children = list(child)
        if "Width" in child.attrib and all(c.tag == "Node" for c in children):
            grids[child.tag] = reader.grid(child)
        elif children and all(c.tag == "Param" for c in children):
            param_blocks[child.tag] = {
                c.attrib.get("Name", ""): c.attrib.get("Value", "") for c in children
            }
        elif root.tag == "TiltSeries" and (child.tag in _TILT_NUMERIC or child.tag in _TILT_TEXT):
            tilt_lists[child.tag] = child.text or ""
        elif child.tag in _CURVES:
            curves[child.tag] = reader.curve(child)
        elif child.tag in _TILT_CURVES:
            tilt_id = reader.integer(child.attrib.get("ID", ""), f"<{child.tag}> ID")
            tilt_curves.setdefault(child.tag, []).append((tilt_id, reader.curve(child)))
        else:
            other.append(_generic(child))
    attributes = dict(root.attrib)
    return WarpItemMetadata(
        path=path,
        kind=root.tag,
        attributes=attributes,
        unselect_filter=_optional_bool(reader, attributes, "UnselectFilter"),
        unselect_manual=_optional_bool(reader, attributes, "UnselectManual"),
        ctf_resolution_estimate_a=_optional_float(reader, attributes, "CTFResolutionEstimate"),
        mean_frame_movement_a=_optional_float(reader, attributes, "MeanFrameMovement"),
        ctf=reader.ctf(param_blocks["CTF"]) if "CTF" in param_blocks else None,
        param_blocks=param_blocks,
        grids=grids,
        tilts=reader.tilts(tilt_lists) if tilt_lists else None,
        curves=curves,
        tilt_curves={
            name: tuple(curve for _, curve in sorted(items, key=lambda item: item[0]))
            for name, items in tilt_curves.items()
        },
        other=tuple(other),
    )
