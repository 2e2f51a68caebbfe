"""The plan: a spec compiled to DAGs and steps, with no Airflow in sight."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal


@dataclass(frozen=True)
class Schedule:
    """When a DAG runs.

    Attributes:
        cron: A cron expression or preset ('@continuous'), or None.
        assets: Asset URIs whose events start a run (an event of any one of them is enough).
    """

    cron: str | None = None
    assets: tuple[str, ...] = ()

    def describe(self) -> str:
        """Human text for ``sluice plan``."""
        parts = [self.cron] if self.cron else []
        if self.assets:
            parts.append(" | ".join(f"asset {a}" for a in self.assets))
        return " or ".join(parts) if parts else "manual (airflow dags trigger)"


@dataclass(frozen=True)
class LocalLanding:
    """New files in a local folder.

    Attributes:
        glob: ``/abs/folder/<pattern>``.
    """

    glob: str
    source: Literal["local"] = "local"


@dataclass(frozen=True)
class S3Landing:
    """New objects under an S3 prefix.

    Attributes:
        bucket: The bucket.
        prefix: The key prefix (no leading slash).
        pattern: File-name pattern under the prefix.
        conn_id: Airflow connection of the bucket.
    """

    bucket: str
    prefix: str
    pattern: str
    conn_id: str
    source: Literal["s3"] = "s3"


#: Where the ingest DAG looks for new files.
Landing = LocalLanding | S3Landing


def landing_from(settings: dict[str, Any]) -> Landing:
    """A :data:`Landing` from its fields (as the ``land`` task gets them through Airflow).

    Raises:
        PlanError: When ``settings`` is neither landing.
    """
    try:
        if settings.get("source") == "s3":
            return S3Landing(**settings)
        return LocalLanding(**settings)
    except TypeError as exc:
        raise PlanError(f"not a landing zone's settings: {settings!r} ({exc})") from None


@dataclass(frozen=True)
class WatchConfig:
    """``wait_for_files``: the deferred wait for a batch file.

    Attributes:
        landing: Where files land.
        poll_seconds: How often the trigger looks.
        timeout_seconds: When the wait gives up (the run is skipped, not failed).
        marker: Marker file that says a file is complete, or None.
        check_stranded: Wake for batches stranded by a failed run too (local landing only).
        settle_seconds: How long a file's size must stay still, or None.
        csv: Whether files are CSV (a CSV is read to its end before it counts).
    """

    landing: Landing
    poll_seconds: float
    timeout_seconds: float
    marker: str | None = None
    check_stranded: bool = False
    settle_seconds: float | None = None
    csv: bool = False


@dataclass(frozen=True)
class ApprovalConfig:
    """``approve``: how long a person has to answer.

    Attributes:
        timeout_hours: Hours before the request times out (the champion stays).
    """

    timeout_hours: float


@dataclass(frozen=True)
class PodDeployConfig:
    """``deploy_kubernetes``: the deployer pod's settings.

    Attributes:
        pipeline: The pipeline.
        settings: The spec's ``deployment.kubernetes`` block, as JSON.
        version_from: Task whose result names the version to deploy.
    """

    pipeline: str
    settings: dict[str, Any]
    version_from: str


#: What a step kind is configured with.
StepConfig = WatchConfig | ApprovalConfig | PodDeployConfig | None

#: Every step kind a plan may hold, and the config type it needs (None: none). The Airflow
#: renderer has one renderer a kind (``tests/airflow/test_render.py`` checks both agree).
STEP_KINDS: dict[str, type[Any] | None] = {
    "wait_for_files": WatchConfig,
    "approve": ApprovalConfig,
    "deploy_kubernetes": PodDeployConfig,
    **dict.fromkeys(
        (
            "land",
            "validate",
            "publish",
            "confirm_published",
            "check_batches",
            "check_trigger",
            "build_features",
            "train",
            "evaluate",
            "gate",
            "refit",
            "promote",
            "deploy",
            "compute_drift",
            "publish_drift",
            "alert_drift",
            "watch_serving",
        )
    ),
}


class PlanError(ValueError):
    """A plan that could not run: an unknown step kind, or a step without the config its kind needs."""


@dataclass(frozen=True)
class Step:
    """One task.

    Attributes:
        task_id: Airflow task id.
        kind: Renderer name (``land``, ``train``, ...).
        upstream: Task ids that must finish first.
        retries: How often a failure is retried; 0 for decisions that a retry cannot change.
        outlets: Asset URIs the step publishes.
        pool: Airflow pool, or None for the default pool.
        doc: One line shown in the Airflow UI.
        config: The kind's settings (:data:`STEP_KINDS` says which type), or None.
        alert: Alert kind sent by email when this step fails ('validation', 'gate',
            'deploy', 'failure'), or None for no alert. (The drift email is no failure: the
            monitor's ``alert_drift`` step sends it itself.)
        timeout_minutes: Longest a try may run before Airflow fails it (then retried), or
            None for no limit (sensors and approvals have timeouts of their own).
    """

    task_id: str
    kind: str
    upstream: tuple[str, ...] = ()
    retries: int = 2
    outlets: tuple[str, ...] = ()
    pool: str | None = None
    doc: str = ""
    config: StepConfig = None
    alert: str | None = None
    timeout_minutes: float | None = None

    def __post_init__(self) -> None:
        if self.kind not in STEP_KINDS:
            raise PlanError(
                f"step {self.task_id!r}: {self.kind!r} is not a step kind (known: {', '.join(sorted(STEP_KINDS))})"
            )
        needs = STEP_KINDS[self.kind]
        if (needs is None) != (self.config is None) or (needs is not None and not isinstance(self.config, needs)):
            wanted = needs.__name__ if needs is not None else "no config"
            raise PlanError(f"step {self.task_id!r} of kind {self.kind!r} needs {wanted}, got {self.config!r}")


@dataclass(frozen=True)
class DagPlan:
    """One DAG of a pipeline."""

    dag_id: str
    role: Literal["ingest", "train", "monitor", "serving"]
    schedule: Schedule
    steps: tuple[Step, ...]
    tags: tuple[str, ...]
    description: str
    max_active_runs: int = 1


@dataclass(frozen=True)
class PipelinePlan:
    """Every DAG one spec produces.

    Attributes:
        pipeline: Pipeline name.
        spec_path: The spec file the plan was compiled from.
        dags: The DAGs.
        alert_emails: Recipients of the alert emails of steps with an ``alert``.
        owner: The spec's ``owner`` (the team shown as owner of every DAG).
    """

    pipeline: str
    spec_path: str
    dags: tuple[DagPlan, ...]
    alert_emails: tuple[str, ...] = ()
    owner: str = "sluice"
