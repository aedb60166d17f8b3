"""docs/conventions.md names the tests that pin each convention: they must all exist."""

from __future__ import annotations

import ast
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DOC = REPO / "docs" / "conventions.md"


def _test_names(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    return {
        node.name
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef) and node.name.startswith("test")
    }


def _references() -> list[tuple[str, str | None]]:
    """(test file, test name or None) in the order they appear; `::name` refers to the file
    named last before it."""
    refs: list[tuple[str, str | None]] = []
    current: str | None = None
    for match in re.finditer(r"`(tests/[\w/]+\.py)?(?:::(\w+))?`", DOC.read_text()):
        file, name = match.group(1), match.group(2)
        if file is None and name is None:
            continue
        if file is not None:
            current = file
        assert current is not None, f"`::{name}` appears before any test file in {DOC}"
        refs.append((current, name))
    return refs


def test_every_convention_names_existing_tests() -> None:
    refs = _references()
    assert len(refs) > 30
    missing = []
    for file, name in refs:
        path = REPO / file
        if not path.is_file():
            missing.append(file)
        elif name is not None and name not in _test_names(path):
            missing.append(f"{file}::{name}")
    assert not missing, "conventions.md names tests that do not exist:\n" + "\n".join(missing)


def test_every_section_is_pinned() -> None:
    sections = re.split(r"^## ", DOC.read_text(), flags=re.MULTILINE)[1:]
    unpinned = [s.splitlines()[0] for s in sections if "Pinned by" not in s]
    assert not unpinned, f"sections without a pinning test: {unpinned}"
