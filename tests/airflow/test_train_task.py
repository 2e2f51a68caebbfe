"""The train task: a fit over the memory budget fails the task at once (no retries), with the numbers."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from airflow.sdk.exceptions import AirflowFailException

from sluice.services.storage import PipelineStore
from sluice.steps.records import encode
from tests.steps.test_training_data import PIPELINE, features_of, month_rows, training_section


def test_a_fit_over_the_budget_fails_the_task_without_retries(project: Any) -> None:
    from sluice.airflow.tasks import train

    spec = project.write_spec(PIPELINE, training=training_section(max_memory_gb=0.001))
    store = PipelineStore(project.root / "data" / "sluice", PIPELINE)
    features = features_of(store, {m: month_rows(m, 300) for m in (1, 2)})
    context = {
        "ti": SimpleNamespace(xcom_pull=lambda task_ids: encode(features)),
        "dag": SimpleNamespace(dag_id=f"{PIPELINE}__train"),
        "run_id": "manual__1",
    }

    with pytest.raises(AirflowFailException, match=r"over its budget of 0\.0 GiB \(training\.max_memory_gb\)") as info:
        train(str(spec), **context)

    assert f"{spec}:" in str(info.value) and "a worker with more memory" in str(info.value)
    assert not store.exists(store.keys.run("manual__1", "holdout.parquet"))
