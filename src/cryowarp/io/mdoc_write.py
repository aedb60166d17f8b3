"""Writing SerialEM ``.mdoc`` autodoc files.

Layout as SerialEM writes it (SerialEM help, "Metadata autodoc files"; format read by
:func:`cryowarp.io.mdoc.read_mdoc`): global ``Key = value`` lines, a blank line, each title
as ``[T = ...]`` followed by a blank line, then one block per section —
``[ZValue = n]`` (or ``[FrameSet = n]``, ``[MontSection = n]``), its ``Key = value`` lines and
a blank line.  Values are written as given; numbers with up to 9 significant digits and
sequences of numbers space-separated.  SerialEM's units and signs are the caller's business
(``Defocus`` negative for underfocus, docs/conventions.md §9).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from cryowarp.errors import InvalidValuesError
from cryowarp.io.files import write_text_atomically
from cryowarp.io.mdoc import Mdoc, MdocSection

__all__ = ["MdocData", "MdocSectionData", "MdocValue", "format_mdoc", "write_mdoc"]

#: A value of a ``Key = value`` line: text, a number, or several numbers.
MdocValue = str | int | float | Sequence[int | float]


@dataclass(frozen=True)
class MdocSectionData:
    """One section to write: ``[kind = index]`` followed by ``entries`` in order."""

    kind: str
    index: int
    entries: Mapping[str, MdocValue]


@dataclass(frozen=True)
class MdocData:
    """An mdoc to write: global ``header`` lines, ``titles`` (``[T = ...]``) and ``sections``
    in file order."""

    header: Mapping[str, MdocValue]
    titles: Sequence[str] = ()
    sections: Sequence[MdocSectionData] = field(default=())


def _format_value(path: Path | None, key: str, value: MdocValue) -> str:
    if isinstance(value, bool):
        raise InvalidValuesError(path, f"mdoc value of {key!r} is a bool; write 0/1 or text")
    if isinstance(value, str):
        text = value
    elif isinstance(value, int):
        text = str(value)
    elif isinstance(value, float):
        text = f"{value:.9g}"
    else:
        text = " ".join(_format_value(path, key, v) for v in value)
    if "\n" in text or "\r" in text:
        raise InvalidValuesError(path, f"mdoc value of {key!r} contains a line break")
    return text


def _check_key(path: Path | None, key: str) -> None:
    if not key or any(c.isspace() for c in key) or "=" in key or key.startswith("["):
        raise InvalidValuesError(path, f"{key!r} is not a valid mdoc key")


def _lines(path: Path | None, entries: Mapping[str, MdocValue]) -> list[str]:
    out = []
    for key, value in entries.items():
        _check_key(path, key)
        out.append(f"{key} = {_format_value(path, key, value)}")
    return out


def _as_data(mdoc: Mdoc | MdocData) -> MdocData:
    if isinstance(mdoc, MdocData):
        return mdoc
    groups: tuple[tuple[MdocSection, ...], ...] = (
        mdoc.z_values,
        mdoc.frame_sets,
        mdoc.montage_sections,
        mdoc.other_sections,
    )
    sections = sorted((s for group in groups for s in group), key=lambda s: s.line_number)
    return MdocData(
        header=dict(mdoc.header),
        titles=tuple(mdoc.titles),
        sections=tuple(MdocSectionData(s.kind, s.index, dict(s.entries)) for s in sections),
    )


def format_mdoc(mdoc: Mdoc | MdocData, *, path: str | Path | None = None) -> str:
    """The text of an mdoc file (``path`` only names the file in error messages).

    Raises
    ------
    InvalidValuesError
        A key with white space or ``=``, a value with a line break, a bool value, a title
        with a bracket or line break, or a section kind that is not a single word.
    """
    where = None if path is None else Path(path)
    data = _as_data(mdoc)
    lines = _lines(where, data.header)
    if lines:
        lines.append("")
    for title in data.titles:
        if any(c in title for c in "[]\n\r"):
            raise InvalidValuesError(where, f"mdoc title {title!r} contains a bracket or break")
        lines += [f"[T = {title}]", ""]
    for section in data.sections:
        if not section.kind.isidentifier() or section.kind == "T":
            raise InvalidValuesError(where, f"{section.kind!r} is not a valid mdoc section kind")
        lines.append(f"[{section.kind} = {int(section.index)}]")
        lines += _lines(where, section.entries)
        lines.append("")
    return "\n".join(lines) + "\n"


def write_mdoc(path: str | Path, mdoc: Mdoc | MdocData) -> None:
    """Write a SerialEM ``.mdoc`` file atomically (temporary file, then ``os.replace``).

    Parameters
    ----------
    path:
        Destination (SerialEM names it ``<stack>.mrc.mdoc``).
    mdoc:
        An :class:`~cryowarp.io.mdoc.Mdoc` as read (its sections are written in their
        original order, values as read) or an :class:`MdocData` built by the caller.

    Raises
    ------
    InvalidValuesError
        Content that cannot be written as an mdoc (see :func:`format_mdoc`); nothing is
        written.
    """
    path = Path(path)
    text = format_mdoc(mdoc, path=path)
    write_text_atomically(path, text)
