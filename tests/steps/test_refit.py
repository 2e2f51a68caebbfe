"""What a model was trained on and held out, and ``training.refit: after_gate`` (real MLflow, no Spark or Airflow).

The feature tables are written per batch as ``features.scope: batch`` writes them, so the
train step traces every row to its batch without running the feature job.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest
from tests.conftest import Project
from tests.feature_tables import features_of

from sluice.services.storage import PipelineStore
from sluice.spec.loader import LoadedSpec, load_spec
from sluice.steps.lineage import run_batches
from sluice.steps.records import FeatureResult, GateDecision, TrainResult, decode

PIPELINE = "refit_demo"
ROWS = 300


def batch_rows(month: int, rows: int = ROWS, flipped: bool = False) -> pd.DataFrame:
    """One month of features: delayed when the distance is long (short, when ``flipped``), 10% noise."""
    rng = np.random.default_rng(month)
    distance = rng.uniform(0, 1000, rows)
    delayed = (distance > 500) != flipped
    noise = rng.random(rows) < 0.1
    return pd.DataFrame(
        {
            "month": month,
            "distance": distance,
            "carrier": rng.choice(["UA", "AA", "DL"], rows),
            "is_delayed": (delayed ^ noise).astype(int),
        }
    )


def spec_for(project: Project, **training: Any) -> LoadedSpec:
    path = project.write_spec(
        PIPELINE,
        training={
            "target": "is_delayed",
            "model": "sklearn.linear_model.LogisticRegression",
            "drop": ["month"],
            "split": {"by": "month", "holdout": "latest"},
            **training,
        },
        evaluation={"metric": "roc_auc", "gate": {"max_regression_vs_champion": 0.05}},
    )
    return load_spec(path)


def store_of(project: Project) -> PipelineStore:
    return PipelineStore(project.root / "data" / "sluice", PIPELINE)


def train_and_gate(
    loaded: LoadedSpec, store: PipelineStore, features: FeatureResult, run: str
) -> tuple[TrainResult, GateDecision]:
    from sluice.steps.evaluate import evaluate_candidate
    from sluice.steps.train import train_candidate

    trained = train_candidate(loaded, store, features, f"{PIPELINE}__train", run)
    decision = evaluate_candidate(loaded, store, trained, run)
    assert decision.verdict == "pass", decision.reason
    return trained, decision


def test_the_run_names_the_batches_trained_on_and_those_held_out(project: Project) -> None:
    from sluice.services import tracking

    loaded, store = spec_for(project), store_of(project)
    features = features_of(store, {1: batch_rows(1), 2: batch_rows(2), 3: batch_rows(3)})
    trained, decision = train_and_gate(loaded, store, features, "run-1")

    tags = tracking.configure(project.root).get_run(trained.mlflow_run_id).data.tags
    assert tags["sluice.batches.trained_on"] == "b1,b2"
    assert tags["sluice.batches.held_out"] == "b3", "the latest month is the holdout"
    assert tags["sluice.batches"] == "b1,b2,b3", "the window: every batch the run read"
    assert (trained.trained_on, trained.held_out) == (["b1", "b2"], ["b3"])
    # The decision record says the same.
    assert decision.candidate.trained_on == ["b1", "b2"] and decision.holdout.batches == ["b3"]
    recorded = decode(GateDecision, store.json.read(store.keys.run("run-1", "decision.json")))
    assert recorded.holdout.batches == ["b3"]


def test_a_random_holdout_names_every_batch_on_both_sides(project: Project) -> None:
    loaded, store = spec_for(project, split={"holdout": "random", "fraction": 0.3}), store_of(project)
    features = features_of(store, {1: batch_rows(1), 2: batch_rows(2)})
    trained, _ = train_and_gate(loaded, store, features, "run-1")
    assert trained.trained_on == ["b1", "b2"] and trained.held_out == ["b1", "b2"]


def test_runs_from_before_the_split_tags_read_as_trained_on_their_batches() -> None:
    old = run_batches({"sluice.batches": "b1,b2,b3"})
    assert old.trained_on == ["b1", "b2", "b3"] and old.held_out == [] and old.legacy
    new = run_batches(
        {"sluice.batches": "b1,b2,b3", "sluice.batches.trained_on": "b1,b2", "sluice.batches.held_out": "b3"}
    )
    assert (new.trained_on, new.held_out, new.window) == (["b1", "b2"], ["b3"], ["b1", "b2", "b3"])
    refit = run_batches(
        {"sluice.batches": "b1,b2", "sluice.batches.trained_on": "b1,b2", "sluice.batches.held_out": ""}
    )
    assert refit.held_out == [] and not refit.legacy


def test_status_lines_say_what_the_champion_was_trained_on_and_held_out() -> None:
    from sluice.steps.lineage import describe_champion

    tags = {"sluice.batches": "b1,b2", "sluice.batches.trained_on": "b1", "sluice.batches.held_out": "b2"}
    assert describe_champion("4", "r", tags) == [
        "champion v4 (MLflow run r)",
        "  trained on: b1",
        "  held out:   b2",
    ]
    (_, old) = describe_champion("1", "r", {"sluice.batches": "b1,b2"})
    assert "b1, b2" in old and "include any held-out batch" in old


def test_without_refit_the_evaluated_model_is_promoted(project: Project) -> None:
    from sluice.services import tracking
    from sluice.steps.promote import promote

    loaded, store = spec_for(project), store_of(project)
    assert loaded.spec.training.refit == "none"
    features = features_of(store, {1: batch_rows(1), 2: batch_rows(2)})
    trained, decision = train_and_gate(loaded, store, features, "run-1")
    assert promote(loaded, decision).version == "1"
    client = tracking.configure(project.root)
    champion = tracking.champion(client, PIPELINE)
    assert champion is not None and champion.run_id == trained.mlflow_run_id
    batches = run_batches(client.get_run(champion.run_id).data.tags)
    assert batches.trained_on == ["b1"], "served as evaluated: fitted without the holdout month"


def test_refit_after_gate_promotes_a_model_fitted_on_train_and_holdout(
    project: Project, capsys: pytest.CaptureFixture[str]
) -> None:
    from sluice.services import tracking
    from sluice.steps.promote import promote
    from sluice.steps.refit import refit_candidate

    loaded, store = spec_for(project, refit="after_gate"), store_of(project)
    features = features_of(store, {1: batch_rows(1), 2: batch_rows(2), 3: batch_rows(3)})
    trained, decision = train_and_gate(loaded, store, features, "run-1")

    refit = refit_candidate(loaded, store, features, trained, decision, f"{PIPELINE}__train", "run-1")
    assert refit.passed and refit.evaluated_run_id == trained.mlflow_run_id
    assert refit.trained_on == ["b1", "b2", "b3"] and refit.rows == 3 * ROWS
    result = promote(loaded, decision, refit)
    assert (result.version, result.changed) == ("1", True)

    client = tracking.configure(project.root)
    champion = tracking.champion(client, PIPELINE)
    assert champion is not None and champion.run_id == refit.mlflow_run_id, "the refit is what is served"
    assert champion.tags["sluice.evaluated_run_id"] == trained.mlflow_run_id
    run = client.get_run(refit.mlflow_run_id)
    tags = run.data.tags
    assert tags["sluice.batches.trained_on"] == "b1,b2,b3", "fitted on the holdout month too"
    assert tags["sluice.batches.held_out"] == ""
    assert tags["sluice.evaluated_run_id"] == trained.mlflow_run_id
    assert tags["sluice.role"] == "refit" and tags["sluice.refit.check"] == "passed"
    assert tags["sluice.gate.decision_artifact"] == f"runs:/{trained.mlflow_run_id}/gate/decision.json"
    # The monitor's reference is what the served model was fitted on: the holdout month included.
    assert run_batches(tags).trained_on == ["b1", "b2", "b3"]
    # The gate's record stays the evaluated model's.
    recorded = decode(GateDecision, store.json.read(store.keys.run("run-1", "decision.json")))
    assert recorded == decision and recorded.candidate.run_id == trained.mlflow_run_id

    # `sluice status` says what the served model was trained on and which run the gate passed.
    from sluice.cli import main

    assert main(["status", str(loaded.path)]) == 0
    out = capsys.readouterr().out
    assert f"champion v1 (MLflow run {refit.mlflow_run_id})" in out
    assert "trained on: b1, b2, b3" in out and "held out:   none" in out
    assert f"after the gate passed run {trained.mlflow_run_id}" in out

    # A retry of either step fits and registers nothing new.
    again = refit_candidate(loaded, store, features, trained, decision, f"{PIPELINE}__train", "run-1")
    assert again == refit
    assert promote(loaded, decision, again).changed is False
    assert len(client.search_model_versions(f"name='{PIPELINE}'")) == 1
    experiment = client.get_experiment_by_name(PIPELINE)
    assert experiment is not None
    refits = client.search_runs([experiment.experiment_id], filter_string="tags.`sluice.role` = 'refit'")
    assert len(refits) == 1


def test_a_worse_refit_blocks_promotion_and_keeps_the_champion(project: Project) -> None:
    from sluice.services import tracking
    from sluice.steps.promote import promote
    from sluice.steps.refit import RefitWorse, refit_candidate

    loaded, store = spec_for(project, refit="after_gate"), store_of(project)
    first = features_of(store, {1: batch_rows(1), 2: batch_rows(2)})
    trained, decision = train_and_gate(loaded, store, first, "run-1")
    promote(loaded, decision, refit_candidate(loaded, store, first, trained, decision, "d", "run-1"))

    # The new month says the opposite of the older ones, with four times their rows: the
    # candidate (fitted on months 1-2) still passes on it as the champion does, but a model
    # fitted on it too learns the reverse and is much worse on the rows the candidate learnt from.
    months = {1: batch_rows(1), 2: batch_rows(2), 3: batch_rows(3, rows=4 * ROWS, flipped=True)}
    second = features_of(store, months)
    trained, decision = train_and_gate(loaded, store, second, "run-2")
    for _ in range(2):  # the retry fails the same way, without fitting again
        with pytest.raises(RefitWorse, match=r"worse than the evaluated candidate .* champion v1 kept"):
            refit_candidate(loaded, store, second, trained, decision, "d", "run-2")

    client = tracking.configure(project.root)
    champion = tracking.champion(client, PIPELINE)
    assert champion is not None and str(champion.version) == "1"
    assert len(client.search_model_versions(f"name='{PIPELINE}'")) == 1, "nothing registered"
    experiment = client.get_experiment_by_name(PIPELINE)
    assert experiment is not None
    worse = client.search_runs([experiment.experiment_id], filter_string="tags.`sluice.refit.check` = 'worse'")
    assert len(worse) == 1 and worse[0].data.tags["sluice.evaluated_run_id"] == trained.mlflow_run_id
