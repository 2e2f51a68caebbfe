"""The plan: a spec compiled to DAGs and steps, with no Airflow in sight."""

from __future__ import annotations

from dataclasses import dataclass, field
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
        config: Renderer-specific settings.
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
    config: dict[str, Any] = field(default_factory=dict)
    alert: str | None = None
    timeout_minutes: float | None = None


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
