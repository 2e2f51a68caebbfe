"""A train task killed (SIGKILL) mid-run: the retry closes what it left and trains once.

Before: a killed train left its MLflow run ``RUNNING`` forever and the retry opened another.
"""

from __future__ import annotations

import json

import pytest

from tests.conftest import Project
from tests.faults.conftest import accepted_batch
from tests.faults.kill import kill_script

pytestmark = [pytest.mark.integration, pytest.mark.faults]

# The train task's work, in a process of its own.
TRAIN = """
    import json, sys
    from sluice.spec.loader import load_spec
    from sluice.services.storage import PipelineStore
    from sluice.steps.features import FeatureResult
    from sluice.steps.train import train_candidate
    loaded = load_spec(sys.argv[1])
    store = PipelineStore(loaded.resolve(loaded.spec.storage.root), loaded.spec.pipeline)
    train_candidate(loaded, store, FeatureResult(**json.loads(sys.argv[2])), "flights_delay__train", sys.argv[3])
    """


def test_a_killed_train_leaves_no_running_mlflow_run_and_the_retry_trains_once(flights_project: Project) -> None:
    from sluice.services import tracking
    from sluice.steps.features import build_features
    from sluice.steps.records import encode
    from sluice.steps.train import train_candidate

    project = flights_project
    spec, loaded, store, _ = accepted_batch(project, sample=3000)
    features = build_features(loaded, store)

    def crash(point: str, run_id: str) -> None:
        kill_script(point, project.root, TRAIN, str(spec), json.dumps(encode(features)), run_id)

    client = tracking.configure(project.root)
    experiment = client.get_experiment_by_name("flights_delay")

    def runs(airflow_run: str) -> dict[str, str]:
        found = client.search_runs(
            [experiment.experiment_id] if experiment else [],
            filter_string=f"tags.`sluice.airflow_run_id` = '{airflow_run}'",
        )
        return {r.info.run_id: r.info.status for r in found}

    # Killed inside the MLflow run: the run stays RUNNING until the retry closes it.
    crash("train.run_started", "run-a")
    experiment = client.get_experiment_by_name("flights_delay")
    assert list(runs("run-a").values()) == ["RUNNING"]
    result = train_candidate(loaded, store, features, "flights_delay__train", "run-a")
    assert sorted(runs("run-a").values()) == ["FINISHED", "KILLED"]
    assert runs("run-a")[result.mlflow_run_id] == "FINISHED"
    killed = next(r for r, status in runs("run-a").items() if status == "KILLED")
    assert "killed" in client.get_run(killed).data.tags["sluice.abandoned_by"]

    # Killed after the run finished but before train.json: the retry reuses the finished run.
    crash("train.run_finished", "run-b")
    (finished,) = runs("run-b")
    again = train_candidate(loaded, store, features, "flights_delay__train", "run-b")
    assert again.mlflow_run_id == finished and runs("run-b") == {finished: "FINISHED"}

    # A run that failed for good (no retry) is closed by the next train run of the pipeline.
    crash("train.run_started", "run-c")
    train_candidate(loaded, store, features, "flights_delay__train", "run-d")
    assert list(runs("run-c").values()) == ["KILLED"]
    running = client.search_runs([experiment.experiment_id], filter_string="attributes.status = 'RUNNING'")
    assert running == [], "no MLflow run is left RUNNING"
