"""The layering of DESIGN.md, enforced: imports inside cryowarp point down only.

interface (cli, web) > orchestration (pipeline) > algorithms (preprocess, refine, simulate)
> foundation (core, io) > errors.  Modules of one algorithm package may not import another
algorithm package either (they share code through core/io), and core and io are independent.
"""

from __future__ import annotations

import ast
from pathlib import Path

import cryowarp

PACKAGE = Path(cryowarp.__file__).parent

# package -> packages of cryowarp it may import (besides itself)
ALLOWED: dict[str, set[str]] = {
    "errors": set(),
    "core": {"errors"},
    "io": {"errors"},
    "simulate": {"core", "io", "errors"},
    "preprocess": {"core", "io", "errors"},
    "refine": {"core", "io", "errors"},
    "pipeline": {"preprocess", "refine", "simulate", "core", "io", "errors"},
    "cli": {"pipeline", "preprocess", "refine", "simulate", "core", "io", "errors", "web"},
    "web": {"pipeline", "preprocess", "refine", "simulate", "core", "io", "errors"},
    "__init__": set(),
    "__main__": {"cli"},
}


def _top_package(module_file: Path) -> str:
    rel = module_file.relative_to(PACKAGE)
    return rel.parts[0].removesuffix(".py")


def _imported_cryowarp_packages(module_file: Path) -> set[str]:
    tree = ast.parse(module_file.read_text(), filename=str(module_file))
    found: set[str] = set()
    rel_parts = module_file.relative_to(PACKAGE).with_suffix("").parts
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative import: resolve against this module's package
                base = list(rel_parts[:-1])[: len(rel_parts) - node.level]
                target = ".".join(["cryowarp", *base, *([node.module] if node.module else [])])
                names = [target]
            elif node.module:
                names = [node.module]
        for name in names:
            parts = name.split(".")
            if parts[0] == "cryowarp" and len(parts) > 1:
                found.add(parts[1])
    return found


def test_imports_point_down_only() -> None:
    violations = []
    for module_file in sorted(PACKAGE.rglob("*.py")):
        top = _top_package(module_file)
        allowed = ALLOWED.get(top)
        assert allowed is not None, f"{module_file}: package '{top}' has no layer in ALLOWED"
        for imported in _imported_cryowarp_packages(module_file) - {top}:
            if imported not in allowed:
                violations.append(f"{module_file.relative_to(PACKAGE)} imports cryowarp.{imported}")
    assert not violations, "layering violated:\n" + "\n".join(violations)


def test_checker_sees_a_violation(tmp_path: Path) -> None:
    """The checker itself must be able to fail: an upward import is reported."""
    fake = PACKAGE / "core" / "_layering_probe.py"
    assert not fake.exists()
    source = "from cryowarp.pipeline import project\nfrom ..cli import main\n"
    tree_file = tmp_path / "probe.py"
    tree_file.write_text(source)
    # Reuse the parser on a file placed (virtually) inside core/.
    fake.write_text(source)
    try:
        assert _imported_cryowarp_packages(fake) == {"pipeline", "cli"}
    finally:
        fake.unlink()


def test_import_has_no_side_effects(tmp_path: Path) -> None:
    """Importing every foundation module creates no files and selects no device."""
    import os
    import subprocess
    import sys

    code = (
        "import importlib, pkgutil, torch, cryowarp, cryowarp.core, cryowarp.io\n"
        "for pkg in (cryowarp.core, cryowarp.io):\n"
        "    for m in pkgutil.iter_modules(pkg.__path__):\n"
        "        importlib.import_module(pkg.__name__ + '.' + m.name)\n"
        "assert torch.get_default_device().type == 'cpu'\n"
        "assert torch.get_default_dtype() == torch.float32\n"
    )
    subprocess.run([sys.executable, "-c", code], cwd=tmp_path, check=True, env=dict(os.environ))
    assert list(tmp_path.iterdir()) == []
