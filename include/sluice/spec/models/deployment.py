"""The ``deployment`` section: the target and each registered target's settings.

sluice's own targets are declared here (their settings models and :data:`LOCAL` and
:data:`KUBERNETES`); the :class:`Deployment` model is built from every target the
``sluice.deploy_targets`` entry points name (see :mod:`sluice.spec.targets`), so a third
party's target and its settings block are part of the spec, its schema and its reference.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import Field, create_model, field_validator, model_validator

from sluice.spec.base import StrictModel, rule
from sluice.spec.models.rules import (
    IMAGE_REFERENCE,
    K8S_NAME,
    K8S_QUANTITY,
    check_cron,
    host_problem,
    parse_quantity,
)
from sluice.spec.plugins import DEPLOY_TARGETS_GROUP, PluginError, discover, is_sluices_own
from sluice.spec.targets import DeployStep, TargetSpec, Watch


class LocalDeployment(StrictModel):
    """The model server as a local process."""

    host: str = Field(
        "127.0.0.1",
        description=(
            "Interface the model server listens on: a host name or an IP address "
            "(127.0.0.1: this machine only; 0.0.0.0: every interface)."
        ),
    )
    port: int = Field(5055, ge=1, le=65535, description="Stable port of the model server (kept across deploys).")
    health_timeout_seconds: int = Field(
        120, ge=5, le=3600, description="How long a new server may take to become healthy."
    )
    watch_schedule: str | None = Field(
        "*/5 * * * *",
        description=(
            "Cron of <pipeline>__serving, which checks the model server and, when it is down, "
            "answers with another version, or shares its port with a stray, restarts the "
            "recorded version and alerts; null: no watch."
        ),
    )

    @field_validator("watch_schedule")
    @classmethod
    def _watch_schedule_is_cron(cls, value: str | None) -> str | None:
        return check_cron(value, "deployment.local.watch_schedule")

    @field_validator("host")
    @classmethod
    def _host_or_address(cls, value: str) -> str:
        problem = host_problem(value)
        if problem:
            raise rule(*problem)
        return value


class ResourceList(StrictModel):
    """CPU and memory, as Kubernetes quantities."""

    cpu: str = Field(pattern=K8S_QUANTITY, description="CPU, e.g. '250m' or '1'.")
    memory: str = Field(pattern=K8S_QUANTITY, description="Memory, e.g. '512Mi' or '2Gi'.")


class Resources(StrictModel):
    """Requests and limits of a container."""

    requests: ResourceList = Field(
        default_factory=lambda: ResourceList(cpu="250m", memory="512Mi"),
        description="What the scheduler reserves.",
    )
    limits: ResourceList = Field(
        default_factory=lambda: ResourceList(cpu="1", memory="1Gi"), description="The most the container may use."
    )

    @model_validator(mode="after")
    def _limits_cover_requests(self) -> Resources:
        for kind in ("cpu", "memory"):
            request, limit = getattr(self.requests, kind), getattr(self.limits, kind)
            if parse_quantity(limit) <= 0:
                raise rule(f"limits.{kind} is {limit}: nothing could run", "set it above 0", f"limits.{kind}")
            if parse_quantity(limit) < parse_quantity(request):
                raise rule(
                    f"limits.{kind} ({limit}) is below requests.{kind} ({request}): Kubernetes rejects the pod",
                    f"raise limits.{kind} to at least {request} or lower the request",
                    f"limits.{kind}",
                )
        return self


class KubernetesDeployment(StrictModel):
    """The model server as a Kubernetes Deployment and Service, applied by a deployer pod."""

    namespace: str = Field(pattern=K8S_NAME, description="Namespace of the deployer pod, Deployment and Service.")
    image: str = Field(
        min_length=1,
        description="Project image the deployer pod runs (docker/Dockerfile.airflow), pinned by tag or digest.",
    )
    serving_image: str = Field(
        min_length=1, description="Model-server image (docker/Dockerfile.serving), pinned by tag or digest."
    )
    mlflow_tracking_uri: str = Field(
        pattern=r"^[a-z][a-z0-9+.-]*:",
        description="MLflow tracking/registry URI reachable from inside the cluster (deployer and model server).",
    )
    replicas: int = Field(2, ge=1, le=100, description="Model-server pods.")
    port: int = Field(8080, ge=1024, le=65535, description="Container and Service port (non-root: 1024 or above).")
    resources: Resources = Field(default_factory=Resources, description="Model-server container resources.")  # type: ignore[arg-type]
    deployer_resources: Resources = Field(
        default_factory=lambda: Resources(
            requests=ResourceList(cpu="100m", memory="256Mi"), limits=ResourceList(cpu="500m", memory="512Mi")
        ),
        description="Deployer pod resources.",
    )
    service_account: str = Field(
        "sluice-deployer",
        pattern=K8S_NAME,
        description="Service account of the deployer pod; bound to the Role from 'sluice plan --manifests'.",
    )
    serving_service_account: str = Field(
        "default", pattern=K8S_NAME, description="Service account of the model-server pods (needs no API access)."
    )
    conn_id: str = Field("kubernetes_default", description="Airflow connection of the cluster (ignored in_cluster).")
    in_cluster: bool = Field(False, description="Use the Airflow worker's own service account instead of conn_id.")
    image_pull_policy: Literal["IfNotPresent", "Always", "Never"] = Field(
        "IfNotPresent", description="Image pull policy of both images."
    )
    image_pull_secrets: list[Annotated[str, Field(pattern=K8S_NAME)]] = Field(
        default_factory=list, description="Secrets used to pull from a private registry."
    )
    env_from_secrets: list[Annotated[str, Field(pattern=K8S_NAME)]] = Field(
        default_factory=list,
        description="Secrets exposed as environment to deployer and model server (e.g. S3 or MLflow credentials).",
    )
    rollout_timeout_seconds: int = Field(
        600, ge=5, le=7200, description="How long a rollout may take before it is rolled back."
    )
    labels: dict[str, str] = Field(default_factory=dict, description="Extra labels on every object and pod.")

    @field_validator("image", "serving_image")
    @classmethod
    def _image_reference(cls, value: str) -> str:
        if value != value.strip() or not IMAGE_REFERENCE.fullmatch(value) or len(value) > 512:
            raise rule(
                f"'{value}' is not an image reference",
                "write [registry/]repository[:tag][@sha256:digest] in lower case, e.g. ghcr.io/acme/sluice:1.4.0",
            )
        return value

    @field_validator("labels")
    @classmethod
    def _no_reserved_labels(cls, value: dict[str, str]) -> dict[str, str]:
        for key in value:
            if key.startswith(("sluice.io/", "app.kubernetes.io/")):
                raise ValueError(f"label '{key}' is set by sluice; use a key outside sluice.io/ and app.kubernetes.io/")
            if not re.fullmatch(r"([a-z0-9.-]{1,253}/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?", key):
                raise ValueError(f"'{key}' is not a valid Kubernetes label key")
        for v in value.values():
            if not re.fullmatch(r"([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?", v):
                raise ValueError(f"'{v}' is not a valid Kubernetes label value (63 characters, alphanumeric, -_.)")
        return value


class LocalTargetSpec(TargetSpec[LocalDeployment]):
    """The ``local`` target: a ``sluice serve`` process on this machine, watched by ``<pipeline>__serving``."""

    def local_port(self, settings: LocalDeployment) -> tuple[str, int] | None:
        """The server's port, on the machine that runs the deploy."""
        return "port", settings.port

    def deploy_step(self, pipeline: str, settings: LocalDeployment) -> DeployStep:
        """The ``deploy`` kind, given the health timeout."""
        return DeployStep(
            kind="deploy",
            doc=f"Serve the champion ({self.name}).",
            timeout_minutes=settings.health_timeout_seconds / 60 + 10,
        )

    def watch(self, settings: LocalDeployment) -> Watch | None:
        """A look at the server per ``watch_schedule`` (none when it is null)."""
        if not settings.watch_schedule:
            return None
        return Watch(
            cron=settings.watch_schedule,
            description=f"check the model server on {settings.host}:{settings.port}; "
            "restart the recorded version if down",
            timeout_minutes=settings.health_timeout_seconds / 60 + 10,
        )


class KubernetesTargetSpec(TargetSpec[KubernetesDeployment]):
    """The ``kubernetes`` target: a deployer pod applies a Deployment and Service (its own step kind)."""

    def deploy_step(self, pipeline: str, settings: KubernetesDeployment) -> DeployStep:
        """The ``deploy_kubernetes`` kind: a deployer pod (KubernetesPodOperator)."""
        return DeployStep(
            kind="deploy_kubernetes",
            # A failed rollout is rolled back inside the attempt; the retry covers a lost pod
            # or an API outage, and re-running after success changes nothing.
            retries=1,
            doc=(
                f"Deployer pod in namespace {settings.namespace}: server-side apply the model server "
                "pinned to the promoted version, wait for the rollout, roll back on failure."
            ),
            config={"pipeline": pipeline, "settings": settings.model_dump(mode="json"), "version_from": "promote"},
            # The rollout's own limit, plus pulling the deployer image and rolling back.
            timeout_minutes=settings.rollout_timeout_seconds / 60 + 15,
        )


#: sluice's own targets (its entry points in ``sluice.deploy_targets`` name these).
LOCAL = LocalTargetSpec(
    "local", "the model server as a local process", LocalDeployment, "sluice.steps.targets:LocalTarget"
)
KUBERNETES = KubernetesTargetSpec(
    "kubernetes",
    "a Deployment applied by a pod",
    KubernetesDeployment,
    "sluice.steps.targets:KubernetesTarget",
    manifests=True,
)


def registered_targets() -> dict[str, TargetSpec[Any]]:
    """Every deploy target found through the ``sluice.deploy_targets`` entry points, sluice's first.

    Raises:
        PluginError: A target's package failed to load (the message names it).
    """
    found = discover(DEPLOY_TARGETS_GROUP)
    for name, target in found.items():
        if not isinstance(target, TargetSpec) or target.name != name:
            raise PluginError(
                f"{DEPLOY_TARGETS_GROUP} '{name}' names {target!r}, not a TargetSpec named '{name}': "
                "point the entry point at the target's TargetSpec instance"
            )
    if not found:
        raise PluginError(
            f"no deploy target is registered (entry points {DEPLOY_TARGETS_GROUP}): sluice is not installed "
            "as a package here; run `uv sync` (or `pip install .`) in the project"
        )
    # sluice's own in the order declared here, then other packages' as discovered.
    own = sorted((t for n, t in found.items() if is_sluices_own(DEPLOY_TARGETS_GROUP, n)), key=lambda t: t.order)
    return {t.name: t for t in own} | found


#: Deploy target names a spec may use (``deployment.target``) -> what they mean.
DEPLOY_TARGETS: dict[str, str] = {name: target.meaning for name, target in registered_targets().items()}


def _target_enum(schema: dict[str, Any]) -> None:
    schema["enum"] = list(DEPLOY_TARGETS)


def _joined(names: list[str]) -> str:
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"


class DeploymentBase(StrictModel):
    """Where the champion is served: ``target`` plus one optional settings block per registered target."""

    target: str = Field(
        "local",
        description="A registered deploy target: "
        + "; ".join(f"'{name}': {meaning}" for name, meaning in DEPLOY_TARGETS.items())
        + ".",
        json_schema_extra=_target_enum,
    )

    @property
    def target_spec(self) -> TargetSpec[Any]:
        """The chosen target's declaration."""
        return registered_targets()[self.target]

    @property
    def settings(self) -> Any:
        """The chosen target's settings block."""
        return self.target_spec.of(self)

    @field_validator("target")
    @classmethod
    def _registered(cls, value: str) -> str:
        if value not in DEPLOY_TARGETS:
            raise rule(
                f"no deploy target '{value}'",
                "use one of the registered targets: " + ", ".join(f"'{name}'" for name in DEPLOY_TARGETS),
            )
        return value

    @model_validator(mode="after")
    def _chosen_target_has_settings(self) -> DeploymentBase:
        chosen = registered_targets()[self.target]
        if getattr(self, self.target, None) is None:
            raise ValueError(
                f"target '{self.target}' needs a '{self.target}' section with at least {_joined(chosen.required)}"
            )
        return self


def _settings_field(target: TargetSpec[Any]) -> tuple[Any, Any]:
    """The ``deployment.<name>`` field: defaults filled in when the block can be left out, else optional."""
    if not target.required:
        description = f"Settings of the {target.name} target."
        return target.settings, Field(default_factory=target.settings, description=description)
    description = f"Settings of the {target.name} target (required when target is '{target.name}')."
    return target.settings | None, Field(None, description=description)


if TYPE_CHECKING:
    Deployment = DeploymentBase
else:
    Deployment = create_model(
        "Deployment",
        __base__=DeploymentBase,
        __doc__="Where the champion is served.",
        __module__=__name__,
        **{name: _settings_field(target) for name, target in registered_targets().items()},
    )
