"""Kubernetes API calls sluice makes: connect, read, server-side apply, delete, wait for a rollout.

The ``kubernetes`` client is imported inside the functions that talk to a cluster, never at
module level (the DAG file imports the plan, and the plan must stay light). The objects
applied are built by :mod:`sluice.services.kube_manifests`.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from kubernetes.client import ApiClient

FIELD_MANAGER = "sluice"
APPLY_CONTENT_TYPE = "application/apply-patch+yaml"
#: (connect, read) seconds for every call to the Kubernetes API: an API server that does not
#: answer fails the call (and `sluice status` says UNKNOWN) instead of hanging it.
REQUEST_TIMEOUT = (10, 30)


class RolloutFailed(RuntimeError):
    """A Deployment did not finish rolling out in time (or reported a failed rollout)."""


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


class _NotYet(Exception):
    """The rollout is still going: poll again."""


class _Blip(Exception):
    """The API server failed the read (5xx, connection): poll again; the cause is the error."""


def wait_for_rollout(
    api: ApiClient, namespace: str, name: str, timeout: float, poll: float = 2.0, log: Callable[[str], None] = print
) -> dict[str, Any]:
    """Poll the Deployment until its rollout is complete.

    Raises:
        RolloutFailed: the deadline passed, the Deployment reports ProgressDeadlineExceeded,
            or it disappeared.
    """
    import tenacity
    from kubernetes.client.exceptions import ApiException
    from urllib3.exceptions import HTTPError

    seen = [""]

    def check() -> dict[str, Any]:
        try:
            dep = read(api, "Deployment", namespace, name)
        except (ApiException, HTTPError, OSError) as exc:
            # A blip of the API server (5xx, connection reset) is not a failed rollout:
            # keep polling until the deadline; anything else (403, 401) is final.
            status = getattr(exc, "status", None)
            if status is not None and int(status) < 500:
                raise
            log(f"rollout {namespace}/{name}: API error while polling, retrying: {exc!r}")
            raise _Blip() from exc
        if dep is None:
            raise RolloutFailed(f"deployment {namespace}/{name} disappeared during the rollout")
        state = rollout_state(dep)
        if state.message != seen[0]:
            log(f"rollout {namespace}/{name}: {state.message}")
            seen[0] = state.message
        if state.failed and not state.done:
            raise RolloutFailed(f"deployment {namespace}/{name}: {state.message}")
        if not state.done:
            raise _NotYet()
        return dep

    retrying = tenacity.Retrying(
        stop=tenacity.stop_after_delay(timeout),
        wait=tenacity.wait_fixed(poll),
        retry=tenacity.retry_if_exception_type((_NotYet, _Blip)),
    )
    try:
        return retrying(check)
    except tenacity.RetryError as gave_up:
        last = gave_up.last_attempt.exception()
        if isinstance(last, _Blip) and last.__cause__ is not None:
            raise last.__cause__ from None
        raise RolloutFailed(f"deployment {namespace}/{name} not rolled out after {timeout:.0f}s: {seen[0]}") from None
