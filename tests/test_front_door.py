"""`./sluice` works right after `make setup`, with no uv on PATH and no environment set-up."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import REPO


def _bare_env(tmp_path: Path) -> dict[str, str]:
    """A new user's shell: no uv on PATH, nothing sluice or Airflow exported."""
    tools = {str(Path(shutil.which(t) or "/usr/bin/env").parent) for t in ("bash", "make", "python3.11")}
    keep = {k: v for k, v in os.environ.items() if not k.startswith(("SLUICE_", "AIRFLOW", "MLFLOW_", "UV_"))}
    return keep | {"PATH": os.pathsep.join(sorted(tools)), "HOME": str(tmp_path)}


def _front_door(args: list[str], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(REPO / "sluice"), *args],
        cwd=tmp_path,
        env=_bare_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.fixture()
def uv_installed_here() -> None:
    if shutil.which("uv") is None and not (REPO / ".tools" / "bin" / "uv").exists():
        pytest.skip("neither uv on PATH nor make's .tools/bin/uv: `make setup` has not run")


def test_the_front_door_lints_the_demo_spec_from_any_folder_without_uv_on_path(
    tmp_path: Path, uv_installed_here: None
) -> None:
    out = _front_door(["lint", "--no-import", str(REPO / "dags")], tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr
    assert f"ok  {REPO / 'dags' / 'flights_delay.pipeline.yaml'}  (flights_delay)" in out.stdout


def test_exec_runs_a_command_in_the_embedded_airflow_environment(tmp_path: Path, uv_installed_here: None) -> None:
    script = 'echo "$AIRFLOW_HOME|$AIRFLOW__API__PORT|$SLUICE_PROJECT_DIR"; command -v airflow'
    out = _front_door(["exec", "bash", "-c", script], tmp_path)
    assert out.returncode == 0, out.stderr
    home, port, project = out.stdout.splitlines()[0].split("|")
    assert (home, port, project) == (str(REPO / ".airflow"), "8080", str(REPO))
    # The locked environment's airflow, not whatever else is on the machine.
    assert out.stdout.splitlines()[1].startswith(str(REPO / ".venv"))


def test_exec_without_a_command_says_what_to_give(tmp_path: Path, uv_installed_here: None) -> None:
    out = _front_door(["exec"], tmp_path)
    assert out.returncode == 2
    assert "name a command, e.g. `sluice exec airflow dags list`" in out.stderr
