"""The ingest DAG on an S3 source (moto server) under dag.test(): the deferred S3 sensor runs inline."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from sluice.services.storage import PipelineStore
from tests.conftest import Project, S3Server
from tests.integration.conftest import build_dags, run_dag
from tests.storage import local

pytestmark = pytest.mark.integration
SAMPLE = 3000


def _deferred_sensor_runs(exclude: list[str], any_state: bool = False) -> list[str]:
    """Run ids whose wait_for_files deferred (it has a resume method set), except ``exclude``."""
    from airflow.models import TaskInstance
    from airflow.utils.session import create_session

    with create_session() as session:
        tis = session.query(TaskInstance).filter(
            TaskInstance.dag_id == "flights_delay__ingest", TaskInstance.task_id == "wait_for_files"
        )
        return [
            ti.run_id for ti in tis if ti.run_id not in exclude and (any_state or ti.next_method == "execute_complete")
        ]


def test_s3_batch_lands_validates_publishes_and_repeats_add_nothing(
    flights_project: Project, s3: S3Server, tmp_path: Path
) -> None:
    from demo.producer import drop_month

    project = flights_project
    spec = project.dags / "flights_delay.pipeline.yaml"
    text = spec.read_text()
    spec.write_text(text.replace(f"uri: {project.landing}", f"uri: s3://{s3.bucket}/flights/in"))
    month = drop_month(tmp_path / "out", 1, sample=SAMPLE)
    s3.client.upload_file(str(month), s3.bucket, f"flights/in/{month.name}")
    # Never landed: in a sub-folder, and not matching the pattern.
    s3.client.put_object(Bucket=s3.bucket, Key="flights/in/notes/readme.parquet", Body=b"x")
    s3.client.put_object(Bucket=s3.bucket, Key="flights/in/readme.txt", Body=b"x")

    dags = build_dags(project)
    ingest = dags["flights_delay__ingest"]
    sensor = ingest.get_task("wait_for_files")
    assert type(sensor).__name__ == "S3KeySensor" and sensor.deferrable

    state, tasks = run_dag(ingest)
    first_run = _deferred_sensor_runs(exclude=[], any_state=True)
    assert state == "success", tasks
    assert tasks["land"] == "success" and tasks["validate"] == "success" and tasks["publish"] == "success"
    store = PipelineStore(project.root / "data" / "sluice", "flights_delay")
    (batch,) = store.batches.ids()
    record = store.batches.get(batch).model_dump(mode="json")
    assert record["status"] == "accepted" and record["published"] is True
    assert record["source_uri"] == f"s3://{s3.bucket}/flights/in/{month.name}"
    assert (local(store, store.keys.batch(batch)) / "source.parquet").read_bytes() == month.read_bytes()
    assert s3.keys("flights/in/") == [
        f"flights/in/_processed/{month.name}",
        "flights/in/notes/readme.parquet",
        "flights/in/readme.txt",
    ]

    # The same content dropped again, under another name, once the sensor found nothing and
    # deferred: the S3 trigger (run inline by dag.test) notices it; archived, no new batch.
    deferred: list[str] = []

    def drop_when_deferred() -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not deferred:
            deferred.extend(_deferred_sensor_runs(exclude=first_run))
            time.sleep(0.2)
        s3.client.upload_file(str(month), s3.bucket, "flights/in/again.parquet")

    dropper = threading.Thread(target=drop_when_deferred)
    dropper.start()
    state, tasks = run_dag(ingest)
    dropper.join()
    assert deferred, "the sensor found nothing, deferred to its S3 trigger, and the trigger saw the file"
    assert state == "success", tasks
    assert tasks["publish"] == "skipped"
    assert store.batches.ids() == [batch]
    assert "flights/in/_processed/again.parquet" in s3.keys("flights/in/")
    assert "flights/in/again.parquet" not in s3.keys("flights/in/")
