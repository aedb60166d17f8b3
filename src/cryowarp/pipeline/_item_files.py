"""File mechanics of one item: its lock, its input link, moving staged outputs into place,
and removing what a killed process left behind (docs/pipeline.md, "Crash safety")."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path

try:
    import fcntl
except ImportError:  # pragma: no cover - not Unix: no per-item lock
    fcntl = None  # type: ignore[assignment]

from cryowarp.pipeline.items import OutputFile
from cryowarp.pipeline.project import Project

__all__ = ["clean_leftovers", "commit_outputs", "item_lock", "link_input", "sweep_leftovers"]

# mkstemp names: prefix, 8 characters of [a-z0-9_], suffix (cryowarp.io.files.atomic_output)
_TMP_RECORD = re.compile(r"^\.(?P<name>.+)\.json\.[a-z0-9_]{8}\.tmp$")


@contextlib.contextmanager
def item_lock(project: Project, name: str) -> Iterator[bool]:
    """Try to take the item's lock without waiting; yields whether it was taken.

    The lock is an exclusive ``flock`` on ``.cryowarp/locks/<name>.lock``: the kernel releases
    it when its holder exits or is killed, so a crash never leaves an item locked.
    """
    path = project.lock_path(name)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        if fcntl is None:  # pragma: no cover
            yield True
            return
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        yield True
    finally:
        os.close(fd)  # releases the lock


def clean_leftovers(project: Project, name: str) -> None:
    """Remove what a killed process may have left of item ``name``: its staging folder and
    temporary files of its record and input link. Call with the item's lock held."""
    shutil.rmtree(project.staging_folder(name), ignore_errors=True)
    for folder, pattern in (
        (project.items_folder, rf"^\.{re.escape(name)}\.json\.[a-z0-9_]{{8}}\.tmp$"),
        (project.folder / "inputs", rf"^\.{re.escape(name)}\.[^/]*\.link-\d+\.tmp$"),
    ):
        if not folder.is_dir():
            continue
        expression = re.compile(pattern)
        for entry in os.listdir(folder):
            if expression.match(entry):
                with contextlib.suppress(OSError):
                    (folder / entry).unlink()


def sweep_leftovers(project: Project) -> None:
    """:func:`clean_leftovers` for every item that has leftovers and is not locked by a
    live process."""
    names: set[str] = set()
    staging_root = project.folder / ".cryowarp" / "staging"
    if staging_root.is_dir():
        names.update(os.listdir(staging_root))
    if project.items_folder.is_dir():
        for entry in os.listdir(project.items_folder):
            match = _TMP_RECORD.match(entry)
            if match:
                names.add(match["name"])
    for name in sorted(names):
        with item_lock(project, name) as locked:
            if locked:
                clean_leftovers(project, name)


def link_input(project: Project, name: str, raw: Path) -> Path:
    """Point ``inputs/<name><suffix>`` at the raw file (replaced atomically); return it."""
    link = project.input_link(name, raw.suffix)
    link.parent.mkdir(parents=True, exist_ok=True)
    target = os.path.abspath(raw)
    with contextlib.suppress(OSError):
        if os.readlink(link) == target:
            return link
    tmp = link.parent / f".{link.name}.link-{os.getpid()}.tmp"
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    os.symlink(target, tmp)
    os.replace(tmp, link)
    return link


def commit_outputs(
    staging: Path, files: Mapping[str, str], folder: Path, possible: Iterable[str]
) -> dict[str, OutputFile]:
    """Move staged files (name → path relative to ``staging``) to the same paths under
    ``folder``, in the given order (each move atomic), then delete the ``possible`` outputs
    that were not written this time. Returns the outputs with their sizes."""
    outputs: dict[str, OutputFile] = {}
    for name, relative in files.items():
        source = staging / relative
        destination = folder / relative
        destination.parent.mkdir(parents=True, exist_ok=True)
        size = source.stat().st_size
        os.replace(source, destination)
        outputs[name] = OutputFile(path=relative, size_bytes=size)
    written = set(files.values())
    for relative in possible:
        if relative not in written:
            with contextlib.suppress(FileNotFoundError):
                (folder / relative).unlink()
    return outputs
