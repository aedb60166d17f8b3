"""Folder watcher: files are reported once, only when stable and complete; incomplete files
are reported once as failed and the watcher goes on."""

from __future__ import annotations

import importlib.util
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import tifffile

from cryowarp.io.mrc import write_mrc
from cryowarp.pipeline.events import EventLog, latency_summary
from cryowarp.pipeline.watch import CompleteFile, FolderWatcher

STABLE_S = 0.2
GIVE_UP_S = 1.0
HAS_WATCHDOG = importlib.util.find_spec("watchdog") is not None


class FakeClock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def _movie_bytes(tmp_path: Path, n_frames: int = 4, shape: tuple[int, int] = (16, 16)) -> bytes:
    """The bytes of a complete float32 MRC movie."""
    frames = np.arange(n_frames * shape[0] * shape[1], dtype=np.float32).reshape(n_frames, *shape)
    path = tmp_path / "_template.mrc"
    write_mrc(path, frames, voxel_size_a=1.0)
    data = path.read_bytes()
    path.unlink()
    return data


def _watcher(folder: Path, clock: FakeClock, pattern: str = "*.mrc") -> FolderWatcher:
    return FolderWatcher(
        str(folder / pattern),
        stable_s=STABLE_S,
        give_up_s=GIVE_UP_S,
        use_inotify=False,
        clock=clock,
    )


def test_a_growing_mrc_is_reported_once_after_it_is_whole_and_stable(tmp_path: Path) -> None:
    data = _movie_bytes(tmp_path)
    movie = tmp_path / "movie_000.mrc"
    clock = FakeClock()
    watcher = _watcher(tmp_path, clock)
    movie.write_bytes(data[: 1024 + 2 * 16 * 16 * 4])  # header (4 frames) + 2 frames
    assert watcher.poll() == []
    clock.advance(STABLE_S + 0.05)
    assert watcher.poll() == []  # stable but truncated
    assert "needs" in watcher.pending()[movie]  # TruncatedFileError: holds … bytes, needs …
    with movie.open("ab") as f:
        f.write(data[1024 + 2 * 16 * 16 * 4 :])
    assert watcher.poll() == []  # it changed: the stability clock restarts
    clock.advance(STABLE_S / 2)
    assert watcher.poll() == []
    clock.advance(STABLE_S / 2 + 0.01)
    before = time.time()
    (found,) = watcher.poll()
    assert found.path == movie
    assert found.size == len(data)
    assert before <= found.complete_at <= time.time()
    with movie.open("ab") as f:
        f.write(b"more")  # changes after being reported are ignored (documented)
    clock.advance(10 * STABLE_S)
    assert watcher.poll() == []
    assert watcher.poll_failures() == []


def test_a_partly_copied_tiff_is_not_complete(tmp_path: Path) -> None:
    template = tmp_path / "template.bin"
    tifffile.imwrite(template, np.ones((4, 32, 32), np.uint16), photometric="minisblack")
    data = template.read_bytes()
    movie = tmp_path / "movie.tif"
    movie.write_bytes(data[: len(data) // 2])
    clock = FakeClock()
    watcher = _watcher(tmp_path, clock, "*.tif")
    watcher.poll()
    clock.advance(STABLE_S + 0.01)
    assert watcher.poll() == []
    assert watcher.pending()[movie]  # the reason is recorded
    movie.write_bytes(data)
    watcher.poll()
    clock.advance(STABLE_S + 0.01)
    assert [f.path for f in watcher.poll()] == [movie]


def test_empty_and_truncated_files_fail_once_and_the_watcher_goes_on(tmp_path: Path) -> None:
    data = _movie_bytes(tmp_path)
    (tmp_path / "empty.mrc").touch()
    (tmp_path / "truncated.mrc").write_bytes(data[:-100])
    (tmp_path / "good.mrc").write_bytes(data)
    clock = FakeClock()
    watcher = _watcher(tmp_path, clock)
    assert watcher.poll() == []
    clock.advance(STABLE_S + 0.01)
    assert [f.path.name for f in watcher.poll()] == ["good.mrc"]
    assert watcher.poll_failures() == []  # not yet: give_up_s has not passed
    clock.advance(GIVE_UP_S)
    assert watcher.poll() == []
    failures = dict(watcher.poll_failures())
    assert set(failures) == {tmp_path / "empty.mrc", tmp_path / "truncated.mrc"}
    assert failures[tmp_path / "empty.mrc"] == "file is empty"
    assert "truncated.mrc" in failures[tmp_path / "truncated.mrc"]
    assert "interrupted" in failures[tmp_path / "truncated.mrc"]
    clock.advance(GIVE_UP_S)
    assert watcher.poll() == []
    assert watcher.poll_failures() == []  # reported once
    (tmp_path / "later.mrc").write_bytes(data)  # the watcher keeps going
    watcher.poll()
    clock.advance(STABLE_S + 0.01)
    assert [f.path.name for f in watcher.poll()] == ["later.mrc"]
    assert watcher.pending() == {}


def test_a_replaced_failed_file_can_be_watched_again(tmp_path: Path) -> None:
    bad = tmp_path / "movie.mrc"
    bad.touch()
    clock = FakeClock()
    watcher = _watcher(tmp_path, clock)
    watcher.poll()
    clock.advance(GIVE_UP_S + 0.01)
    watcher.poll()
    assert [p for p, _ in watcher.poll_failures()] == [bad]
    bad.write_bytes(_movie_bytes(tmp_path))
    clock.advance(STABLE_S + 0.01)
    assert watcher.poll() == []  # failed paths stay done ...
    watcher.forget(bad)  # ... until forgotten
    watcher.poll()
    clock.advance(STABLE_S + 0.01)
    assert [f.path for f in watcher.poll()] == [bad]


def test_pattern_reaches_sub_folders_and_skips_other_names(tmp_path: Path) -> None:
    data = _movie_bytes(tmp_path)
    (tmp_path / "a" / "b").mkdir(parents=True)
    (tmp_path / "a" / "b" / "deep.mrc").write_bytes(data)
    (tmp_path / "top.mrc").write_bytes(data)
    (tmp_path / "notes.txt").write_text("not a movie")
    clock = FakeClock()
    watcher = _watcher(tmp_path, clock, "**/*.mrc")
    watcher.poll()
    clock.advance(STABLE_S + 0.01)
    names = sorted(f.path.name for f in watcher.poll())
    assert names == ["deep.mrc", "top.mrc"]


def _write_slowly(path: Path, data: bytes, chunk: int, pause_s: float, done: list[float]) -> None:
    with path.open("wb") as f:
        for start in range(0, len(data), chunk):
            if start:
                time.sleep(pause_s)
            f.write(data[start : start + chunk])
            f.flush()
    done.append(time.time())  # just after the last write


@pytest.mark.parametrize(
    "use_inotify",
    [False, pytest.param(True, marks=pytest.mark.skipif(not HAS_WATCHDOG, reason="no watchdog"))],
)
def test_wait_picks_up_a_movie_written_slowly_and_measures_latency(
    tmp_path: Path, use_inotify: bool
) -> None:
    data = _movie_bytes(tmp_path, n_frames=6)
    movie = tmp_path / "incoming" / "movie_001.mrc"
    movie.parent.mkdir()
    done: list[float] = []
    writer = threading.Thread(
        target=_write_slowly, args=(movie, data, 1024, 0.05, done), daemon=True
    )
    with FolderWatcher(
        str(movie.parent / "*.mrc"),
        stable_s=STABLE_S,
        poll_interval_s=0.05,
        use_inotify=use_inotify,
        give_up_s=30.0,
    ) as watcher:
        assert watcher.wait(0.1) == []  # nothing there yet
        assert watcher.inotify_active == use_inotify
        writer.start()
        found: list[CompleteFile] = []
        deadline = time.monotonic() + 20.0
        while not found and time.monotonic() < deadline:
            found = watcher.wait(1.0)
        writer.join()
    assert [f.path for f in found] == [movie]
    assert found[0].size == len(data)
    # judged complete only after the last write and STABLE_S of quiet
    assert found[0].complete_at >= done[0] + STABLE_S - 0.02
    log = EventLog(tmp_path / "events.jsonl")
    log.append("file_complete", item="movie_001", complete_at=found[0].complete_at)
    log.append("item_done", item="movie_001", latency_s=time.time() - found[0].complete_at)
    summary = latency_summary(EventLog.read(log.path))
    assert summary["count"] == 1
    assert 0 <= summary["median"] == summary["max"] < 20.0


def test_wait_returns_empty_on_timeout_and_finds_a_file_that_appears_later(
    tmp_path: Path,
) -> None:
    data = _movie_bytes(tmp_path)
    watcher = FolderWatcher(
        str(tmp_path / "later" / "*.mrc"), stable_s=STABLE_S, poll_interval_s=0.05
    )
    start = time.monotonic()
    assert watcher.wait(0.3) == []  # the folder does not even exist yet
    assert time.monotonic() - start >= 0.3
    (tmp_path / "later").mkdir()
    timer = threading.Timer(0.2, (tmp_path / "later" / "m.mrc").write_bytes, args=(data,))
    timer.start()
    found: list[CompleteFile] = []
    deadline = time.monotonic() + 20.0
    while not found and time.monotonic() < deadline:
        found = watcher.wait(1.0)
    timer.join()
    watcher.close()
    assert [f.path.name for f in found] == ["m.mrc"]
