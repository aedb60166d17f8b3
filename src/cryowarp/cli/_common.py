"""Helpers shared by the commands: file patterns and the ``--device`` option."""

from __future__ import annotations

import glob
from pathlib import Path

import torch
import typer

__all__ = ["expand_patterns", "parse_device"]


def parse_device(name: str) -> torch.device:
    """The torch device named by ``--device``; a clear error when it does not exist here."""
    try:
        device = torch.device(name)
    except RuntimeError as error:
        raise typer.BadParameter(f"--device: {error}") from error
    if device.type == "cuda" and not torch.cuda.is_available():
        raise typer.BadParameter("--device cuda: no CUDA device is available here")
    return device


def expand_patterns(patterns: list[str], *, what: str = "file") -> list[Path]:
    """Files named by the patterns, in order, each once; a pattern without glob characters
    is kept as given (a missing file then fails on its own)."""
    files: list[Path] = []
    for pattern in patterns:
        if glob.has_magic(pattern):
            matches = sorted(glob.glob(pattern, recursive=True))
            if not matches:
                typer.echo(f"warning: no file matches {pattern!r}", err=True)
            files.extend(Path(m) for m in matches)
        else:
            files.append(Path(pattern))
    unique = list(dict.fromkeys(files))
    if not unique:
        raise typer.BadParameter(f"no {what} matches the given patterns")
    return unique
