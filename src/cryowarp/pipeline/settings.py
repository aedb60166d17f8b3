"""Typed, versioned settings of a processing project (docs/pipeline.md, "Settings").

:class:`ProjectSettings` is the content of a project's settings file: where the raw movies are
and how they are read (:class:`DataSettings`, which reuses
:class:`~cryowarp.preprocess.motion.settings.MovieInputSettings` for pixel size, dose, gain,
defects and EER), the optics, one section per processing step (``motion``, ``ctf``; later
steps add their own section with defaults, so older files stay valid), and how runs are
executed (``workers``, ``watch``), and the defaults of ``cryowarp export`` on the project
(``export``: particle extraction; ``filters``: which micrographs pass). Unknown keys are
rejected everywhere.

Files of older schema versions are brought up to date step by step by :func:`migrate`;
:func:`set_setting` changes one value by its dotted key and validates the result.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from cryowarp.preprocess.ctf.settings import CtfSettings
from cryowarp.preprocess.denoise.deconvolution import DeconvolutionSettings
from cryowarp.preprocess.denoise.display import DisplaySettings
from cryowarp.preprocess.denoise.n2n_model_file import DEFAULT_DENOISER_MODEL
from cryowarp.preprocess.export.filters import ExportFilters
from cryowarp.preprocess.export.settings import ExtractionSettings
from cryowarp.preprocess.motion.settings import MotionSettings, MovieInputSettings
from cryowarp.preprocess.picking.settings import PickingSettings

__all__ = [
    "PROJECT_SETTINGS_VERSION",
    "DataSettings",
    "DisplayStepSettings",
    "OpticsSettings",
    "ProjectSettings",
    "WatchSettings",
    "WorkerSettings",
    "migrate",
    "set_setting",
    "setting_keys",
]

PROJECT_SETTINGS_VERSION = 1
"""Version of :class:`ProjectSettings` written today; :func:`migrate` reads older ones."""


class DataSettings(BaseModel):
    """Where the raw movies are and how their frames are read."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    pattern: str = Field(
        description="Glob pattern of the raw movies (MRC, TIFF, EER), relative to the project "
        "folder or absolute; ** matches sub-folders."
    )
    movie: MovieInputSettings = Field(
        default_factory=MovieInputSettings,
        description="Pixel size (Å), dose (e⁻/Å² per frame), gain and defect files (relative "
        "to the project folder or absolute), EER grouping, binning.",
    )


class OpticsSettings(BaseModel):
    """The microscope's optics, shared by every step."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    voltage_kv: float = Field(default=300.0, gt=0, description="Acceleration voltage in kV.")
    cs_mm: float = Field(default=2.7, ge=0, description="Spherical aberration in mm.")
    amplitude_contrast: float = Field(
        default=0.07, ge=0, lt=1, description="Amplitude contrast (fraction, 0–1)."
    )


class WorkerSettings(BaseModel):
    """How items are processed in parallel (results do not depend on it)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    n_workers: int = Field(
        default=1, ge=1, description="Worker processes on this machine (one item each at a time)."
    )
    devices: tuple[str, ...] | None = Field(
        default=None,
        description='Devices the workers use in turn, e.g. ["cuda:0", "cuda:1"] (unset: every '
        "CUDA device, else the CPU).",
    )
    cluster: str | None = Field(
        default=None,
        description="Address of a Dask scheduler to run the items on (unset: local workers).",
    )


class WatchSettings(BaseModel):
    """How ``run --watch`` decides that a new raw file is complete."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    stable_s: float = Field(
        default=2.0,
        ge=0,
        description="A new file counts as complete when its size has not changed for this "
        "many seconds.",
    )
    poll_interval_s: float = Field(
        default=1.0, gt=0, description="Seconds between two looks at the data folder."
    )
    give_up_s: float = Field(
        default=60.0,
        ge=0,
        description="A file that stopped changing but still cannot be read whole after this "
        "many seconds is quarantined with the reason.",
    )


class DisplayStepSettings(BaseModel):
    """The project's ``display`` section: how the views of each item are made."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    deconvolution: DeconvolutionSettings = Field(
        default_factory=DeconvolutionSettings,
        description="Deconvolution filter of the deconvolved view (strength, fall-off, "
        "high-pass in Å; docs/deconvolution.md).",
    )
    denoiser_model: str | None = Field(
        default=DEFAULT_DENOISER_MODEL,
        description="Noise2Noise model (name or path) of the denoised view; null: no "
        "denoised view. Names are looked up in the project's models/denoise/ first.",
    )
    image: DisplaySettings = Field(
        default_factory=DisplaySettings,
        description="Pixel size (Å), largest side (px) and contrast of the views.",
    )


class ProjectSettings(BaseModel):
    """Everything a project's processing depends on (the project's settings file)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    schema_version: int = Field(
        default=PROJECT_SETTINGS_VERSION,
        ge=PROJECT_SETTINGS_VERSION,
        le=PROJECT_SETTINGS_VERSION,
        description="Settings version (older files are migrated on reading).",
    )
    data: DataSettings = Field(description="Raw movies and how they are read.")
    optics: OpticsSettings = Field(
        default_factory=OpticsSettings, description="Voltage (kV), Cs (mm), amplitude contrast."
    )
    motion: MotionSettings = Field(
        default_factory=MotionSettings, description="Motion correction (docs/motion.md)."
    )
    ctf: CtfSettings = Field(
        default_factory=CtfSettings, description="CTF estimation (docs/ctf_estimation.md)."
    )
    picking: PickingSettings = Field(
        default_factory=PickingSettings,
        description="BoxNet particle picking and artefact masking (model, diameter in Å, "
        "threshold; docs/picking.md).",
    )
    display: DisplayStepSettings = Field(
        default_factory=DisplayStepSettings,
        description="Deconvolved and denoised views of each item, for looking at only "
        "(docs/denoising.md).",
    )
    workers: WorkerSettings = Field(
        default_factory=WorkerSettings, description="Parallel execution."
    )
    watch: WatchSettings = Field(
        default_factory=WatchSettings, description="Watching the data folder for new movies."
    )
    export: ExtractionSettings = Field(
        default_factory=ExtractionSettings,
        description="Particle extraction of `cryowarp export particles` on the project (box "
        "in px, pixel size in Å, …; docs/relion_export.md); redoes no step.",
    )
    filters: ExportFilters = Field(
        default_factory=ExportFilters,
        description="Quality filters choosing the micrographs `cryowarp export` writes "
        "(defocus µm, CTF resolution Å, drift Å, …; docs/relion_export_filters.md); redoes "
        "no step.",
    )


# -- migrations --------------------------------------------------------------------------


def _v0_to_v1(document: dict[str, Any]) -> dict[str, Any]:
    """Version 0 (the first layout, without ``schema_version``) named the raw pattern
    ``data.glob`` and kept the gain beside it as ``data.gain``; version 1 calls the pattern
    ``data.pattern`` and keeps the gain with the other movie settings as
    ``data.movie.gain_path``."""
    data = dict(document.get("data", {}))
    if "glob" in data:
        data["pattern"] = data.pop("glob")
    if "gain" in data:
        movie = dict(data.get("movie", {}))
        movie["gain_path"] = data.pop("gain")
        data["movie"] = movie
    return {**document, "data": data, "schema_version": 1}


_MIGRATIONS: dict[int, Callable[[dict[str, Any]], dict[str, Any]]] = {0: _v0_to_v1}
"""``version -> function`` turning a document of that version into the next one."""


def migrate(document: dict[str, Any]) -> dict[str, Any]:
    """Bring a settings document (parsed JSON) up to :data:`PROJECT_SETTINGS_VERSION`.

    Each migration moves one version forward; they are applied in turn. A document without
    ``schema_version`` is version 0. The input is not modified.

    Raises
    ------
    ValueError
        The version is not an integer, or is newer than this cryowarp knows (written by a
        later release).
    """
    current = copy.deepcopy(document)
    version = current.get("schema_version", 0)
    if not isinstance(version, int) or isinstance(version, bool):
        raise ValueError(f"schema_version must be an integer, got {version!r}")
    if version > PROJECT_SETTINGS_VERSION:
        raise ValueError(
            f"settings of schema version {version} were written by a newer cryowarp (this one "
            f"reads up to version {PROJECT_SETTINGS_VERSION}); update cryowarp"
        )
    while version < PROJECT_SETTINGS_VERSION:
        current = _MIGRATIONS[version](current)
        version = current["schema_version"]
    return current


# -- changing one value ------------------------------------------------------------------


def setting_keys(model: type[BaseModel] = ProjectSettings, prefix: str = "") -> list[str]:
    """Every dotted key of a leaf setting, e.g. ``"motion.max_iterations"``."""
    keys: list[str] = []
    for name, field in model.model_fields.items():
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            keys.extend(setting_keys(annotation, f"{prefix}{name}."))
        else:
            keys.append(f"{prefix}{name}")
    return keys


def set_setting(settings: ProjectSettings, key: str, value: str) -> ProjectSettings:
    """A copy of ``settings`` with the setting ``key`` (dotted, e.g.
    ``"motion.max_iterations"``) set to ``value``, validated.

    ``value`` is read as JSON when it parses (``30``, ``0.5``, ``true``, ``null``,
    ``[5, 5, 3]``, ``"text"``), else taken as a plain string (``data.pattern`` accepts
    ``raw/*.tif`` unquoted).

    Raises
    ------
    ValueError
        ``key`` names no setting (the message lists the valid keys of that section) or the
        value does not validate (the message says why).
    """
    if key == "schema_version":
        raise ValueError("schema_version is set by cryowarp, not by hand")
    parts = key.split(".")
    document = settings.model_dump(mode="json")
    model: type[BaseModel] = ProjectSettings
    section = document
    leaf: tuple[dict[str, Any], str] = (section, "")
    for depth, part in enumerate(parts):
        field = model.model_fields.get(part)
        if field is None:
            where = ".".join(parts[:depth]) or "the settings"
            valid = ", ".join(sorted(model.model_fields))
            raise ValueError(f"unknown setting {key!r}: {where} has no {part!r} (valid: {valid})")
        annotation = field.annotation
        is_section = isinstance(annotation, type) and issubclass(annotation, BaseModel)
        if depth == len(parts) - 1:
            if is_section:
                raise ValueError(f"{key!r} is a section; set one of its keys, e.g. {key}.<name>")
            leaf = (section, part)
        else:
            if not is_section:
                raise ValueError(f"{'.'.join(parts[: depth + 1])!r} is a value, not a section")
            assert isinstance(annotation, type)
            model = annotation
            section = section[part]
    parent, name = leaf
    parsed = _parse_value(value)
    candidates = [parsed] if isinstance(parsed, str) else [parsed, value]  # "123" as a name
    problem = ""
    for candidate in candidates:
        parent[name] = candidate
        try:
            return ProjectSettings.model_validate(document)
        except ValidationError as error:
            problem = problem or _first_error(error)
    raise ValueError(f"invalid value {value!r} for {key}: {problem}")


def _parse_value(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def _first_error(error: ValidationError) -> str:
    details = error.errors()
    if not details:
        return str(error)
    first = details[0]
    where = ".".join(str(part) for part in first["loc"])
    return f"{where}: {first['msg']}" if where else str(first["msg"])
