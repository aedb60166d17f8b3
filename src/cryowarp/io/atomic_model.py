"""Read atoms from PDB and mmCIF files into typed arrays.

Only what an image simulation needs is kept: element, position (Å, x y z), isotropic
B-factor (Å²), occupancy, chain and whether the record was ``HETATM``.  Rules:

- only the **first model** is read (``MODEL``/``ENDMDL`` in PDB, ``pdbx_PDB_model_num`` in
  mmCIF);
- of the alternate locations of one atom (same chain, residue number, insertion code and atom
  name) the one with the **highest occupancy** is kept, the first listed on a tie;
- hydrogens (``H``, ``D``) are kept unless ``include_hydrogens=False``;
- a PDB record without an element column (columns 77–78) takes its element from the atom name
  (columns 13–14, as the PDB format prescribes: a one-letter element is right-aligned in
  columns 13–14);
- missing occupancy / B-factor (short PDB lines, ``?`` or ``.`` in mmCIF) read as 1 and 0.

Files ending in ``.gz`` are decompressed.  Malformed records raise
:class:`~cryowarp.errors.FileFormatError` naming the file and line.
"""

from __future__ import annotations

import gzip
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from cryowarp.errors import FileFormatError
from cryowarp.io.files import require_file

__all__ = ["AtomicModel", "read_atomic_model", "read_mmcif", "read_pdb"]

# Residues whose atom names start with their element letter (hydrogens named "HG21" etc.).
_POLYMER_RESIDUES = frozenset({
    "ALA", "ARG", "ASN", "ASP", "CYS", "GLN", "GLU", "GLY", "HIS", "ILE", "LEU", "LYS", "MET",
    "PHE", "PRO", "SER", "THR", "TRP", "TYR", "VAL", "MSE", "SEC", "PYL", "UNK",
    "A", "C", "G", "U", "I", "DA", "DC", "DG", "DT", "DI", "DU", "N",
})  # fmt: skip
_TWO_LETTER_ELEMENTS = frozenset({
    "HE", "LI", "BE", "NE", "NA", "MG", "AL", "SI", "CL", "AR", "CA", "SC", "TI", "CR", "MN",
    "FE", "CO", "NI", "CU", "ZN", "GA", "GE", "AS", "SE", "BR", "KR", "RB", "SR", "ZR", "MO",
    "RU", "RH", "PD", "AG", "CD", "IN", "SN", "SB", "TE", "XE", "CS", "BA", "LA", "GD", "YB",
    "OS", "IR", "PT", "AU", "HG", "TL", "PB", "BI",
})  # fmt: skip
_MMCIF_TOKEN = re.compile(r"""'(?:[^']|'(?=\S))*'(?=\s|$)|"(?:[^"]|"(?=\S))*"(?=\s|$)|\S+""")


@dataclass(frozen=True, eq=False)
class AtomicModel:
    """Atoms of one model of a structure.

    Attributes
    ----------
    elements:
        ``(n,)`` element symbols as written in the file, upper case (``"C"``, ``"FE"``).
    xyz_a:
        ``(n, 3)`` float64 Cartesian coordinates (x, y, z) in Å (conventions §1).
    bfactor_a2:
        ``(n,)`` float64 isotropic B-factors in Å².
    occupancy:
        ``(n,)`` float64 occupancies in [0, 1].
    chain_ids:
        ``(n,)`` chain identifiers (PDB column 22; mmCIF ``auth_asym_id``).
    is_hetatm:
        ``(n,)`` bool, ``True`` for ``HETATM`` records.
    path:
        The file read (``None`` if built in memory).
    """

    elements: npt.NDArray[np.str_]
    xyz_a: npt.NDArray[np.float64]
    bfactor_a2: npt.NDArray[np.float64]
    occupancy: npt.NDArray[np.float64]
    chain_ids: npt.NDArray[np.str_]
    is_hetatm: npt.NDArray[np.bool_]
    path: Path | None = None

    @property
    def n_atoms(self) -> int:
        """Number of atoms."""
        return int(self.xyz_a.shape[0])

    @property
    def chains(self) -> tuple[str, ...]:
        """Distinct chain identifiers in order of first appearance."""
        _, first = np.unique(self.chain_ids, return_index=True)
        return tuple(str(self.chain_ids[i]) for i in sorted(first))

    def element_counts(self) -> dict[str, int]:
        """``{element: count}`` over all atoms."""
        names, counts = np.unique(self.elements, return_counts=True)
        return {str(n): int(c) for n, c in zip(names, counts, strict=True)}

    def select(self, keep: npt.NDArray[np.bool_]) -> AtomicModel:
        """The atoms where ``keep`` (``(n,)`` bool) is true."""
        return AtomicModel(
            elements=self.elements[keep],
            xyz_a=self.xyz_a[keep],
            bfactor_a2=self.bfactor_a2[keep],
            occupancy=self.occupancy[keep],
            chain_ids=self.chain_ids[keep],
            is_hetatm=self.is_hetatm[keep],
            path=self.path,
        )


@dataclass
class _Records:
    """Columns collected while reading, before alternate locations are resolved."""

    elements: list[str]
    xyz: list[tuple[float, float, float]]
    bfactor: list[float]
    occupancy: list[float]
    chains: list[str]
    hetatm: list[bool]
    altloc_keys: list[tuple[str, ...] | None]

    @classmethod
    def empty(cls) -> _Records:
        return cls([], [], [], [], [], [], [])

    def add(
        self,
        element: str,
        xyz: tuple[float, float, float],
        bfactor: float,
        occupancy: float,
        chain: str,
        hetatm: bool,
        altloc_key: tuple[str, ...] | None,
    ) -> None:
        self.elements.append(element)
        self.xyz.append(xyz)
        self.bfactor.append(bfactor)
        self.occupancy.append(occupancy)
        self.chains.append(chain)
        self.hetatm.append(hetatm)
        self.altloc_keys.append(altloc_key)

    def to_model(self, path: Path, *, include_hydrogens: bool) -> AtomicModel:
        if not self.xyz:
            raise FileFormatError(path, "no ATOM or HETATM records found")
        keep = np.ones(len(self.xyz), dtype=bool)
        best: dict[tuple[str, ...], int] = {}
        for i, key in enumerate(self.altloc_keys):
            if key is None:
                continue
            j = best.get(key)
            if j is None:
                best[key] = i
            elif self.occupancy[i] > self.occupancy[j]:
                keep[j] = False
                best[key] = i
            else:
                keep[i] = False
        elements = np.array(self.elements, dtype=np.str_)
        if not include_hydrogens:
            keep &= ~np.isin(elements, ["H", "D"])
        return AtomicModel(
            elements=elements,
            xyz_a=np.array(self.xyz, dtype=np.float64).reshape(-1, 3),
            bfactor_a2=np.array(self.bfactor, dtype=np.float64),
            occupancy=np.array(self.occupancy, dtype=np.float64),
            chain_ids=np.array(self.chains, dtype=np.str_),
            is_hetatm=np.array(self.hetatm, dtype=bool),
            path=path,
        ).select(keep)


def _read_text_lines(path: str | Path) -> tuple[Path, list[str]]:
    file = require_file(path)
    try:
        if file.suffix == ".gz":
            with gzip.open(file, "rt", encoding="utf-8", errors="replace") as handle:
                return file, handle.read().splitlines()
        return file, file.read_text(encoding="utf-8-sig", errors="replace").splitlines()
    except (OSError, EOFError) as exc:
        raise FileFormatError(file, f"cannot be read ({exc})") from exc


def _element_from_atom_name(name: str, residue: str) -> str:
    """PDB rule: a one-letter element is right-aligned in columns 13–14 of the atom name."""
    if residue.strip() in _POLYMER_RESIDUES or name[:1] in (" ", "") or name[:1].isdigit():
        letters = name.strip().lstrip("0123456789")
        return letters[:1].upper()
    two = name[:2].upper()
    return two if two in _TWO_LETTER_ELEMENTS else two[:1]


def _pdb_float(path: Path, line_number: int, line: str, start: int, stop: int, what: str) -> float:
    text = line[start:stop].strip()
    try:
        return float(text)
    except ValueError:
        raise FileFormatError(
            path,
            f"line {line_number}: {what} in columns {start + 1}-{stop} is {text!r}, not a number",
        ) from None


def read_pdb(path: str | Path, *, include_hydrogens: bool = True) -> AtomicModel:
    """Atoms of the first model of a PDB-format file (see the module docstring for rules).

    Raises
    ------
    MissingFileError
        ``path`` is not an existing file.
    FileFormatError
        A malformed ``ATOM``/``HETATM`` record (named by line number), or no atoms.
    """
    file, lines = _read_text_lines(path)
    records = _Records.empty()
    for line_number, line in enumerate(lines, start=1):
        record = line[:6]
        if record == "ENDMDL":
            break
        if record not in ("ATOM  ", "HETATM"):
            continue
        if len(line.rstrip()) < 54:
            raise FileFormatError(
                file,
                f"line {line_number}: {record.strip()} record too short for x, y, z "
                f"(needs columns 31-54): {line.rstrip()!r}",
            )
        xyz = (
            _pdb_float(file, line_number, line, 30, 38, "x"),
            _pdb_float(file, line_number, line, 38, 46, "y"),
            _pdb_float(file, line_number, line, 46, 54, "z"),
        )
        occupancy = (
            _pdb_float(file, line_number, line, 54, 60, "occupancy") if line[54:60].strip() else 1.0
        )
        bfactor = (
            _pdb_float(file, line_number, line, 60, 66, "B-factor") if line[60:66].strip() else 0.0
        )
        name, residue, chain = line[12:16], line[17:20], line[21:22].strip()
        element = line[76:78].strip().upper() or _element_from_atom_name(name, residue)
        if not element.isalpha():
            raise FileFormatError(file, f"line {line_number}: invalid element {element!r}")
        altloc = line[16:17].strip()
        key = (chain, line[22:27], name.strip()) if altloc else None
        records.add(element, xyz, bfactor, occupancy, chain, record == "HETATM", key)
    return records.to_model(file, include_hydrogens=include_hydrogens)


def _tokens(lines: list[str], start: int) -> list[tuple[str, int]]:
    """Tokens of a mmCIF loop body from line index ``start`` with 1-based line numbers."""
    out: list[tuple[str, int]] = []
    i = start
    while i < len(lines):
        line = lines[i]
        stripped = line.lstrip()
        if stripped.startswith(("_", "loop_", "data_", "save_", "global_")):
            break
        if stripped.startswith("#") or not stripped:  # comments and blank lines
            i += 1
            continue
        if line.startswith(";"):  # multi-line text field
            text = [line[1:]]
            i += 1
            while i < len(lines) and not lines[i].startswith(";"):
                text.append(lines[i])
                i += 1
            out.append(("\n".join(text), i))
            i += 1
            continue
        if "'" in line or '"' in line:
            for match in _MMCIF_TOKEN.finditer(line):
                token = match.group(0)
                if token[0] in "'\"" and len(token) > 1 and token[-1] == token[0]:
                    token = token[1:-1]
                out.append((token, i + 1))
        else:
            out.extend((token, i + 1) for token in line.split())
        i += 1
    return out


def _cif_number(path: Path, token: str, line_number: int, what: str, default: float) -> float:
    if token in ("?", "."):
        return default
    try:
        return float(token.split("(")[0])  # drop a standard uncertainty "12.3(4)"
    except ValueError:
        raise FileFormatError(
            path, f"line {line_number}: {what} is {token!r}, not a number"
        ) from None


def read_mmcif(path: str | Path, *, include_hydrogens: bool = True) -> AtomicModel:
    """Atoms of the first model in the ``_atom_site`` loop of a PDBx/mmCIF file.

    Columns may come in any order; ``Cartn_x/y/z`` are required, the element is
    ``type_symbol`` (else the first letter of the atom name), the chain ``auth_asym_id``
    (else ``label_asym_id``).

    Raises
    ------
    MissingFileError
        ``path`` is not an existing file.
    FileFormatError
        No ``_atom_site`` loop, a required column missing, a row with the wrong number of
        values or a non-numeric coordinate (named by line number).
    """
    file, lines = _read_text_lines(path)
    start = next((i for i, line in enumerate(lines) if line.startswith("_atom_site.")), None)
    if start is None:
        raise FileFormatError(file, "no _atom_site loop found (not an mmCIF coordinate file?)")
    columns: list[str] = []
    i = start
    while i < len(lines) and lines[i].startswith("_atom_site."):
        columns.append(lines[i].split()[0][len("_atom_site.") :])
        i += 1
    index = {name: k for k, name in enumerate(columns)}
    for required in ("Cartn_x", "Cartn_y", "Cartn_z"):
        if required not in index:
            raise FileFormatError(file, f"_atom_site loop has no {required} column")
    tokens = _tokens(lines, i)
    n_columns = len(columns)
    if not tokens or len(tokens) % n_columns:
        last_line = tokens[-1][1] if tokens else i + 1
        raise FileFormatError(
            file,
            f"line {last_line}: _atom_site loop has {len(tokens)} values, "
            f"not a multiple of its {n_columns} columns",
        )

    def column(*names: str) -> int | None:
        return next((index[n] for n in names if n in index), None)

    c_x, c_y, c_z = index["Cartn_x"], index["Cartn_y"], index["Cartn_z"]
    c_element = column("type_symbol")
    c_atom = column("auth_atom_id", "label_atom_id")
    c_chain = column("auth_asym_id", "label_asym_id")
    c_occ, c_b = column("occupancy"), column("B_iso_or_equiv")
    c_alt, c_group = column("label_alt_id"), column("group_PDB")
    c_model = column("pdbx_PDB_model_num")
    c_seq, c_ins = column("auth_seq_id", "label_seq_id"), column("pdbx_PDB_ins_code")

    def value(row: list[tuple[str, int]], k: int | None, default: str = "") -> str:
        return default if k is None else row[k][0]

    records = _Records.empty()
    first_model: str | None = None
    for r in range(0, len(tokens), n_columns):
        row = tokens[r : r + n_columns]
        line_number = row[0][1]
        model = value(row, c_model)
        if first_model is None:
            first_model = model
        elif model != first_model:
            continue
        xyz = (
            _cif_number(file, row[c_x][0], row[c_x][1], "Cartn_x", float("nan")),
            _cif_number(file, row[c_y][0], row[c_y][1], "Cartn_y", float("nan")),
            _cif_number(file, row[c_z][0], row[c_z][1], "Cartn_z", float("nan")),
        )
        if not all(np.isfinite(xyz)):
            raise FileFormatError(file, f"line {line_number}: atom without coordinates")
        atom = value(row, c_atom)
        element = value(row, c_element, ".").upper()
        if element in ("?", "."):
            element = atom.lstrip("0123456789")[:1].upper()
        if not element.isalpha():
            raise FileFormatError(file, f"line {line_number}: invalid element {element!r}")
        occupancy = _cif_number(file, value(row, c_occ, "?"), line_number, "occupancy", 1.0)
        bfactor = _cif_number(file, value(row, c_b, "?"), line_number, "B_iso_or_equiv", 0.0)
        chain = value(row, c_chain)
        altloc = value(row, c_alt, ".")
        key = (
            (chain, value(row, c_seq), value(row, c_ins), atom)
            if altloc not in ("?", ".")
            else None
        )
        hetatm = value(row, c_group) == "HETATM"
        records.add(element, xyz, bfactor, occupancy, chain, hetatm, key)
    return records.to_model(file, include_hydrogens=include_hydrogens)


def read_atomic_model(path: str | Path, *, include_hydrogens: bool = True) -> AtomicModel:
    """Read a PDB (``.pdb``, ``.ent``) or mmCIF (``.cif``, ``.mmcif``) file, maybe ``.gz``.

    Files with another suffix are read as mmCIF if they contain an ``_atom_site.`` tag and as
    PDB otherwise.  See :func:`read_pdb` and :func:`read_mmcif`.
    """
    file = require_file(path)
    suffixes = [s.lower() for s in file.suffixes[-2:] if s.lower() != ".gz"]
    kind = suffixes[-1] if suffixes else ""
    if kind in (".cif", ".mmcif"):
        return read_mmcif(file, include_hydrogens=include_hydrogens)
    if kind in (".pdb", ".ent"):
        return read_pdb(file, include_hydrogens=include_hydrogens)
    _, lines = _read_text_lines(file)
    if any(line.startswith("_atom_site.") for line in lines):
        return read_mmcif(file, include_hydrogens=include_hydrogens)
    return read_pdb(file, include_hydrogens=include_hydrogens)
