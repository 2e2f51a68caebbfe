"""The deploy task of the kubernetes target, as the renderer builds it (no cluster, no database)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from sluice.services import kube_manifests as km
from tests.conftest import REPO
from tests.dags.test_integrity import parse
from tests.kube import KUBERNETES_VERSIONS, kubernetes_spec


def write_spec(folder: Path, **settings: Any) -> Path:
    path = folder / "flights_delay.pipeline.yaml"
    path.write_text(yaml.safe_dump(kubernetes_spec(**settings), sort_keys=False))
    return path


def deploy_task(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, **settings: Any) -> Any:
    from sluice.airflow.render import render_pipeline
    from sluice.plan import build_plan
    from sluice.spec.loader import load_spec

    monkeypatch.setenv("SLUICE_PROJECT_DIR", str(REPO))
    dags = render_pipeline(build_plan(load_spec(write_spec(tmp_path, **settings))))
    (train,) = [d for d in dags if d.dag_id == "flights_delay__train"]
    return train.get_task("deploy")


class PromoteXCom:
    """A task instance whose ``promote`` task left ``value``."""

    def __init__(self, value: Any) -> None:
        self.value = value

    def xcom_pull(self, task_ids: str) -> Any:
        return self.value if task_ids == "promote" else None


def rendered(op: Any, version: str = "5", previous: str | None = "4") -> Any:
    """The pod operator for a rendered task: the promotion its ``promote`` task left, the run id templated."""
    op.airflow_run_id = "manual__2026-11-22T01:00:00+00:00"
    promotion = {"version": version, "previous": previous, "changed": True}
    return op.pod_operator(op.promoted({"ti": PromoteXCom(promotion)}))


def test_deploy_task_keeps_its_id_and_alert_and_reads_the_promotion_as_a_record(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from airflow.sdk.exceptions import AirflowFailException

    from sluice.steps.records import RecordError

    op = deploy_task(tmp_path, monkeypatch)
    assert type(op).__name__ == "DeployPodOperator"
    assert op.upstream_task_ids == {"promote"}
    assert op.version_from == "promote" and op.airflow_run_id == "{{ run_id }}"
    assert set(op.template_fields) == {"airflow_run_id"}
    with pytest.raises(AirflowFailException, match="task promote left no PromoteResult in this run"):
        op.promoted({"ti": PromoteXCom(None)})
    with pytest.raises(RecordError, match="not a valid PromoteResult record: version"):
        op.promoted({"ti": PromoteXCom({"version": 5, "previous": None, "changed": True})})
    (notifier,) = op.on_failure_callback
    assert (notifier.alert, notifier.to) == ("deploy", ["ml-oncall@example.com"]), "a failed rollout emails on-call"


def test_pod_operator_is_a_deferrable_kpo_on_the_spec_connection(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator

    kpo = rendered(deploy_task(tmp_path, monkeypatch, conn_id="k8s_prod"))
    assert type(kpo) is KubernetesPodOperator, "the provider's operator, unmodified"
    assert kpo.deferrable is True
    assert kpo.kubernetes_conn_id == "k8s_prod" and kpo.in_cluster is False
    assert kpo.namespace == "ml-serving"
    assert kpo.on_finish_action.value == "delete_pod"


def test_in_cluster_uses_no_connection(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    kpo = rendered(deploy_task(tmp_path, monkeypatch, in_cluster=True))
    assert kpo.in_cluster is True and kpo.kubernetes_conn_id is None


def test_pod_request_validates_and_is_restricted_labelled_and_pinned(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from kubernetes.client import ApiClient

    kpo = rendered(deploy_task(tmp_path, monkeypatch, service_account="deployer-sa"))
    pod = ApiClient().sanitize_for_serialization(kpo.build_pod_request_obj(dry_run=True))
    pod.setdefault("apiVersion", "v1")
    pod.setdefault("kind", "Pod")
    for version in KUBERNETES_VERSIONS:
        kubernetes_validate.validate(pod, version, strict=True)

    labels = pod["metadata"]["labels"]
    assert labels[km.LABEL_PIPELINE] == "flights_delay"
    assert labels[km.LABEL_VERSION] == "5"
    assert labels[km.LABEL_RUN] == "manual__2026-11-22T01-00-00-00-00"
    assert labels["team"] == "data-eng"
    assert pod["metadata"]["namespace"] == "ml-serving"
    spec = pod["spec"]
    assert spec["serviceAccountName"] == "deployer-sa"
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    (container,) = spec["containers"]
    assert container["image"] == "registry.example.com/sluice:0.1.0"
    assert container["securityContext"] == km.restricted_container_security()
    assert container["resources"] == {
        "requests": {"cpu": "100m", "memory": "256Mi"},
        "limits": {"cpu": "500m", "memory": "512Mi"},
    }
    args = container["args"]
    assert container["command"] == ["sluice"] and args[0] == "deployer"
    assert args[args.index("--version") + 1] == "5" and args[args.index("--previous-version") + 1] == "4"
    assert {"name": "MLFLOW_TRACKING_URI", "value": "http://mlflow.mlops.svc:5000"} in container["env"]


@pytest.mark.process
def test_parsing_a_kubernetes_target_imports_no_kubernetes_client(tmp_path: Path) -> None:
    dags = tmp_path / "dags"
    dags.mkdir()
    (dags / "load_pipelines.py").write_text((REPO / "dags" / "load_pipelines.py").read_text())
    write_spec(dags)
    report = parse(dags)
    assert report["import_errors"] == {}
    assert "flights_delay__train" in report["dags"]
    assert report["heavy_modules"] == [] and report["heavy_anywhere"] == []
    assert report["dags"]["flights_delay__train"]["retries"]["deploy"] == 1
