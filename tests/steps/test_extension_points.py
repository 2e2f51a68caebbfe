"""A new deploy target, or a new expectation type, is one file's change.

Each test copies the package, adds the new thing to exactly one file the way a contributor
would, and runs the real ``sluice`` command line from the copy on a spec that uses it: the
spec loads, ``sluice plan`` and ``sluice status`` (the target) or ``sluice lint`` and the
Great Expectations run (the expectation) use it. The diff of the copy against the package
is measured: one file, a few lines.
"""

from __future__ import annotations

import difflib
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml
from tests.conftest import REPO, demo_spec_dict

PACKAGE = REPO / "include" / "sluice"

FLOPPY_TARGET = '''


class FloppyTarget:
    """Models served from a floppy disk (a fictional target)."""

    name = "floppy"

    def __init__(self, loaded: LoadedSpec, store: PipelineStore, connect: Callable[[], Any] | None = None) -> None:
        """Build the target of a loaded spec."""
        self.pipeline = loaded.spec.pipeline

    def describe(self) -> list[str]:
        """Lines for ``sluice plan``."""
        return [f"target floppy: {self.pipeline} on drive A:"]

    def served(self, probe: bool = True) -> Served:
        """What the disk holds."""
        return Served(self.name, "7", "a:/model", True, lines=("deployed: v7 on drive A: (disk spinning)",))

    def deploy(self, version: str, *, previous: str | None, run_id: str, smoke_rows: list[dict[str, Any]]) -> Any:
        """Write the model to the disk."""
        return {"version": version, "url": "a:/model", "changed": True}

    def stop(self) -> list[str]:
        """Eject the disk."""
        return ["ejected"]


register("floppy", FloppyTarget, "models served from a floppy disk")
'''

UNIQUE_TYPE = '''


class Unique(ColumnExpectation):
    """Column values must be unique (row-level; a fictional addition)."""

    gx_name: ClassVar[str] = "ExpectColumnValuesToBeUnique"
    row_level: ClassVar[bool] = True
    type: Literal["unique"] = Field(description="Expectation type.")

    def gx_kwargs(self) -> dict[str, Any]:
        """Arguments of the Great Expectations expectation."""
        return {"column": self.column}
'''


def _copy_with(tmp_path: Path, module: str, addition: str, before: str | None = None) -> tuple[Path, int, int]:
    """A copy of the package with ``addition`` put into one module; returns (include dir, files changed, lines)."""
    include = tmp_path / "include"
    shutil.copytree(PACKAGE, include / "sluice", ignore=shutil.ignore_patterns("__pycache__"))
    target = include / "sluice" / module
    text = target.read_text()
    if before is None:
        text += addition
    else:
        at = text.index(before)
        text = text[:at] + addition.lstrip("\n") + "\n\n" + text[at:]
    target.write_text(text)
    changed, lines = 0, 0
    for new in sorted((include / "sluice").rglob("*.py")):
        old = PACKAGE / new.relative_to(include / "sluice")
        diff = [
            line
            for line in difflib.unified_diff(old.read_text().splitlines(), new.read_text().splitlines(), lineterm="")
            if line[:1] in "+-" and not line.startswith(("+++", "---"))
        ]
        if diff:
            changed += 1
            lines += len(diff)
    return include, changed, lines


def _sluice(include: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(include), "SLUICE_PROJECT_DIR": str(REPO)}
    code = "import sys; from sluice.cli import main; sys.exit(main(sys.argv[1:]))"
    return subprocess.run(
        [sys.executable, "-c", code, *argv], env=env, capture_output=True, text=True, timeout=300, check=False
    )


def test_a_new_deploy_target_is_one_file(tmp_path: Path) -> None:
    include, files, lines = _copy_with(tmp_path, "steps/targets.py", FLOPPY_TARGET)
    # One file, 30 lines: the class and its register() line (blank separators included).
    assert (files, lines) == (1, 30)
    spec_data = demo_spec_dict()
    spec_data["deployment"] = {"target": "floppy"}
    spec = tmp_path / "flights_delay.pipeline.yaml"
    spec.write_text(yaml.safe_dump(spec_data, sort_keys=False))

    plan = _sluice(include, "plan", str(spec))
    assert plan.returncode == 0, plan.stderr
    assert "    target floppy: flights_delay on drive A:" in plan.stdout
    assert "Serve the champion (floppy)." in _sluice(include, "plan", "--json", str(spec)).stdout

    status = _sluice(include, "status", str(spec))
    assert status.returncode == 0, status.stderr
    assert "  deployed: v7 on drive A: (disk spinning)" in status.stdout

    stop = _sluice(include, "stop", str(spec))
    assert (stop.returncode, stop.stdout) == (0, "ejected\n")

    # Without the class the same spec is an error at its line, listing the registered targets.
    plain = _sluice(REPO / "include", "lint", "--no-import", str(spec))
    assert plain.returncode == 1
    assert "no deploy target 'floppy'" in plain.stderr
    assert "use one of the registered targets: 'local', 'kubernetes'" in plain.stderr


def test_a_new_expectation_type_is_one_file(tmp_path: Path) -> None:
    include, files, lines = _copy_with(
        tmp_path, "spec/expectations.py", UNIQUE_TYPE, before="if TYPE_CHECKING:\n    Expectation"
    )
    # One file, 12 lines: the class (its blank separators included).
    assert (files, lines) == (1, 12)
    spec_data = demo_spec_dict()
    spec_data["validation"]["expectations"].append({"type": "unique", "column": "origin"})
    spec = tmp_path / "flights_delay.pipeline.yaml"
    spec.write_text(yaml.safe_dump(spec_data, sort_keys=False))

    lint = _sluice(include, "lint", "--no-import", str(spec))
    assert lint.returncode == 0, lint.stderr

    check = textwrap.dedent(
        f"""
        import pandas as pd
        from sluice.spec.loader import load_spec
        from sluice.services.gx import run_expectations

        exp = load_spec({str(spec)!r}).spec.validation.expectations[-1]
        ((result,), _) = run_expectations(pd.DataFrame({{"origin": ["EWR", "EWR", "JFK"]}}), [exp])
        seen = [type(exp).__name__, result.success, result.row_level, sorted(int(i) for i in result.unexpected_index)]
        open({str(tmp_path / "seen.txt")!r}, "w").write(repr(seen))
        """
    )
    env = {**os.environ, "PYTHONPATH": str(include), "SLUICE_PROJECT_DIR": str(REPO)}
    script = tmp_path / "check_unique.py"
    script.write_text(check)
    run = subprocess.run(
        [sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=300, check=False
    )
    assert run.returncode == 0, run.stderr
    assert (tmp_path / "seen.txt").exists(), run.stdout + run.stderr
    assert (tmp_path / "seen.txt").read_text() == "['Unique', False, True, [0, 1]]"

    plain = _sluice(REPO / "include", "lint", "--no-import", str(spec))
    assert plain.returncode == 1
    assert "unknown type 'unique'" in plain.stderr


@pytest.fixture(autouse=True)
def _no_bytecode(monkeypatch: pytest.MonkeyPatch) -> None:
    # The copies live in tmp_path; keep their bytecode out of the repository's caches.
    monkeypatch.setenv("PYTHONDONTWRITEBYTECODE", "1")
