"""Local deploys: retries change nothing, a switch drops no request, a bad deploy keeps the old server."""

from __future__ import annotations

import threading
import time

import pytest

from sluice.services.storage import PipelineStore, read_json
from tests.conftest import Project
from tests.integration.conftest import build_dags, run_dag
from tests.storage import local

pytestmark = pytest.mark.integration


def test_promote_and_deploy_retries_are_no_ops_and_switches_drop_nothing(flights_project: Project) -> None:
    import mlflow

    from demo.producer import drop_month
    from sluice.services import processes, tracking
    from sluice.spec.loader import load_spec
    from sluice.steps.deploy import DeployFailed, current_deployment, deploy_local, http_json
    from sluice.steps.promote import StaleDecision, promote
    from sluice.steps.records import ChampionScore, GateDecision, ScoredRun, decode, encode
    from sluice.steps.train import smoke_rows

    project = flights_project
    drop_month(project.landing, 1, sample=3000)
    dags = build_dags(project)
    assert run_dag(dags["flights_delay__ingest"])[0] == "success"
    assert run_dag(dags["flights_delay__train"])[0] == "success"
    loaded = load_spec(project.dags / "flights_delay.pipeline.yaml")
    store = PipelineStore(project.root / "data" / "sluice", "flights_delay")
    (decision_file,) = (local(store) / "runs").glob("*/decision.json")
    decision = read_json(decision_file)

    # promote retried after success: same version, nothing moves
    again = promote(loaded, decode(GateDecision, decision))
    assert (again.version, again.changed) == ("1", False)

    first = current_deployment(store)
    assert first is not None
    trained = read_json(next((local(store) / "runs").glob("*/train.json")))
    assert trained["mlflow_run_id"] == decision["candidate"]["run_id"]
    run = tracking.configure(project.root).get_run(trained["mlflow_run_id"])
    smoke = smoke_rows(store, decision["holdout"]["path"], run.data.tags["sluice.features"].split(","))
    same = deploy_local(loaded, store, "1", smoke)
    assert same.changed is False and same.pid == first["pid"]

    # A second version of the same model, deployed while a client keeps calling the public port.
    client = tracking.configure(project.root)
    mlflow.register_model(f"runs:/{decision['candidate']['run_id']}/model", "flights_delay")
    url = f"http://127.0.0.1:{first['port']}"
    errors: list[str] = []
    versions: set[str] = set()
    stop = threading.Event()

    def poll() -> None:
        while not stop.is_set():
            try:
                status, body = http_json(f"{url}/sluice/info", timeout=5)
                if status != 200:
                    errors.append(f"HTTP {status}")
                else:
                    versions.add(body["version"])
            except OSError as exc:
                errors.append(repr(exc))
            time.sleep(0.05)

    poller = threading.Thread(target=poll)
    poller.start()
    try:
        second = deploy_local(loaded, store, "2", smoke)
        time.sleep(1)
    finally:
        stop.set()
        poller.join()
    assert second.changed is True and second.previous_version == "1"
    assert errors == [], "no request may fail while the server is replaced"
    assert versions == {"1", "2"}
    assert not processes.alive(int(first["pid"])), "the old server stops once the new one is healthy"
    assert http_json(f"{url}/sluice/info")[1]["version"] == "2"

    # A deploy that cannot become healthy leaves the serving version alone.
    with pytest.raises(DeployFailed):
        deploy_local(loaded, store, "99", smoke)
    assert current_deployment(store) == encode(second.deployment())
    assert http_json(f"{url}/sluice/info")[1]["version"] == "2"

    # A decision made against v1 cannot promote once the champion has moved.
    client.set_registered_model_alias("flights_delay", "champion", "2")
    stale = decode(GateDecision, decision).model_copy(
        update={
            "champion": ChampionScore(version="1", run_id="x", score=0.5),
            "candidate": ScoredRun(run_id="not-registered-yet", score=0.9),
        }
    )
    with pytest.raises(StaleDecision):
        promote(loaded, stale)
    assert str(client.get_model_version_by_alias("flights_delay", "champion").version) == "2"
    assert len(client.search_model_versions("name='flights_delay'")) == 2, "a stale decision registers nothing"
