"""``validate`` killed (SIGKILL) between its writes: the retry commits the batch, none is stranded.

Before: a kill between ``validation.json`` and ``batch.json`` left the batch "landed" for
ever; later runs found the report, logged "accepted", and ``publish`` never announced it.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from sluice.services.storage import PipelineStore
from tests.conftest import Project
from tests.faults.kill import kill_script
from tests.storage import local

pytestmark = [pytest.mark.integration, pytest.mark.faults]

# The validate task's work (every landed batch without an outcome), in a process of its own.
VALIDATE = """
    import sys
    from sluice.services.storage import PipelineStore
    from sluice.spec.loader import load_spec
    from sluice.steps.ingest import pending_batches
    from sluice.steps.validate import validate_batch
    loaded = load_spec(sys.argv[1])
    store = PipelineStore(loaded.resolve(loaded.spec.storage.root), loaded.spec.pipeline)
    for batch in pending_batches(store):
        validate_batch(store, batch, loaded.spec.validation, "parquet", loaded.spec.source.columns)
    """


@pytest.mark.parametrize("point", ["validate.before_report", "validate.report_written"])
def test_a_validate_killed_between_its_writes_is_finished_by_the_retry(flights_project: Project, point: str) -> None:
    from demo.producer import drop_month
    from sluice.spec.loader import load_spec
    from sluice.steps.ingest import land_new_files, pending_batches
    from sluice.steps.validate import validate_batch

    project = flights_project
    spec = project.dags / "flights_delay.pipeline.yaml"
    loaded = load_spec(spec)
    store = PipelineStore(project.root / "data" / "sluice", "flights_delay")
    drop_month(project.landing, 1, bad_rows=10, sample=2000)
    (batch,) = land_new_files(str(project.landing / "*.parquet"), store, "ingest-1").new
    kill_script(point, project.root, VALIDATE, str(spec))
    assert store.batches.get(batch).status == "landed", "killed before batch.json took the outcome"
    assert Path(local(store, store.keys.batch(batch)) / "validation.json").exists() == (
        point == "validate.report_written"
    )

    # The retry (the next validate of any run) sees it pending and commits it.
    assert pending_batches(store) == [batch]
    outcome = validate_batch(store, batch, loaded.spec.validation, "parquet", loaded.spec.source.columns)
    record = store.batches.get(batch).model_dump(mode="json")
    assert (outcome.status, record["status"]) == ("accepted", "accepted")
    assert (outcome.quarantined, record["quarantined"], record["rows"]) == (10, 10, 2000)
    assert pending_batches(store) == [] and [r.batch_id for r in store.batches.accepted()] == [batch]


def test_a_batch_stranded_by_a_failed_run_is_finished_by_the_next_run_without_a_new_file(
    flights_project: Project,
) -> None:
    from demo.producer import drop_month
    from sluice.steps.ingest import land_new_files
    from tests.integration.conftest import build_dags, run_dag

    project = flights_project
    store = PipelineStore(project.root / "data" / "sluice", "flights_delay")
    drop_month(project.landing, 1, sample=2000)
    # What a run whose validate failed for good (say, storage was down) leaves: a landed batch.
    (batch,) = land_new_files(str(project.landing / "*.parquet"), store, "failed-run").new
    assert store.batches.get(batch).status == "landed"

    # The next continuous run: no new file arrives, yet its sensor ends the wait at once.
    state, tasks = run_dag(build_dags(project)["flights_delay__ingest"])
    assert state == "success", tasks
    assert tasks["wait_for_files"] == "success" and tasks["publish"] == "success"
    record = store.batches.get(batch).model_dump(mode="json")
    assert record["status"] == "accepted" and record["published"] is True


def test_a_validate_killed_after_pinning_the_schema_is_retried_against_that_pin(flights_project: Project) -> None:
    """No source.columns: the first batch pins, the kill comes before its outcome; the retry accepts it
    against its own pin (written whole, once), and a drifted month after it is held to that pin."""
    import yaml

    from demo.producer import drop_month, month_frame
    from sluice.spec.loader import load_spec
    from sluice.steps.ingest import land_new_files
    from sluice.steps.schema_pin import read_pin
    from sluice.steps.validate import validate_batch

    project = flights_project
    spec = project.dags / "flights_delay.pipeline.yaml"
    data = yaml.safe_load(spec.read_text())
    data["source"].pop("columns")
    spec.write_text(yaml.safe_dump(data, sort_keys=False))
    loaded = load_spec(spec)
    store = PipelineStore(project.root / "data" / "sluice", "flights_delay")
    drop_month(project.landing, 1, sample=2000)
    (batch,) = land_new_files(str(project.landing / "*.parquet"), store, "ingest-1").new

    kill_script("validate.pinned", project.root, VALIDATE, str(spec))

    pin = read_pin(store)
    assert pin is not None and pin.batch_id == batch and pin.types is not None and pin.types["distance"] == "int"
    assert store.batches.get(batch).status == "landed", "killed before the outcome"
    outcome = validate_batch(store, batch, loaded.spec.validation, "parquet", loaded.spec.source.columns)
    assert outcome.status == "accepted" and store.batches.get(batch).status == "accepted"
    assert read_pin(store) == pin, "the retry is held to the pin; it does not pin again"

    month_frame(2, sample=2000).astype({"distance": str}).to_parquet(project.landing / "m2.parquet", index=False)
    (drifted,) = land_new_files(str(project.landing / "*.parquet"), store, "ingest-2").new
    outcome = validate_batch(store, drifted, loaded.spec.validation, "parquet", loaded.spec.source.columns)
    assert outcome.status == "rejected"
    assert "column 'distance': declared int, arrives as string" in outcome.reason
