"""The ``deployment`` section: the target and each target's settings."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator, model_validator

from sluice.spec.base import StrictModel, rule
from sluice.spec.models.rules import (
    IMAGE_REFERENCE,
    K8S_NAME,
    K8S_QUANTITY,
    check_cron,
    host_problem,
    parse_quantity,
)


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


#: Deploy target names a spec may use (``deployment.target``) -> what they mean. The
#: targets themselves are :data:`sluice.steps.targets.TARGETS`; registering one there with
#: :func:`sluice.steps.targets.register` adds its name here (the spec cannot import steps).
DEPLOY_TARGETS: dict[str, str] = {
    "local": "the model server as a local process",
    "kubernetes": "a Deployment applied by a pod",
}


def _target_enum(schema: dict[str, Any]) -> None:
    # Read when the schema is generated, so a registered target is in the editor's list too.
    schema["enum"] = list(DEPLOY_TARGETS)


class Deployment(StrictModel):
    """Where the champion is served."""

    target: str = Field(
        "local",
        description="A registered deploy target: 'local': the model server as a local process; "
        "'kubernetes': a Deployment applied by a pod.",
        json_schema_extra=_target_enum,
    )
    local: LocalDeployment = Field(default_factory=LocalDeployment, description="Settings of the local target.")  # type: ignore[arg-type]
    kubernetes: KubernetesDeployment | None = Field(
        None, description="Settings of the kubernetes target (required when target is 'kubernetes')."
    )

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
    def _kubernetes_needs_settings(self) -> Deployment:
        if self.target == "kubernetes" and self.kubernetes is None:
            raise ValueError(
                "target 'kubernetes' needs a 'kubernetes' section with at least namespace, image, "
                "serving_image and mlflow_tracking_uri"
            )
        return self
