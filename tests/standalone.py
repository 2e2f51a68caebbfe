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


def standalone_env(project: Path, base: dict[str, str], fast: bool = False) -> dict[str, str]:
    """Environment for a standalone serving ``project``: its own ports; ``fast`` polls more often."""
    from sluice.airflow.home import embedded_env

    env = dict(base)
    env.update(
        SLUICE_PROJECT_DIR=str(project),
        AIRFLOW__API__PORT=str(free_port()),
        AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT=str(free_port()),
        AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT=str(free_port()),
    )
    env.pop("AIRFLOW__CORE__EXECUTION_API_SERVER_URL", None)  # follows the new API port
    if fast:
        env.update(
            AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL="5",
            AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL="5",
            AIRFLOW__SCHEDULER__SCHEDULER_IDLE_SLEEP_TIME="0.5",
        )
    return embedded_env(project, base=env)


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
