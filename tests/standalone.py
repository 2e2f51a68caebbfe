"""Helpers for tests that run a real ``airflow standalone`` in a project of their own."""

from __future__ import annotations

import os
import shutil
import time
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
    from sluice.airflow.runtime.standalone import isolated_env

    session = ("AIRFLOW_HOME", "AIRFLOW__CORE__DAGS_FOLDER", "AIRFLOW__CORE__LOAD_EXAMPLES", "AIRFLOW_CONN_")
    keep = {k: v for k, v in os.environ.items() if k.startswith(session)}
    return isolated_env(project, extra=keep, fast=True)


def processes_of(project: Path) -> dict[int, str]:
    """Live processes started for ``project`` (found by the SLUICE_PROJECT_DIR in their environment)."""
    import psutil

    found = {}
    for proc in psutil.process_iter():
        if proc.pid == os.getpid():
            continue
        try:
            if proc.environ().get("SLUICE_PROJECT_DIR") == str(project) and proc.status() != psutil.STATUS_ZOMBIE:
                found[proc.pid] = " ".join(proc.cmdline())[:150]
        except psutil.Error:  # gone, or not ours to read
            continue
    return found


def wait_gone(project: Path, wait: float = 15.0) -> dict[int, str]:
    """Wait up to ``wait`` seconds for ``project``'s processes to be gone; return those left.

    A SIGKILL, a stop's or ours, lands asynchronously: a process is still listed for a moment.
    """
    deadline = time.monotonic() + wait
    while (left := processes_of(project)) and time.monotonic() < deadline:
        time.sleep(0.2)
    return left
