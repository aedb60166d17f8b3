"""Check a STAR file against what RELION 5 needs, before cryowarp hands it to RELION.

:func:`validate_relion_star` returns every problem found as a :class:`StarProblem`;
:func:`check_relion_star` raises :class:`~cryowarp.errors.FileFormatError` listing them.
Conventions (units, image names, origins): docs/conventions.md §4; file layouts:
docs/io_star.md, docs/relion_export.md.

What RELION 5 does, from its source code (github ``3dem/relion``, facts only):

- ``src/metadata_table.cpp`` (``MetaDataTable::readStar``, ``readStarLoop``, ``write``):
  RELION writes ``# version 50001`` before every ``data_`` block and reads a file without
  such a line as version 30000; a label it does not know is kept as text after printing
  ``WARNING: will ignore (but maintain) values for the unknown label``; a loop ends at its
  first empty line (later rows are lost); a row with fewer values than labels is an error.
- ``src/jaz/single_particle/obs_model.cpp`` (``ObservationModel::loadSafely`` and the
  constructor): a file without a (non-empty) ``data_optics`` table is taken for a RELION 3.0
  file and converted; ``data_optics`` must hold ``rlnVoltage``, ``rlnSphericalAberration``
  and a pixel size, else RELION stops; a row whose ``rlnOpticsGroup`` is not in
  ``data_optics`` stops RELION; ``rlnOpticsGroup − 1`` indexes the optics rows, so the groups
  must be numbered 1, 2, … in row order, else RELION renames them (warning); a table other
  than particles whose optics carry ``rlnImagePixelSize`` draws a warning.
- ``src/metadata_label.h``: the label names (:data:`KNOWN_RELION_LABELS` holds those cryowarp
  writes and those in RELION's files in ``../shared/data``) and units
  (``rlnAccumMotionTotal/Early/Late`` in Å, ``rlnOriginX`` deprecated pixels).
- Motion STAR files (``kind="motion"``): layout in :mod:`cryowarp.io.relion_motion`.

Required by cryowarp's exports on top of RELION's own checks: ``rlnAmplitudeContrast`` and a
unique ``rlnOpticsGroupName`` per optics group, and the columns of each kind listed in
:data:`REQUIRED_COLUMNS`.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal, TypeAlias

import numpy as np
import numpy.typing as npt
import pandas as pd

from cryowarp.errors import CryowarpInputError, FileFormatError
from cryowarp.io.mrc import read_mrc_header
from cryowarp.io.star import StarBlock, read_star

__all__ = [
    "KNOWN_RELION_LABELS",
    "REQUIRED_COLUMNS",
    "RelionStarKind",
    "StarProblem",
    "check_relion_star",
    "validate_relion_star",
]

RelionStarKind: TypeAlias = Literal["particles", "micrographs", "corrected_micrographs", "motion"]
"""``particles`` (particles.star), ``micrographs`` (micrographs_ctf.star),
``corrected_micrographs`` (corrected_micrographs.star) or ``motion`` (per-movie motion)."""

KNOWN_RELION_LABELS: frozenset[str] = frozenset(
    """
    rlnAccumMotionEarly rlnAccumMotionLate rlnAccumMotionTotal rlnAccuracyRotations
    rlnAccuracyTranslationsAngst rlnAmplitudeContrast rlnAnglePsi rlnAnglePsiPrior rlnAngleRot
    rlnAngleTilt rlnAngleTiltPrior rlnAngstromResolution rlnAutopickFigureOfMerit
    rlnAveragePmax rlnBeamTiltX rlnBeamTiltY rlnBfactorUsedForSharpening
    rlnCenteredCoordinateXAngst rlnCenteredCoordinateYAngst rlnCenteredCoordinateZAngst
    rlnClassDistribution rlnClassNumber rlnCoordinateX rlnCoordinateY rlnCoordinateZ
    rlnCorrectedFourierShellCorrelationPhaseRandomizedMaskedMaps rlnCorrelationFitGuinierPlot
    rlnCtfAstigmatism rlnCtfBfactor rlnCtfDataAreCtfPremultiplied rlnCtfDataArePhaseFlipped
    rlnCtfFigureOfMerit rlnCtfIceRingDensity rlnCtfImage rlnCtfMaxResolution
    rlnCtfPowerSpectrum rlnCtfScalefactor rlnCurrentImageSize rlnCurrentResolution
    rlnDataDimensionality rlnDefocusAngle rlnDefocusU rlnDefocusV rlnDetectorPixelSize
    rlnEERGrouping rlnEERUpsampling rlnEstimatedResolution rlnEtomoDirectiveFile rlnEvenZernike
    rlnFinalResolution rlnFittedInterceptGuinierPlot rlnFittedSlopeGuinierPlot
    rlnFourierCompleteness rlnFourierShellCorrelationCorrected
    rlnFourierShellCorrelationMaskedMaps rlnFourierShellCorrelationParticleMaskFraction
    rlnFourierShellCorrelationUnmaskedMaps rlnFourierSpaceInterpolator rlnGoldStandardFsc
    rlnGroupName rlnGroupNrParticles rlnGroupNumber rlnGroupScaleCorrection
    rlnImageDimensionality rlnImageName rlnImageOriginalName rlnImagePixelSize rlnImageSize
    rlnImageSizeX rlnImageSizeY rlnImageSizeZ rlnIsHelix rlnJobIsContinue rlnJobIsTomo
    rlnJobOptionValue rlnJobOptionVariable rlnJobTypeLabel rlnLogAmplitudesIntercept
    rlnLogAmplitudesOriginal rlnLogAmplitudesSharpened rlnLogAmplitudesWeighted
    rlnLogLikeliContribution rlnLogLikelihood rlnMagMat00 rlnMagMat01 rlnMagMat10 rlnMagMat11
    rlnMagnification rlnMaskName rlnMaxValueProbDistribution rlnMicrographBinning
    rlnMicrographDefectFile rlnMicrographDoseRate rlnMicrographFrameNumber
    rlnMicrographGainName rlnMicrographMetadata rlnMicrographMovieName rlnMicrographName
    rlnMicrographNameEven rlnMicrographNameOdd rlnMicrographOriginalPixelSize
    rlnMicrographPixelSize rlnMicrographPreExposure rlnMicrographShiftX rlnMicrographShiftY
    rlnMicrographStartFrame rlnMinRadiusNnInterpolation rlnMotionModelCoeff
    rlnMotionModelCoeffsIdx rlnMotionModelVersion rlnMtfFileName rlnMtfValue rlnNormCorrection
    rlnNormCorrectionAverage rlnNrBodies rlnNrClasses rlnNrGroups rlnNrOfFrames
    rlnNrOfSignificantSamples rlnNrOpticsGroups rlnOddZernike rlnOpticsGroup rlnOpticsGroupName
    rlnOrientationDistribution rlnOrientationalPriorMode rlnOriginX rlnOriginXAngst
    rlnOriginXPrior rlnOriginXPriorAngst rlnOriginY rlnOriginYAngst rlnOriginYPrior
    rlnOriginYPriorAngst rlnOriginZ rlnOriginZAngst rlnOriginalImageSize
    rlnOriginalParticleName rlnOverallFourierCompleteness rlnPaddingFactor
    rlnParticleBoxFractionSolventMask rlnParticleName rlnPhaseShift rlnPixelSize
    rlnPostprocessedMap rlnPostprocessedMapMasked rlnRandomSubset rlnRandomiseFrom
    rlnReferenceDimensionality rlnReferenceImage rlnReferenceSigma2 rlnReferenceTau2
    rlnResolution rlnResolutionInversePixel rlnResolutionSquared rlnSigma2Noise
    rlnSigmaOffsetsAngst rlnSigmaPriorPsiAngle rlnSigmaPriorRotAngle rlnSigmaPriorTiltAngle
    rlnSpectralIndex rlnSpectralOrientabilityContribution rlnSphericalAberration rlnSsnrMap
    rlnTau2FudgeFactor rlnTomoHand rlnTomoName rlnTomoNominalDefocus
    rlnTomoNominalStageTiltAngle rlnTomoNominalTiltAxisAngle rlnTomoParticleName
    rlnTomoParticlesFile rlnTomoReconstructedTomogramDenoised rlnTomoReconstructedTomogramHalf1
    rlnTomoReconstructedTomogramHalf2 rlnTomoSizeX rlnTomoSizeY rlnTomoSizeZ
    rlnTomoSubTomosAre2DStacks rlnTomoSubtomogramBinning rlnTomoSubtomogramPsi
    rlnTomoSubtomogramRot rlnTomoSubtomogramTilt rlnTomoTiltMovieFrameCount
    rlnTomoTiltSeriesName rlnTomoTiltSeriesPixelSize rlnTomoTiltSeriesStarFile
    rlnTomoTomogramBinning rlnTomoTomogramsFile rlnTomoTrajectoriesFile rlnTomoVisibleFrames
    rlnTomoXShiftAngst rlnTomoXTilt rlnTomoYShiftAngst rlnTomoYTilt rlnTomoZRot
    rlnUnfilteredMapHalf1 rlnUnfilteredMapHalf2 rlnVoltage
    """.split()  # noqa: SIM905 - a word list reads better than 198 quoted strings
)
"""RELION 5 labels cryowarp writes or meets in RELION's own files (a subset of
``metadata_label.h``)."""

Severity: TypeAlias = Literal["error", "warning"]


@dataclass(frozen=True)
class StarProblem:
    """One thing RELION 5 would reject, misread or warn about.

    ``block`` is the ``data_`` block name without ``data_`` (``None``: the whole file),
    ``column`` the label without ``_``, ``row`` the 0-based row of a loop (``None``: the
    whole block or column); ``severity`` is ``"warning"`` where RELION goes on (after
    printing a warning or silently fixing the file) and ``"error"`` otherwise.
    """

    block: str | None
    column: str | None
    row: int | None
    message: str
    severity: Severity = "error"

    def __str__(self) -> str:
        where = [] if self.block is None else [f"data_{self.block}"]
        where += [] if self.row is None else [f"row {self.row}"]
        where += [] if self.column is None else [self.column]
        text = f"{', '.join(where) or 'file'}: {self.message}"
        return text + (" (warning)" if self.severity == "warning" else "")


@dataclass(frozen=True)
class _Rules:
    table: str  # the data block's name
    optics: tuple[str, ...]  # required optics columns besides _OPTICS
    columns: tuple[str, ...]  # required data columns
    positive: tuple[str, ...] = ()  # data columns that must be > 0
    non_negative: tuple[str, ...] = ()  # data columns that must be >= 0
    files: tuple[str, ...] = ()  # data columns naming files (checked when root is given)


_DEFOCUS = ("rlnDefocusU", "rlnDefocusV", "rlnDefocusAngle")
_XY = ("rlnCoordinateX", "rlnCoordinateY")
_NAMES = ("rlnMicrographName", "rlnOpticsGroup")
_RULES: dict[str, _Rules] = {
    "particles": _Rules(
        "particles",
        ("rlnImagePixelSize", "rlnImageSize", "rlnImageDimensionality"),
        ("rlnImageName", *_NAMES, *_XY, *_DEFOCUS),
        positive=_DEFOCUS[:2],
    ),
    "micrographs": _Rules(
        "micrographs",
        ("rlnMicrographPixelSize",),
        (*_NAMES, *_DEFOCUS, "rlnCtfMaxResolution"),
        positive=(*_DEFOCUS[:2], "rlnCtfMaxResolution"),
        files=_NAMES[:1],
    ),
    "corrected_micrographs": _Rules(
        "micrographs",
        ("rlnMicrographPixelSize", "rlnMicrographOriginalPixelSize"),
        (*_NAMES, "rlnMicrographMetadata"),
        non_negative=("rlnAccumMotionTotal", "rlnAccumMotionEarly", "rlnAccumMotionLate"),
        files=("rlnMicrographName", "rlnMicrographMetadata"),
    ),
}
_OPTICS_NUMBERS = ("rlnVoltage", "rlnSphericalAberration", "rlnAmplitudeContrast")
_OPTICS = ("rlnOpticsGroup", "rlnOpticsGroupName", *_OPTICS_NUMBERS)
_GENERAL = ("rlnImageSizeX", "rlnImageSizeY", "rlnImageSizeZ", "rlnMicrographMovieName")
_SHIFTS = ("rlnMicrographFrameNumber", "rlnMicrographShiftX", "rlnMicrographShiftY")
_TEXT = {"rlnImageName", "rlnMicrographName", "rlnMicrographMetadata", "rlnOpticsGroupName"}

REQUIRED_COLUMNS: Mapping[str, tuple[str, ...]] = {
    **{kind: rules.columns for kind, rules in _RULES.items()},
    "motion": _GENERAL + _SHIFTS,
}
"""Data columns each kind must have (``motion``: keys of ``data_general`` and columns of
``data_global_shift``)."""

_LEGACY_ORIGINS = ("rlnOriginX", "rlnOriginY", "rlnOriginZ", "rlnOriginXPrior", "rlnOriginYPrior")
_LEGACY = (*_LEGACY_ORIGINS, "rlnMagnification", "rlnDetectorPixelSize", *_OPTICS_NUMBERS)
_IMAGE_NAME = re.compile(r"^(\d+)@(\S.*)$")
_MAX_ROWS = 5  # per-row problems reported for one rule before a summary
_NO_VERSION = "no '# version' line: RELION reads the file as version 30000 (it writes 50001)"
_UNKNOWN = "label unknown to RELION 5: it warns and keeps the values as text"
_NO_OPTICS = "no data_optics table: RELION 5 takes the file for RELION 3.0 and converts it"
_LEGACY_COLUMN = "RELION 3.0 column, ignored by RELION 3.1+ (optics belong in data_optics, "
_LEGACY_COLUMN += "origins in Å in rlnOriginX/YAngst)"
_UNSORTED = "groups not numbered 1, 2, … in row order: RELION renumbers them"
_IMAGE_PIXEL = "particle pixel size in a micrograph table: RELION warns"


def validate_relion_star(
    source: str | os.PathLike[str] | Mapping[str, StarBlock],
    *,
    kind: RelionStarKind,
    root: str | os.PathLike[str] | None = None,
) -> list[StarProblem]:
    """Every problem RELION 5 would have with a STAR file of the given kind.

    Parameters
    ----------
    source:
        A STAR file, or its blocks as returned by :func:`cryowarp.io.star.read_star` (then
        ``# version`` lines and empty lines inside loops cannot be checked).
    kind:
        What the file is for (:data:`RelionStarKind`); decides the required blocks, columns
        and optics pixel-size columns (module docstring, :data:`REQUIRED_COLUMNS`).
    root:
        If given, also check that the files the table names exist relative to this folder
        (RELION's project folder) and that particle stack indices are within the stacks
        (only MRC headers are read).

    Returns
    -------
    list of StarProblem
        Empty when RELION 5 reads the file without errors or warnings. A file that cannot be
        read at all gives one problem.
    """
    text: str | None = None
    if isinstance(source, Mapping):
        blocks = dict(source)
    else:
        try:
            blocks = read_star(source, parse_as_string=("rlnMicrographGainName",))
            text = Path(source).read_text(encoding="utf-8")
        except CryowarpInputError as error:
            return [StarProblem(None, None, None, f"cannot be read: {error.problem}")]
    folder = None if root is None else Path(root)
    problems = [] if text is None else _text_problems(text, versioned=kind != "motion")
    problems += _label_problems(blocks)
    if kind == "motion":
        return problems + _motion_problems(blocks, folder)
    return problems + _table_problems(blocks, _RULES[kind], folder)


def check_relion_star(
    source: str | os.PathLike[str] | Mapping[str, StarBlock],
    *,
    kind: RelionStarKind,
    root: str | os.PathLike[str] | None = None,
    allow_warnings: bool = True,
) -> None:
    """Raise :class:`~cryowarp.errors.FileFormatError` listing the problems
    :func:`validate_relion_star` finds (warnings too unless ``allow_warnings``)."""
    found = validate_relion_star(source, kind=kind, root=root)
    problems = [p for p in found if p.severity == "error" or not allow_warnings]
    if problems:
        path = None if isinstance(source, Mapping) else Path(source)
        listing = "; ".join(str(p) for p in problems)
        raise FileFormatError(path, f"not a RELION 5 {kind} STAR file: {listing}")


# ---------------------------------------------------------------------------- any file


def _text_problems(text: str, *, versioned: bool) -> list[StarProblem]:
    """Empty lines inside loops (RELION stops reading a loop there) and, if ``versioned``,
    the ``# version`` lines (motion files are read without regard to them)."""
    versions = [int(v) for v in re.findall(r"^\s*#\s*version\s+(\d+)", text, flags=re.M)]
    problems = []
    if versioned and not versions:
        problems.append(StarProblem(None, None, None, _NO_VERSION, "warning"))
    elif versioned and min(versions) < 30001:
        message = f"'# version {min(versions)}' is older than RELION 3.1 (30001)"
        problems.append(StarProblem(None, None, None, message, "warning"))
    block, state, blank_at = None, "outside", 0
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if line.startswith("data_"):
            block, state = line[5:], "block"
        elif line.startswith("loop_"):
            state = "header"
        elif state == "header" and line and not line.startswith(("_", "#")):
            state = "rows"
        elif state == "rows" and not line:
            state, blank_at = "blank", number
        elif state == "blank" and line and not line.startswith(("#", "_")):
            message = f"empty line {blank_at} inside the table: RELION stops reading it there"
            problems.append(StarProblem(block, None, None, message))
            state = "rows"
    return problems


def _label_problems(blocks: Mapping[str, StarBlock]) -> list[StarProblem]:
    """Unknown labels and non-finite numbers, in every block."""
    problems = []
    for name, block in blocks.items():
        labels = [
            str(label) for label in (block.columns if isinstance(block, pd.DataFrame) else block)
        ]
        unknown = [label for label in labels if label not in KNOWN_RELION_LABELS]
        problems += [StarProblem(name, label, None, _UNKNOWN, "warning") for label in unknown]
        if isinstance(block, dict):
            bad = [k for k, v in block.items() if isinstance(v, float) and not np.isfinite(v)]
            problems += [StarProblem(name, str(k), None, "not a finite number") for k in bad]
            continue
        for column in block.columns:
            values = block[column]
            if pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values):
                finite = np.isfinite(values.to_numpy(dtype=np.float64))
                problems += _rows(name, str(column), ~finite, "not a finite number")
    return problems


def _rows(block: str, column: str, bad: npt.NDArray[np.bool_], message: str) -> list[StarProblem]:
    """Problems for the first few rows where ``bad`` holds, and a count of the others."""
    rows = np.flatnonzero(bad)
    problems = [StarProblem(block, column, int(r), message) for r in rows[:_MAX_ROWS]]
    if len(rows) > _MAX_ROWS:
        more = f"{message} in {len(rows) - _MAX_ROWS} more rows"
        problems.append(StarProblem(block, column, None, more))
    return problems


def _numbers(frame: pd.DataFrame, column: str) -> npt.NDArray[np.float64]:
    """The column as float64; NaN where a value is not a number."""
    return pd.to_numeric(frame[column], errors="coerce").to_numpy(dtype=np.float64)


def _number_checks(
    frame: pd.DataFrame, block: str, checks: Mapping[str, tuple[Any, str]]
) -> list[StarProblem]:
    """Text where a number belongs (numbers that are not finite are reported by
    :func:`_label_problems`), and finite values for which ``bad(values)`` holds."""
    problems = []
    for column, (bad, message) in checks.items():
        if column not in frame.columns:
            continue
        values = _numbers(frame, column)
        if not pd.api.types.is_numeric_dtype(frame[column]):
            problems += _rows(block, column, np.isnan(values), "not a number")
        finite = np.isfinite(values)
        if bad is not None:
            problems += _rows(block, column, finite & bad(np.where(finite, values, 1.0)), message)
    return problems


def _fractions(values: npt.NDArray[np.float64]) -> npt.NDArray[np.bool_]:
    """Where ``values`` (finite) are not whole numbers."""
    return np.asarray(np.round(values) != values)


def _resolve(name: str, root: Path) -> Path:
    path = Path(name.strip())
    return path if path.is_absolute() else root / path


def _file_problems(block: str, column: str, names: list[str], root: Path) -> list[StarProblem]:
    missing = np.array([not _resolve(n, root).is_file() for n in names], dtype=bool)
    return _rows(block, column, missing, f"file not found under {root}")


# ---------------------------------------------------------------------------- tables


def _positive(v: npt.NDArray[np.float64]) -> npt.NDArray[np.bool_]:
    return v <= 0


def _table_problems(
    blocks: Mapping[str, StarBlock], rules: _Rules, root: Path | None
) -> list[StarProblem]:
    problems: list[StarProblem] = []
    optics = blocks.get("optics")
    groups: set[int] | None = None
    if isinstance(optics, pd.DataFrame) and not optics.empty:
        groups = _optics_problems(optics, rules, problems)
    else:
        problems.append(StarProblem("optics", None, None, _NO_OPTICS))
    name, table = rules.table, blocks.get(rules.table)
    if not isinstance(table, pd.DataFrame):
        return [*problems, StarProblem(name, None, None, f"no data_{name} table")]
    missing = [c for c in rules.columns if c not in table.columns]
    problems += [StarProblem(name, c, None, "required column is missing") for c in missing]
    legacy = [c for c in _LEGACY if c in table.columns]
    problems += [StarProblem(name, c, None, _LEGACY_COLUMN) for c in legacy]
    checks: dict[str, tuple[Any, str]] = {c: (None, "") for c in rules.columns if c not in _TEXT}
    checks |= {c: (_positive, "must be > 0") for c in rules.positive}
    checks |= {c: (lambda v: v < 0, "must be >= 0") for c in rules.non_negative}
    checks["rlnOpticsGroup"] = (_fractions, "not an integer")
    problems += _number_checks(table, name, checks)
    if groups is not None and "rlnOpticsGroup" in table.columns:
        ids = _numbers(table, "rlnOpticsGroup")
        unknown = np.isfinite(ids) & ~np.isin(ids, sorted(groups))
        problems += _rows(name, "rlnOpticsGroup", unknown, "no such group in data_optics")
    for column in (c for c in ("rlnMicrographName", "rlnMicrographMetadata") if c in table):
        empty = table[column].astype(str).str.strip().to_numpy() == ""
        problems += _rows(name, column, empty, "empty name")
    if "rlnImageName" in table.columns:
        parsed = [_IMAGE_NAME.match(n.strip()) for n in table["rlnImageName"].astype(str)]
        bad = np.array([m is None or int(m.group(1)) < 1 for m in parsed], dtype=bool)
        message = "not of the form NNNNNN@stack.mrcs with an index >= 1"
        problems += _rows(name, "rlnImageName", bad, message)
        problems += [] if root is None else _stack_problems(name, parsed, root)
    if root is not None:
        for column in (c for c in rules.files if c in table.columns):
            problems += _file_problems(name, column, table[column].astype(str).tolist(), root)
    return problems


def _optics_problems(optics: pd.DataFrame, rules: _Rules, problems: list[StarProblem]) -> set[int]:
    """Add the problems of ``data_optics`` to ``problems``; return its valid group numbers."""
    missing = [c for c in (*_OPTICS, *rules.optics) if c not in optics.columns]
    problems += [StarProblem("optics", c, None, "required column is missing") for c in missing]
    if rules.table != "particles" and "rlnImagePixelSize" in optics.columns:
        problems.append(StarProblem("optics", "rlnImagePixelSize", None, _IMAGE_PIXEL, "warning"))
    checks: dict[str, tuple[Any, str]] = {c: (None, "") for c in _OPTICS if c not in _TEXT}
    checks |= {c: (_positive, "must be > 0") for c in rules.optics if c.endswith("PixelSize")}
    checks["rlnVoltage"] = (_positive, "must be > 0")
    checks["rlnAmplitudeContrast"] = (lambda v: (v < 0) | (v >= 1), "must be in [0, 1)")
    checks["rlnImageSize"] = (lambda v: (v <= 0) | _fractions(v), "must be an integer > 0")
    checks["rlnImageDimensionality"] = (lambda v: ~np.isin(v, [2, 3]), "must be 2 or 3")
    checks["rlnOpticsGroup"] = (lambda v: (v < 1) | _fractions(v), "must be an integer >= 1")
    problems += _number_checks(optics, "optics", checks)
    groups: set[int] = set()
    if "rlnOpticsGroup" in optics.columns:
        ids = _numbers(optics, "rlnOpticsGroup")
        good = np.isfinite(ids) & (ids >= 1) & ~_fractions(ids)
        groups = {int(v) for v in ids[good]}
        problems += _duplicates("rlnOpticsGroup", ids.tolist())
        if good.all() and ids.tolist() != list(range(1, len(ids) + 1)):
            problems.append(StarProblem("optics", "rlnOpticsGroup", None, _UNSORTED, "warning"))
    if "rlnOpticsGroupName" in optics.columns:
        names = optics["rlnOpticsGroupName"].astype(str).tolist()
        problems += _duplicates("rlnOpticsGroupName", names)
    return groups


def _duplicates(column: str, values: list[Any]) -> list[StarProblem]:
    seen: set[Any] = set()
    problems = []
    for row, value in enumerate(values):
        if value in seen:
            problems.append(StarProblem("optics", column, row, f"{value!r} appears twice"))
        seen.add(value)
    return problems


def _stack_problems(
    block: str, parsed: list[re.Match[str] | None], root: Path
) -> list[StarProblem]:
    """Stacks that are missing or unreadable, and indices past their last image."""
    sizes: dict[Path, int | str] = {}
    bad_rows: dict[str, list[int]] = {}
    for row, match in enumerate(parsed):
        if match is None:
            continue
        stack = _resolve(match.group(2), root)
        if stack not in sizes:
            try:
                sizes[stack] = read_mrc_header(stack).shape[0]
            except CryowarpInputError as error:
                sizes[stack] = error.problem
        size = sizes[stack]
        if isinstance(size, str):
            bad_rows.setdefault(f"stack {stack}: {size}", []).append(row)
        elif int(match.group(1)) > size:
            message = f"index past the last image of {stack} ({size} images)"
            bad_rows.setdefault(message, []).append(row)
    problems = []
    for message, rows in bad_rows.items():
        mask = np.zeros(len(parsed), dtype=bool)
        mask[rows] = True
        problems += _rows(block, "rlnImageName", mask, message)
    return problems


# ---------------------------------------------------------------------------- motion


def _motion_problems(blocks: Mapping[str, StarBlock], root: Path | None) -> list[StarProblem]:
    general = blocks.get("general")
    if not isinstance(general, dict):
        return [StarProblem("general", None, None, "no data_general key-value block")]
    missing = [k for k in _GENERAL if k not in general]
    problems = [StarProblem("general", k, None, "required key is missing") for k in missing]
    values = pd.DataFrame({key: [value] for key, value in general.items()})

    def number(key: str, default: float) -> float:
        return float(_numbers(values, key)[0]) if key in values else default

    n_frames = number("rlnImageSizeZ", np.nan)
    integer = (lambda v: (v < 1) | _fractions(v), "must be an integer > 0")
    checks: dict[str, tuple[Any, str]] = dict.fromkeys(_GENERAL[:3], integer)
    for key in ("rlnMicrographBinning", "rlnMicrographOriginalPixelSize", "rlnVoltage"):
        checks[key] = (_positive, "must be > 0")
    for key in ("rlnMicrographDoseRate", "rlnMicrographPreExposure"):
        checks[key] = (lambda v: v < 0, "must be >= 0")
    frames = (lambda v: (v < 1) | (v > n_frames), "must be within 1..rlnImageSizeZ")
    checks["rlnMicrographStartFrame"] = frames
    checks["rlnMotionModelVersion"] = (lambda v: ~np.isin(v, [0, 1]), "must be 0 or 1")
    problems += [replace(p, row=None) for p in _number_checks(values, "general", checks)]
    whole = np.isfinite(n_frames) and n_frames >= 1 and n_frames == round(n_frames)
    problems += _motion_loop(blocks, "global_shift", _SHIFTS, 1, int(n_frames) if whole else None)
    if number("rlnMotionModelVersion", 0.0) == 1.0:
        columns = ("rlnMotionModelCoeffsIdx", "rlnMotionModelCoeff")
        problems += _motion_loop(blocks, "local_motion_model", columns, 0, 36)
    movie = general.get("rlnMicrographMovieName")
    if root is not None and movie is not None and not _resolve(str(movie), root).is_file():
        message = f"file not found under {root}"
        problems.append(StarProblem("general", "rlnMicrographMovieName", None, message))
    return problems


def _motion_loop(
    blocks: Mapping[str, StarBlock],
    name: str,
    columns: tuple[str, ...],
    first: int,
    count: int | None,
) -> list[StarProblem]:
    """A loop whose first column must count ``first, first + 1, …`` over ``count`` rows."""
    table = blocks.get(name)
    if not isinstance(table, pd.DataFrame):
        return [StarProblem(name, None, None, f"no data_{name} table")]
    missing = [c for c in columns if c not in table.columns]
    problems = [StarProblem(name, c, None, "required column is missing") for c in missing]
    problems += _number_checks(table, name, {c: (None, "") for c in columns})
    if columns[0] in table.columns and count is not None:
        expected = np.arange(first, first + count, dtype=np.float64)
        if not np.array_equal(_numbers(table, columns[0]), expected):
            message = f"must count {first}…{first + count - 1}, one row each"
            problems.append(StarProblem(name, columns[0], None, message))
    return problems
