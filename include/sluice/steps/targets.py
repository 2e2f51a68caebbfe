"""Deploy targets: one interface over "where the champion is served", and a registry of them.

Everything that asks "what is served now?" (``sluice status``, ``sluice plan``, the deploy
alert) asks the pipeline's target through :func:`target_for`, never a target's record
directly. Each target answers from its own source of truth: the ``local`` target from its
deploy record checked against the live process, the ``kubernetes`` target from the
Deployment in the cluster. The deploy logic itself stays in :mod:`sluice.steps.deploy` and
:mod:`sluice.steps.deploy_kubernetes`; a target only delegates to it.

Adding a target: write a class that satisfies :class:`DeployTarget` and add it to
:data:`TARGETS` (plus its settings in the spec and its deploy task in the plan).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from sluice.services import kube_manifests as km
from sluice.services import kubernetes as k8s
from sluice.settings import settings

if TYPE_CHECKING:
    from kubernetes.client import ApiClient

    from sluice.services.storage import PipelineStore
    from sluice.spec.loader import LoadedSpec
    from sluice.steps.deploy import ServerProcess
    from sluice.steps.records import DeployResult, KubernetesDeployResult, LocalDeployResult


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
    """

    target: str
    version: str | None
    url: str
    healthy: bool | None
    reachable: bool = True
    lines: tuple[str, ...] = ()
    record: dict[str, Any] | None = None

    def facts(self) -> dict[str, Any]:
        """The ``serving`` facts of a deploy alert.

        The local target's are its deploy record, unchanged (what alerts always showed);
        other targets give ``version`` and ``url``, or ``unknown`` with the reason.
        """
        if not self.reachable:
            return {"unknown": str((self.record or {}).get("error", "cannot tell"))}
        if self.record is not None and self.target == "local":
            return dict(self.record)
        return {"version": self.version, "url": self.url} if self.version else {}


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


class LocalTarget:
    """The model server as a local process (``deployment.local``)."""

    name = "local"

    def __init__(self, loaded: LoadedSpec, store: PipelineStore, connect: Callable[[], Any] | None = None) -> None:
        """Build the target of a loaded spec over its store (``connect`` is unused: a local process needs no client)."""
        self.loaded = loaded
        self.cfg = loaded.spec.deployment.local
        self.store = store

    def describe(self) -> list[str]:
        """Lines for ``sluice plan``."""
        return [
            f"target local: a `sluice serve` process on http://{self.cfg.host}:{self.cfg.port}/invocations",
            f"health and smoke prediction within {self.cfg.health_timeout_seconds}s before the switch; "
            "on failure the previous server keeps serving",
            f"record: {self.store.describe(self.store.deploy_key('current.json'))}",
        ]

    def served(self, probe: bool = True) -> Served:
        """The deploy record, checked against the process on the port when ``probe``."""
        from sluice.steps.deploy import current_deployment, local_serving

        if not probe:
            rec = current_deployment(self.store)
            version = str(rec["version"]) if rec else None
            return Served(self.name, version, str(rec.get("url", "")) if rec else "", None, record=rec)
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


def default_connect() -> ApiClient:
    """The API client the deployer would use, reading ``$KUBECONFIG`` now (the client reads it at import)."""
    env = settings()
    path = env.kubeconfig
    if path and not env.kubernetes_service_host:
        return k8s.connect(path)
    return k8s.connect()


class KubernetesTarget:
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
        cfg = loaded.spec.deployment.kubernetes
        if cfg is None:
            raise ValueError("deployment.kubernetes is not set")
        self.pipeline = loaded.spec.pipeline
        self.cfg = cfg
        self.connect = connect or default_connect
        self.obj = km.object_name(self.pipeline)
        self.where = f"{cfg.namespace}/{self.obj}"
        self.url = f"http://{self.obj}.{cfg.namespace}.svc:{cfg.port}"

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

        return deploy_kubernetes(self.pipeline, self.cfg, version, previous, run_id, api=self.connect())

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
#: store (and ``connect=`` when :func:`target_for` is given one).
TARGETS: dict[str, Callable[..., DeployTarget]] = {
    "local": LocalTarget,
    "kubernetes": KubernetesTarget,
}


def register(name: str, make: Callable[..., DeployTarget], meaning: str) -> None:
    """Add a deploy target: specs may then say ``deployment.target: <name>``.

    Call it in this module, next to the class: the ``sluice`` command line and the DAG
    loader import this module before they load any spec, so the name is known by then.

    Everything else follows from the registry: ``sluice plan`` prints its ``describe()``,
    ``sluice status`` and the deploy alert its ``served()``, ``sluice stop`` calls its
    ``stop()``, and the train DAG's ``deploy`` task its ``deploy()``.

    Args:
        name: The ``deployment.target`` value.
        make: Builds the target from a loaded spec (and ``connect=`` when given one).
        meaning: One line for the spec's error hint and JSON Schema.
    """
    from sluice.spec.models import DEPLOY_TARGETS

    TARGETS[name] = make
    DEPLOY_TARGETS[name] = meaning


def target_for(loaded: LoadedSpec, store: PipelineStore, connect: Callable[[], Any] | None = None) -> DeployTarget:
    """The deploy target the spec names (``deployment.target``).

    Args:
        loaded: The spec.
        store: The pipeline's store, opened by the caller (inside Airflow with the spec's
            storage connection), where a target keeps its deploy record.
        connect: How the target reaches its backend, when the caller knows better than the
            target's default (inside Airflow: the spec's Airflow connection, see
            :func:`sluice.airflow.kubernetes.cluster_connector`). Targets that need no client
            are built without it.

    Raises:
        KeyError: No target of that name is registered.
    """
    name = loaded.spec.deployment.target
    try:
        make = TARGETS[name]
    except KeyError:
        raise KeyError(f"no deploy target '{name}' (known: {', '.join(sorted(TARGETS))})") from None
    return make(loaded, store) if connect is None else make(loaded, store, connect=connect)
