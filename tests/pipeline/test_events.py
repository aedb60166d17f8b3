"""Event log: whole lines under concurrent appends, crash-truncated lines skipped, latency and
throughput from hand-made events."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from cryowarp.pipeline.events import EventLog, latency_summary, throughput_per_hour

_WRITER = """
import sys, time
from cryowarp.pipeline.events import EventLog
path, tag, n, start = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
while time.time() < start:
    pass
log = EventLog(path)
for i in range(n):
    log.append("step_finished", item=tag, seq=i, payload=tag * 6000)
"""


def test_concurrent_appends_from_processes_give_whole_lines(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    n_processes, n_lines = 4, 50  # lines of ~6 kB, longer than PIPE_BUF (4 kB)
    start = time.time() + 1.5  # all writers begin together
    writers = [
        subprocess.Popen([sys.executable, "-c", _WRITER, str(path), tag, str(n_lines), str(start)])
        for tag in "abcd"[:n_processes]
    ]
    assert [w.wait(timeout=120) for w in writers] == [0] * n_processes
    raw_lines = path.read_bytes().split(b"\n")
    assert raw_lines[-1] == b""
    assert len(raw_lines) - 1 == n_processes * n_lines  # no line was split or merged
    events = EventLog.read(path)
    assert len(events) == n_processes * n_lines
    for tag in "abcd"[:n_processes]:
        mine = [e for e in events if e["item"] == tag]
        assert [e["seq"] for e in mine] == list(range(n_lines))  # each writer's order kept
        assert all(e["payload"] == tag * 6000 for e in mine)
        assert len({e["pid"] for e in mine}) == 1


def test_a_truncated_last_line_is_skipped_and_the_next_append_starts_a_new_line(
    tmp_path: Path,
) -> None:
    log = EventLog(tmp_path / "sub" / "events.jsonl")
    assert EventLog.read(log.path) == []  # not written yet
    log.append("run_started", workers=2, cluster=None, watch=True)
    log.append("item_done", item="m1", latency_s=3.5)
    with log.path.open("ab") as f:
        f.write(b'{"time": 12.0, "pid": 1, "kind": "item_do')  # a writer died here
    assert [e["kind"] for e in EventLog.read(log.path)] == ["run_started", "item_done"]
    log.append("item_done", item="m2", latency_s=4.5)
    events = EventLog.read(log.path)
    assert [e.get("item") for e in events] == [None, "m1", "m2"]
    assert events[0]["cluster"] is None
    assert events[0]["watch"] is True


def test_fields_are_stored_as_strict_json(tmp_path: Path) -> None:
    log = EventLog(tmp_path / "events.jsonl")
    before = time.time()
    log.append(
        "step_finished",
        path=tmp_path / "m.tif",
        duration_s=np.float32(1.5),
        n=np.int64(3),
        shifts=np.array([1.0, 2.0]),
        bad=float("nan"),
    )
    line = log.path.read_text()
    record = json.loads(line, parse_constant=lambda c: pytest.fail(f"non-JSON {c}"))
    assert record["path"] == str(tmp_path / "m.tif")
    assert (record["duration_s"], record["n"], record["shifts"]) == (1.5, 3, [1.0, 2.0])
    assert record["bad"] is None
    assert before <= record["time"] <= time.time()
    with pytest.raises(ValueError, match="kind"):
        log.append("step_finished", kind="other")


def _event(kind: str, t: float, **fields: object) -> dict[str, object]:
    return {"time": t, "pid": 1, "kind": kind, **fields}


def test_latency_summary_of_hand_made_events() -> None:
    latencies = [10.0, 20.0, 30.0, 40.0, 100.0]
    events = [_event("run_started", 0.0)]
    events += [_event("item_done", 50.0 + i, latency_s=v) for i, v in enumerate(latencies)]
    events.append(_event("step_finished", 60.0, latency_s=1000.0))  # not an item_done
    summary = latency_summary(events)
    assert summary == {"count": 5.0, "median": 30.0, "p90": 76.0, "max": 100.0}
    # p90 by linear interpolation: 40 + 0.6 × (100 − 40) = 76
    empty = latency_summary([_event("run_started", 0.0)])
    assert empty["count"] == 0
    assert math.isnan(empty["median"])


def test_throughput_of_hand_made_events() -> None:
    # run starts at t = 0; 10 items done at t = 360, 720, ..., 3600 s
    events = [_event("run_started", 0.0)]
    events += [_event("item_done", 360.0 * k, item=f"m{k}", latency_s=1.0) for k in range(1, 11)]
    assert throughput_per_hour(events) == pytest.approx(10.0)
    # last 15 minutes before the last event (t = 3600): items at 2880, 3240, 3600 → 3 per 900 s
    assert throughput_per_hour(events, window_s=900.0) == pytest.approx(12.0)
    # a live view an hour later sees nothing in the last 15 minutes
    assert throughput_per_hour(events, window_s=900.0, now=7200.0) == 0.0
    assert throughput_per_hour([_event("run_started", 0.0)]) == 0.0
    with pytest.raises(ValueError, match="window_s"):
        throughput_per_hour(events, window_s=0.0)
