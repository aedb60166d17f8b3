"""Writing SerialEM .mdoc files: round trips through io.mdoc.read_mdoc."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cryowarp.errors import InvalidValuesError
from cryowarp.io.mdoc import Mdoc, read_mdoc
from cryowarp.io.mdoc_write import MdocData, MdocSectionData, format_mdoc, write_mdoc

_MDOC_FILES = [
    "tilt_series.mdoc",
    "frame_set_single.mdoc",
    "frame_set_multiple.mdoc",
    "montage_section.mdoc",
]


def _same(a: Mdoc, b: Mdoc) -> None:
    assert dict(a.header) == dict(b.header)
    assert a.titles == b.titles
    assert a.tilt_axis_angle_deg == b.tilt_axis_angle_deg
    for kind in ("z_values", "frame_sets", "montage_sections", "other_sections"):
        sa, sb = getattr(a, kind), getattr(b, kind)
        assert [(s.kind, s.index, dict(s.entries)) for s in sa] == [
            (s.kind, s.index, dict(s.entries)) for s in sb
        ]
        # the typed fields are parsed from the same text, so they agree too
        assert [s.tilt_angle_deg for s in sa] == [s.tilt_angle_deg for s in sb]


@pytest.mark.parametrize("name", _MDOC_FILES)
def test_serialem_files_round_trip(shared_data: Path, tmp_path: Path, name: str) -> None:
    original = read_mdoc(shared_data / "metadata" / "serialem_mdoc_teamtomo" / name)
    write_mdoc(tmp_path / name, original)
    again = read_mdoc(tmp_path / name)
    _same(original, again)
    # writing what was read back gives the same bytes: the format is a fixed point
    write_mdoc(tmp_path / "twice.mdoc", again)
    assert (tmp_path / "twice.mdoc").read_bytes() == (tmp_path / name).read_bytes()


def test_built_tilt_series_reads_back_typed(tmp_path: Path) -> None:
    data = MdocData(
        header={
            "PixelSpacing": 1.35,
            "Voltage": 300,
            "ImageFile": "TS_1.mrc",
            "ImageSize": (64, 48),
        },
        titles=("SerialEM: cryowarp simulator", "Tilt axis angle = 85.3, binning = 1"),
        sections=[
            MdocSectionData(
                "ZValue",
                i,
                {
                    "TiltAngle": angle,
                    "ExposureDose": 3.0,
                    "PriorRecordDose": 3.0 * i,
                    "Defocus": -3.25,
                    "TargetDefocus": -3.0,
                    "DateTime": "01-Jan-24  09:00:0" + str(i),
                },
            )
            for i, angle in enumerate([0.0, 3.0, -3.0])
        ],
    )
    write_mdoc(tmp_path / "ts.mrc.mdoc", data)
    mdoc = read_mdoc(tmp_path / "ts.mrc.mdoc")
    assert mdoc.pixel_size_a == 1.35
    assert mdoc.voltage_kv == 300
    assert mdoc.image_size_px == (64, 48)
    assert mdoc.tilt_axis_angle_deg == 85.3
    assert list(mdoc.tilt_angles_deg) == [0.0, 3.0, -3.0]
    assert [s.prior_record_dose_e_per_a2 for s in mdoc.z_values] == [0.0, 3.0, 6.0]
    assert all(s.microscope_defocus_um == -3.25 for s in mdoc.z_values)
    assert mdoc.z_values[2].date_time == "01-Jan-24  09:00:02"


_KEY = st.text(alphabet=st.characters(categories=["Lu", "Ll", "Nd"]), min_size=1, max_size=12)
_VALUE = st.one_of(
    st.integers(-(10**6), 10**6),
    st.floats(-1e6, 1e6, allow_nan=False),
    st.lists(st.floats(-1e3, 1e3, allow_nan=False), min_size=1, max_size=4),
)


@given(entries=st.dictionaries(_KEY, _VALUE, min_size=1, max_size=6))
def test_numbers_round_trip_to_nine_digits(entries: dict[str, object]) -> None:
    text = format_mdoc(MdocData(header={}, sections=[MdocSectionData("ZValue", 0, entries)]))  # type: ignore[arg-type]
    lines = [line for line in text.splitlines() if " = " in line and not line.startswith("[")]
    parsed = {
        k: [float(v) for v in rest.split()] for k, rest in (ln.split(" = ", 1) for ln in lines)
    }
    assert parsed.keys() == entries.keys()
    for key, value in entries.items():
        expected = [float(v) for v in value] if isinstance(value, list) else [float(value)]  # type: ignore[arg-type]
        assert parsed[key] == pytest.approx(expected, rel=1e-8, abs=1e-300)


@pytest.mark.parametrize(
    ("header", "titles"),
    [({"Bad Key": 1}, ()), ({"Key": "two\nlines"}, ()), ({"Flag": True}, ()), ({}, ("[x]",))],
)
def test_unwritable_content_raises_and_writes_nothing(
    tmp_path: Path, header: dict[str, object], titles: tuple[str, ...]
) -> None:
    with pytest.raises(InvalidValuesError, match=r"out\.mdoc"):
        write_mdoc(tmp_path / "out.mdoc", MdocData(header=header, titles=titles))  # type: ignore[arg-type]
    assert list(tmp_path.iterdir()) == []
