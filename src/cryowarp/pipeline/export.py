"""Export from a project: the micrographs of its finished items and the project's export
defaults (docs/relion_export.md, docs/pipeline.md).

A project folder is also a processing folder: its motion step writes the layout of
``cryowarp motion batch --out`` (``motion/<name>.json``, ``average/…``) and its CTF step
``ctf/<name>_ctf.json``, which :mod:`cryowarp.preprocess.export.sources` reads. What a project
adds are the item records: :func:`project_sources` takes only the items whose every step is
done under the current settings (:func:`~cryowarp.pipeline.runner.item_state`), so a pending,
failed, quarantined or stale item — whose files may be missing, or left from older settings —
is never exported; and the defaults of particle extraction (``export``) and of the quality
filters (``filters``) come from the project's settings (:func:`export_defaults`).

Example::

    from cryowarp.pipeline.export import export_defaults, project_sources
    from cryowarp.pipeline.project import open_project
    from cryowarp.preprocess.export.export_particles import export_particles

    project = open_project("proj")
    found = project_sources(project)  # .sources, .problems, .not_done
    extraction, filters = export_defaults("proj")
    export_particles(found.sources, particle_sets, extraction, out_dir="relion", filters=filters)
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pandas as pd
import torch
from pydantic import BaseModel

from cryowarp.errors import CryowarpInputError
from cryowarp.pipeline.items import ItemRecord, read_item_record
from cryowarp.pipeline.picking_step import PICKING_FOLDER
from cryowarp.pipeline.project import SETTINGS_FILE, Project, open_project
from cryowarp.pipeline.runner import item_state
from cryowarp.pipeline.steps import ctf_output_paths
from cryowarp.preprocess.export.filters import ExportFilters
from cryowarp.preprocess.export.particle_set import ParticleSet
from cryowarp.preprocess.export.settings import ExtractionSettings
from cryowarp.preprocess.export.sources import (
    MicrographSource,
    SourceProblem,
    read_micrograph_source,
)
from cryowarp.preprocess.motion import motion_output_paths
from cryowarp.preprocess.picking.outputs import read_pick_result

__all__ = [
    "ProjectSources",
    "export_defaults",
    "is_project",
    "project_picks",
    "project_sources",
    "with_overrides",
]

_Model = TypeVar("_Model", bound=BaseModel)


@dataclass(frozen=True)
class ProjectSources:
    """The exportable micrographs of a project.

    Attributes
    ----------
    sources:
        One per item whose every step is done, sorted by item name.
    problems:
        Done items whose files cannot be read, and item records that cannot be read (the
        others go on).
    not_done:
        Item name → its state (``pending``, ``failed``, ``quarantined``, ``error``), with the
        reason when there is one; these items are not exported.
    """

    sources: list[MicrographSource]
    problems: list[SourceProblem] = field(default_factory=list)
    not_done: dict[str, str] = field(default_factory=dict)


def is_project(folder: str | os.PathLike[str]) -> bool:
    """Whether ``folder`` holds a project (its settings file ``cryowarp.json``), as
    :func:`~cryowarp.pipeline.project.open_project` requires."""
    return (Path(folder) / SETTINGS_FILE).is_file()


def project_sources(project: Project) -> ProjectSources:
    """The micrographs of ``project``'s done items (see the module docstring), read from the
    motion metadata and CTF estimate each item's steps wrote.

    An item record that cannot be read, or a done item whose files cannot be read, becomes a
    :class:`~cryowarp.preprocess.export.sources.SourceProblem`; the other items go on.
    """
    sources: list[MicrographSource] = []
    problems: list[SourceProblem] = []
    not_done: dict[str, str] = {}
    folder = project.items_folder
    records = sorted(folder.glob("*.json")) if folder.is_dir() else []
    for record_path in records:
        try:
            record = read_item_record(record_path)
        except CryowarpInputError as error:
            problems.append(SourceProblem(error.path or record_path, str(error)))
            continue
        state, reason = item_state(record, project)
        if state != "done":
            not_done[record.name] = state if reason is None else f"{state}: {reason}"
            continue
        metadata = motion_output_paths(project.folder, record.name).metadata
        ctf_json = project.folder / ctf_output_paths(record.name)["json"]
        try:
            source = read_micrograph_source(
                metadata, ctf_json=ctf_json if ctf_json.is_file() else None
            )
        except CryowarpInputError as error:
            problems.append(SourceProblem(error.path or metadata, str(error)))
            continue
        except OSError as error:
            problems.append(SourceProblem(metadata, f"{metadata}: {error}"))
            continue
        sources.append(_with_masked_fraction(source, record))
    return ProjectSources(sorted(sources, key=lambda s: s.name), problems, not_done)


def _with_masked_fraction(source: MicrographSource, record: ItemRecord) -> MicrographSource:
    """The source with the artefact-masked fraction of the item's picking step, if any."""
    step = record.steps.get("picking")
    value = None if step is None else step.results.get("masked_fraction")
    if not isinstance(value, int | float) or isinstance(value, bool):
        return source
    return dataclasses.replace(source, masked_fraction=float(value))


def project_picks(
    project: Project,
    names: Iterable[str],
    *,
    threshold: float | None = None,
    min_distance_to_mask_a: float | None = None,
) -> tuple[dict[str, ParticleSet], list[SourceProblem]]:
    """The BoxNet picks of items ``names`` (their picking step's files), re-thresholded from
    the saved probabilities when ``threshold`` or ``min_distance_to_mask_a`` is given (no
    network run; docs/picking_inference.md). Each set carries the pick score as
    ``rlnAutopickFigureOfMerit``. Items whose files cannot be read become problems; the
    others go on.
    """
    folder = project.folder / PICKING_FOLDER
    sets: dict[str, ParticleSet] = {}
    problems: list[SourceProblem] = []
    for name in names:
        try:
            result = read_pick_result(folder, name)
            if threshold is not None or min_distance_to_mask_a is not None:
                result = result.rethreshold(
                    result.settings.threshold if threshold is None else threshold,
                    min_distance_to_mask_a=min_distance_to_mask_a,
                )
        except CryowarpInputError as error:
            problems.append(SourceProblem(error.path or folder / name, str(error)))
            continue
        scores = result.scores.to(torch.float64).numpy()
        sets[name] = ParticleSet(
            micrograph=name,
            positions_a=result.positions_a.to(torch.float64),
            extra=pd.DataFrame({"rlnAutopickFigureOfMerit": scores}),
            source=str(folder / f"{name}_picks.star"),
        )
    return sets, problems


def export_defaults(folder: str | os.PathLike[str]) -> tuple[ExtractionSettings, ExportFilters]:
    """The extraction settings and quality filters ``cryowarp export`` starts from: a
    project's ``export`` and ``filters`` settings, or the models' defaults for a plain
    processing folder.

    Raises
    ------
    CryowarpInputError
        ``folder`` holds a project whose settings cannot be read
        (:func:`~cryowarp.pipeline.project.open_project`).
    """
    if not is_project(folder):
        return ExtractionSettings(), ExportFilters()
    settings = open_project(folder).settings
    return settings.export, settings.filters


def with_overrides(model: _Model, values: Mapping[str, Any]) -> _Model:
    """A copy of ``model`` with the values that are not ``None`` in ``values`` (field name →
    value) replaced, validated again (a ``None`` means "not given": the model's value stays).

    Raises
    ------
    pydantic.ValidationError
        An unknown field or an invalid value.
    """
    given = {name: value for name, value in values.items() if value is not None}
    if not given:
        return model
    return type(model).model_validate({**model.model_dump(), **given})
