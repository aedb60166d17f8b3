"""STAR files as named blocks: read with typed errors, write atomically and deterministically.

A STAR file is a sequence of ``data_<name>`` blocks. A *loop* block is a table and is read as
a :class:`pandas.DataFrame`; a *simple* block (``_key value`` pairs) is read as a ``dict``.
Column names are the labels without the leading underscore (``"rlnImageName"``).

Parsing is done by the `starfile <https://github.com/teamtomo/starfile>`_ package through its
public API; this module adds a structural check that names the offending line, converts the
library's exceptions into :mod:`cryowarp.errors` types, keeps RELION's name and path columns
as strings (a micrograph named ``1`` stays ``"1"``), and writes with one fixed float format
(see :func:`format_star_float`) through a temporary file and :func:`os.replace`.
"""

from __future__ import annotations

import math
import os
import shlex
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, TypeAlias

import numpy as np
import pandas as pd
import starfile

from cryowarp.errors import (
    CryowarpInputError,
    FileFormatError,
    InvalidValuesError,
    TruncatedFileError,
)
from cryowarp.io.files import require_file, write_text_atomically

__all__ = [
    "RELION_STAR_VERSION",
    "STRING_COLUMNS",
    "StarBlock",
    "format_star_float",
    "read_star",
    "write_star",
]

StarBlock: TypeAlias = pd.DataFrame | dict[str, Any]
"""One ``data_`` block: a table (loop) or a mapping of single values."""

STRING_COLUMNS: frozenset[str] = frozenset(
    {
        "rlnImageName",
        "rlnImageOriginalName",
        "rlnMicrographName",
        "rlnMicrographMovieName",
        "rlnMicrographMetadata",
        "rlnMicrographNameEven",
        "rlnMicrographNameOdd",
        "rlnCtfImage",
        "rlnCtfPowerSpectrum",
        "rlnOpticsGroupName",
        "rlnGroupName",
        "rlnTomoName",
        "rlnTomoParticleName",
        "rlnTomoTiltSeriesName",
        "rlnTomoTiltSeriesStarFile",
        "rlnOddZernike",
        "rlnEvenZernike",
        "rlnTomoVisibleFrames",
    }
)
"""RELION labels that are always read as text, never coerced to numbers."""

RELION_STAR_VERSION = 50001
"""The number RELION 5 writes in its ``# version 50001`` comment before each ``data_`` block.
RELION 3.1+ reads a file without such a line as version 30000 (``MetaDataTable::readStar``)."""

_HEADER = "# Written by cryowarp"
_BINARY_PROBE_BYTES = 65536
_RESERVED = ("_", "#", "$", "'", '"', ";", "data_", "loop_", "save_", "stop_", "global_")
"""Starts of a bare value that a STAR parser would not read as that value."""


def format_star_float(value: float) -> str:
    """Format one float the way :func:`write_star` does.

    Six decimals in fixed notation for ``0.01 <= |value| < 1e9`` and for zero, otherwise six
    decimals of mantissa in scientific notation; ``nan``, ``inf`` and ``-inf`` as such. The
    result always contains ``.``, ``e``, ``nan`` or ``inf``, so it is read back as a float.

    Parameters
    ----------
    value:
        Any float.

    Returns
    -------
    str
        The text written to the file (absolute error <= 5e-7 for fixed notation, relative
        error <= 5e-7 for scientific notation).
    """
    if math.isnan(value):
        return "nan"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    magnitude = abs(value)
    if magnitude == 0.0 or 0.01 <= magnitude < 1e9:
        text = f"{value:.6f}"
        return "0.000000" if text == "-0.000000" else text
    return f"{value:.6e}"


def read_star(
    path: str | os.PathLike[str], *, parse_as_string: Iterable[str] = ()
) -> dict[str, StarBlock]:
    """Read every ``data_`` block of a STAR file.

    Parameters
    ----------
    path:
        The STAR file.
    parse_as_string:
        Extra column names (or simple-block keys) to keep as text, in addition to
        :data:`STRING_COLUMNS`.

    Returns
    -------
    dict
        Block name (``""`` for a bare ``data_``) → DataFrame (loop) or dict (simple block), in
        file order. A loop without rows becomes an empty DataFrame with its columns.

    Raises
    ------
    MissingFileError
        The file does not exist or is a folder.
    TruncatedFileError
        The file is empty (0 bytes).
    FileFormatError
        Binary content, no ``data_`` block, or a malformed line (named in the message).
    """
    file = require_file(path)
    text = _read_text(file)
    problem = _find_structural_problem(text)
    if problem is not None:
        line_number, what = problem
        raise FileFormatError(file, f"not a valid STAR file: line {line_number}: {what}")
    strings = sorted(STRING_COLUMNS.union(parse_as_string))
    try:
        blocks = starfile.read(file, always_dict=True, parse_as_string=strings)
    except Exception as error:  # the parser may raise anything; we name the file instead
        raise FileFormatError(file, f"not a valid STAR file: {error}") from error
    if not blocks:
        raise FileFormatError(
            file, "not a STAR file: no 'data_' block found", hint="is this the right file?"
        )
    return {str(name): _normalise_block(block) for name, block in blocks.items()}


def write_star(
    path: str | os.PathLike[str],
    blocks: Mapping[str, StarBlock],
    *,
    overwrite: bool = True,
    relion_version: int | None = None,
) -> None:
    """Write blocks to a STAR file atomically, with deterministic float formatting.

    The text is first written to a temporary file in the same folder and then moved over
    ``path`` with :func:`os.replace`, so readers never see a half-written file. Floats are
    formatted with :func:`format_star_float`; integers and strings are written as they are
    (strings with spaces are quoted). The output depends only on ``blocks``.

    Parameters
    ----------
    path:
        Destination file; its folder must exist.
    blocks:
        Block name → DataFrame (loop) or dict (simple block), written in this order.
    overwrite:
        If False, refuse to replace an existing file.
    relion_version:
        If given, write RELION's ``# version <n>`` comment line before each ``data_`` block,
        as RELION does (e.g. :data:`RELION_STAR_VERSION`); by default no such line.

    Raises
    ------
    CryowarpInputError
        The folder does not exist, or ``path`` exists and ``overwrite`` is False.
    InvalidValuesError
        A value or name contains a tab or a newline, which STAR cannot represent.
    """
    file = Path(path)
    if not file.parent.is_dir():
        raise CryowarpInputError(file, f"cannot write: folder {file.parent} does not exist")
    if file.exists() and not overwrite:
        raise CryowarpInputError(file, "cannot write: the file exists and overwrite=False")
    prepared = {name: _prepare_block(file, name, block) for name, block in blocks.items()}
    body = starfile.to_string(prepared, sep="\t")
    # The first line written by starfile carries a timestamp; replace it by a fixed header.
    lines = body.splitlines()
    if lines and lines[0].startswith("#"):
        lines = lines[1:]
    if relion_version is not None:
        lines = _with_version_lines(lines, relion_version)
    text = "\n".join([_HEADER, *lines]) + "\n"
    write_text_atomically(file, text)


def _with_version_lines(lines: list[str], version: int) -> list[str]:
    """Put ``# version <n>`` and an empty line before every ``data_`` line (a value can never
    start a line with ``data_``: such values are quoted, see :func:`_quote_if_reserved`)."""
    out: list[str] = []
    for line in lines:
        if line.startswith("data_"):
            out += [f"# version {int(version)}", ""]
        out.append(line)
    return out


def _read_text(file: Path) -> str:
    raw = file.read_bytes()
    if not raw:
        raise TruncatedFileError(file, "the file is empty (0 bytes)", hint="interrupted write?")
    if b"\x00" in raw[:_BINARY_PROBE_BYTES]:
        raise FileFormatError(file, "not a STAR file: binary content")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise FileFormatError(
            file, f"not a STAR file: not UTF-8 text (byte {error.start})"
        ) from error


def _tokens(line: str) -> list[str]:
    if '"' in line or "'" in line:
        return shlex.split(line, posix=True)
    return line.split()


def _find_structural_problem(text: str) -> tuple[int, str] | None:
    """First malformed line as (1-based line number, description), or None.

    Checks what silently corrupts a table if it slips through: a loop row whose number of
    values differs from the number of declared columns (e.g. a file cut mid-row), a key
    without a value, an unterminated quote.
    """
    state = "outside"  # outside | block | header | rows
    n_columns = 0
    for line_number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("data_"):
            state = "block"
            continue
        if line.startswith("loop_"):
            state, n_columns = "header", 0
            continue
        if line.startswith("_"):
            if state == "header":
                n_columns += 1
                continue
            state = "block"
            try:
                pair = _tokens(line)
            except ValueError as error:
                return line_number, f"{error} in {line[:60]!r}"
            if len(pair) < 2:
                return line_number, f"key {pair[0]!r} has no value"
            continue
        if state in ("header", "rows"):
            if n_columns == 0:
                return line_number, "loop_ without column labels"
            state = "rows"
            try:
                values = _tokens(line)
            except ValueError as error:
                return line_number, f"{error} in {line[:60]!r}"
            if len(values) != n_columns:
                return line_number, (
                    f"row has {len(values)} values but the loop declares {n_columns} columns"
                )
    return None


def _normalise_block(block: Any) -> StarBlock:
    if isinstance(block, pd.DataFrame):
        return block
    if isinstance(block, dict):
        if block and all(isinstance(value, list) for value in block.values()):
            return pd.DataFrame({str(key): value for key, value in block.items()})
        return {str(key): value for key, value in block.items()}
    raise TypeError(f"unexpected block type from starfile: {type(block).__name__}")


def _check_text(file: Path, what: str, text: str) -> None:
    if any(character in text for character in "\t\n\r"):
        raise InvalidValuesError(file, f"{what} {text!r} contains a tab or newline")


def _format_value(file: Path, where: str, value: Any) -> Any:
    if isinstance(value, bool | np.bool_):
        return int(value)
    if isinstance(value, float | np.floating):
        return format_star_float(float(value))
    if isinstance(value, str):
        _check_text(file, f"value in {where}", value)
        return _quote_if_reserved(value)
    return value


def _quote_if_reserved(text: str) -> str:
    """Quote a value that STAR would otherwise read as a label, comment, keyword or nothing
    (``_x``, ``a#b``, ``data_x``, ``loop_``, an empty string, ...). Values with whitespace
    are left alone: starfile quotes them itself."""
    if any(c.isspace() for c in text):
        return text
    if text and "#" not in text and not text.lower().startswith(_RESERVED):
        return text
    return f"'{text}'" if '"' in text else f'"{text}"'


def _prepare_block(file: Path, name: str, block: StarBlock) -> StarBlock:
    _check_text(file, "block name", name)
    if isinstance(block, dict):
        for key in block:
            _check_text(file, "key", str(key))
        return {str(k): _format_value(file, f"data_{name}", v) for k, v in block.items()}
    frame = pd.DataFrame(index=range(len(block)))
    for column in block.columns:
        _check_text(file, "column name", str(column))
        values = block[column]
        if pd.api.types.is_bool_dtype(values):
            frame[str(column)] = values.to_numpy().astype(np.int64)
        elif pd.api.types.is_float_dtype(values):
            frame[str(column)] = [format_star_float(float(v)) for v in values.to_numpy()]
        elif pd.api.types.is_integer_dtype(values):
            frame[str(column)] = values.to_numpy()
        else:
            where = f"column {column} of data_{name}"
            frame[str(column)] = [_format_value(file, where, v) for v in values.to_numpy()]
    return frame
