"""The ``kubernetes`` deploy target: what ``sluice deployer`` does inside the deployer pod.

Order of events:

1. Read the live Deployment. If it already serves ``version`` and its rollout is complete,
   change nothing (a retry after success is a no-op) beyond making sure ``@champion``
   names that version.
2. Server-side apply the Service and a Deployment pinned to ``models:/<pipeline>/<version>``.
3. Wait for the rollout (``rollout_timeout_seconds``).
4. On failure: re-apply the previously applied Deployment manifest (or delete the
   Deployment if this was the first deploy), wait for it, point ``@champion`` back at the
   previous champion, and raise :class:`KubernetesDeployFailed` (the pod exits 1, the
   Airflow task fails, the ``deploy`` alert goes out).

The invariant after every attempt, successful or not: ``@champion`` names the version
the cluster serves.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from sluice.services import kube_manifests as km
from sluice.services import kubernetes as k8s
from sluice.steps.records import KubernetesDeployResult as KubernetesDeployResult

if TYPE_CHECKING:
    from kubernetes.client import ApiClient

    from sluice.spec.models import KubernetesDeployment


class KubernetesDeployFailed(RuntimeError):
    """The rollout failed; the previous version was restored (see the message)."""


def _set_champion(pipeline: str, tracking_uri: str, want: str | None, only_if: set[str | None], log: Any) -> str | None:
    """Point ``@champion`` at ``want`` (None: remove it) if it currently names one of ``only_if``.

    The guard keeps a deploy from overwriting an alias somebody else moved meanwhile.

    Returns:
        The version ``@champion`` names afterwards.
    """
    from sluice.services import tracking

    client = tracking.configure_uri(tracking_uri)
    current = tracking.champion(client, pipeline)
    now = str(current.version) if current is not None else None
    if now == want:
        return now
    if now not in only_if:
        log(f"@champion of {pipeline} is v{now}, expected one of {sorted(map(str, only_if))}: left alone")
        return now
    if want is None:
        client.delete_registered_model_alias(pipeline, tracking.CHAMPION)
        log(f"@champion of {pipeline} removed (was v{now}): no version serves")
    else:
        client.set_registered_model_alias(pipeline, tracking.CHAMPION, want)
        log(f"@champion of {pipeline}: v{now} -> v{want}")
    return want


def deploy_kubernetes(
    pipeline: str,
    cfg: KubernetesDeployment,
    version: str,
    previous_champion: str | None,
    run_id: str,
    api: ApiClient | None = None,
    log: Callable[[str], None] = print,
    poll_seconds: float = 2.0,
    serve_args: Sequence[str] = (),
) -> KubernetesDeployResult:
    """Roll ``models:/<pipeline>/<version>`` out as the pipeline's Deployment.

    Args:
        pipeline: Pipeline name (also the registered model name).
        cfg: The spec's ``deployment.kubernetes``.
        version: Registered model version to serve (pinned, not an alias).
        previous_champion: Champion before this promotion (from the promote step), or None.
        run_id: Airflow run id, recorded on the objects.
        api: API client; default: in-cluster service account, else kubeconfig.
        log: Where progress lines go (the pod log).
        poll_seconds: Interval of rollout polling.
        serve_args: More ``sluice serve`` arguments (:func:`sluice.services.kube_manifests.serve_args`).

    Returns:
        What is served now.

    Raises:
        KubernetesDeployFailed: the rollout failed and the previous version was restored.
    """
    name, ns = km.object_name(pipeline), cfg.namespace
    where = f"{ns}/{name}"
    url = f"http://{name}.{ns}.svc:{cfg.port}"
    version = str(version)
    try:
        api = api or k8s.connect()
        live = k8s.read(api, "Deployment", ns, name)
    except Exception as exc:
        # Nothing was changed in the cluster: it still serves what it served.
        now = _set_champion(pipeline, cfg.mlflow_tracking_uri, previous_champion, {version}, log)
        raise KubernetesDeployFailed(
            f"cannot read deployment {where} ({exc!r}); nothing was changed; {_alias_note(now)}"
        ) from exc
    served = km.served_version(live)
    changed = not (live is not None and served == version and k8s.rollout_state(live).done)
    if not changed:
        if k8s.read(api, "Service", ns, name) is None:
            k8s.apply(api, km.service_manifest(pipeline, cfg))
            log(f"service {where} was missing: re-created")
        log(f"deployment {where} already serves v{version}, rolled out: nothing to do")
        _set_champion(pipeline, cfg.mlflow_tracking_uri, version, {previous_champion, served}, log)
    else:
        log(f"deploying models:/{pipeline}/{version} to {where} (serving now: v{served})")
        _roll_out(api, pipeline, cfg, version, previous_champion, run_id, live, poll_seconds, log, serve_args)
        # After a rollback and a successful retry, the alias the rollback restored moves forward again.
        _set_champion(pipeline, cfg.mlflow_tracking_uri, version, {previous_champion, served, None}, log)
        log(f"deployment {where} serves v{version} ({url})")
    return KubernetesDeployResult(
        version=version, previous_version=served, changed=changed, deployment=where, service=url
    )


def _roll_out(
    api: ApiClient,
    pipeline: str,
    cfg: KubernetesDeployment,
    version: str,
    previous_champion: str | None,
    run_id: str,
    live: dict[str, Any] | None,
    poll_seconds: float,
    log: Callable[[str], None],
    serve_args: Sequence[str] = (),
) -> None:
    """Apply Service and Deployment and wait; on failure restore what served before and raise.

    Raises:
        KubernetesDeployFailed: the rollout failed; the previous version was restored.
    """
    name, ns = km.object_name(pipeline), cfg.namespace
    where = f"{ns}/{name}"
    try:
        k8s.apply(api, km.service_manifest(pipeline, cfg))
        k8s.apply(api, km.deployment_manifest(pipeline, cfg, version, run_id, serve_args))
        k8s.wait_for_rollout(api, ns, name, cfg.rollout_timeout_seconds, poll_seconds, log)
    except Exception as exc:
        # A failed rollout, or an API error (forbidden, invalid, unreachable) mid-way: either
        # way, put back what served before and point the alias at it.
        reason = str(exc) if isinstance(exc, k8s.RolloutFailed) else repr(exc)
        log(f"rollout of v{version} failed: {reason}")
        try:
            restored = _roll_back(api, cfg, ns, name, live, poll_seconds, log)
        except Exception as again:
            restored = f"the rollback failed too ({again!r}): check {where} by hand"
        back_to = previous_champion if previous_champion else km.served_version(live)
        now = _set_champion(pipeline, cfg.mlflow_tracking_uri, back_to, {version}, log)
        raise KubernetesDeployFailed(
            f"rollout of models:/{pipeline}/{version} to {where} failed ({reason}); {restored}; {_alias_note(now)}"
        ) from None


def _alias_note(now: str | None) -> str:
    return f"@champion is v{now}" if now else "there is no @champion"


def _roll_back(
    api: ApiClient,
    cfg: KubernetesDeployment,
    ns: str,
    name: str,
    live: dict[str, Any] | None,
    poll_seconds: float,
    log: Callable[[str], None],
) -> str:
    if live is None:
        k8s.delete_deployment(api, ns, name)
        log(f"first deploy of {ns}/{name} failed: deployment deleted")
        return "nothing was served before, the deployment was deleted"
    previous = km.served_version(live)
    k8s.apply(api, km.last_applied(live))
    log(f"rolling {ns}/{name} back to v{previous}")
    try:
        k8s.wait_for_rollout(api, ns, name, cfg.rollout_timeout_seconds, poll_seconds, log)
    except k8s.RolloutFailed as again:
        return f"rolled back to v{previous}, but that rollout did not complete either: {again}"
    return f"rolled back to v{previous}"
