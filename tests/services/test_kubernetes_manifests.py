"""The Kubernetes manifests sluice applies: valid against the API schema, restricted, pinned."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from tests.conftest import REPO
from tests.kube import KUBERNETES_VERSIONS, kubernetes_spec

from sluice.cli import main
from sluice.services import kube_manifests as km
from sluice.services import kubernetes as k8s
from sluice.spec.loader import load_spec
from sluice.spec.models import KubernetesDeployment


@pytest.fixture()
def spec_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("SLUICE_PROJECT_DIR", str(REPO))
    path = tmp_path / "flights_delay.pipeline.yaml"
    path.write_text(yaml.safe_dump(kubernetes_spec(image_pull_secrets=["regcred"], env_from_secrets=["s3-creds"])))
    return path


@pytest.fixture()
def manifests(spec_file: Path, capsys: pytest.CaptureFixture[str]) -> list[dict[str, Any]]:
    """What ``sluice plan SPEC --manifests`` prints, parsed."""
    assert main(["plan", str(spec_file), "--manifests", "--model-version", "7", "--previous-version", "6"]) == 0
    return [d for d in yaml.safe_load_all(capsys.readouterr().out) if d]


def cfg(spec_file: Path) -> KubernetesDeployment:
    found = load_spec(spec_file).spec.deployment.kubernetes
    assert found is not None
    return found


def test_plan_manifests_prints_every_object_the_deploy_needs(manifests: list[dict[str, Any]]) -> None:
    kinds = [(m["kind"], m["metadata"].get("name")) for m in manifests]
    assert kinds == [
        ("ServiceAccount", "sluice-deployer"),
        ("Role", "sluice-deployer"),
        ("RoleBinding", "sluice-deployer"),
        ("Role", "sluice-pod-launcher"),
        ("Pod", None),  # the KubernetesPodOperator names it
        ("Service", "flights-delay"),
        ("Deployment", "flights-delay"),
    ]
    assert {m["metadata"]["namespace"] for m in manifests} == {"ml-serving"}


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_every_manifest_validates_against_the_kubernetes_schema(manifests: list[dict[str, Any]], version: str) -> None:
    for manifest in manifests:
        kubernetes_validate.validate(manifest, version, strict=True)


def test_schema_validation_catches_a_broken_manifest(manifests: list[dict[str, Any]]) -> None:
    deployment = manifests[-1]
    deployment["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"] = "http"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSIONS[0], strict=True)


def pod_specs(manifests: list[dict[str, Any]]) -> list[dict[str, Any]]:
    by_kind = {m["kind"]: m for m in manifests}
    return [by_kind["Pod"]["spec"], by_kind["Deployment"]["spec"]["template"]["spec"]]


def test_pods_run_under_the_restricted_security_profile(manifests: list[dict[str, Any]]) -> None:
    for spec in pod_specs(manifests):
        assert spec["securityContext"]["runAsNonRoot"] is True
        assert spec["securityContext"]["runAsUser"] > 0
        assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        for container in spec["containers"]:
            sc = container["securityContext"]
            assert sc["allowPrivilegeEscalation"] is False
            assert sc["capabilities"] == {"drop": ["ALL"]}
            assert sc["readOnlyRootFilesystem"] is True
            assert sc["seccompProfile"] == {"type": "RuntimeDefault"}
            assert container["resources"]["requests"] and container["resources"]["limits"]
            # a read-only root filesystem needs a writable /tmp
            assert {"name": "tmp", "mountPath": "/tmp"} in container["volumeMounts"]
        assert {"name": "tmp", "emptyDir": {}} in spec["volumes"]
        assert spec["imagePullSecrets"] == [{"name": "regcred"}]
        assert not spec.get("hostNetwork") and not spec.get("hostPID")


def test_deployment_is_pinned_to_the_registered_version_with_labels(manifests: list[dict[str, Any]]) -> None:
    dep = next(m for m in manifests if m["kind"] == "Deployment")
    labels = dep["spec"]["template"]["metadata"]["labels"]
    assert labels[km.LABEL_PIPELINE] == "flights_delay"
    assert labels[km.LABEL_VERSION] == "7"
    assert labels[km.LABEL_RUN] == "manual__plan"
    assert labels["team"] == "data-eng"
    container = dep["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == "registry.example.com/sluice-serving:0.1.0"
    assert "models:/flights_delay/7" in container["args"]
    assert not any("@" in a for a in container["args"]), "never a moving alias"
    assert container["envFrom"] == [{"secretRef": {"name": "s3-creds"}}]
    # the selector must not contain the version: it is immutable and spans versions
    assert km.LABEL_VERSION not in dep["spec"]["selector"]["matchLabels"]
    assert dep["spec"]["strategy"]["rollingUpdate"] == {"maxSurge": 1, "maxUnavailable": 0}
    assert dep["spec"]["template"]["spec"]["automountServiceAccountToken"] is False


def test_deployer_pod_runs_the_deployer_in_the_project_image(manifests: list[dict[str, Any]]) -> None:
    pod = next(m for m in manifests if m["kind"] == "Pod")
    (container,) = pod["spec"]["containers"]
    assert container["name"] == "base"
    assert container["image"] == "registry.example.com/sluice:0.1.0"
    assert container["command"] == ["sluice"]
    args = container["args"]
    assert args[args.index("--version") + 1] == "7" and args[args.index("--previous-version") + 1] == "6"
    assert pod["spec"]["serviceAccountName"] == "sluice-deployer"
    assert pod["spec"]["restartPolicy"] == "Never"


def test_deployer_role_is_namespaced_and_minimal(manifests: list[dict[str, Any]]) -> None:
    role = next(m for m in manifests if m["kind"] == "Role" and m["metadata"]["name"] == "sluice-deployer")
    resources = {r for rule in role["rules"] for r in rule["resources"]}
    assert resources == {"deployments", "services"}
    assert not any("*" in rule["verbs"] for rule in role["rules"])
    binding = next(m for m in manifests if m["kind"] == "RoleBinding")
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "sluice-deployer", "namespace": "ml-serving"}]


def test_rollback_restores_exactly_the_manifest_that_was_applied(spec_file: Path) -> None:
    applied = km.deployment_manifest("flights_delay", cfg(spec_file), "3", "scheduled__2026-01-01T00:00:00+00:00")
    live = {**applied, "status": {"replicas": 2}, "metadata": {**applied["metadata"], "generation": 4, "uid": "u"}}
    assert km.last_applied(live) == applied
    assert km.served_version(live) == "3"


def test_plan_manifests_of_a_local_target_is_an_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plan", str(REPO / "dags" / "flights_delay.pipeline.yaml"), "--manifests"]) == 1
    assert "deployment.target is 'local'" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("run_id", "label"),
    [
        ("manual__2026-11-22T01:00:00+00:00", "manual__2026-11-22T01-00-00-00-00"),
        ("scheduled__x" + "y" * 80, ("scheduled__x" + "y" * 80)[:63]),
        ("+weird+", "weird"),
    ],
)
def test_run_ids_become_valid_label_values(run_id: str, label: str) -> None:
    assert km.label_value(run_id) == label


def dep_with(status: dict[str, Any], generation: int = 2, replicas: int = 2) -> dict[str, Any]:
    return {"metadata": {"generation": generation}, "spec": {"replicas": replicas}, "status": status}


@pytest.mark.parametrize(
    ("status", "done", "failed"),
    [
        ({}, False, False),
        ({"observedGeneration": 1, "updatedReplicas": 2, "replicas": 2, "availableReplicas": 2}, False, False),
        ({"observedGeneration": 2, "updatedReplicas": 1, "replicas": 3, "availableReplicas": 2}, False, False),
        ({"observedGeneration": 2, "updatedReplicas": 2, "replicas": 3, "availableReplicas": 2}, False, False),
        ({"observedGeneration": 2, "updatedReplicas": 2, "replicas": 2, "availableReplicas": 1}, False, False),
        ({"observedGeneration": 2, "updatedReplicas": 2, "replicas": 2, "availableReplicas": 2}, True, False),
        (
            {
                "observedGeneration": 2,
                "updatedReplicas": 1,
                "conditions": [{"type": "Progressing", "reason": "ProgressDeadlineExceeded", "message": "slow"}],
            },
            False,
            True,
        ),
    ],
)
def test_rollout_state_follows_kubectl_rollout_status(status: dict[str, Any], done: bool, failed: bool) -> None:
    state = k8s.rollout_state(dep_with(status))
    assert (state.done, state.failed) == (done, failed)


def test_plan_manifests_rbac_prints_only_what_an_admin_applies_once(
    spec_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["plan", str(spec_file), "--manifests", "--rbac"]) == 0
    docs = [d for d in yaml.safe_load_all(capsys.readouterr().out) if d]
    assert [d["kind"] for d in docs] == ["ServiceAccount", "Role", "RoleBinding", "Role"]


def test_model_server_pods_log_predictions_to_an_s3_root_never_to_a_local_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("SLUICE_PROJECT_DIR", str(REPO))
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "k")  # boto3's own credentials stand for aws_default
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "s")
    spec = kubernetes_spec(env_from_secrets=["s3-creds"])
    spec["storage"] = {"root": "s3://ml-state/sluice"}
    path = tmp_path / "flights_delay.pipeline.yaml"
    path.write_text(yaml.safe_dump(spec))
    assert main(["plan", str(path), "--manifests", "--model-version", "7"]) == 0
    out = capsys.readouterr().out
    out = out[out.index("# RBAC") :]  # botocore says where it found the keys first
    by_kind = {d["kind"]: d for d in yaml.safe_load_all(out) if d}
    serving = by_kind["Deployment"]["spec"]["template"]["spec"]["containers"][0]
    assert serving["args"][-2:] == ["--storage-root", "s3://ml-state/sluice"]
    assert serving["envFrom"] == [{"secretRef": {"name": "s3-creds"}}], "the keys come from the named secret"
    deployer = by_kind["Pod"]["spec"]["containers"][0]["args"]
    assert deployer[deployer.index("--storage-root") + 1] == "s3://ml-state/sluice"


def test_a_local_storage_root_is_not_given_to_pods(manifests: list[dict[str, Any]]) -> None:
    dep = next(m for m in manifests if m["kind"] == "Deployment")
    assert "--storage-root" not in dep["spec"]["template"]["spec"]["containers"][0]["args"]
