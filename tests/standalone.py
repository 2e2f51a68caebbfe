"""Helpers for tests that run a real ``airflow standalone`` in a project of their own."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from tests.conftest import REPO, free_port


def scratch_project(root: Path) -> Path:
    """A copy of the project (dags, plugins, feature job, demo) with the model server on a free port."""
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


def session_env(project: Path) -> dict[str, str]:
    """A standalone for ``project`` on the test session's own Airflow database and DAG folder.

    The test process can then read the runs the scheduler makes; ports are free ones and the
    DAG processor and scheduler poll fast.
    """
    from sluice.airflow.standalone import isolated_env

    session = ("AIRFLOW_HOME", "AIRFLOW__CORE__DAGS_FOLDER", "AIRFLOW__CORE__LOAD_EXAMPLES", "AIRFLOW_CONN_")
    keep = {k: v for k, v in os.environ.items() if k.startswith(session)}
    return isolated_env(project, extra=keep, fast=True)


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
