"""The deployer step against the API emulator and a real MLflow registry, without Airflow."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.conftest import fresh_mlflow_store
from tests.kube import Cluster, Kubelet, venv_bin

from sluice.services import kube_manifests as km
from sluice.services import kubernetes as k8s
from sluice.spec.models import KubernetesDeployment
from sluice.steps.deploy_kubernetes import KubernetesDeployFailed, deploy_kubernetes

pytestmark = pytest.mark.integration
MODEL = "flights_delay"


@pytest.fixture()
def env(tmp_path: Path, mlflow_store_template: Path) -> Iterator[tuple[Cluster, Kubelet, Any, KubernetesDeployment]]:
    from sluice.services import tracking

    uri = fresh_mlflow_store(mlflow_store_template, tmp_path)
    client = tracking.configure_uri(uri)
    client.create_registered_model(MODEL)
    for _ in range(3):
        client.create_model_version(MODEL, source=(tmp_path / "model").as_uri())
    cfg = KubernetesDeployment(
        namespace="ml",
        image="img:1",
        serving_image="serving:1",
        mlflow_tracking_uri=uri,
        rollout_timeout_seconds=5,
    )
    with Cluster(tmp_path) as cluster, Kubelet(cluster, venv_bin()) as kubelet:
        yield cluster, kubelet, client, cfg
        assert kubelet.errors == []


def champion(client: Any) -> str | None:
    from sluice.services import tracking

    found = tracking.champion(client, MODEL)
    return None if found is None else str(found.version)


def test_a_failed_first_deploy_deletes_the_deployment_and_the_champion_alias(env: Any) -> None:
    cluster, kubelet, client, cfg = env
    client.set_registered_model_alias(MODEL, "champion", "1")
    kubelet.unready_versions.add("1")
    api = k8s.connect(str(cluster.kubeconfig))
    lines: list[str] = []

    with pytest.raises(KubernetesDeployFailed, match=r"nothing was served before.*there is no @champion"):
        deploy_kubernetes(MODEL, cfg, "1", None, "run-1", api=api, log=lines.append, poll_seconds=0.3)

    assert cluster.objects("apps/v1/deployments", "ml") == []
    assert champion(client) is None, "no version serves, so no version is champion"


def test_a_retry_that_succeeds_after_a_rollback_moves_the_champion_forward(env: Any) -> None:
    cluster, kubelet, client, cfg = env
    api = k8s.connect(str(cluster.kubeconfig))
    client.set_registered_model_alias(MODEL, "champion", "1")
    assert deploy_kubernetes(MODEL, cfg, "1", None, "run-1", api=api, poll_seconds=0.3).changed

    client.set_registered_model_alias(MODEL, "champion", "2")  # what promote does
    kubelet.unready_versions.add("2")
    with pytest.raises(KubernetesDeployFailed, match="rolled back to v1"):
        deploy_kubernetes(MODEL, cfg, "2", "1", "run-2", api=api, poll_seconds=0.3)
    assert champion(client) == "1"
    assert km.served_version(k8s.read(api, "Deployment", "ml", "flights-delay")) == "1"

    kubelet.unready_versions.clear()  # whatever kept v2 from starting is gone: the task retries
    result = deploy_kubernetes(MODEL, cfg, "2", "1", "run-2", api=api, poll_seconds=0.3)
    assert (result.version, result.previous_version, result.changed) == ("2", "1", True)
    assert champion(client) == "2"


def test_an_alias_moved_by_someone_else_is_left_alone(env: Any) -> None:
    cluster, kubelet, client, cfg = env
    api = k8s.connect(str(cluster.kubeconfig))
    assert deploy_kubernetes(MODEL, cfg, "1", None, "run-1", api=api, poll_seconds=0.3).changed
    client.set_registered_model_alias(MODEL, "champion", "3")  # a human pinned v3 meanwhile
    kubelet.unready_versions.add("2")
    lines: list[str] = []
    with pytest.raises(KubernetesDeployFailed, match="@champion is v3"):
        deploy_kubernetes(MODEL, cfg, "2", "1", "run-2", api=api, log=lines.append, poll_seconds=0.3)
    assert champion(client) == "3"
    assert any("left alone" in line for line in lines)


def test_an_unreachable_api_changes_nothing_and_restores_the_alias(env: Any, tmp_path: Path) -> None:

    from tests.kube import dead_kubeconfig

    _, _, client, cfg = env
    dead = dead_kubeconfig(tmp_path)
    client.set_registered_model_alias(MODEL, "champion", "2")  # promote moved it from v1
    with pytest.raises(KubernetesDeployFailed, match=r"cannot read deployment ml/flights-delay.*@champion is v1"):
        deploy_kubernetes(MODEL, cfg, "2", "1", "run-2", api=k8s.connect(str(dead)), poll_seconds=0.3)
    assert champion(client) == "1"


def test_a_deployer_terminated_mid_rollout_rolls_back_and_restores_the_alias(env: Any, tmp_path: Path) -> None:
    """SIGTERM (the pod deleted because the task was killed) during the wait: roll back, then exit 1."""
    import os
    import signal
    import subprocess

    cluster, kubelet, client, cfg = env
    api = k8s.connect(str(cluster.kubeconfig))
    assert deploy_kubernetes(MODEL, cfg, "1", None, "run-1", api=api, poll_seconds=0.3).changed
    client.set_registered_model_alias(MODEL, "champion", "2")
    kubelet.unready_versions.add("2")
    slow = cfg.model_copy(update={"rollout_timeout_seconds": 600})
    args = ["deployer", "--pipeline", MODEL, "--version", "2", "--previous-version", "1", "--run-id", "run-2"]
    proc = subprocess.Popen(
        [str(venv_bin() / "sluice"), *args, "--settings", slow.model_dump_json()],
        env={**os.environ, "KUBECONFIG": str(cluster.kubeconfig), "HOME": str(tmp_path)},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert proc.stdout is not None
    lines = []
    for line in proc.stdout:
        lines.append(line)
        if "1 of 2 new replicas updated" in line:  # v2 is rolling out and will never be ready
            proc.send_signal(signal.SIGTERM)
            break
    out = "".join(lines) + proc.stdout.read()
    assert proc.wait(120) == 1, out
    assert "received signal 15" in out and "rolled back to v1" in out
    assert km.served_version(k8s.read(api, "Deployment", "ml", "flights-delay")) == "1"
    assert champion(client) == "1"
