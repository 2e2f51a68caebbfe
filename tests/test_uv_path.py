"""A new user's copy-pasted `uv run ...` works after `make setup`, even when make installed uv."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import REPO

README = (REPO / "README.md").read_text()


def _make_uv_path(path: str) -> str:
    make = shutil.which("make")
    assert make is not None
    env = {k: v for k, v in os.environ.items() if k != "MAKEFLAGS"} | {"PATH": path}
    out = subprocess.run(
        [make, "-s", "--no-print-directory", "uv-path"], cwd=REPO, env=env, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    return out.stdout


@pytest.mark.skipif(not (REPO / ".tools" / "bin" / "uv").exists(), reason="make did not install uv here")
def test_setup_says_where_it_put_uv_and_the_printed_line_makes_uv_run_work(tmp_path: Path) -> None:
    bare = os.pathsep.join(str(Path(shutil.which(t) or "/usr/bin/x").parent) for t in ("make", "bash", "ln"))
    out = _make_uv_path(bare)
    assert f"uv: {REPO / '.tools' / 'bin' / 'uv'} (installed here by make" in out
    (export,) = [line.strip() for line in out.splitlines() if line.strip().startswith("export PATH=")]
    # The user pastes the line into their shell, then a README command.
    shell = subprocess.run(
        ["bash", "-c", f"{export}\nuv --version && command -v python3 pip || true"],
        env={"PATH": bare, "HOME": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert re.match(r"uv \d+\.\d+", shell.stdout), shell.stderr
    # Only uv goes on PATH, never the tools venv's own python or pip.
    assert ".tools" not in shell.stdout.split("\n", 1)[1]


def test_uv_on_the_path_is_reported_as_is() -> None:
    uv = shutil.which("uv")
    if uv is None:
        pytest.skip("no uv on PATH here")
    assert _make_uv_path(os.environ["PATH"]).strip() == f"uv: {uv}"


def test_readme_gives_the_front_door_and_where_uv_is() -> None:
    quick = README[README.index("## Quick start") : README.index("## Documentation")]
    assert "./sluice status dags/flights_delay.pipeline.yaml" in quick
    assert "./sluice exec airflow dags trigger flights_delay__train" in quick
    assert "make uv-path" in quick
    # Every command the README shows goes through the front door (or make), never a bare `uv run`.
    for page in [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]:
        commands = re.findall(r"^(?:\$ )?(uv run .*)$", page.read_text(), re.M)
        assert commands == [], (page.name, commands)
