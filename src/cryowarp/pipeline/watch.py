"""Watch a folder for new movies and report each once it is complete.

A file matching the glob pattern is **complete** when its size and modification time have not
changed for ``stable_s`` seconds **and** ``is_complete(path)`` says it is whole. The default
check, :func:`movie_is_complete`, opens it with :func:`cryowarp.io.movie.open_movie` (which
for MRC requires the file to hold its header plus every section the header announces, and for
TIFF/EER a complete chain of pages) and reads its last frame. A zero-length or still-growing
file is never reported. A file that stops changing but stays incomplete for ``give_up_s`` is
reported **once** by :meth:`FolderWatcher.poll_failures`, with the reason, so that the runner
can quarantine it; the watcher carries on with the other files.

Each path is reported once: a file that changes again after it was reported (complete or
failed) is not reported again (call :meth:`FolderWatcher.forget` to watch it afresh).

Periodic polling (a directory listing and a ``stat`` per unreported file) is always the source
of truth, because network filesystems deliver no change notifications. When ``watchdog`` is
installed and ``use_inotify`` is set, inotify (or the platform's equivalent) also wakes
:meth:`FolderWatcher.wait` as soon as something changes, so new files are noticed promptly.
"""

from __future__ import annotations

import glob
import os
import stat
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryowarp.io.movie import open_movie

__all__ = ["CompleteFile", "FolderWatcher", "movie_is_complete"]


@dataclass(frozen=True)
class CompleteFile:
    """A file judged complete: its size in bytes and ``time.time()`` at that moment."""

    path: Path
    size: int
    complete_at: float


def movie_is_complete(path: Path) -> bool:
    """True when ``path`` opens as a movie and its last frame can be read; raises the typed
    :mod:`cryowarp.errors` error saying what is missing otherwise."""
    with open_movie(path) as movie:
        movie.read_frames(movie.n_frames - 1, movie.n_frames)
    return True


@dataclass
class _Tracked:
    signature: tuple[int, int]  # (size in bytes, mtime in ns)
    changed_at: float  # clock() when the signature last changed
    reason: str = ""  # why it was last judged incomplete


def _static_root(pattern: str) -> tuple[Path, bool]:
    """The folder before the first glob wildcard of ``pattern`` and whether the pattern
    reaches into sub-folders."""
    parts = Path(pattern).parts
    for i, part in enumerate(parts):
        if glob.has_magic(part):
            return Path(*parts[:i]) if i else Path("."), i < len(parts) - 1
    return Path(pattern).parent, False


class FolderWatcher:
    """Reports files matching ``pattern`` once each is complete (see the module docstring).

    Parameters
    ----------
    pattern:
        A glob pattern, e.g. ``"/data/session1/*.tiff"``; ``**`` matches sub-folders.
    stable_s:
        Seconds a file's size and modification time must stay unchanged.
    poll_interval_s:
        Seconds between directory listings while :meth:`wait` blocks.
    use_inotify:
        Also wake up on filesystem events (needs ``watchdog``; polling continues anyway).
    is_complete:
        ``is_complete(path) -> bool`` for a stable file; it may raise instead of returning
        False, and the exception's text becomes the failure reason. Default:
        :func:`movie_is_complete`.
    give_up_s:
        Seconds after a file stopped changing before an incomplete file is reported failed.
    clock:
        Monotonic clock in seconds (tests pass a fake one).

    Use as a context manager, or call :meth:`close` to stop the inotify thread.
    """

    def __init__(
        self,
        pattern: str | Path,
        *,
        stable_s: float = 2.0,
        poll_interval_s: float = 1.0,
        use_inotify: bool = True,
        is_complete: Callable[[Path], bool] | None = None,
        give_up_s: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if stable_s < 0 or poll_interval_s <= 0 or give_up_s < 0:
            raise ValueError("stable_s and give_up_s must be ≥ 0 and poll_interval_s > 0")
        self.pattern = str(pattern)
        self.stable_s = stable_s
        self.poll_interval_s = poll_interval_s
        self.give_up_s = give_up_s
        self._is_complete = is_complete or movie_is_complete
        self._clock = clock
        self._root, self._recursive = _static_root(self.pattern)
        self._tracked: dict[Path, _Tracked] = {}
        self._done: set[Path] = set()  # reported complete or failed
        self._failures: list[tuple[Path, str]] = []
        self._wake = threading.Event()
        self._observer: Any = None
        self._want_inotify = use_inotify

    @property
    def inotify_active(self) -> bool:
        """Whether filesystem events currently wake :meth:`wait`."""
        return self._observer is not None

    def _start_inotify(self) -> None:
        if not self._want_inotify or self._observer is not None or not self._root.is_dir():
            return
        try:
            from watchdog.events import FileSystemEventHandler
            from watchdog.observers import Observer
        except ImportError:
            self._want_inotify = False
            return
        wake = self._wake

        class _Wake(FileSystemEventHandler):  # type: ignore[misc]
            def on_any_event(self, event: Any) -> None:
                wake.set()

        observer = Observer()
        try:
            observer.schedule(_Wake(), str(self._root), recursive=self._recursive)
            observer.daemon = True
            observer.start()
        except OSError:  # e.g. the inotify watch limit: polling alone still works
            self._want_inotify = False
            return
        self._observer = observer

    def _check(self, path: Path) -> str:
        """Empty string when complete, else why not."""
        try:
            if self._is_complete(path):
                return ""
            return "not complete (is_complete returned False)"
        except Exception as exc:
            return str(exc) or type(exc).__name__

    def poll(self) -> list[CompleteFile]:
        """Files that became complete since the last call (never blocks); also collects the
        failures read by :meth:`poll_failures`."""
        self._start_inotify()
        now = self._clock()
        seen: set[Path] = set()
        complete: list[CompleteFile] = []
        for name in sorted(glob.glob(self.pattern, recursive=True)):
            path = Path(name)
            if path in self._done:
                continue
            try:
                st = os.stat(path)
            except OSError:  # vanished between listing and stat
                continue
            if not stat.S_ISREG(st.st_mode):
                continue
            seen.add(path)
            signature = (st.st_size, st.st_mtime_ns)
            tracked = self._tracked.get(path)
            if tracked is None or tracked.signature != signature:
                self._tracked[path] = _Tracked(signature, now)
                continue
            if now - tracked.changed_at < self.stable_s:
                continue
            reason = "file is empty" if st.st_size == 0 else self._check(path)
            if not reason:
                complete.append(CompleteFile(path, st.st_size, time.time()))
                self._finish(path)
            elif now - tracked.changed_at >= max(self.give_up_s, self.stable_s):
                self._failures.append((path, reason))
                self._finish(path)
            else:
                tracked.reason = reason
        for path in set(self._tracked) - seen:  # deleted or renamed before completion
            del self._tracked[path]
        return complete

    def _finish(self, path: Path) -> None:
        self._done.add(path)
        del self._tracked[path]

    def poll_failures(self) -> list[tuple[Path, str]]:
        """``(path, reason)`` of files given up on since the last call; each reported once."""
        failures, self._failures = self._failures, []
        return failures

    def pending(self) -> dict[Path, str]:
        """Files seen but not yet complete, with why (empty while they are still changing)."""
        return {path: tracked.reason for path, tracked in self._tracked.items()}

    def forget(self, path: str | Path) -> None:
        """Watch ``path`` afresh (e.g. after a failed file was replaced)."""
        self._done.discard(Path(path))
        self._tracked.pop(Path(path), None)

    def wait(self, timeout_s: float) -> list[CompleteFile]:
        """Block up to ``timeout_s`` seconds until at least one file is complete; returns the
        files (possibly several, or none on timeout)."""
        deadline = time.monotonic() + timeout_s
        while True:
            self._wake.clear()
            found = self.poll()
            remaining = deadline - time.monotonic()
            if found or remaining <= 0:
                return found
            sleep_s = min(self.poll_interval_s, remaining)
            now = self._clock()
            dues = [t.changed_at + self.stable_s - now for t in self._tracked.values()]
            if any(due > 0 for due in dues):  # wake when the next file may have become stable
                sleep_s = min(sleep_s, min(due for due in dues if due > 0) + 0.01)
            if self._wake.wait(max(sleep_s, 0.01)):
                time.sleep(min(0.05, self.poll_interval_s))  # let a burst of events settle

    def close(self) -> None:
        """Stop the inotify thread (polling needs no cleanup)."""
        observer, self._observer = self._observer, None
        self._want_inotify = False
        if observer is not None:
            observer.stop()
            observer.join(timeout=5.0)

    def __enter__(self) -> FolderWatcher:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
