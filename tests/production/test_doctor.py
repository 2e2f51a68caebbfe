"""`sluice doctor` on the production shape: the Celery workers it finds, and a broker none listens on.

The check runs in a fresh interpreter with the stack's Airflow environment, as an operator
would run ``sluice doctor`` on a host of the deployment (Airflow reads its settings at import).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from demo.production_stack import Stack
from tests.conftest import Project

pytestmark = pytest.mark.production

PROBE = """
import json
from pathlib import Path

from sluice.airflow.doctor import check_workers
from sluice.spec.loader import load_spec

found = check_workers(load_spec(Path(__import__("sys").argv[1])))
print(json.dumps([[f.check, f.ok, f.detail, f.fix] for f in found]))
"""


def _check_workers(stack: Stack, tmp_path: Path, **overrides: str) -> list[list[object]]:
    project = Project(tmp_path / "project", tmp_path / "project" / "dags")
    spec = project.write_spec()
    env = {**stack.airflow.env, "SLUICE_PROJECT_DIR": str(project.root), **overrides}
    done = subprocess.run(
        [sys.executable, "-c", PROBE, str(spec)], env=env, capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_doctor_names_every_celery_worker_that_answers(stack: Stack, tmp_path: Path) -> None:
    ((check, ok, detail, _),) = _check_workers(stack, tmp_path)
    assert check == "Celery workers" and ok, detail
    assert "2 answered" in detail
    for worker in stack.airflow.workers:
        assert worker in detail, detail  # w1@<host>: the names they were started with


def test_doctor_says_no_worker_answered_on_a_broker_database_no_worker_listens_on(stack: Stack, tmp_path: Path) -> None:
    # The usual slip: the workers were started with another broker URL than this host's.
    ((check, ok, detail, fix),) = _check_workers(stack, tmp_path, AIRFLOW__CELERY__BROKER_URL=stack.redis.url(db=7))
    assert check == "Celery workers" and not ok
    assert detail == "no worker answered"
    assert "airflow celery worker" in fix
