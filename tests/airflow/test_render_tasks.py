"""Python steps render with callables that load the task code when the task runs, not at parse."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from sluice.airflow import tasks
from sluice.airflow.render import render_pipeline, task_callable
from sluice.plan import build_plan
from sluice.spec.loader import load_spec

REPO = Path(__file__).resolve().parents[2]
DEMO_SPEC = REPO / "dags" / "flights_delay.pipeline.yaml"


def test_each_python_task_runs_the_task_function_of_its_kind(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLUICE_PROJECT_DIR", str(REPO))
    calls: list[tuple[str, dict[str, Any]]] = []
    dags = render_pipeline(build_plan(load_spec(DEMO_SPEC)))
    python_tasks = [t for d in dags for t in d.tasks if type(t).__name__ == "PythonOperator"]
    assert {t.task_id for t in python_tasks} >= {"land", "validate", "train", "deploy", "compute_drift"}
    for task in python_tasks:
        kind = task.task_id
        monkeypatch.setattr(tasks, kind, lambda _kind=kind, **context: calls.append((_kind, context)) or _kind)
        assert task.python_callable.__name__ == kind
        assert task.python_callable(spec_path="s.yaml", run_id="r1") == kind
    assert [c[0] for c in calls] == [t.task_id for t in python_tasks]
    assert all(c[1] == {"spec_path": "s.yaml", "run_id": "r1"} for c in calls)


def test_an_unknown_kind_fails_when_called_not_silently() -> None:
    with pytest.raises(AttributeError, match="no_such_step"):
        task_callable("no_such_step")()


@pytest.mark.process
def test_rendering_the_demo_does_not_load_the_task_code(tmp_path: Path) -> None:
    code = (
        "import sys; from sluice.airflow.loader import build_all; "
        f"dags = build_all({str(DEMO_SPEC.parent)!r}); assert 'flights_delay__train' in dags, sorted(dags); "
        "print(sorted(m for m in ('sluice.airflow.tasks', 'sluice.steps.records', 'sluice.services.storage', "
        "'sluice.services.landing') if m in sys.modules))"
    )
    env = {
        "SLUICE_PROJECT_DIR": str(REPO),
        "AIRFLOW_HOME": str(tmp_path),
        "PATH": "/usr/bin:/bin",
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
    }
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "[]"
