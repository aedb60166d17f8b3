"""Item records: content identity (size + SHA-256 of the first MiB), exact JSON round trip,
atomic writes and typed errors for broken records."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest

from cryowarp.errors import CorruptFileError, MissingFileError
from cryowarp.pipeline.items import (
    HEAD_BYTES,
    ItemRecord,
    OutputFile,
    RawIdentity,
    StepRecord,
    raw_identity,
    read_item_record,
    write_item_record,
)


def _record() -> ItemRecord:
    motion = StepRecord(
        status="done",
        settings_hash="a" * 64,
        outputs={"average": OutputFile(path="average/m.mrc", size_bytes=1024)},
        results={"total_drift_a": 12.5, "n_frames": 8},
        started_at=1.0,
        finished_at=3.5,
        seconds=2.5,
    )
    return ItemRecord(
        name="m",
        raw_path="/data/m.tif",
        raw_mtime_ns=123,
        identity=RawIdentity(size_bytes=10, head_sha256="b" * 64),
        first_seen_at=0.5,
        steps={"motion": motion},
    )


def test_identity_is_size_and_hash_of_the_first_mib(tmp_path: Path) -> None:
    data = os.urandom(HEAD_BYTES + 5000)
    path = tmp_path / "movie.mrc"
    path.write_bytes(data)
    identity = raw_identity(path)
    assert identity.size_bytes == len(data)
    assert identity.head_sha256 == hashlib.sha256(data[:HEAD_BYTES]).hexdigest()
    renamed = tmp_path / "other_name.tif"
    path.rename(renamed)
    assert raw_identity(renamed) == identity  # the name plays no part
    renamed.write_bytes(data[:-1])
    assert raw_identity(renamed) != identity  # a truncated copy differs by its size
    small = tmp_path / "small.mrc"
    small.write_bytes(b"xyz")
    assert raw_identity(small).head_sha256 == hashlib.sha256(b"xyz").hexdigest()
    with pytest.raises(MissingFileError, match="file not found"):
        raw_identity(tmp_path / "missing.mrc")


def test_record_round_trips_exactly_through_readable_json(tmp_path: Path) -> None:
    record = _record()
    path = tmp_path / "items" / "m.json"
    path.parent.mkdir()
    write_item_record(path, record)
    assert read_item_record(path) == record
    text = path.read_text()
    assert '"status": "done"' in text  # human-readable: indented JSON
    assert json.loads(text)["steps"]["motion"]["outputs"]["average"]["path"] == "average/m.mrc"
    assert sorted(p.name for p in path.parent.iterdir()) == ["m.json"]  # no temporary left


def test_with_step_and_quarantine_reason() -> None:
    record = _record()
    assert record.quarantine_reason is None
    bad = StepRecord(
        status="quarantined",
        settings_hash="c" * 64,
        reason="movie.tif: file is truncated",
        started_at=4.0,
        finished_at=4.1,
        seconds=0.1,
    )
    quarantined = record.with_step("ctf", bad)
    assert quarantined.quarantine_reason == "movie.tif: file is truncated"
    assert set(quarantined.steps) == {"motion", "ctf"}
    assert set(record.steps) == {"motion"}  # the original is unchanged


def test_broken_records_raise_typed_errors_naming_the_file(tmp_path: Path) -> None:
    path = tmp_path / "m.json"
    path.write_text("{not json")
    with pytest.raises(CorruptFileError, match=r"m\.json: not a JSON item record"):
        read_item_record(path)
    document = _record().model_dump(mode="json")
    document["steps"]["motion"]["status"] = "finished"  # not a status
    path.write_text(json.dumps(document))
    with pytest.raises(CorruptFileError, match="not a valid item record"):
        read_item_record(path)
    document = _record().model_dump(mode="json")
    document["extra"] = 1
    path.write_text(json.dumps(document))
    with pytest.raises(CorruptFileError, match="extra"):
        read_item_record(path)
    with pytest.raises(MissingFileError):
        read_item_record(tmp_path / "absent.json")
