"""The spec's ``owner`` is the owner of every DAG and task it produces (the UI's Owner column)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from sluice.plan import build_plan
from sluice.spec.loader import load_spec

REPO = Path(__file__).resolve().parents[2]
DEMO = yaml.safe_load((REPO / "dags" / "flights_delay.pipeline.yaml").read_text())


@pytest.fixture(autouse=True)
def _project(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLUICE_PROJECT_DIR", str(REPO))


def test_every_dag_and_task_is_owned_by_the_specs_owner(tmp_path: Path) -> None:
    from sluice.airflow.render import render_pipeline

    path = tmp_path / "p.pipeline.yaml"
    path.write_text(yaml.safe_dump(DEMO | {"owner": "fraud-team"}))
    dags = render_pipeline(build_plan(load_spec(path)))
    assert {d.dag_id.rsplit("__", 1)[1] for d in dags} >= {"ingest", "train"}
    for dag in dags:
        assert dag.owner == "fraud-team", dag.dag_id
        assert {t.owner for t in dag.tasks} == {"fraud-team"}, dag.dag_id


def test_the_demo_spec_shows_its_own_owner_not_sluice(tmp_path: Path) -> None:
    from sluice.airflow.render import render_pipeline

    dags = render_pipeline(build_plan(load_spec(REPO / "dags" / "flights_delay.pipeline.yaml")))
    assert {d.owner for d in dags} == {DEMO["owner"]} and DEMO["owner"] != "sluice"
