"""Project settings: unknown keys rejected, v0 → v1 migration, one value changed by its dotted
key with validation, and a save → load round trip."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from cryowarp.pipeline.project import load_settings, save_settings
from cryowarp.pipeline.settings import (
    PROJECT_SETTINGS_VERSION,
    DataSettings,
    ProjectSettings,
    migrate,
    set_setting,
    setting_keys,
)
from cryowarp.preprocess.motion.settings import MovieInputSettings


def _settings() -> ProjectSettings:
    return ProjectSettings(data=DataSettings(pattern="raw/*.tif"))


def test_defaults_come_from_the_step_models_and_unknown_keys_are_rejected() -> None:
    settings = _settings()
    assert settings.schema_version == PROJECT_SETTINGS_VERSION
    assert settings.motion.max_iterations == 60  # MotionSettings' default
    assert settings.ctf.window_size_px == 512  # CtfSettings' default
    document = settings.model_dump(mode="json")
    for where in ([], ["motion"], ["data", "movie"], ["optics"]):
        bad = copy.deepcopy(document)
        section = bad
        for part in where:
            section = section[part]
        section["no_such_key"] = 1
        with pytest.raises(ValidationError, match="no_such_key"):
            ProjectSettings.model_validate(bad)
    with pytest.raises(ValidationError, match="pattern"):
        ProjectSettings.model_validate({"data": {}})


def test_v0_documents_are_migrated_to_v1() -> None:
    """v0 (no schema_version) called the pattern data.glob and kept the gain as data.gain."""
    v0 = {
        "data": {"glob": "raw/*.mrc", "gain": "raw/gain.mrc", "movie": {"pixel_size_a": 0.83}},
        "optics": {"voltage_kv": 200.0},
    }
    original = copy.deepcopy(v0)
    v1 = migrate(v0)
    assert v0 == original  # the input is not modified
    assert v1["schema_version"] == 1
    settings = ProjectSettings.model_validate(v1)
    assert settings.data.pattern == "raw/*.mrc"
    assert settings.data.movie.gain_path == "raw/gain.mrc"
    assert settings.data.movie.pixel_size_a == 0.83
    assert settings.optics.voltage_kv == 200.0
    assert migrate(v1) == v1  # current documents pass unchanged


def test_newer_or_malformed_versions_are_refused() -> None:
    document = _settings().model_dump(mode="json")
    with pytest.raises(ValueError, match="newer cryowarp"):
        migrate({**document, "schema_version": PROJECT_SETTINGS_VERSION + 1})
    with pytest.raises(ValueError, match="integer"):
        migrate({**document, "schema_version": "1"})


def test_set_setting_changes_one_value_and_validates() -> None:
    settings = _settings()
    changed = set_setting(settings, "motion.max_iterations", "30")
    assert changed.motion.max_iterations == 30
    assert changed.model_copy(update={"motion": settings.motion}) == settings  # nothing else
    assert set_setting(settings, "motion.local_grid", "[3, 3, 2]").motion.local_grid == (3, 3, 2)
    assert set_setting(settings, "data.movie.pixel_size_a", "1.06").data.movie.pixel_size_a == 1.06
    assert set_setting(settings, "data.movie.gain_path", "null").data.movie.gain_path is None
    assert set_setting(settings, "data.pattern", "raw/**/*.eer").data.pattern == "raw/**/*.eer"
    assert set_setting(settings, "data.pattern", "123").data.pattern == "123"  # not a number
    assert set_setting(settings, "ctf.spatial_grid", '"plane"').ctf.spatial_grid == "plane"
    devices = set_setting(settings, "workers.devices", '["cuda:0", "cuda:1"]').workers.devices
    assert devices == ("cuda:0", "cuda:1")
    with pytest.raises(ValueError, match="greater than or equal to 1"):
        set_setting(settings, "motion.max_iterations", "0")
    with pytest.raises(ValueError, match="must be finer"):  # a cross-field check of the model
        set_setting(settings, "ctf.max_resolution_a", "40")
    with pytest.raises(ValueError, match=r"motion has no 'iterations'.*max_iterations"):
        set_setting(settings, "motion.iterations", "5")
    with pytest.raises(ValueError, match="is a section"):
        set_setting(settings, "motion", "5")
    with pytest.raises(ValueError, match="is a value"):
        set_setting(settings, "optics.cs_mm.x", "5")
    with pytest.raises(ValueError, match="set by cryowarp"):
        set_setting(settings, "schema_version", "0")


def test_every_key_can_be_set_to_its_own_value() -> None:
    """Setting each leaf key to the JSON of its current value gives back the same settings."""
    settings = ProjectSettings(
        data=DataSettings(pattern="raw/*.tif", movie=MovieInputSettings(gain_path="g.mrc"))
    )
    document = settings.model_dump(mode="json")
    keys = [k for k in setting_keys() if k != "schema_version"]
    assert "motion.max_iterations" in keys
    assert "data.movie.gain_path" in keys
    assert "watch.stable_s" in keys
    for key in keys:
        value = document
        for part in key.split("."):
            value = value[part]
        assert set_setting(settings, key, json.dumps(value)) == settings, key


@given(
    pattern=st.text(alphabet="abc/*?._-", min_size=1, max_size=20),
    max_iterations=st.integers(1, 500),
    voltage_kv=st.floats(1.0, 1000.0),
    grid=st.tuples(st.integers(1, 9), st.integers(1, 9), st.integers(2, 9)) | st.just((1, 1, 1)),
    pixel_size_a=st.none() | st.floats(0.1, 10.0),
    workers=st.integers(1, 64),
)
def test_save_load_round_trip(
    tmp_path_factory: pytest.TempPathFactory,
    pattern: str,
    max_iterations: int,
    voltage_kv: float,
    grid: tuple[int, int, int],
    pixel_size_a: float | None,
    workers: int,
) -> None:
    settings = ProjectSettings.model_validate(
        {
            "data": {"pattern": pattern, "movie": {"pixel_size_a": pixel_size_a}},
            "optics": {"voltage_kv": voltage_kv},
            "motion": {"max_iterations": max_iterations, "local_grid": list(grid)},
            "workers": {"n_workers": workers},
        }
    )
    path: Path = tmp_path_factory.mktemp("settings") / "cryowarp.json"
    save_settings(path, settings)
    assert load_settings(path) == settings
