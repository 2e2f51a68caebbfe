"""Kubernetes: the manifests sluice applies (plain dicts) and the few API calls it makes.

Manifests are built here as plain dicts, so ``sluice plan --manifests``, the schema tests
and the deployer all see the same objects. The ``kubernetes`` client is imported inside
the functions that talk to a cluster, never at module level (the DAG file imports the plan,
and the plan must stay light).

Every pod sluice creates runs under the Kubernetes *restricted* Pod Security Standard:
non-root, no privilege escalation, every capability dropped, read-only root filesystem
(writable ``/tmp`` is an ``emptyDir``), ``RuntimeDefault`` seccomp.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from kubernetes.client import ApiClient

    from sluice.spec.models import KubernetesDeployment, Resources

FIELD_MANAGER = "sluice"
LABEL_PIPELINE = "sluice.io/pipeline"
LABEL_VERSION = "sluice.io/model-version"
LABEL_RUN = "sluice.io/run-id"
LABEL_COMPONENT = "app.kubernetes.io/component"
ANNOTATION_RUN = "sluice.io/airflow-run-id"
ANNOTATION_APPLIED = "sluice.io/last-applied"
SERVING_UID = 10001
DEPLOYER_UID = 50000  # the official Airflow image's "airflow" user
APPLY_CONTENT_TYPE = "application/apply-patch+yaml"
#: (connect, read) seconds for every call to the Kubernetes API: an API server that does not
#: answer fails the call (and `sluice status` says UNKNOWN) instead of hanging it.
REQUEST_TIMEOUT = (10, 30)


class RolloutFailed(RuntimeError):
    """A Deployment did not finish rolling out in time (or reported a failed rollout)."""


def object_name(pipeline: str) -> str:
    """Name of the Deployment and Service of a pipeline (DNS-1123: '_' becomes '-')."""
    return pipeline.replace("_", "-")


def label_value(text: str) -> str:
    """``text`` made into a valid label value (Airflow run ids contain ':' and '+')."""
    cleaned = re.sub(r"[^A-Za-z0-9_.-]+", "-", text)[:63]
    return re.sub(r"^[^A-Za-z0-9]+|[^A-Za-z0-9]+$", "", cleaned)


def common_labels(pipeline: str, cfg: KubernetesDeployment) -> dict[str, str]:
    """Labels on every object of a pipeline: spec labels first, sluice's own win."""
    return {
        **cfg.labels,
        "app.kubernetes.io/name": object_name(pipeline),
        "app.kubernetes.io/part-of": "sluice",
        "app.kubernetes.io/managed-by": "sluice",
        LABEL_PIPELINE: pipeline,
    }


def restricted_pod_security(uid: int, gid: int) -> dict[str, Any]:
    """Pod-level ``securityContext`` of the restricted profile."""
    return {
        "runAsNonRoot": True,
        "runAsUser": uid,
        "runAsGroup": gid,
        "fsGroup": gid,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def restricted_container_security() -> dict[str, Any]:
    """Container-level ``securityContext`` of the restricted profile."""
    return {
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def _resources(res: Resources) -> dict[str, Any]:
    return {"requests": res.requests.model_dump(), "limits": res.limits.model_dump()}


def _env(cfg: KubernetesDeployment) -> list[dict[str, Any]]:
    return [
        {"name": "MLFLOW_TRACKING_URI", "value": cfg.mlflow_tracking_uri},
        {"name": "MLFLOW_DISABLE_TELEMETRY", "value": "true"},
        {"name": "DO_NOT_TRACK", "value": "true"},
        # The root filesystem is read-only: anything that writes to $HOME writes to /tmp.
        {"name": "HOME", "value": "/tmp"},  # noqa: S108 - an emptyDir, private to the pod
    ]


def _env_from(cfg: KubernetesDeployment) -> list[dict[str, Any]]:
    return [{"secretRef": {"name": s}} for s in cfg.env_from_secrets]


def _pull_secrets(cfg: KubernetesDeployment) -> list[dict[str, str]]:
    return [{"name": s} for s in cfg.image_pull_secrets]


def serving_labels(pipeline: str, cfg: KubernetesDeployment) -> dict[str, str]:
    """The Deployment's selector: stable across versions (a selector is immutable)."""
    return {"app.kubernetes.io/name": object_name(pipeline), LABEL_PIPELINE: pipeline, LABEL_COMPONENT: "model-server"}


def deployment_manifest(pipeline: str, cfg: KubernetesDeployment, version: str, run_id: str) -> dict[str, Any]:
    """The model server's Deployment, pinned to ``models:/<pipeline>/<version>``.

    The pod template carries the model version, so a new version is a new ReplicaSet and
    ``kubectl rollout history`` shows one revision per deployed version. Rolling updates
    never take a ready pod away before its replacement is ready (``maxUnavailable: 0``).
    """
    labels = {
        **common_labels(pipeline, cfg),
        LABEL_COMPONENT: "model-server",
        LABEL_VERSION: str(version),
        LABEL_RUN: label_value(run_id),
    }
    annotations = {ANNOTATION_RUN: run_id}
    container = {
        "name": "model-server",
        "image": cfg.serving_image,
        "imagePullPolicy": cfg.image_pull_policy,
        "command": ["sluice"],
        "args": [
            "serve",
            "--model-uri",
            f"models:/{pipeline}/{version}",
            "--host",
            "0.0.0.0",  # noqa: S104 - a server in a pod listens on the pod's interfaces
            "--port",
            str(cfg.port),
            "--pipeline",
            pipeline,
            "--version",
            str(version),
        ],
        "ports": [{"name": "http", "containerPort": cfg.port, "protocol": "TCP"}],
        "env": _env(cfg),
        "envFrom": _env_from(cfg),
        "resources": _resources(cfg.resources),
        "securityContext": restricted_container_security(),
        "readinessProbe": {
            "httpGet": {"path": "/ping", "port": "http"},
            "periodSeconds": 5,
            "failureThreshold": 3,
        },
        "livenessProbe": {
            "httpGet": {"path": "/ping", "port": "http"},
            "periodSeconds": 10,
            "failureThreshold": 3,
        },
        # Loading the model can take a while; liveness only starts once it answered once.
        "startupProbe": {
            "httpGet": {"path": "/ping", "port": "http"},
            "periodSeconds": 5,
            "failureThreshold": max(1, cfg.rollout_timeout_seconds // 5),
        },
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],  # noqa: S108
    }
    pod_spec: dict[str, Any] = {
        "serviceAccountName": cfg.serving_service_account,
        "automountServiceAccountToken": False,
        "securityContext": restricted_pod_security(SERVING_UID, SERVING_UID),
        "containers": [container],
        "volumes": [{"name": "tmp", "emptyDir": {}}],
    }
    if cfg.image_pull_secrets:
        pod_spec["imagePullSecrets"] = _pull_secrets(cfg)
    manifest: dict[str, Any] = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": object_name(pipeline),
            "namespace": cfg.namespace,
            "labels": labels,
            "annotations": dict(annotations),
        },
        "spec": {
            "replicas": cfg.replicas,
            "revisionHistoryLimit": 5,
            "progressDeadlineSeconds": cfg.rollout_timeout_seconds,
            "selector": {"matchLabels": serving_labels(pipeline, cfg)},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
            "template": {"metadata": {"labels": labels, "annotations": annotations}, "spec": pod_spec},
        },
    }
    # What was applied travels with the object (as kubectl's last-applied-configuration
    # does), so a rollback restores exactly the previous manifest, not a re-rendering of it.
    manifest["metadata"]["annotations"][ANNOTATION_APPLIED] = json.dumps(manifest, sort_keys=True)
    return manifest


def last_applied(dep: dict[str, Any]) -> dict[str, Any]:
    """The manifest sluice applied to produce a live Deployment.

    Falls back to the live object's spec when the annotation is missing (a Deployment
    created by hand), which a server-side apply accepts as well.
    """
    meta = dep.get("metadata", {})
    raw = (meta.get("annotations") or {}).get(ANNOTATION_APPLIED)
    if raw:
        manifest = dict(json.loads(raw))
        manifest["metadata"]["annotations"][ANNOTATION_APPLIED] = raw
        return manifest
    keep = ("name", "namespace", "labels", "annotations")
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {k: meta[k] for k in keep if k in meta},
        "spec": dep["spec"],
    }


def served_version(dep: dict[str, Any] | None) -> str | None:
    """Model version a live Deployment is pinned to, or None."""
    if dep is None:
        return None
    return (dep.get("metadata", {}).get("labels") or {}).get(LABEL_VERSION)


def service_manifest(pipeline: str, cfg: KubernetesDeployment) -> dict[str, Any]:
    """The ClusterIP Service in front of the model server (stable across versions)."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": object_name(pipeline),
            "namespace": cfg.namespace,
            "labels": {**common_labels(pipeline, cfg), LABEL_COMPONENT: "model-server"},
        },
        "spec": {
            "type": "ClusterIP",
            "selector": serving_labels(pipeline, cfg),
            "ports": [{"name": "http", "port": cfg.port, "targetPort": "http", "protocol": "TCP"}],
        },
    }


def rbac_manifests(pipeline: str, cfg: KubernetesDeployment) -> list[dict[str, Any]]:
    """ServiceAccount, Role and RoleBinding the deployer pod needs, scoped to the namespace.

    The deployer reads, creates and patches (server-side apply) Deployments and Services,
    and deletes the Deployment only when the very first deploy of a pipeline fails.
    It never touches pods, secrets or anything outside its namespace.
    """
    # Shared by every pipeline that deploys to the namespace: no per-pipeline labels.
    labels = {
        **cfg.labels,
        "app.kubernetes.io/part-of": "sluice",
        "app.kubernetes.io/managed-by": "sluice",
        LABEL_COMPONENT: "deployer",
    }
    meta = {"namespace": cfg.namespace, "labels": labels}
    role = cfg.service_account
    return [
        {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": {"name": cfg.service_account, **meta},
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": {"name": role, **meta},
            "rules": [
                {
                    "apiGroups": ["apps"],
                    "resources": ["deployments"],
                    "verbs": ["get", "list", "watch", "create", "patch", "delete"],
                },
                {"apiGroups": [""], "resources": ["services"], "verbs": ["get", "create", "patch"]},
            ],
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": {"name": role, **meta},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": role},
            "subjects": [{"kind": "ServiceAccount", "name": cfg.service_account, "namespace": cfg.namespace}],
        },
    ]


def launcher_role(pipeline: str, cfg: KubernetesDeployment) -> dict[str, Any]:
    """The Role the identity of Airflow's ``conn_id`` (or in-cluster worker) needs to run the deployer pod."""
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "Role",
        "metadata": {
            "name": "sluice-pod-launcher",
            "namespace": cfg.namespace,
            "labels": {
                **cfg.labels,
                "app.kubernetes.io/part-of": "sluice",
                "app.kubernetes.io/managed-by": "sluice",
                LABEL_COMPONENT: "launcher",
            },
        },
        "rules": [
            {
                "apiGroups": [""],
                "resources": ["pods"],
                "verbs": ["create", "get", "list", "watch", "delete", "patch"],
            },
            {"apiGroups": [""], "resources": ["pods/log"], "verbs": ["get"]},
            {"apiGroups": [""], "resources": ["events"], "verbs": ["list"]},
        ],
    }


def deployer_args(pipeline: str, cfg: KubernetesDeployment, version: str, previous: str, run_id: str) -> list[str]:
    """Arguments of ``sluice deployer`` (the deployer pod's command after ``sluice``)."""
    return [
        "deployer",
        "--pipeline",
        pipeline,
        "--version",
        version,
        "--previous-version",
        previous,
        "--run-id",
        run_id,
        "--settings",
        cfg.model_dump_json(),
    ]


def deployer_pod(pipeline: str, cfg: KubernetesDeployment, version: str, previous: str, run_id: str) -> dict[str, Any]:
    """The pod that runs ``sluice deployer`` in the project image.

    ``version``, ``previous`` and ``run_id`` may be Jinja templates; the KubernetesPodOperator
    renders them before it creates the pod. The container is named ``base``, the name the
    operator expects for its main container.
    """
    labels = {**common_labels(pipeline, cfg), LABEL_COMPONENT: "deployer"}
    spec: dict[str, Any] = {
        "serviceAccountName": cfg.service_account,
        "restartPolicy": "Never",
        # Deleted mid-rollout, the deployer rolls back on SIGTERM: give it time to do so.
        "terminationGracePeriodSeconds": 120,
        "securityContext": restricted_pod_security(DEPLOYER_UID, 0),
        "containers": [
            {
                "name": "base",
                "image": cfg.image,
                "imagePullPolicy": cfg.image_pull_policy,
                "command": ["sluice"],
                "args": deployer_args(pipeline, cfg, version, previous, run_id),
                "env": _env(cfg),
                "envFrom": _env_from(cfg),
                "resources": _resources(cfg.deployer_resources),
                "securityContext": restricted_container_security(),
                "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],  # noqa: S108
            }
        ],
        "volumes": [{"name": "tmp", "emptyDir": {}}],
    }
    if cfg.image_pull_secrets:
        spec["imagePullSecrets"] = _pull_secrets(cfg)
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"namespace": cfg.namespace, "labels": labels},
        "spec": spec,
    }


# ---------------------------------------------------------------- talking to a cluster


def connect(kubeconfig: str | None = None) -> ApiClient:
    """An API client: the pod's service account in a cluster, else the kubeconfig.

    Args:
        kubeconfig: Path of a kubeconfig; default ``$KUBECONFIG`` or ``~/.kube/config``.
    """
    from kubernetes import client, config

    if kubeconfig is None:
        try:
            config.load_incluster_config()
            return client.ApiClient()
        except config.ConfigException:
            pass
    cfg = client.Configuration()
    config.load_kube_config(config_file=kubeconfig, client_configuration=cfg)
    return client.ApiClient(cfg)


def read(api: ApiClient, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
    """The live object as a dict (camelCase, as ``kubectl get -o json``), or None."""
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    calls: dict[str, Callable[..., Any]] = {
        "Deployment": client.AppsV1Api(api).read_namespaced_deployment,
        "Service": client.CoreV1Api(api).read_namespaced_service,
    }
    try:
        obj = calls[kind](name, namespace, _preload_content=False, _request_timeout=REQUEST_TIMEOUT)
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise
    return dict(json.loads(obj.data))


def apply(api: ApiClient, manifest: dict[str, Any]) -> dict[str, Any]:
    """Server-side apply ``manifest`` (field manager ``sluice``, conflicts forced).

    Server-side apply creates the object when it does not exist and otherwise changes only
    the fields sluice owns; applying the same manifest twice changes nothing.
    """
    from kubernetes import client

    kind = manifest["kind"]
    name = manifest["metadata"]["name"]
    namespace = manifest["metadata"]["namespace"]
    calls: dict[str, Callable[..., Any]] = {
        "Deployment": client.AppsV1Api(api).patch_namespaced_deployment,
        "Service": client.CoreV1Api(api).patch_namespaced_service,
    }
    resp = calls[kind](
        name,
        namespace,
        manifest,
        field_manager=FIELD_MANAGER,
        force=True,
        _content_type=APPLY_CONTENT_TYPE,
        _preload_content=False,
        _request_timeout=REQUEST_TIMEOUT,
    )
    return dict(json.loads(resp.data))


def delete_deployment(api: ApiClient, namespace: str, name: str) -> None:
    """Delete a Deployment (and, through the garbage collector, its pods)."""
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    try:
        client.AppsV1Api(api).delete_namespaced_deployment(
            name, namespace, propagation_policy="Foreground", _request_timeout=REQUEST_TIMEOUT
        )
    except ApiException as exc:
        if exc.status != 404:
            raise


@dataclass(frozen=True)
class Rollout:
    """Where a Deployment's rollout stands (the rules of ``kubectl rollout status``)."""

    done: bool
    failed: bool
    message: str


def rollout_state(dep: dict[str, Any]) -> Rollout:
    """Judge a live Deployment dict."""
    meta, spec, status = dep.get("metadata", {}), dep.get("spec", {}), dep.get("status") or {}
    generation = int(meta.get("generation") or 0)
    observed = int(status.get("observedGeneration") or 0)
    if observed < generation or not status:
        return Rollout(False, False, "waiting for the controller to observe the new spec")
    for cond in status.get("conditions") or []:
        if cond.get("type") == "Progressing" and cond.get("reason") == "ProgressDeadlineExceeded":
            return Rollout(False, True, f"progress deadline exceeded: {cond.get('message', '')}")
    want = int(spec.get("replicas", 1))
    updated = int(status.get("updatedReplicas") or 0)
    total = int(status.get("replicas") or 0)
    available = int(status.get("availableReplicas") or 0)
    if updated < want:
        return Rollout(False, False, f"{updated} of {want} new replicas updated")
    if total > updated:
        return Rollout(False, False, f"{total - updated} old replicas pending termination")
    if available < updated:
        return Rollout(False, False, f"{available} of {updated} updated replicas available")
    return Rollout(True, False, f"{available} of {want} replicas available")


def wait_for_rollout(
    api: ApiClient, namespace: str, name: str, timeout: float, poll: float = 2.0, log: Callable[[str], None] = print
) -> dict[str, Any]:
    """Poll the Deployment until its rollout is complete.

    Raises:
        RolloutFailed: the deadline passed, the Deployment reports ProgressDeadlineExceeded,
            or it disappeared.
    """
    deadline = time.monotonic() + timeout
    last = ""
    from kubernetes.client.exceptions import ApiException
    from urllib3.exceptions import HTTPError

    while True:
        try:
            dep = read(api, "Deployment", namespace, name)
        except (ApiException, HTTPError, OSError) as exc:
            # A blip of the API server (5xx, connection reset) is not a failed rollout:
            # keep polling until the deadline; anything else (403, 401) is final.
            status = getattr(exc, "status", None)
            if (status is not None and int(status) < 500) or time.monotonic() >= deadline:
                raise
            log(f"rollout {namespace}/{name}: API error while polling, retrying: {exc!r}")
            time.sleep(poll)
            continue
        if dep is None:
            raise RolloutFailed(f"deployment {namespace}/{name} disappeared during the rollout")
        state = rollout_state(dep)
        if state.message != last:
            log(f"rollout {namespace}/{name}: {state.message}")
            last = state.message
        if state.done:
            return dep
        if state.failed:
            raise RolloutFailed(f"deployment {namespace}/{name}: {state.message}")
        if time.monotonic() >= deadline:
            raise RolloutFailed(f"deployment {namespace}/{name} not rolled out after {timeout:.0f}s: {state.message}")
        time.sleep(poll)
