"""Kubernetes manifests sluice applies, as plain dicts: labels, Deployment, Service, RBAC, deployer pod.

Pure builders (no client, no I/O), so ``sluice plan --manifests``, the schema tests and the
deployer all see the same objects; the API calls are in :mod:`sluice.services.kubernetes`.

Every pod sluice creates runs under the Kubernetes *restricted* Pod Security Standard:
non-root, no privilege escalation, every capability dropped, read-only root filesystem
(writable ``/tmp`` is an ``emptyDir``), ``RuntimeDefault`` seccomp.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sluice.spec.models import KubernetesDeployment, Resources

LABEL_PIPELINE = "sluice.io/pipeline"
LABEL_VERSION = "sluice.io/model-version"
LABEL_RUN = "sluice.io/run-id"
LABEL_COMPONENT = "app.kubernetes.io/component"
ANNOTATION_RUN = "sluice.io/airflow-run-id"
ANNOTATION_APPLIED = "sluice.io/last-applied"
SERVING_UID = 10001
DEPLOYER_UID = 50000  # the official Airflow image's "airflow" user


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


def serve_args(storage_root: str, id_column: str | None) -> list[str]:
    """``sluice serve``'s prediction-log arguments in a pod: only an object-store root (a pod
    cannot reach a local folder of the Airflow machine); its keys come from ``env_from_secrets``."""
    if "://" not in storage_root:
        return []
    return ["--storage-root", storage_root, *(["--id-column", id_column] if id_column else [])]


def _serving_container(
    pipeline: str, cfg: KubernetesDeployment, version: str, extra_args: Sequence[str] = ()
) -> dict[str, Any]:
    """The model server container: ``sluice serve`` of one version, probes on ``/ping``, restricted."""
    return {
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
            *extra_args,
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


def deployment_manifest(
    pipeline: str, cfg: KubernetesDeployment, version: str, run_id: str, extra_args: Sequence[str] = ()
) -> dict[str, Any]:
    """The model server's Deployment, pinned to ``models:/<pipeline>/<version>``.

    ``extra_args`` are more ``sluice serve`` arguments (:func:`serve_args`: the prediction log).

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
    container = _serving_container(pipeline, cfg, version, extra_args)
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


def deployer_args(
    pipeline: str, cfg: KubernetesDeployment, version: str, previous: str, run_id: str, extra_args: Sequence[str] = ()
) -> list[str]:
    """Arguments of ``sluice deployer`` (the deployer pod's command after ``sluice``); ``extra_args``
    (:func:`serve_args`) are passed on to the model server."""
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
        *extra_args,
    ]


def deployer_pod(
    pipeline: str, cfg: KubernetesDeployment, version: str, previous: str, run_id: str, extra_args: Sequence[str] = ()
) -> dict[str, Any]:
    """The pod that runs ``sluice deployer`` in the project image (``extra_args``: see :func:`deployer_args`).

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
                "args": deployer_args(pipeline, cfg, version, previous, run_id, extra_args),
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
