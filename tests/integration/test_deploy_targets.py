"""``sluice status`` and the deploy alert ask the deploy target: a kubernetes target answers from the cluster.

The cluster is the kmock API emulator with the test-side kubelet (tests/kube.py); the deploy
goes through the target to the real deployer code and a real MLflow registry.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from sluice.airflow.notifications.alert_format import AlertEmail, compose
from sluice.airflow.notifications.alerts import gather_facts
from sluice.cli import main
from sluice.services.storage import open_store
from tests.conftest import Project
from tests.kube import Cluster, Kubelet, dead_kubeconfig, kubernetes_spec, venv_bin

pytestmark = pytest.mark.integration
URL = "http://flights-delay.ml-serving.svc:8080"


class SyntheticTI:
    """What the deploy task's ``on_failure_callback`` reads from its task instance."""

    dag_id, task_id, run_id = "flights_delay__train", "deploy", "manual__2"
    log_url = "http://airflow.test/log"

    def xcom_pull(self, task_ids: str) -> Any:
        return {"promote": {"version": "3", "previous": "2", "changed": True}}.get(task_ids)


@pytest.fixture()
def spec(project: Project) -> Path:
    from sluice.services import tracking

    client = tracking.configure_uri(os.environ["MLFLOW_TRACKING_URI"])
    client.create_registered_model("flights_delay")
    for _ in range(3):
        client.create_model_version("flights_delay", source=(project.root / "model").as_uri())
    path = project.dags / "flights_delay.pipeline.yaml"
    data = kubernetes_spec(os.environ["MLFLOW_TRACKING_URI"], rollout_timeout_seconds=5)
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


@pytest.fixture()
def cluster(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Cluster]:
    with Cluster(tmp_path) as c, Kubelet(c, venv_bin()) as kubelet:
        monkeypatch.setenv("KUBECONFIG", str(c.kubeconfig))
        monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
        yield c
    assert kubelet.errors == []


def deploy_alert(spec: Path) -> AlertEmail:
    error = RuntimeError("rollout of models:/flights_delay/3 failed")
    facts = gather_facts("deploy", "flights_delay", str(spec), {"ti": SyntheticTI(), "exception": error})
    return compose(facts)


def test_status_and_deploy_alert_name_the_version_the_cluster_serves(
    spec: Path, cluster: Cluster, capsys: pytest.CaptureFixture[str]
) -> None:
    from sluice.spec.loader import load_spec
    from sluice.steps.targets import target_for

    assert main(["status", str(spec)]) == 0
    assert "  deployed: nothing (no deployment ml-serving/flights-delay)" in capsys.readouterr().out

    loaded = load_spec(spec)
    target = target_for(loaded, open_store(loaded))
    result = target.deploy("2", previous=None, run_id="manual__1", smoke_rows=[])
    assert (result.version, result.changed) == ("2", True)
    (dep,) = cluster.objects("apps/v1/deployments", "ml-serving")

    assert main(["status", str(spec)]) == 0
    out = capsys.readouterr().out
    assert f"  deployed: v2 at {URL} (deployment ml-serving/flights-delay, rolled out: 2 of 2 replicas available)" in (
        out
    ), out
    served = target.served()
    assert (served.version, served.url, served.healthy, served.reachable) == ("2", URL, True, True)
    assert not (spec.parent.parent / "data" / "sluice" / "flights_delay" / "deploy" / "current.json").exists()
    assert dep["metadata"]["labels"]["sluice.io/model-version"] == "2"

    mail = deploy_alert(spec)
    assert mail.subject == f"[sluice] flights_delay: deploy of v3 failed; v2 keeps serving at {URL}", mail.html
    # The advice points at the pods, not at a local deploy folder the email does not show.
    assert "kubectl describe" in mail.html and "deploy folder" not in mail.html


def test_an_unreachable_cluster_is_said_not_taken_for_nothing_served(
    spec: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    dead = dead_kubeconfig(tmp_path)
    monkeypatch.setenv("KUBECONFIG", str(dead))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)

    assert main(["status", str(spec)]) == 4, "exit 4: the target cannot be asked"
    out = capsys.readouterr().out
    assert "  deployed: UNKNOWN: cannot read deployment ml-serving/flights-delay from the cluster" in out, out
    assert "deployed: nothing" not in out

    mail = deploy_alert(spec)
    assert mail.subject == "[sluice] flights_delay: deploy of v3 failed; what is served is unknown"
    assert "what is served is unknown: cannot read deployment ml-serving/flights-delay from the cluster" in mail.html
    assert "nothing was being served" not in mail.html


def test_the_deploy_alert_reads_the_cluster_through_the_specs_airflow_connection(
    project: Project, tmp_path: Path, cluster: Cluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The deploy task reaches the cluster through ``deployment.kubernetes.conn_id``: so must its alert.

    The worker's own ``$KUBECONFIG`` points at a cluster that is down; only the connection
    named in the spec reaches the cluster that serves.
    """
    from sluice.services import kubernetes as k8s
    from sluice.services import tracking
    from sluice.spec.loader import load_spec
    from sluice.steps.targets import target_for

    tracking_uri = os.environ["MLFLOW_TRACKING_URI"]
    client = tracking.configure_uri(tracking_uri)
    client.create_registered_model("flights_delay")
    for _ in range(3):
        client.create_model_version("flights_delay", source=(project.root / "model").as_uri())
    path = project.dags / "flights_delay.pipeline.yaml"
    data = kubernetes_spec(tracking_uri, rollout_timeout_seconds=5, conn_id="prod_cluster")
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    live = str(cluster.kubeconfig)
    loaded = load_spec(path)
    target_for(loaded, open_store(loaded), connect=lambda: k8s.connect(live)).deploy(
        "2", previous=None, run_id="manual__1", smoke_rows=[]
    )

    conn = {"conn_type": "kubernetes", "extra": {"kube_config_path": live}}
    monkeypatch.setenv("AIRFLOW_CONN_PROD_CLUSTER", json.dumps(conn))
    monkeypatch.setenv("KUBECONFIG", str(dead_kubeconfig(tmp_path)))

    assert deploy_alert(path).subject == f"[sluice] flights_delay: deploy of v3 failed; v2 keeps serving at {URL}"
