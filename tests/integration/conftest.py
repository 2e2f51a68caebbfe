"""Helpers for running sluice DAGs with Airflow's dag.test()."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REPO, Project, free_port
from tests.smtp_server import smtp_server  # noqa: F401 (fixture: a real SMTP server)

sys.path.insert(0, str(REPO / "include"))


def build_dags(project: Project) -> dict[str, Any]:
    """The DAGs the project's dags/ folder defines (as the DAG file builds them)."""
    from sluice.airflow.loader import build_all

    return build_all(project.dags)


def run_dag(dag: Any) -> tuple[str, dict[str, str]]:
    """Run a DAG once with dag.test(); return the run state and each task's state."""
    from airflow.models import TaskInstance
    from airflow.utils.session import create_session

    dr = dag.test()
    with create_session() as session:
        tis = (
            session.query(TaskInstance)
            .filter(TaskInstance.dag_id == dag.dag_id, TaskInstance.run_id == dr.run_id)
            .all()
        )
        states = {ti.task_id: str(ti.state) for ti in tis}
    return str(dr.state), states


def small_spec(project: Project, name: str = "flights_delay", **training: Any) -> Path:
    """Demo spec on a test port with a gate suited to 3,000-row months."""
    from tests.conftest import demo_spec_dict

    base = demo_spec_dict()
    train = dict(base["training"]) | training
    return project.write_spec(
        name,
        source={
            "uri": str(project.landing),
            "pattern": "*.parquet",
            "detect": {"poll_seconds": 1},
            "columns": base["source"].get("columns"),
        },
        features=base["features"] | {"conf": {"spark.sql.shuffle.partitions": "2"}},
        training=train,
        evaluation={"metric": "roc_auc", "gate": {"min": 0.55, "max_regression_vs_champion": 0.01}},
        deployment={"target": "local", "local": {"port": free_port(), "health_timeout_seconds": 120}},
    )


@pytest.fixture()
def flights_project(project: Project, airflow_db: Path) -> Project:
    """A project with reference tables written and the demo spec on a free port."""
    from demo.producer import write_reference

    write_reference(project.root / "data" / "reference")
    small_spec(project)
    return project
