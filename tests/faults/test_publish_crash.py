"""``publish`` killed (SIGKILL) before Airflow committed its asset event: the batch is announced later.

Before: ``publish`` marked batches published, then Airflow committed the event when the task
succeeded; a kill in between left a month marked published that no event ever carried.
"""

from __future__ import annotations

import sys

import pytest

from sluice.services.storage import PipelineStore
from tests.conftest import Project
from tests.faults.kill import run_killed
from tests.integration.conftest import build_dags, run_dag

pytestmark = [pytest.mark.integration, pytest.mark.faults]


def _events(uri: str) -> list[dict[str, object]]:
    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.utils.session import create_session

    with create_session() as session:
        rows = (
            session.query(AssetEvent)
            .join(AssetModel, AssetEvent.asset_id == AssetModel.id)
            .filter(AssetModel.uri == uri)
        )
        return [dict(e.extra or {}) for e in rows]


def test_a_publish_killed_before_its_event_is_committed_announces_the_batch_on_the_next_run(
    flights_project: Project,
) -> None:
    from demo.producer import drop_month

    project = flights_project
    store = PipelineStore(project.root / "data" / "sluice", "flights_delay")
    uri = "sluice://flights_delay/batches"
    content = drop_month(project.landing, 1, sample=2000).read_bytes()
    # The session's Airflow database holds other tests' events on the same asset: count from here.
    earlier = len(_events(uri))
    run_killed("publish.event_set", [sys.executable, "-m", "airflow", "dags", "test", "flights_delay__ingest"])
    (batch,) = store.batches.ids()
    record = store.batches.get(batch).model_dump(mode="json")
    assert record["status"] == "accepted" and not record.get("published"), "not marked before the event exists"
    assert _events(uri)[earlier:] == [], "the killed task committed no event"

    # The next ingest run (woken by the same content under another name: no new batch)
    # announces the stranded batch, then marks it.
    (project.landing / "again.parquet").write_bytes(content)
    state, tasks = run_dag(build_dags(project)["flights_delay__ingest"])
    assert state == "success" and tasks["publish"] == "success" and tasks["confirm_published"] == "success"
    assert [e["batches"] for e in _events(uri)[earlier:]] == [[batch]], "announced exactly once"
    assert store.batches.get(batch).published is True
    (project.landing / "once_more.parquet").write_bytes(content)
    state, tasks = run_dag(build_dags(project)["flights_delay__ingest"])
    assert tasks["publish"] == "skipped" and len(_events(uri)[earlier:]) == 1, "and never again"
