"""The demo under the real Airflow scheduler, DAG processor and triggerer, in a scratch copy."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from sluice.airflow.standalone import isolated_env
from tests.conftest import REPO, free_port

pytestmark = pytest.mark.e2e


def _scratch_project(root: Path) -> Path:
    root.mkdir()
    for name in ("dags", "plugins"):
        shutil.copytree(REPO / name, root / name)
    (root / "include").mkdir()
    for name in ("features", "demo"):
        shutil.copytree(REPO / "include" / name, root / "include" / name, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("airflow_settings.yaml", "pyproject.toml"):
        shutil.copy(REPO / name, root / name)
    spec = root / "dags" / "flights_delay.pipeline.yaml"
    spec.write_text(spec.read_text().replace("port: 5055", f"port: {free_port()}"))
    return root


def processes_of(project: Path) -> dict[int, str]:
    """Processes started for ``project`` (found by the SLUICE_PROJECT_DIR in their environment)."""
    marker = f"SLUICE_PROJECT_DIR={project}".encode()
    found = {}
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            if marker in (proc / "environ").read_bytes().split(b"\0"):
                found[int(proc.name)] = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()[:150]
        except OSError:
            continue
    return found


@pytest.fixture()
def project(tmp_path: Path) -> Iterator[Path]:
    """A scratch copy of the project; whatever it leaves running is killed afterwards."""
    root = _scratch_project(tmp_path / "demo-project")
    yield root
    for pid in processes_of(root):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def test_demo_ingests_trains_gates_and_deploys_under_the_scheduler(project: Path) -> None:
    # The scratch project gets its own Airflow home, MLflow store and API port.
    env = isolated_env(project)
    subprocess.run(
        [sys.executable, "-m", "sluice.cli", "bootstrap"],
        cwd=project,
        env=env,
        check=True,
        capture_output=True,
        timeout=300,
    )
    cmd = [sys.executable, str(project / "include" / "demo" / "run_demo.py"), "--months", "2"]
    demo = subprocess.Popen(cmd, cwd=project, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        out, err = demo.communicate(timeout=1500)
    except subprocess.TimeoutExpired:
        demo.terminate()  # the demo stops Airflow on SIGTERM
        out, err = demo.communicate(timeout=60)
        pytest.fail("demo did not finish in 25 minutes:\n" + out[-4000:])
    assert demo.returncode == 0, out[-4000:] + err[-4000:]
    assert "demo: OK" in out
    rows = [ln.split() for ln in out.splitlines() if ln[:1] in {"1", "2"} and len(ln.split()) >= 7]
    assert [r[0] for r in rows] == ["1", "2"]
    month1, month2 = rows
    assert month1[-2:] == ["pass", "v1"], "the first model becomes champion and is served"
    assert "(40" in " ".join(month2), "the corrupted rows of month 2 are quarantined"
    assert month2[-1] in {"v2", "kept"}
    assert processes_of(project) == {}, "the demo leaves no process behind"
