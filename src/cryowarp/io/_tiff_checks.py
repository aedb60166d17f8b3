"""Structural checks shared by the TIFF and EER readers (both are TIFF files)."""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Any

import tifffile

from cryowarp.errors import TruncatedFileError

__all__ = ["ifd_chain_is_cut", "require_complete_ifd_chain", "require_page_in_file"]


def ifd_chain_is_cut(tif: tifffile.TiffFile) -> bool:
    """Whether the last page found points to a further page that is not in the file (the
    file was cut after the data of its last complete page)."""
    fmt = tif.tiff
    last = tif.pages[len(tif.pages) - 1]
    fh = tif.filehandle
    fh.seek(last.offset)
    raw = fh.read(fmt.tagnosize)
    if len(raw) < fmt.tagnosize:
        return True
    n_tags = struct.unpack(fmt.tagnoformat, raw)[0]
    fh.seek(last.offset + fmt.tagnosize + n_tags * fmt.tagsize)
    raw = fh.read(fmt.offsetsize)
    if len(raw) < fmt.offsetsize:
        return True
    return bool(struct.unpack(fmt.offsetformat, raw)[0] != 0)


def require_complete_ifd_chain(tif: tifffile.TiffFile, path: Path) -> None:
    """Raise :class:`~cryowarp.errors.TruncatedFileError` if :func:`ifd_chain_is_cut`."""
    if ifd_chain_is_cut(tif):
        raise TruncatedFileError(
            path,
            f"file ends after {len(tif.pages)} complete pages but the last one points to another",
            "the copy or write was probably interrupted",
        )


def require_page_in_file(page: Any, file_bytes: int, path: Path, what: str) -> None:
    """Raise :class:`~cryowarp.errors.TruncatedFileError` if the data strips of ``page`` (a
    tifffile page) end past ``file_bytes``; ``what`` names the page (``"frame 3"``)."""
    offsets, counts = page.dataoffsets, page.databytecounts
    end = max((o + c for o, c in zip(offsets, counts, strict=True)), default=0)
    if end > file_bytes:
        raise TruncatedFileError(
            path, f"data of {what} extend past the end of the {file_bytes}-byte file"
        )
