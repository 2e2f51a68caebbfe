"""Compiling a spec into DAGs and steps (no Airflow)."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from sluice.plan import build_plan
from sluice.plan.model import DagPlan, PipelinePlan
from sluice.spec.loader import load_spec

PROJECT_DIR = Path(__file__).resolve().parents[2]
DEMO_SPEC = PROJECT_DIR / "dags" / "flights_delay.pipeline.yaml"
DEMO_DATA: dict[str, Any] = yaml.safe_load(DEMO_SPEC.read_text())


@pytest.fixture(autouse=True)
def _project_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLUICE_PROJECT_DIR", str(PROJECT_DIR))


def plan_for(tmp_path: Path, **changes: Any) -> PipelinePlan:
    """Plan of the demo spec with top-level keys replaced (None removes a key)."""
    data = copy.deepcopy(DEMO_DATA)
    for key, value in changes.items():
        if value is None:
            data.pop(key, None)
        else:
            data[key] = value
    path = tmp_path / "spec.pipeline.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return build_plan(load_spec(path))


def dag(plan: PipelinePlan, role: str) -> DagPlan:
    (found,) = [d for d in plan.dags if d.role == role]
    return found


def test_demo_builds_an_ingest_a_train_a_monitor_and_a_serving_dag():
    plan = build_plan(load_spec(DEMO_SPEC))

    assert plan.pipeline == "flights_delay"
    assert [d.dag_id for d in plan.dags] == [
        "flights_delay__ingest",
        "flights_delay__train",
        "flights_delay__monitor",
        "flights_delay__serving",
    ]
    assert plan.spec_path == str(DEMO_SPEC.resolve())
    for d in plan.dags:
        assert "sluice" in d.tags
        assert "pipeline:flights_delay" in d.tags
        assert "demo" in d.tags  # the spec's own tags are carried over
        assert d.max_active_runs == 1


def test_train_steps_run_in_order_and_the_gate_is_not_retried():
    train = dag(build_plan(load_spec(DEMO_SPEC)), "train")

    ids = [s.task_id for s in train.steps]
    assert ids == ["check_trigger", "build_features", "train", "evaluate", "gate", "promote", "deploy"]
    # A straight chain: every step waits for the previous one.
    assert train.steps[0].upstream == ()
    for before, step in zip(train.steps, train.steps[1:], strict=False):
        assert step.upstream == (before.task_id,)
    steps = {s.task_id: s for s in train.steps}
    assert steps["gate"].retries == 0
    assert steps["train"].retries > 0
    assert steps["build_features"].pool == "sluice_spark"


def test_ingest_publishes_the_batches_asset_and_waits_on_the_landing_glob():
    ingest = dag(build_plan(load_spec(DEMO_SPEC)), "ingest")
    steps = {s.task_id: s for s in ingest.steps}

    assert [s.task_id for s in ingest.steps][:4] == ["wait_for_files", "land", "validate", "publish"]
    assert steps["publish"].outlets == ("sluice://flights_delay/batches",)
    assert [s.task_id for s in ingest.steps if s.outlets] == ["publish"]
    assert steps["publish"].upstream == ("validate",)
    assert steps["confirm_published"].upstream == ("publish",), "batches are marked only after the event exists"
    assert steps["check_batches"].retries == 0
    wait = steps["wait_for_files"].config
    assert wait.landing.glob == f"{PROJECT_DIR}/data/landing/flights/*.parquet"
    assert wait.poll_seconds == 5
    assert wait.timeout_seconds == 3600
    assert ingest.schedule.cron == "@continuous"


def test_retrain_on_new_data_schedules_on_the_asset_only(tmp_path):
    schedule = dag(plan_for(tmp_path, retrain_on=["new_data"]), "train").schedule

    assert schedule.assets == ("sluice://flights_delay/batches",)
    assert schedule.cron is None
    assert schedule.describe() == "asset sluice://flights_delay/batches"


def test_retrain_on_schedule_uses_the_cron_only(tmp_path):
    schedule = dag(plan_for(tmp_path, retrain_on=["schedule"], retrain_schedule="0 3 * * *"), "train").schedule

    assert schedule.cron == "0 3 * * *"
    assert schedule.assets == ()
    assert schedule.describe() == "0 3 * * *"


def test_retrain_on_both_uses_cron_and_asset(tmp_path):
    plan = plan_for(tmp_path, retrain_on=["new_data", "schedule"], retrain_schedule="0 3 * * *")
    schedule = dag(plan, "train").schedule

    assert schedule.cron == "0 3 * * *"
    assert schedule.assets == ("sluice://flights_delay/batches",)
    assert schedule.describe() == "0 3 * * * or asset sluice://flights_delay/batches"


def test_retrain_on_nothing_is_manual(tmp_path):
    schedule = dag(plan_for(tmp_path, retrain_on=[]), "train").schedule

    assert schedule.cron is None
    assert schedule.assets == ()
    assert "manual" in schedule.describe()


def test_default_retrain_on_is_new_data(tmp_path):
    schedule = dag(plan_for(tmp_path, retrain_on=None), "train").schedule
    assert schedule.assets == ("sluice://flights_delay/batches",)


def test_pipeline_name_prefixes_dag_ids_and_asset(tmp_path):
    plan = plan_for(tmp_path, pipeline="taxi_fares")

    assert [d.dag_id for d in plan.dags] == [
        "taxi_fares__ingest",
        "taxi_fares__train",
        "taxi_fares__monitor",
        "taxi_fares__serving",
    ]
    publish = next(s for s in dag(plan, "ingest").steps if s.task_id == "publish")
    assert publish.outlets == ("sluice://taxi_fares/batches",)
    assert dag(plan, "train").schedule.assets == ("sluice://taxi_fares/drift",)
    assert dag(plan, "monitor").schedule.assets == ("sluice://taxi_fares/batches",)


def test_monitor_runs_on_new_batches_and_publishes_drift(tmp_path):
    monitor = dag(plan_for(tmp_path), "monitor")
    steps = {s.task_id: s for s in monitor.steps}

    assert monitor.dag_id == "flights_delay__monitor"
    assert monitor.schedule.assets == ("sluice://flights_delay/batches",)
    assert list(steps) == ["compute_drift", "publish_drift", "alert_drift"]
    assert steps["publish_drift"].outlets == ("sluice://flights_delay/drift",)
    assert steps["publish_drift"].upstream == steps["alert_drift"].upstream == ("compute_drift",)
    # Drift is reported by alert_drift's own email, not by failing: a failure of the task
    # itself (the email not sent) is retried and alerted like any other.
    assert steps["alert_drift"].retries >= 1 and steps["alert_drift"].alert == "failure"
    assert "monitor" in monitor.tags


def test_a_local_model_server_is_watched_every_five_minutes_and_a_restart_alerts(tmp_path):
    serving = dag(plan_for(tmp_path), "serving")

    assert serving.dag_id == "flights_delay__serving" and serving.schedule.cron == "*/5 * * * *"
    (step,) = serving.steps
    assert (step.task_id, step.kind, step.retries, step.alert) == ("watch_serving", "watch_serving", 0, "failure")
    assert step.timeout_minutes is not None and "serving" in serving.tags


def test_no_watch_when_switched_off_or_when_kubernetes_restarts_its_own_pods(tmp_path):
    local = copy.deepcopy(DEMO_DATA["deployment"])
    local.setdefault("local", {})["watch_schedule"] = None
    assert [d.role for d in plan_for(tmp_path, deployment=local).dags] == ["ingest", "train", "monitor"]
    from tests.kube import kubernetes_spec

    roles = [d.role for d in plan_for(tmp_path, deployment=kubernetes_spec()["deployment"]).dags]
    assert roles == ["ingest", "train", "monitor"]


def test_monitoring_disabled_builds_no_monitor_dag(tmp_path):
    plan = plan_for(tmp_path, monitoring={"enabled": False}, retrain_on=["new_data"])
    assert [d.role for d in plan.dags] == ["ingest", "train", "serving"]


def test_retrain_on_drift_and_new_data_is_any_of_the_two_assets(tmp_path):
    plan = plan_for(tmp_path, retrain_on=["new_data", "drift", "schedule"], retrain_schedule="0 3 * * *")
    schedule = dag(plan, "train").schedule

    assert schedule.assets == ("sluice://flights_delay/batches", "sluice://flights_delay/drift")
    assert schedule.cron == "0 3 * * *"
    assert (
        schedule.describe() == "0 3 * * * or asset sluice://flights_delay/batches | asset sluice://flights_delay/drift"
    )


def test_the_train_dag_checks_its_trigger_first(tmp_path):
    train = dag(plan_for(tmp_path), "train")
    assert train.steps[0].task_id == "check_trigger"
    assert train.steps[1].upstream == ("check_trigger",)


def test_manual_approval_puts_an_approve_step_between_gate_and_promote(tmp_path: Path) -> None:
    evaluation = dict(DEMO_DATA["evaluation"], approval="manual", approval_timeout_hours=2)
    train = dag(plan_for(tmp_path, evaluation=evaluation), "train")
    steps = {s.task_id: s for s in train.steps}

    assert [s.task_id for s in train.steps][4:7] == ["gate", "approve", "promote"]
    assert steps["approve"].upstream == ("gate",)
    assert steps["promote"].upstream == ("approve",)
    assert steps["approve"].retries == 0
    assert steps["approve"].config.timeout_hours == 2
    # auto (the default) keeps the gate directly in front of promote
    auto = dag(build_plan(load_spec(DEMO_SPEC)), "train")
    assert "approve" not in {s.task_id for s in auto.steps}
    assert {s.task_id: s for s in auto.steps}["promote"].upstream == ("gate",)


def test_refit_after_gate_puts_a_refit_step_between_the_gate_and_promote(tmp_path: Path) -> None:
    training = dict(DEMO_DATA["training"], refit="after_gate")
    train = dag(plan_for(tmp_path, training=training), "train")
    steps = {s.task_id: s for s in train.steps}
    assert [s.task_id for s in train.steps][4:8] == ["gate", "refit", "promote", "deploy"]
    assert steps["refit"].upstream == ("gate",) and steps["promote"].upstream == ("refit",)
    assert steps["refit"].alert == "failure", "a worse refit alerts like any failed step"
    assert steps["refit"].timeout_minutes

    # With manual approval, the refit runs once a person approved, right before promote.
    evaluation = dict(DEMO_DATA["evaluation"], approval="manual")
    train = dag(plan_for(tmp_path, training=training, evaluation=evaluation), "train")
    assert [s.task_id for s in train.steps][4:8] == ["gate", "approve", "refit", "promote"]
    assert {s.task_id: s for s in train.steps}["refit"].upstream == ("approve",)

    # none (the default): no refit step, the gate is right before promote.
    default = dag(build_plan(load_spec(DEMO_SPEC)), "train")
    assert "refit" not in {s.task_id for s in default.steps}


def test_kubernetes_target_makes_deploy_a_deployer_pod_step(tmp_path):
    from tests.kube import kubernetes_spec

    spec = kubernetes_spec()
    steps = {s.task_id: s for s in dag(plan_for(tmp_path, deployment=spec["deployment"]), "train").steps}
    deploy = steps["deploy"]
    assert (deploy.kind, deploy.alert, deploy.upstream) == ("deploy_kubernetes", "deploy", ("promote",))
    assert deploy.config.pipeline == "flights_delay"
    assert deploy.config.version_from == "promote"
    assert deploy.config.settings["namespace"] == "ml-serving"
    assert deploy.config.settings["image"] == "registry.example.com/sluice:0.1.0"


def test_local_target_keeps_the_local_deploy_step(tmp_path):
    deploy = next(s for s in dag(plan_for(tmp_path), "train").steps if s.task_id == "deploy")
    assert (deploy.kind, deploy.alert) == ("deploy", "deploy")


def test_s3_source_waits_on_the_bucket_prefix_through_its_connection(tmp_path):
    source = {"uri": "s3://landing-zone/flights", "pattern": "*.parquet", "conn_id": "minio"}
    ingest = dag(plan_for(tmp_path, source=source), "ingest")
    wait = {s.task_id: s for s in ingest.steps}["wait_for_files"]

    landing = wait.config.landing
    assert landing.source == "s3"
    assert (landing.bucket, landing.prefix, landing.pattern) == (
        "landing-zone",
        "flights",
        "*.parquet",
    )
    assert landing.conn_id == "minio"
    assert [s.task_id for s in ingest.steps][:2] == ["wait_for_files", "land"]


def test_an_unknown_step_kind_or_a_missing_config_fails_when_the_plan_is_built() -> None:
    from sluice.plan.model import ApprovalConfig, PlanError, Step

    with pytest.raises(PlanError, match="'trian' is not a step kind"):
        Step("train", "trian")
    with pytest.raises(PlanError, match="needs ApprovalConfig, got None"):
        Step("approve", "approve")
    with pytest.raises(PlanError, match="needs no config"):
        Step("train", "train", config=ApprovalConfig(timeout_hours=1))


def test_every_step_kind_has_a_renderer() -> None:
    from sluice.airflow.render import RENDERERS
    from sluice.plan.model import STEP_KINDS

    assert set(RENDERERS) == set(STEP_KINDS)


def test_every_step_has_a_time_limit_and_an_alert_so_a_hang_fails_and_tells_someone() -> None:
    from sluice.airflow.render import render_pipeline
    from sluice.plan.build import TIMEOUT_MINUTES

    loaded = load_spec(DEMO_SPEC)
    plan = build_plan(loaded)
    for dag in plan.dags:
        for step in dag.steps:
            if step.kind in {"wait_for_files", "approve"}:
                continue  # their own timeouts: the sensor's timeout_seconds, approval_timeout_hours
            assert step.timeout_minutes, step.task_id
            assert step.alert, step.task_id
    deploy = next(s for d in plan.dags for s in d.steps if s.task_id == "deploy")
    assert deploy.timeout_minutes == loaded.spec.deployment.local.health_timeout_seconds / 60 + 10
    ops = {t.task_id: t for d in render_pipeline(plan) for t in d.tasks}
    assert ops["train"].execution_timeout.total_seconds() == TIMEOUT_MINUTES["train"] * 60


def test_every_task_id_the_task_callables_read_is_a_step_of_the_plan(tmp_path: Path) -> None:
    """``TaskId`` is what tasks pull XComs by: a step renamed in the plan must fail here, not in a run."""
    from sluice.plan.task_ids import TaskId

    plans = [
        build_plan(load_spec(DEMO_SPEC)),
        plan_for(tmp_path, training=dict(DEMO_DATA["training"], refit="after_gate")),
    ]
    planned = {step.task_id for plan in plans for d in plan.dags for step in d.steps}
    assert {str(t) for t in TaskId} <= planned
