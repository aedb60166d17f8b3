"""PDB / mmCIF atom parsing: real apoferritin models, alternate locations, models, errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from cryowarp.errors import FileFormatError, MissingFileError
from cryowarp.io.atomic_model import read_atomic_model, read_mmcif, read_pdb


def _atom(
    serial: int,
    name: str,
    res: str,
    chain: str,
    resseq: int,
    xyz: tuple[float, float, float],
    *,
    occ: float = 1.0,
    b: float = 20.0,
    element: str = "",
    altloc: str = " ",
    record: str = "ATOM  ",
) -> str:
    """A fixed-column PDB record (columns as in the PDB format description v3.3)."""
    return (
        f"{record}{serial:5d} {name:<4s}{altloc}{res:>3s} {chain}{resseq:4d}    "
        f"{xyz[0]:8.3f}{xyz[1]:8.3f}{xyz[2]:8.3f}{occ:6.2f}{b:6.2f}          {element:>2s}"
    )


def _write(tmp_path: Path, name: str, lines: list[str]) -> Path:
    path = tmp_path / name
    path.write_text("\n".join(lines) + "\n")
    return path


def test_6z6u_human_apoferritin(shared_data: Path) -> None:
    # Counted independently with awk on the file: 32424 ATOM + 194 HETATM records in 24 chains.
    model = read_atomic_model(shared_data / "models/apoferritin_human_6z6u/6z6u.pdb")
    assert model.n_atoms == 32424 + 194
    assert int(model.is_hetatm.sum()) == 194
    assert len(model.chains) == 24
    assert model.element_counts() == {"C": 20184, "N": 5784, "O": 6504, "S": 120, "NA": 24, "MG": 2}
    assert model.xyz_a.dtype == np.float64
    np.testing.assert_allclose(model.xyz_a[0], [41.825, 76.692, 82.377])
    assert model.bfactor_a2[0] == pytest.approx(91.41)
    # The 24-mer is centred on the reconstruction's box centre (~100 Å from the origin).
    np.testing.assert_allclose(model.xyz_a.mean(0), [100.0, 100.0, 99.5], atol=0.7)


def test_4v1w_horse_apoferritin_mmcif(shared_data: Path) -> None:
    model = read_atomic_model(shared_data / "models/apoferritin_horse_4v1w/4v1w.cif")
    assert model.n_atoms == 32736
    assert model.chains == tuple("ABCDEFGHIJKLMNOPQRSTUVWX")
    assert all(int((model.chain_ids == c).sum()) == 1364 for c in model.chains)
    assert model.element_counts() == {"C": 20640, "N": 5736, "O": 6240, "S": 120}
    np.testing.assert_allclose(model.xyz_a[0], [106.801, 35.728, 111.280])
    assert model.bfactor_a2[0] == pytest.approx(145.47)
    assert not model.is_hetatm.any()


def test_pdb_and_mmcif_with_permuted_columns_read_the_same(tmp_path: Path) -> None:
    pdb = _write(
        tmp_path,
        "m.pdb",
        [
            _atom(1, " N", "GLY", "A", 1, (1.0, 2.0, 3.0), element="N"),
            _atom(2, " CA", "GLY", "A", 1, (-4.5, 5.25, 6.0), occ=0.5, b=31.0, element="C"),
            _atom(3, "FE", "HEM", "B", 2, (7.0, 8.0, -9.0), element="FE", record="HETATM"),
        ],
    )
    cif = _write(
        tmp_path,
        "m.cif",
        [
            "data_test",
            "loop_",
            "_atom_site.Cartn_z",
            "_atom_site.auth_asym_id",
            "_atom_site.type_symbol",
            "_atom_site.B_iso_or_equiv",
            "_atom_site.group_PDB",
            "_atom_site.label_atom_id",
            "_atom_site.occupancy",
            "_atom_site.Cartn_x",
            "_atom_site.Cartn_y",
            "3.0 A N 20.0 ATOM N 1.0 1.0 2.0",
            "6.0 A C 31.0 ATOM CA 0.5 -4.5 5.25",
            "# a comment inside the loop",
            "-9.0 B Fe 20.0 HETATM FE 1.0 7.0",
            "8.0",
            "#",
            "_other.tag value",
        ],
    )
    a, b = read_pdb(pdb), read_mmcif(cif)
    np.testing.assert_array_equal(a.xyz_a, b.xyz_a)
    np.testing.assert_array_equal(a.occupancy, b.occupancy)
    np.testing.assert_array_equal(a.bfactor_a2, b.bfactor_a2)
    np.testing.assert_array_equal(a.elements, b.elements)
    np.testing.assert_array_equal(a.chain_ids, b.chain_ids)
    np.testing.assert_array_equal(a.is_hetatm, [False, False, True])
    np.testing.assert_array_equal(b.is_hetatm, [False, False, True])


def test_mmcif_quoted_values(tmp_path: Path) -> None:
    cif = _write(
        tmp_path,
        "q.cif",
        [
            "loop_",
            "_atom_site.label_atom_id",
            "_atom_site.type_symbol",
            "_atom_site.Cartn_x",
            "_atom_site.Cartn_y",
            "_atom_site.Cartn_z",
            "_atom_site.auth_asym_id",
            "\"O5'\" O 1.5 2.5 3.5 'chain A'",
            "C1' C 0 0 0 A",
        ],
    )
    model = read_mmcif(cif)
    assert list(model.chain_ids) == ["chain A", "A"]
    np.testing.assert_array_equal(model.xyz_a[0], [1.5, 2.5, 3.5])
    np.testing.assert_array_equal(model.occupancy, [1.0, 1.0])  # column absent → 1


def test_alternate_locations_keep_the_highest_occupancy(tmp_path: Path) -> None:
    pdb = _write(
        tmp_path,
        "alt.pdb",
        [
            _atom(1, " CB", "SER", "A", 5, (0, 0, 0), occ=0.4, altloc="A", element="C"),
            _atom(2, " CB", "SER", "A", 5, (1, 0, 0), occ=0.6, altloc="B", element="C"),
            _atom(3, " OG", "SER", "A", 5, (2, 0, 0), occ=0.5, altloc="A", element="O"),
            _atom(4, " OG", "SER", "A", 5, (3, 0, 0), occ=0.5, altloc="B", element="O"),
            _atom(5, " CB", "SER", "A", 6, (4, 0, 0), occ=0.3, altloc="A", element="C"),
        ],
    )
    model = read_pdb(pdb)
    # CB 5: B wins (0.6); OG 5: tie → first (A); CB 6: the only one.
    np.testing.assert_array_equal(model.xyz_a[:, 0], [1.0, 2.0, 4.0])


def test_only_the_first_model_and_optional_hydrogens(tmp_path: Path) -> None:
    pdb = _write(
        tmp_path,
        "nmr.pdb",
        [
            "MODEL        1",
            _atom(1, " N", "ALA", "A", 1, (0, 0, 0), element="N"),
            _atom(2, " H", "ALA", "A", 1, (1, 0, 0), element="H"),
            _atom(3, "HB1", "ALA", "A", 1, (2, 0, 0)),  # element from the name → H
            "ENDMDL",
            "MODEL        2",
            _atom(1, " N", "ALA", "A", 1, (9, 9, 9), element="N"),
            "ENDMDL",
        ],
    )
    model = read_pdb(pdb)
    assert model.n_atoms == 3
    assert list(model.elements) == ["N", "H", "H"]
    assert read_pdb(pdb, include_hydrogens=False).n_atoms == 1


def test_element_inferred_from_atom_name_columns(tmp_path: Path) -> None:
    pdb = _write(
        tmp_path,
        "noel.pdb",
        [
            _atom(1, " CA", "ALA", "A", 1, (0, 0, 0)),  # C-alpha: right-aligned one letter
            _atom(2, "CA", " CA", "B", 2, (0, 0, 0), record="HETATM"),  # calcium ion
            _atom(3, "FE", "HEM", "B", 3, (0, 0, 0), record="HETATM"),
            _atom(4, "HG21", "THR", "A", 4, (0, 0, 0)),  # a hydrogen, not mercury
        ],
    )
    assert list(read_pdb(pdb).elements) == ["C", "CA", "FE", "H"]


def test_malformed_pdb_line_names_file_and_line(tmp_path: Path) -> None:
    good = _atom(1, " N", "GLY", "A", 1, (1, 2, 3), element="N")
    bad = good[:38] + "   abc.d" + good[46:]
    pdb = _write(tmp_path, "bad.pdb", ["HEADER    TEST", good, bad])
    with pytest.raises(FileFormatError, match=r"bad\.pdb: line 3: y in columns 39-46"):
        read_pdb(pdb)
    short = _write(tmp_path, "short.pdb", [good, "ATOM      2  CA  GLY A   1      1.000"])
    with pytest.raises(FileFormatError, match="line 2: ATOM record too short"):
        read_pdb(short)


def test_malformed_mmcif_names_file_and_line(tmp_path: Path) -> None:
    head = ["loop_", "_atom_site.type_symbol", "_atom_site.Cartn_x", "_atom_site.Cartn_y",
            "_atom_site.Cartn_z"]  # fmt: skip
    bad_number = _write(tmp_path, "n.cif", [*head, "C 1 2 3", "C 1 x 3"])
    with pytest.raises(FileFormatError, match=r"n\.cif: line 7: Cartn_y is 'x'"):
        read_mmcif(bad_number)
    missing_value = _write(tmp_path, "m.cif", [*head, "C 1 2 3", "C 1 2"])
    with pytest.raises(FileFormatError, match="not a multiple of its 4 columns"):
        read_mmcif(missing_value)
    no_z = _write(tmp_path, "z.cif", [*head[:-1], "C 1 2"])
    with pytest.raises(FileFormatError, match="no Cartn_z column"):
        read_mmcif(no_z)
    with pytest.raises(FileFormatError, match="no _atom_site loop"):
        read_mmcif(_write(tmp_path, "e.cif", ["data_x", "_cell.length_a 10"]))


def test_missing_and_empty_files(tmp_path: Path) -> None:
    with pytest.raises(MissingFileError):
        read_atomic_model(tmp_path / "absent.pdb")
    with pytest.raises(FileFormatError, match="no ATOM or HETATM"):
        read_atomic_model(_write(tmp_path, "empty.pdb", ["HEADER", "END"]))


@given(
    st.lists(
        st.tuples(*[st.floats(-999.0, 9999.0, allow_nan=False)] * 3, st.floats(0.0, 1.0)),
        min_size=1,
        max_size=20,
    )
)
def test_pdb_round_trip_of_fixed_columns(atoms: list[tuple[float, float, float, float]]) -> None:
    import tempfile

    lines = [
        _atom(i + 1, " C", "GLY", "A", i + 1, (x, y, z), occ=o, element="C")
        for i, (x, y, z, o) in enumerate(atoms)
    ]
    with tempfile.TemporaryDirectory() as folder:
        model = read_pdb(_write(Path(folder), "r.pdb", lines))
    expected = np.array([a[:3] for a in atoms])
    np.testing.assert_allclose(model.xyz_a, expected, atol=5.1e-4)
    np.testing.assert_allclose(model.occupancy, [a[3] for a in atoms], atol=5.1e-3)
