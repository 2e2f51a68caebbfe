"""An outside monitor starts a retrain through Airflow's REST API (apache-airflow-client).

Real API server, scheduler, DAG processor and triggerer (``airflow standalone``) for a
scratch copy of the project; the monitor logs in with SimpleAuthManager's JWT endpoint
and posts an asset event on ``sluice://<pipeline>/drift`` (the demo retrains on drift).
"""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Iterator

import pytest

from sluice.airflow.runtime.standalone import Standalone, isolated_env
from tests.standalone import scratch_project, wait_gone

pytestmark = pytest.mark.e2e
PIPELINE = "flights_delay"
ASSET = f"sluice://{PIPELINE}/drift"


@pytest.fixture(scope="module")
def airflow_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Standalone]:
    """Airflow standalone for a scratch project (shared by this module); nothing is left running."""
    project = scratch_project(tmp_path_factory.mktemp("rest") / "rest-project")
    try:
        with Standalone(project, isolated_env(project)) as airflow:
            yield airflow
    finally:
        # Standalone's exit ends with SIGKILL to the group, which lands asynchronously.
        left = wait_gone(project)
        for pid in left:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    assert left == {}, "stopping airflow standalone leaves no process behind"


def test_rest_posted_asset_event_starts_a_retrain(airflow_api: Standalone) -> None:
    import airflow_client.client as af
    from airflow_client.client.exceptions import NotFoundException

    train = f"{PIPELINE}__train"
    with airflow_api.client() as api:
        dags, assets, runs = af.DAGApi(api), af.AssetApi(api), af.DagRunApi(api)

        def registered() -> bool:
            try:
                return dags.get_dag(train).dag_id == train
            except NotFoundException:
                return False

        airflow_api.wait_for(registered, 300, "the DAG processor to register the train DAG", every=3)
        # Events that arrive while a DAG is paused start nothing: unpause first.
        assert dags.patch_dag(train, af.DAGPatchBody(is_paused=False)).is_paused is False
        (asset,) = [a for a in assets.get_assets(uri_pattern=ASSET).assets if a.uri == ASSET]

        event = assets.create_asset_event(
            af.CreateAssetEventsBody(asset_id=asset.id, extra={"reason": "drift", "source": "outside-monitor"})
        )
        assert event.uri == ASSET and event.extra["source"] == "outside-monitor"

        def asset_run() -> af.DAGRunResponse | None:
            found = runs.get_dag_runs(train).dag_runs
            return next((r for r in found if r.run_type == af.DagRunType.ASSET_TRIGGERED), None)

        run = airflow_api.wait_for(asset_run, 180, "the scheduler to create an asset-triggered train run", every=2)
        consumed = runs.get_upstream_asset_events(train, run.dag_run_id).asset_events
        assert [(e.uri, e.extra.get("source")) for e in consumed] == [(ASSET, "outside-monitor")]


def test_sluice_trigger_retrain_posts_the_event(airflow_api: Standalone, capsys: pytest.CaptureFixture[str]) -> None:
    import airflow_client.client as af

    from sluice.cli import main

    train = f"{PIPELINE}__train"
    with airflow_api.client() as api:
        assets = af.AssetApi(api)

        def asset_id() -> int | None:
            found = [a for a in assets.get_assets(uri_pattern=ASSET).assets if a.uri == ASSET]
            return found[0].id if found else None

        airflow_api.wait_for(asset_id, 300, "the DAG processor to register the asset", every=3)
        af.DAGApi(api).patch_dag(train, af.DAGPatchBody(is_paused=False))
        password = airflow_api.admin_password()
        args = ["trigger-retrain", "--api-url", airflow_api.api_url, "--pipeline", PIPELINE, "--reason", "drift"]

        assert main([*args, "--password", "wrong"]) == 1
        assert "login to" in capsys.readouterr().err

        assert main([*args, "--password", password]) == 0
        assert f"on {ASSET}" in capsys.readouterr().out
        events = assets.get_asset_events(asset_id=asset_id()).asset_events
        mine = [e.extra["reason"] for e in events if e.extra.get("source") == "sluice trigger-retrain"]
        assert mine == ["drift"]

        def run_of_cli_event() -> bool:
            runs = af.DagRunApi(api)
            for run in runs.get_dag_runs(train).dag_runs:
                consumed = runs.get_upstream_asset_events(train, run.dag_run_id).asset_events
                if any(e.extra.get("source") == "sluice trigger-retrain" for e in consumed):
                    return True
            return False

        # A run of the previous test may still be active (max_active_runs 1): allow for it.
        assert airflow_api.wait_for(run_of_cli_event, 300, "a train run started by the CLI's event", every=3)
