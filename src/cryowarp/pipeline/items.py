"""The record of one item (a raw movie) and its content-based identity (docs/pipeline.md,
"Items").

An :class:`ItemRecord` is one human-readable JSON file per item (``items/<name>.json``),
written atomically. It holds where the raw file is, its identity (size and SHA-256 of its first
MiB, so a moved or renamed file is recognised), and per step a :class:`StepRecord`: status, the
hash of the settings that produced the outputs, the outputs (paths relative to the project and
sizes), quality figures, times and the reason of a failure.
"""

from __future__ import annotations

import hashlib
import json
import os
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from cryowarp.errors import CorruptFileError
from cryowarp.io.files import require_file, write_text_atomically

__all__ = [
    "HEAD_BYTES",
    "ITEM_RECORD_VERSION",
    "ItemRecord",
    "OutputFile",
    "RawIdentity",
    "Scalar",
    "StepRecord",
    "StepStatus",
    "raw_identity",
    "read_item_record",
    "write_item_record",
]

ITEM_RECORD_VERSION = 1
HEAD_BYTES = 1 << 20
"""Bytes at the start of a raw file whose SHA-256 identifies it (with its size)."""

StepStatus = Literal["done", "failed", "quarantined", "error", "stale"]
"""``done``: outputs are up to date. ``failed``: the algorithm ran and reported that the item
cannot be processed (e.g. no Thon rings); not retried until the step's settings change.
``quarantined``: the input cannot be used (a typed input error: corrupt, truncated, wrong
size); retried when the raw file or the step's settings change. ``error``: an unexpected
exception (a bug, out of memory); retried on the next run. ``stale``: an earlier step was
redone, so this one must be too (its outputs are kept until then)."""

Scalar = float | int | bool | str | None


class RawIdentity(BaseModel):
    """What identifies a raw file whatever its name: its size and the hash of its head."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    size_bytes: int = Field(ge=0, description="File size in bytes.")
    head_sha256: str = Field(description="SHA-256 (hex) of the first HEAD_BYTES bytes.")


class OutputFile(BaseModel):
    """One output of a step."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    path: str = Field(description="Path relative to the project folder (POSIX).")
    size_bytes: int = Field(ge=0, description="Size when written, in bytes.")


class StepRecord(BaseModel):
    """What one step made of an item."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    status: StepStatus = Field(description="See StepStatus.")
    settings_hash: str = Field(description="Hash of the settings the step depended on.")
    outputs: dict[str, OutputFile] = Field(
        default_factory=dict, description="Outputs by name (e.g. average, metadata)."
    )
    results: dict[str, Scalar] = Field(
        default_factory=dict, description="Quality figures (units in the keys)."
    )
    reason: str | None = Field(default=None, description="Why the step failed, in words.")
    started_at: float = Field(description="Start, Unix time in seconds.")
    finished_at: float = Field(description="End, Unix time in seconds.")
    seconds: float = Field(ge=0, description="Wall time of the step in seconds.")


class ItemRecord(BaseModel):
    """The state of one item (``items/<name>.json``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    schema_version: int = Field(default=ITEM_RECORD_VERSION, description="Record version.")
    name: str = Field(description="Item name: the stem of the raw file when first seen.")
    raw_path: str = Field(description="Absolute path of the raw file where last seen.")
    raw_mtime_ns: int = Field(description="Modification time of the raw file (ns) when hashed.")
    identity: RawIdentity = Field(description="Size and head hash of the raw file.")
    first_seen_at: float = Field(description="When the item was found, Unix time in seconds.")
    complete_at: float | None = Field(
        default=None,
        description="When the raw file was seen complete by the watcher (Unix time, s).",
    )
    steps: dict[str, StepRecord] = Field(default_factory=dict, description="Steps by name.")

    @property
    def quarantine_reason(self) -> str | None:
        """Why the item is quarantined (``None`` when it is not)."""
        for step in self.steps.values():
            if step.status == "quarantined":
                return step.reason
        return None

    def with_step(self, name: str, record: StepRecord) -> ItemRecord:
        """A copy with step ``name`` set to ``record``."""
        return self.model_copy(update={"steps": {**self.steps, name: record}})


def raw_identity(path: str | os.PathLike[str]) -> RawIdentity:
    """The identity of a raw file: size and SHA-256 of its first :data:`HEAD_BYTES` bytes.

    Raises
    ------
    MissingFileError
        No such regular file.
    """
    file = require_file(path)
    digest = hashlib.sha256()
    with file.open("rb") as handle:
        size = os.fstat(handle.fileno()).st_size
        digest.update(handle.read(HEAD_BYTES))
    return RawIdentity(size_bytes=size, head_sha256=digest.hexdigest())


def read_item_record(path: str | os.PathLike[str]) -> ItemRecord:
    """Read an item record.

    Raises
    ------
    MissingFileError
        No such file.
    CorruptFileError
        Not JSON, or not a valid record (the message says what is wrong).
    """
    file = require_file(path)
    try:
        return ItemRecord.model_validate_json(file.read_bytes())  # parsed and checked at once
    except ValidationError as error:
        first = error.errors()[0]
        if first["type"] == "json_invalid":
            raise CorruptFileError(file, f"not a JSON item record ({first['msg']})") from error
        raise CorruptFileError(file, f"not a valid item record: {first}") from error


def write_item_record(path: str | os.PathLike[str], record: ItemRecord) -> None:
    """Write ``record`` as indented JSON, atomically (readers never see half a record)."""
    text = json.dumps(record.model_dump(mode="json"), indent=1, ensure_ascii=False)
    write_text_atomically(path, text + "\n")
