"""A model server killed after its deploy: `sluice status` says so (exit 3), the serving watch restarts the
recorded version and alerts.

Before: the killed server stayed down (connections refused) until someone re-ran the deploy
task, and nothing sent an email.
"""

from __future__ import annotations

import os
import signal
import time

import pytest

from sluice.services.storage import PipelineStore
from tests.conftest import Project
from tests.integration.conftest import build_dags, run_dag
from tests.smtp_server import MailCatcher, body_text

pytestmark = pytest.mark.integration


def test_a_killed_model_server_is_restarted_at_the_recorded_version_and_alerted(
    flights_project: Project, smtp_server: MailCatcher
) -> None:
    import mlflow

    from demo.producer import drop_month
    from sluice.cli import main as sluice
    from sluice.services import processes, tracking
    from sluice.spec.loader import load_spec
    from sluice.steps.deploy import current_deployment, http_json, servers_on

    project = flights_project
    drop_month(project.landing, 1, sample=3000)
    dags = build_dags(project)
    assert "flights_delay__serving" in dags
    assert run_dag(dags["flights_delay__ingest"])[0] == "success"
    assert run_dag(dags["flights_delay__train"])[0] == "success"
    spec = project.dags / "flights_delay.pipeline.yaml"
    cfg = load_spec(spec).spec.deployment.local
    store = PipelineStore(project.root / "data" / "sluice", "flights_delay")
    before = current_deployment(store)
    assert before is not None and before["version"] == "1"
    assert sluice(["status", str(spec)]) == 0
    assert run_dag(dags["flights_delay__serving"])[0] == "success", "a healthy server: a green look, no email"

    # A newer champion that was never deployed: the watch restores what the record names, not it.
    client = tracking.configure(project.root)
    run_id = client.get_model_version("flights_delay", "1").run_id
    mlflow.register_model(f"runs:/{run_id}/model", "flights_delay")
    client.set_registered_model_alias("flights_delay", "champion", "2")

    # The model server dies as the out-of-memory killer would end it.
    os.kill(int(before["pid"]), signal.SIGKILL)
    deadline = time.monotonic() + 30
    while processes.alive(int(before["pid"])) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert sluice(["status", str(spec)]) == 3, "NOT SERVING is a failed health check"

    state, tasks = run_dag(dags["flights_delay__serving"])

    assert (state, tasks) == ("failed", {"watch_serving": "failed"}), "the outage shows red and alerts"
    after = current_deployment(store)
    assert after is not None and after["version"] == "1" and after["pid"] != before["pid"]
    assert [(s.pid, s.version) for s in servers_on(cfg.host, cfg.port)] == [(after["pid"], "1")]
    assert http_json(f"http://{cfg.host}:{cfg.port}/sluice/info")[1]["version"] == "1"
    (mail,) = smtp_server.wait_for(1)
    assert mail["Subject"] == (
        "[sluice] flights_delay: watch_serving failed: model server of flights_delay was not serving as "
        "recorded: restarted v1, it answers again"
    )
    body = body_text(mail)
    assert "NOT SERVING: the record says v1" in body and "find why its server died" in body

    assert sluice(["status", str(spec)]) == 0
    assert run_dag(dags["flights_delay__serving"])[0] == "success"
    assert len(smtp_server.messages) == 1, "the next look is green and sends nothing"
