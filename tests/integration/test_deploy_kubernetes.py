"""Kubernetes deploys against an API emulator (kmock) with a test-side kubelet.

The deploy task is sluice's real KubernetesPodOperator task, run by ``dag.test()`` (the
deferrable trigger runs inline); the deployer pod runs the real ``sluice deployer`` as a
process; the model registry is a real MLflow SQLite store. See tests/kube.py for what the
emulator and the kubelet stand-in do and do not do.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from sluice.services import kube_manifests as km
from sluice.services import kubernetes as k8s
from tests.conftest import Project, demo_spec_dict
from tests.integration.conftest import run_dag
from tests.kube import Cluster, Kubelet, venv_bin

pytestmark = pytest.mark.integration

MODEL = "flights_delay"
NS = "ml-serving"
HERE = Path(__file__).parent


def k8s_section(tracking_uri: str) -> dict[str, Any]:
    return {
        "namespace": NS,
        "image": "registry.example.com/sluice:0.1.0",
        "serving_image": "registry.example.com/sluice-serving:0.1.0",
        "mlflow_tracking_uri": tracking_uri,
        "replicas": 2,
        "rollout_timeout_seconds": 5,
        "labels": {"team": "data-eng"},
    }


@pytest.fixture()
def registry(project: Project) -> Any:
    """A real MLflow registry (SQLite) with versions 1-3 of the model."""
    from sluice.services import tracking

    uri = f"sqlite:///{project.root / '.sluice' / 'mlflow.db'}"
    client = tracking.configure_uri(uri)
    client.create_registered_model(MODEL)
    for _ in range(3):
        client.create_model_version(MODEL, source=(project.root / "model").as_uri())
    return client


@pytest.fixture()
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    with Cluster(tmp_path) as c:
        yield c


@pytest.fixture()
def kubelet(cluster: Cluster, tmp_path: Path) -> Iterator[Kubelet]:
    home = tmp_path / "pod-home"
    home.mkdir()
    with Kubelet(cluster, venv_bin(), extra_env={"HOME": str(home)}) as k:
        yield k
    assert k.errors == []


@pytest.fixture()
def deploy_dag(
    project: Project, airflow_db: Path, registry: Any, cluster: Cluster, monkeypatch: pytest.MonkeyPatch
) -> Any:
    """The k8s_deploy_only DAG (stand-in promote >> real deploy task) for a kubernetes-target spec."""
    spec = demo_spec_dict()
    spec["deployment"] = {"target": "kubernetes", "kubernetes": k8s_section(str(registry.tracking_uri))}
    path = project.dags / f"{MODEL}.pipeline.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    shutil.copy(HERE / "k8s" / "deploy_only_dag.py", project.dags / "deploy_only_dag.py")
    monkeypatch.setenv("SLUICE_TEST_K8S_SPEC", str(path))
    monkeypatch.setenv("SLUICE_TEST_MODEL", MODEL)
    monkeypatch.setenv(
        "AIRFLOW_CONN_KUBERNETES_DEFAULT",
        json.dumps({"conn_type": "kubernetes", "extra": {"kube_config_path": str(cluster.kubeconfig)}}),
    )
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(project.dags / "deploy_only_dag.py"))
    assert bag.import_errors == {}
    return bag.dags["k8s_deploy_only"]


def promote_then_deploy(dag: Any, monkeypatch: pytest.MonkeyPatch, version: str, previous: str | None) -> Any:
    monkeypatch.setenv("SLUICE_TEST_PROMOTE", json.dumps({"version": version, "previous": previous, "changed": True}))
    return run_dag(dag)


def champion(registry: Any) -> str | None:
    from sluice.services import tracking

    current = tracking.champion(registry, MODEL)
    return None if current is None else str(current.version)


def live_deployment(cluster: Cluster) -> dict[str, Any]:
    (dep,) = cluster.objects("apps/v1/deployments", NS)
    return dep


def test_deploy_rolls_out_pinned_version_and_a_retry_changes_nothing(
    deploy_dag: Any, cluster: Cluster, kubelet: Kubelet, registry: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    state, tasks = promote_then_deploy(deploy_dag, monkeypatch, "1", None)
    assert (state, tasks) == ("success", {"promote": "success", "deploy": "success"})

    # The deployer pod: project image, restricted security, labels, service account; it ran and is gone.
    (pod,) = kubelet.ran
    assert pod["spec"]["serviceAccountName"] == "sluice-deployer"
    container = pod["spec"]["containers"][0]
    assert container["image"] == "registry.example.com/sluice:0.1.0"
    assert container["command"] == ["sluice"] and container["args"][:6] == [
        "deployer",
        "--pipeline",
        MODEL,
        "--version",
        "1",
        "--previous-version",
    ]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert pod["metadata"]["labels"][km.LABEL_VERSION] == "1"
    assert pod["metadata"]["labels"]["team"] == "data-eng"
    assert cluster.objects("v1/pods", NS) == [], "the operator deletes the finished pod"
    log = kubelet.log_of(NS, pod["metadata"]["name"])
    assert "deployment ml-serving/flights-delay serves v1" in log

    dep = live_deployment(cluster)
    server = dep["spec"]["template"]["spec"]["containers"][0]
    assert server["image"] == "registry.example.com/sluice-serving:0.1.0"
    assert f"models:/{MODEL}/1" in server["args"], "pinned to the registered version, not an alias"
    assert dep["metadata"]["labels"][km.LABEL_VERSION] == "1"
    assert dep["status"]["availableReplicas"] == 2
    (svc,) = cluster.objects("v1/services", NS)
    assert svc["spec"]["selector"] == dep["spec"]["selector"]["matchLabels"]
    assert champion(registry) == "1"

    # Re-running the same deploy: the deployer pod runs again and writes nothing.
    before = (cluster.writes("apps/v1/deployments"), cluster.writes("v1/services"))
    resource_version = dep["metadata"]["resourceVersion"]
    state, _ = promote_then_deploy(deploy_dag, monkeypatch, "1", None)
    assert state == "success"
    assert len(kubelet.ran) == 2
    assert "already serves v1, rolled out: nothing to do" in kubelet.log_of(NS, kubelet.ran[1]["metadata"]["name"])
    assert (cluster.writes("apps/v1/deployments"), cluster.writes("v1/services")) == before
    assert live_deployment(cluster)["metadata"]["resourceVersion"] == resource_version

    # The next version replaces it.
    state, _ = promote_then_deploy(deploy_dag, monkeypatch, "2", "1")
    assert state == "success"
    dep = live_deployment(cluster)
    assert dep["metadata"]["labels"][km.LABEL_VERSION] == "2"
    assert f"models:/{MODEL}/2" in dep["spec"]["template"]["spec"]["containers"][0]["args"]
    assert champion(registry) == "2"


def test_a_version_that_never_becomes_ready_is_rolled_back_and_the_task_fails(
    deploy_dag: Any, cluster: Cluster, kubelet: Kubelet, registry: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert promote_then_deploy(deploy_dag, monkeypatch, "1", None)[0] == "success"
    kubelet.unready_versions.add("2")

    state, tasks = promote_then_deploy(deploy_dag, monkeypatch, "2", "1")

    assert state == "failed" and tasks["deploy"] == "failed"
    dep = live_deployment(cluster)
    assert dep["metadata"]["labels"][km.LABEL_VERSION] == "1", "the previous version serves again"
    assert f"models:/{MODEL}/1" in dep["spec"]["template"]["spec"]["containers"][0]["args"]
    assert k8s.rollout_state(dep).done
    assert champion(registry) == "1", "@champion restored to the version that serves"
    failed_logs = [kubelet.log_of(NS, p["metadata"]["name"]) for p in kubelet.ran[1:]]
    assert len(failed_logs) == 2, "one retry, which rolls back again"
    for log in failed_logs:
        assert "rollout of v2 failed" in log and "rolling ml-serving/flights-delay back to v1" in log
        assert "@champion is v1" in log
    assert "@champion of flights_delay: v2 -> v1" in failed_logs[0], "the first attempt restores the alias"
