"""A local deploy killed (SIGKILL) at each point between its durable steps: no orphan survives.

Before: a deploy killed once its new server was ready left that server on the shared port
(``SO_REUSEPORT``) beside the old one; requests were split between two versions while the
record, ``sluice status`` and ``@champion`` disagreed, and neither a retry nor ``sluice stop``
removed it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from sluice.services.storage import PipelineStore, read_json
from tests.conftest import Project
from tests.faults.kill import kill_script
from tests.integration.conftest import build_dags, run_dag
from tests.storage import local

pytestmark = [pytest.mark.integration, pytest.mark.faults]

# The deploy task's work, in a process of its own that the fault point kills.
DEPLOY = """
    import json, sys
    from sluice.services.storage import PipelineStore
    from sluice.spec.loader import load_spec
    from sluice.steps.deploy import deploy_local
    loaded = load_spec(sys.argv[1])
    store = PipelineStore(loaded.resolve(loaded.spec.storage.root), loaded.spec.pipeline)
    deploy_local(loaded, store, sys.argv[2], json.loads(sys.argv[3]))
    """


def _crashed_deploy(project: Project, spec: Path, version: str, smoke: list[dict[str, Any]], point: str) -> None:
    kill_script(point, project.root, DEPLOY, str(spec), version, json.dumps(smoke), timeout=300)


def _answers(url: str, n: int = 20) -> set[str]:
    from sluice.steps.deploy import http_json

    return {str(http_json(f"{url}/sluice/info")[1]["version"]) for _ in range(n)}


def test_a_deploy_killed_at_any_point_leaves_one_recorded_server_after_the_retry(
    flights_project: Project,
) -> None:
    import mlflow

    from demo.producer import drop_month
    from sluice.cli import main as sluice
    from sluice.services import processes, tracking
    from sluice.spec.loader import load_spec
    from sluice.steps.deploy import current_deployment, deploy_local, local_serving, servers_on
    from sluice.steps.train import smoke_rows

    project = flights_project
    drop_month(project.landing, 1, sample=3000)
    dags = build_dags(project)
    assert run_dag(dags["flights_delay__ingest"])[0] == "success"
    assert run_dag(dags["flights_delay__train"])[0] == "success"
    spec = project.dags / "flights_delay.pipeline.yaml"
    loaded = load_spec(spec)
    cfg = loaded.spec.deployment.local
    store = PipelineStore(project.root / "data" / "sluice", "flights_delay")
    decision = read_json(next((local(store) / "runs").glob("*/decision.json")))
    run_id = decision["candidate"]["run_id"]
    run = tracking.configure(project.root).get_run(run_id)
    smoke = smoke_rows(store, decision["holdout"]["path"], run.data.tags["sluice.features"].split(","))
    url = f"http://{cfg.host}:{cfg.port}"
    for _ in range(2):  # versions 2 and 3 of the same run
        mlflow.register_model(f"runs:/{run_id}/model", "flights_delay")

    # Killed after the new server passed its checks, before the record: an orphan v2 shares the port.
    v1 = current_deployment(store)
    assert v1 is not None and v1["version"] == "1"
    _crashed_deploy(project, spec, "2", smoke, "deploy.server_ready")
    seen = local_serving(store, cfg.host, cfg.port)
    assert [s.version for s in seen.unrecorded] == ["2"] and seen.answering == "1" and not seen.healthy
    assert "unrecorded model server" in "\n".join(seen.describe())
    # The retry stops the orphan (and says so in its log), starts v2, retires v1: one server, one version.
    # (Inside the deploy task the lines go to the task's log through the module's logger.)
    (orphan,) = seen.unrecorded
    said: list[str] = []
    second = deploy_local(loaded, store, "2", smoke, say=said.append)
    assert said[0] == f"stopped model server pid {orphan.pid} (v2) on {cfg.host}:{cfg.port}: no record owns it"
    assert [(s.pid, s.version) for s in servers_on(cfg.host, cfg.port)] == [(second.pid, "2")]
    assert _answers(url) == {"2"}
    assert not processes.alive(int(v1["pid"]))

    # Killed after the record, before the old server was retired: the retry is a no-op but for v2.
    _crashed_deploy(project, spec, "3", smoke, "deploy.recorded")
    seen = local_serving(store, cfg.host, cfg.port)
    assert seen.recorded is not None and seen.recorded["version"] == "3" and seen.answering == "3"
    assert [s.version for s in seen.unrecorded] == ["2"]
    third = deploy_local(loaded, store, "3", smoke)
    assert third.changed is False
    assert [s.version for s in servers_on(cfg.host, cfg.port)] == ["3"] and _answers(url) == {"3"}
    assert local_serving(store, cfg.host, cfg.port).healthy

    # Killed before the server was ready: the retry still ends with exactly one server.
    _crashed_deploy(project, spec, "2", smoke, "deploy.server_started")
    deploy_local(loaded, store, "2", smoke)
    assert [s.version for s in servers_on(cfg.host, cfg.port)] == ["2"] and _answers(url) == {"2"}

    # `sluice stop` stops what runs, recorded or not; status then tells the truth.
    _crashed_deploy(project, spec, "3", smoke, "deploy.server_ready")
    assert len(servers_on(cfg.host, cfg.port)) == 2
    assert sluice(["stop", str(spec)]) == 0
    assert servers_on(cfg.host, cfg.port) == []
    assert "NOT SERVING" in "\n".join(local_serving(store, cfg.host, cfg.port).describe())
