"""Deploy targets: one interface over "where the champion is served", and a registry of them.

Everything that asks "what is served now?" (``sluice status``, ``sluice plan``, the deploy
alert) asks the pipeline's target through :func:`target_for`, never a target's record
directly. Each target answers from its own source of truth: the ``local`` target from its
deploy record checked against the live process, the ``kubernetes`` target from the
Deployment in the cluster. The deploy logic itself stays in :mod:`sluice.steps.deploy` and
:mod:`sluice.steps.deploy_kubernetes`; a target only delegates to it.

Adding a target: a package declares a :class:`sluice.spec.targets.TargetSpec` (settings
model, deploy step) under the ``sluice.deploy_targets`` entry point and names, as its
``runtime``, a class that satisfies :class:`DeployTarget` (subclassing :class:`TargetBase`
gives the optional answers their defaults). No sluice file changes; see ``CONTRIBUTING.md``.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from sluice.services import kube_manifests as km
from sluice.services import kubernetes as k8s
from sluice.settings import settings
from sluice.spec.models import KUBERNETES, LOCAL, registered_targets
from sluice.spec.plugins import PluginError

if TYPE_CHECKING:
    from kubernetes.client import ApiClient

    from sluice.services.storage import PipelineStore
    from sluice.spec.loader import LoadedSpec
    from sluice.steps.deploy import ServerProcess
    from sluice.steps.records import DeployResult, KubernetesDeployResult, LocalDeployResult, ServingCheck


class StopRefused(RuntimeError):
    """A target that does not stop serving from ``sluice stop``; the message says what to do instead."""


@dataclass(frozen=True)
class Served:
    """What a target serves now, as read from its source of truth.

    Attributes:
        target: Name of the target ('local', 'kubernetes', ...).
        version: Model version the target is pinned to; None when nothing is served
            (or when the source of truth could not be read).
        url: Where clients call the model server ('' when nothing is served).
        healthy: The pinned version answers (local) or is fully rolled out (kubernetes);
            None when not checked.
        reachable: False when the source of truth could not be read: then nobody knows
            what is served, which is not the same as "nothing".
        lines: Human description for ``sluice status`` (first line starts ``deployed:``).
        record: The target's raw record (the local deploy record, the Deployment's name
            and rollout, or ``error`` when unreachable), for alerts and tools.
        alert: The ``serving`` facts of a deploy alert when the target gives its own (the
            local target: its deploy record); None: ``version`` and ``url``.
    """

    target: str
    version: str | None
    url: str
    healthy: bool | None
    reachable: bool = True
    lines: tuple[str, ...] = ()
    record: dict[str, Any] | None = None
    alert: dict[str, Any] | None = None

    def facts(self) -> dict[str, Any]:
        """The ``serving`` facts of a deploy alert.

        The target's own (:attr:`alert`) when it gives them, else ``version`` and ``url``;
        ``unknown`` with the reason when the source of truth could not be read.
        """
        if not self.reachable:
            return {"unknown": str((self.record or {}).get("error", "cannot tell"))}
        if self.alert is not None:
            return dict(self.alert)
        return {"version": self.version, "url": self.url} if self.version else {}


@dataclass(frozen=True)
class FailureLogs:
    """Where a person reads why a deploy failed, for the deploy alert.

    Attributes:
        where: HTML fragment completing "Read ..." in the alert's what-to-do.
        links: ``(title, location)`` of places to look (a local folder, a URL).
    """

    where: str = "the deploy task's log"
    links: tuple[tuple[str, str], ...] = ()


class DeployTarget(Protocol):
    """Where a pipeline's champion is served."""

    name: str

    def describe(self) -> list[str]:
        """Lines for ``sluice plan``: where and how a deploy serves the champion."""
        ...

    def served(self, probe: bool = True) -> Served:
        """What is served now.

        Args:
            probe: Also ask the running server (a local process's private port); without it
                the target's own record is read (the cluster's Deployment is the record).
        """
        ...

    def deploy(
        self, version: str, *, previous: str | None, run_id: str, smoke_rows: list[dict[str, Any]]
    ) -> DeployResult:
        """Serve ``version``; on failure the previous version keeps (or goes back to) serving.

        The smoke check is part of it: a prediction on the new server's private port
        (local) or the pods' readiness probes (kubernetes).
        """
        ...

    def stop(self) -> list[str]:
        """Stop serving; returns one line per thing stopped (or saying nothing was running).

        Raises:
            StopRefused: The target does not stop from the command line; the message says
                what to do instead.
        """
        ...

    def failure_logs(self) -> FailureLogs:
        """Where the deploy alert sends a person to read why a deploy failed."""
        ...

    def manifests(self, version: str, previous: str, rbac_only: bool = False) -> list[tuple[str | None, Any]]:
        """What ``sluice plan --manifests`` prints: ``(heading, None)`` or ``(None, object)`` entries.

        Only targets declared with ``manifests=True`` are asked.
        """
        ...

    def watch(self, say: Callable[[str], None] | None = None) -> ServingCheck:
        """The ``<pipeline>__serving`` look at the server (asked only when ``TargetSpec.watch`` plans one)."""
        ...


class TargetBase:
    """Defaults of a target's optional answers (subclass it, or answer them yourself)."""

    def failure_logs(self) -> FailureLogs:
        """The deploy task's log."""
        return FailureLogs()

    def manifests(self, version: str, previous: str, rbac_only: bool = False) -> list[tuple[str | None, Any]]:
        """None to print (targets declared with ``manifests=True`` override this)."""
        return []

    def watch(self, say: Callable[[str], None] | None = None) -> ServingCheck:
        """Targets whose ``TargetSpec.watch`` plans a ``<pipeline>__serving`` DAG override this.

        Raises:
            NotImplementedError: Always.
        """
        raise NotImplementedError(f"{type(self).__name__} plans a watch but does not answer watch()")


class LocalTarget(TargetBase):
    """The model server as a local process (``deployment.local``)."""

    name = "local"

    def __init__(self, loaded: LoadedSpec, store: PipelineStore, connect: Callable[[], Any] | None = None) -> None:
        """Build the target of a loaded spec over its store (``connect`` is unused: a local process needs no client)."""
        self.loaded = loaded
        self.cfg = LOCAL.of(loaded.spec.deployment)
        self.store = store

    def describe(self) -> list[str]:
        """Lines for ``sluice plan``."""
        return [
            f"target local: a `sluice serve` process on http://{self.cfg.host}:{self.cfg.port}/invocations",
            f"health and smoke prediction within {self.cfg.health_timeout_seconds}s before the switch; "
            "on failure the previous server keeps serving",
            f"record: {self.store.location(self.store.keys.deploy('current.json'))}",
        ]

    def served(self, probe: bool = True) -> Served:
        """The deploy record, checked against the process on the port when ``probe``."""
        from sluice.steps.deploy import current_deployment, local_serving

        if not probe:
            rec = current_deployment(self.store)
            version = str(rec["version"]) if rec else None
            return Served(self.name, version, str(rec.get("url", "")) if rec else "", None, record=rec, alert=rec)
        seen = local_serving(self.store, self.cfg.host, self.cfg.port, self.loaded.project_dir)
        rec = seen.recorded
        return Served(
            self.name,
            str(rec["version"]) if rec else None,
            str(rec["url"]) if rec else "",
            # Nothing recorded and nothing running: no deploy yet, nothing to be wrong about.
            seen.healthy if rec is not None or seen.unrecorded else None,
            lines=tuple(seen.describe()),
            record=rec,
            # A deploy alert shows the local deploy record, unchanged.
            alert=rec,
        )

    def deploy(
        self, version: str, *, previous: str | None, run_id: str, smoke_rows: list[dict[str, Any]]
    ) -> LocalDeployResult:
        """:func:`sluice.steps.deploy.deploy_local` (the old server serves until the new one is checked)."""
        from sluice.steps.deploy import deploy_local

        return deploy_local(self.loaded, self.store, version, smoke_rows)

    def stop(self) -> list[str]:
        """:func:`sluice.steps.deploy.stop_local`: every server on the port, recorded or not."""
        from sluice.steps.deploy import stop_local

        stopped: list[ServerProcess] = stop_local(self.store, self.cfg.host, self.cfg.port, self.loaded.project_dir)
        if not stopped:
            return [f"no local model server running on {self.cfg.host}:{self.cfg.port}"]
        return [f"stopped model server pid {s.pid} (v{s.version}) on {s.host}:{s.port}" for s in stopped]

    def watch(self, say: Callable[[str], None] | None = None) -> ServingCheck:
        """:func:`sluice.steps.deploy.watch_local`: restart the recorded version when it is not what serves."""
        from sluice.steps.deploy import watch_local

        return watch_local(self.loaded, self.store, say=say)

    def failure_logs(self) -> FailureLogs:
        """The new server's log: a working file of the machine that ran the deploy."""
        return FailureLogs(
            "the new server's log (see the deploy folder below)",
            (("Deploy folder (server logs)", str(self.store.scratch("deploy"))),),
        )


def default_connect() -> ApiClient:
    """The API client the deployer would use, reading ``$KUBECONFIG`` now (the client reads it at import)."""
    env = settings()
    path = env.kubeconfig
    if path and not env.kubernetes_service_host:
        return k8s.connect(path)
    return k8s.connect()


class KubernetesTarget(TargetBase):
    """A Deployment and Service in a cluster (``deployment.kubernetes``), applied by a deployer pod."""

    name = "kubernetes"

    def __init__(
        self, loaded: LoadedSpec, store: PipelineStore, connect: Callable[[], ApiClient] | None = None
    ) -> None:
        """Build the target of a loaded spec.

        Args:
            loaded: The spec (``deployment.kubernetes`` must be set).
            store: The pipeline's store (unused: the cluster is this target's record).
            connect: Makes the API client; default: the in-cluster service account, else
                the kubeconfig (``$KUBECONFIG``), as the deployer does.
        """
        cfg = KUBERNETES.of(loaded.spec.deployment)
        self.pipeline = loaded.spec.pipeline
        self.cfg = cfg
        self.connect = connect or default_connect
        self.obj = km.object_name(self.pipeline)
        self.where = f"{cfg.namespace}/{self.obj}"
        self.url = f"http://{self.obj}.{cfg.namespace}.svc:{cfg.port}"
        self.serve_args = km.serve_args(str(loaded.spec.storage.root), loaded.spec.source.id_column)

    def describe(self) -> list[str]:
        """Lines for ``sluice plan``."""
        cfg = self.cfg
        return [
            f"target kubernetes: deployment {self.where} ({cfg.replicas} replicas of {cfg.serving_image}) "
            f"behind {self.url}",
            f"a deployer pod ({cfg.image}) server-side applies it and waits {cfg.rollout_timeout_seconds}s "
            "for the rollout; on failure it rolls back to the previous manifest",
            f"cluster: {'in-cluster service account' if cfg.in_cluster else f'Airflow connection {cfg.conn_id}'}",
        ]

    def served(self, probe: bool = True) -> Served:
        """Read the Deployment: its pinned version label and its rollout state."""
        try:
            dep = k8s.read(self.connect(), "Deployment", self.cfg.namespace, self.obj)
        except Exception as exc:  # no kubeconfig, refused, 403, ...: say so, never "nothing"
            reason = f"cannot read deployment {self.where} from the cluster ({type(exc).__name__}: {exc})"
            line = f"deployed: UNKNOWN: {reason}"
            return Served(self.name, None, "", None, reachable=False, lines=(line,), record={"error": reason})
        version = km.served_version(dep)
        if dep is None or version is None:
            return Served(self.name, None, "", None, lines=(f"deployed: nothing (no deployment {self.where})",))
        rollout = k8s.rollout_state(dep)
        state = "rolled out" if rollout.done else ("ROLLOUT FAILED" if rollout.failed else "rolling out")
        line = f"deployed: v{version} at {self.url} (deployment {self.where}, {state}: {rollout.message})"
        record = {"deployment": self.where, "version": version, "url": self.url, "rollout": rollout.message}
        return Served(self.name, version, self.url, rollout.done, lines=(line,), record=record)

    def deploy(
        self, version: str, *, previous: str | None, run_id: str, smoke_rows: list[dict[str, Any]]
    ) -> KubernetesDeployResult:
        """:func:`sluice.steps.deploy_kubernetes.deploy_kubernetes` (rolls back itself on failure)."""
        from sluice.steps.deploy_kubernetes import deploy_kubernetes

        return deploy_kubernetes(
            self.pipeline, self.cfg, version, previous, run_id, api=self.connect(), serve_args=self.serve_args
        )

    def manifests(self, version: str, previous: str, rbac_only: bool = False) -> list[tuple[str | None, Any]]:
        """RBAC, the deployer pod and what it applies, for ``version`` (only the RBAC with ``rbac_only``)."""
        name, cfg, run_id = self.pipeline, self.cfg, "manual__plan"
        docs: list[tuple[str | None, Any]] = [
            ("RBAC of the deployer pod (apply once, as a cluster admin)", None),
            *[(None, m) for m in km.rbac_manifests(name, cfg)],
            ("What Airflow's connection identity needs to run the deployer pod (bind it to that identity)", None),
            (None, km.launcher_role(name, cfg)),
        ]
        if rbac_only:
            return docs
        return [
            *docs,
            (
                f"The deployer pod Airflow starts (KubernetesPodOperator, task 'deploy'), for model version {version}",
                None,
            ),
            (None, km.deployer_pod(name, cfg, version, previous, run_id, self.serve_args)),
            ("What the deployer server-side applies", None),
            (None, km.service_manifest(name, cfg)),
            (None, km.deployment_manifest(name, cfg, version, run_id, self.serve_args)),
        ]

    def failure_logs(self) -> FailureLogs:
        """The new pods' events and logs, and the deploy task's log."""
        return FailureLogs(
            "the new pods' events and logs (<code>kubectl describe</code> and <code>kubectl logs</code> of the "
            "deployment) and the deploy task's log"
        )

    def stop(self) -> list[str]:
        """Refuse: a cluster's Deployment belongs to the platform, not to one laptop command.

        Taking a production model server down is a change to the cluster, made the way the
        platform team makes such changes (kubectl with their rights, GitOps, ...), and the
        next deploy task re-applies the Deployment anyway. The message names the command.

        Raises:
            StopRefused: Always.
        """
        ns = self.cfg.namespace
        raise StopRefused(
            f"deployment.target is kubernetes: sluice does not stop deployment {self.where} from the command "
            f"line. To stop serving, scale it to zero with your cluster rights: "
            f"`kubectl -n {ns} scale deployment/{self.obj} --replicas=0` (the next deploy of the pipeline "
            f"scales it back to {self.cfg.replicas}); `sluice status` shows what is served"
        )


#: Target name (``deployment.target``) -> factory taking the loaded spec and the pipeline's
#: store (and ``connect=`` when :func:`target_for` is given one): each registered target's
#: ``runtime`` class, imported on first use.
TARGETS: dict[str, Callable[..., DeployTarget]] = {}


def runtime_of(name: str) -> Callable[..., DeployTarget]:
    """The run-time class of the registered target ``name`` (its ``TargetSpec.runtime``).

    Raises:
        KeyError: No target of that name is registered.
        PluginError: Its run-time class cannot be imported (the message names the target).
    """
    if name in TARGETS:
        return TARGETS[name]
    registered = registered_targets()
    if name not in registered:
        known = sorted({*registered, *TARGETS})
        raise KeyError(f"no deploy target '{name}' (known: {', '.join(known)})")
    where = registered[name].runtime
    module, _, attr = where.partition(":")
    try:
        make: Callable[..., DeployTarget] = getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as exc:
        raise PluginError(
            f"deploy target '{name}': its runtime '{where}' cannot be imported ({type(exc).__name__}: {exc})"
        ) from exc
    TARGETS[name] = make
    return make


def target_for(loaded: LoadedSpec, store: PipelineStore, connect: Callable[[], Any] | None = None) -> DeployTarget:
    """The deploy target the spec names (``deployment.target``).

    Args:
        loaded: The spec.
        store: The pipeline's store, opened by the caller (inside Airflow with the spec's
            storage connection), where a target keeps its deploy record.
        connect: How the target reaches its backend, when the caller knows better than the
            target's default (inside Airflow: the spec's Airflow connection, see
            :func:`sluice.airflow.operators.kubernetes.cluster_connector`). Targets that need no client
            are built without it.

    Raises:
        KeyError: No target of that name is registered.
    """
    make = runtime_of(loaded.spec.deployment.target)
    return make(loaded, store) if connect is None else make(loaded, store, connect=connect)
