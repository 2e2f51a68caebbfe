"""No function in sluice runs past 60 lines (issue 10): a reader sees each one whole on a screen."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "include" / "sluice"
MAX_LINES = 60


def long_functions() -> list[str]:
    """Every function (or method) of the package over :data:`MAX_LINES`, as ``file:line name (n lines)``."""
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        name = path.relative_to(PACKAGE).as_posix()
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                lines = (node.end_lineno or node.lineno) - node.lineno + 1
                if lines > MAX_LINES:
                    found.append(f"{name}:{node.lineno} {node.name} ({lines} lines)")
    return found


def test_no_function_is_longer_than_60_lines() -> None:
    assert long_functions() == []


def test_the_docs_package_map_lists_every_module() -> None:
    import re

    readme = (PACKAGE.parents[1] / "docs" / "design.md").read_text()
    block = readme.split("<!-- package-map:start -->", 1)[1].split("<!-- package-map:end -->", 1)[0]
    listed = re.findall(r"^\| `([a-z_/]+\.py)` \|", block, re.M)
    modules = sorted(p.relative_to(PACKAGE).as_posix() for p in PACKAGE.rglob("*.py") if p.name != "__init__.py")
    assert listed == modules
