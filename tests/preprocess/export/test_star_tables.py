"""Export STAR tables: optics groups and corrected micrographs that RELION 5 accepts."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from cryowarp.errors import InvalidValuesError, MissingColumnError
from cryowarp.io.relion import (
    OpticsGroup,
    ParticleTable,
    read_micrographs,
    read_particles,
    write_micrographs,
    write_particles,
)
from cryowarp.io.relion_validate import validate_relion_star
from cryowarp.io.star import read_star
from cryowarp.preprocess.export.star_tables import (
    CorrectedMicrograph,
    corrected_micrographs_table,
    micrograph_optics_group,
    particle_optics_group,
    relative_path,
)


def _particle_group(**overrides: Any) -> OpticsGroup:
    arguments: dict[str, Any] = {
        "optics_group": 1,
        "name": "opticsGroup1",
        "image_pixel_size_a": 1.6,
        "image_size_px": 128,
        "micrograph_original_pixel_size_a": 0.8,
        "voltage_kv": 300.0,
        "cs_mm": 2.7,
        "amplitude_contrast": 0.07,
        "phase_flipped": False,
        "ctf_premultiplied": True,
    }
    return particle_optics_group(**{**arguments, **overrides})


def test_particle_optics_group_is_written_with_relion_columns(tmp_path: Path) -> None:
    groups = [_particle_group(), _particle_group(optics_group=2, name="g2", phase_flipped=True)]
    frame = pd.DataFrame(
        {
            "rlnImageName": ["000001@Extract/a.mrcs", "000002@Extract/a.mrcs"],
            "rlnMicrographName": ["a.mrc", "a.mrc"],
            "rlnCoordinateX": [10.0, 20.0],
            "rlnCoordinateY": [30.0, 40.0],
            "rlnDefocusU": [15000.0, 15100.0],
            "rlnDefocusV": [14000.0, 14100.0],
            "rlnDefocusAngle": [5.0, 6.0],
            "rlnOpticsGroup": [1, 2],
        }
    )
    path = tmp_path / "particles.star"
    write_particles(path, groups, ParticleTable(frame, groups))
    assert validate_relion_star(path, kind="particles") == []
    optics = read_star(path)["optics"]
    assert isinstance(optics, pd.DataFrame)
    row = optics.iloc[1]
    assert row["rlnImagePixelSize"] == 1.6
    assert row["rlnImageSize"] == 128
    assert row["rlnImageDimensionality"] == 2
    assert row["rlnMicrographOriginalPixelSize"] == 0.8
    assert (row["rlnVoltage"], row["rlnSphericalAberration"]) == (300.0, 2.7)
    assert row["rlnAmplitudeContrast"] == 0.07
    assert optics["rlnCtfDataArePhaseFlipped"].tolist() == [0, 1]
    assert optics["rlnCtfDataAreCtfPremultiplied"].tolist() == [1, 1]
    back, _ = read_particles(path)
    assert back == groups


@pytest.mark.parametrize(
    ("override", "text"),
    [
        ({"optics_group": 0}, "optics_group"),
        ({"name": "two words"}, "name"),
        ({"name": ""}, "name"),
        ({"image_pixel_size_a": 0.0}, "image_pixel_size_a"),
        ({"image_size_px": 0}, "image_size_px"),
        ({"micrograph_original_pixel_size_a": -1.0}, "micrograph_original_pixel_size_a"),
        ({"voltage_kv": float("nan")}, "voltage_kv"),
        ({"cs_mm": float("inf")}, "cs_mm"),
        ({"amplitude_contrast": 1.0}, "amplitude_contrast"),
    ],
)
def test_particle_optics_group_refuses_what_relion_cannot_use(
    override: dict[str, object], text: str
) -> None:
    with pytest.raises(InvalidValuesError, match=text):
        _particle_group(**override)


def _rows() -> list[CorrectedMicrograph]:
    return [
        CorrectedMicrograph("MotionCorr/a.mrc", "MotionCorr/a.star", 1, 12.5, 8.25, 4.25),
        CorrectedMicrograph("MotionCorr/b.mrc", "MotionCorr/b.star", 2, 3.0, 2.0, 1.0),
    ]


def _micrograph_groups() -> list[OpticsGroup]:
    return [
        micrograph_optics_group(
            optics_group=g, name=f"opticsGroup{g}", micrograph_pixel_size_a=1.0,
            original_pixel_size_a=0.5, voltage_kv=300.0, cs_mm=2.7, amplitude_contrast=0.1,
        )
        for g in (1, 2)
    ]  # fmt: skip


def test_corrected_micrographs_round_trip_and_pass_the_validator(tmp_path: Path) -> None:
    optics, table = corrected_micrographs_table(_rows(), optics=_micrograph_groups())
    path = tmp_path / "corrected_micrographs.star"
    write_micrographs(path, optics, table)
    for name in ("a.mrc", "a.star", "b.mrc", "b.star"):
        (tmp_path / "MotionCorr").mkdir(exist_ok=True)
        (tmp_path / "MotionCorr" / name).write_text("x")
    assert validate_relion_star(path, kind="corrected_micrographs", root=tmp_path) == []
    blocks = read_star(path)
    optics_block = blocks["optics"]
    assert isinstance(optics_block, pd.DataFrame)
    assert optics_block["rlnMicrographPixelSize"].tolist() == [1.0, 1.0]
    assert optics_block["rlnMicrographOriginalPixelSize"].tolist() == [0.5, 0.5]
    optics_back, back = read_micrographs(path)
    assert optics_back == optics
    frame = back.frame
    assert frame["rlnMicrographName"].tolist() == ["MotionCorr/a.mrc", "MotionCorr/b.mrc"]
    assert back.metadata_paths(root=tmp_path) == [
        tmp_path / "MotionCorr/a.star",
        tmp_path / "MotionCorr/b.star",
    ]
    assert frame["rlnOpticsGroup"].tolist() == [1, 2]
    np.testing.assert_array_equal(frame["rlnAccumMotionTotal"], [12.5, 3.0])
    np.testing.assert_array_equal(frame["rlnAccumMotionEarly"], [8.25, 2.0])
    np.testing.assert_array_equal(frame["rlnAccumMotionLate"], [4.25, 1.0])


def test_corrected_micrographs_table_errors() -> None:
    groups = _micrograph_groups()
    with pytest.raises(MissingColumnError, match=r"rlnOpticsGroup \[2\]"):
        corrected_micrographs_table(_rows(), optics=groups[:1])
    bare = dataclasses.replace(groups[0], micrograph_original_pixel_size_a=None)
    with pytest.raises(MissingColumnError, match="micrograph_original_pixel_size_a"):
        corrected_micrographs_table(_rows()[:1], optics=[bare])
    with pytest.raises(InvalidValuesError, match="accumulated motions"):
        CorrectedMicrograph("a.mrc", "a.star", 1, -1.0, 0.0, 0.0)
    with pytest.raises(InvalidValuesError, match="must not be empty"):
        CorrectedMicrograph("a.mrc", " ", 1, 1.0, 0.0, 0.0)


@pytest.mark.parametrize(
    ("path", "root", "expected"),
    [
        ("/p/MotionCorr/job002/a.mrc", "/p", "MotionCorr/job002/a.mrc"),
        ("/p/a.mrc", "/p/Export", "../a.mrc"),
        ("/data/movies/m.tif", "/p/q", "../../data/movies/m.tif"),
        ("/p/./x/../a.mrc", "/p/", "a.mrc"),
    ],
)
def test_relative_path(path: str, root: str, expected: str) -> None:
    assert relative_path(path, root) == expected


def test_relative_path_of_relative_arguments_uses_the_current_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert relative_path("Export/a.mrc", ".") == "Export/a.mrc"
    assert relative_path(tmp_path / "a" / "b.mrc", "Export") == "../a/b.mrc"
