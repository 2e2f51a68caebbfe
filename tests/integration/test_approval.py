"""Manual approval (Airflow human-in-the-loop) between gate and promotion, answered over the REST API."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
import yaml

from tests.conftest import Project
from tests.integration.conftest import build_dags, run_dag, small_spec

pytestmark = pytest.mark.integration
SAMPLE = 3000
TRAIN = "flights_delay__train"


def _champion(project: Project) -> str | None:
    from sluice.services import tracking

    champ = tracking.champion(tracking.configure(project.root), "flights_delay")
    return str(champ.version) if champ else None


def _manual_approval(project: Project, timeout_hours: float = 1) -> None:
    path = small_spec(project)
    spec = yaml.safe_load(path.read_text())
    spec["evaluation"] |= {"approval": "manual", "approval_timeout_hours": timeout_hours}
    path.write_text(yaml.safe_dump(spec, sort_keys=False))


def _api_client() -> Any:
    """Airflow's own REST API app, logged in as an admin with a real JWT."""
    from airflow.api_fastapi.app import create_app, init_auth_manager
    from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser
    from fastapi.testclient import TestClient

    app = create_app("core")
    token = init_auth_manager().generate_jwt(SimpleAuthManagerUser(username="approver", role="ADMIN"))
    client = TestClient(app)
    client.headers["Authorization"] = f"Bearer {token}"
    return client


def _awaiting_approval(timeout: float = 900.0, known: frozenset[str] = frozenset()) -> tuple[str, str]:
    """Wait until a new train run's approve task is parked for input; return (run_id, state)."""
    from airflow.models import TaskInstance
    from airflow.utils.session import create_session

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with create_session() as session:
            ti = (
                session.query(TaskInstance)
                .filter(TaskInstance.dag_id == TRAIN, TaskInstance.task_id == "approve")
                .order_by(TaskInstance.start_date.desc())
                .first()
            )
            if ti is None or ti.run_id in known:
                pass
            elif str(ti.state) == "awaiting_input":
                return ti.run_id, str(ti.state)
            elif str(ti.state) in ("failed", "upstream_failed", "success", "skipped"):
                raise AssertionError(f"approve ended as {ti.state} without an answer")
        time.sleep(2)
    raise AssertionError("the approve task never waited for input")


def test_reject_or_timeout_keeps_the_champion_and_the_deployment(
    flights_project: Project, capfd: pytest.CaptureFixture[str]
) -> None:
    from demo.producer import drop_month
    from sluice.services.storage import PipelineStore
    from sluice.steps.deploy import current_deployment

    project = flights_project
    store = PipelineStore(project.root / "data" / "sluice", "flights_delay")
    drop_month(project.landing, 1, sample=SAMPLE)
    dags = build_dags(project)
    assert run_dag(dags["flights_delay__ingest"])[0] == "success"
    assert run_dag(dags[TRAIN])[0] == "success"
    assert _champion(project) == "1"
    deployed = current_deployment(store)

    # Same data and model: the candidate passes the gate and now waits for a person.
    _manual_approval(project)
    seen: dict[str, Any] = {}

    def reviewer() -> None:
        try:
            run_id, _ = _awaiting_approval()
            client = _api_client()
            url = f"/api/v2/dags/{TRAIN}/dagRuns/{run_id}/taskInstances/approve/-1/hitlDetails"
            seen["detail"] = client.get(url).json()
            seen["links"] = client.get(f"/api/v2/dags/{TRAIN}/dagRuns/{run_id}/taskInstances/evaluate/links").json()
            seen["answer"] = client.patch(url, json={"chosen_options": ["Reject"], "params_input": {}})
        except BaseException as exc:  # reported by the main thread
            seen["error"] = exc

    thread = threading.Thread(target=reviewer, daemon=True)
    thread.start()
    state, tasks = run_dag(build_dags(project)[TRAIN])
    thread.join(timeout=60)
    assert "error" not in seen, seen.get("error")

    assert seen["answer"].status_code == 200, seen["answer"].text
    detail = seen["detail"]
    assert detail["options"] == ["Approve", "Reject"]
    body = detail["body"]
    assert "candidate" in body and "champion v1" in body and "max_regression_vs_champion 0.0100" in body
    assert "http://localhost:5000/#/runs/" in body
    assert seen["links"]["extra_links"]["MLflow run"].startswith("http://localhost:5000/#/runs/")

    assert state == "success", tasks
    assert tasks["gate"] == "success" and tasks["approve"] == "success"
    assert tasks["promote"] == "skipped" and tasks["deploy"] == "skipped"
    assert _champion(project) == "1"
    assert current_deployment(store) == deployed
    rejected_run = _awaiting_run_ids()

    # Nobody answers: once the timeout passes, the scheduler's sweep fails the approve task.
    _manual_approval(project, timeout_hours=0.0005)  # 1.8 s
    swept: dict[str, Any] = {}

    def scheduler_sweep() -> None:
        try:
            _awaiting_approval(known=rejected_run)
            time.sleep(3)
            from airflow.jobs.job import Job
            from airflow.jobs.scheduler_job_runner import SchedulerJobRunner

            SchedulerJobRunner(job=Job()).check_awaiting_input_timeouts()
        except BaseException as exc:
            swept["error"] = exc

    thread = threading.Thread(target=scheduler_sweep, daemon=True)
    thread.start()
    capfd.readouterr()
    state, tasks = run_dag(build_dags(project)[TRAIN])
    thread.join(timeout=60)
    task_log = capfd.readouterr().out
    assert "AWAITING_INPUT timeout sweep: 0 resolved (response/defaults), 1 failed" in task_log
    assert "HITLTimeoutError" in task_log
    assert "error" not in swept, swept.get("error")
    assert state == "failed", tasks
    assert tasks["approve"] == "failed"
    assert tasks["promote"] == "upstream_failed" and tasks["deploy"] == "upstream_failed"
    assert _champion(project) == "1"
    assert current_deployment(store) == deployed


def _awaiting_run_ids() -> frozenset[str]:
    from airflow.models import TaskInstance
    from airflow.utils.session import create_session

    with create_session() as session:
        rows = session.query(TaskInstance.run_id).filter(
            TaskInstance.dag_id == TRAIN, TaskInstance.task_id == "approve"
        )
        return frozenset(r[0] for r in rows)
