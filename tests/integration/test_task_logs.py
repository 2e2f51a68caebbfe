"""Task logs of train and evaluate show sluice's lines, not thousands of third-party warnings."""

from __future__ import annotations

import re

import pytest

from tests.conftest import Project
from tests.integration.conftest import build_dags, run_dag

pytestmark = pytest.mark.integration
#: A task log a person reads: Airflow's own start/end lines plus sluice's and MLflow's few lines.
MAX_LINES = 100


def task_section(output: str, dag_id: str, task_id: str) -> list[str]:
    """Lines dag.test() printed for one task, from its 'running task' to its 'end task' line."""
    lines = output.splitlines()
    start = next(i for i, line in enumerate(lines) if f"running task <TaskInstance: {dag_id}.{task_id} " in line)
    end = next(i for i in range(start, len(lines)) if re.search(rf"end task task_id={task_id}\b", lines[i]))
    return lines[start : end + 1]


def test_train_and_evaluate_logs_are_short_and_show_the_gate_verdict(
    flights_project: Project, capfd: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    from demo.producer import drop_month

    drop_month(flights_project.landing, 1, sample=3000)
    dags = build_dags(flights_project)
    assert run_dag(dags["flights_delay__ingest"])[0] == "success"
    capfd.readouterr()
    caplog.clear()

    assert run_dag(dags["flights_delay__train"])[0] == "success"

    captured = capfd.readouterr()
    # Under dag.test() the task log reaches stdout (structlog) or, once another test has set up
    # logging in this process, the logging handlers.
    output = captured.out + captured.err
    if "running task <TaskInstance: flights_delay__train.train " not in output:
        output = caplog.text
    train = task_section(output, "flights_delay__train", "train")
    evaluate = task_section(output, "flights_delay__train", "evaluate")
    print(f"task log lines: train {len(train)}, evaluate {len(evaluate)}")
    assert not [line for line in train + evaluate if "DeprecatedImportWarning" in line]
    assert len(train) < MAX_LINES, "\n".join(train[:40])
    assert len(evaluate) < MAX_LINES, "\n".join(evaluate[:40])
    assert any("candidate run " in line for line in train)
    assert any("gate verdict pass: candidate roc_auc" in line for line in evaluate)
