"""The plan: a spec compiled to DAGs and steps, with no Airflow in sight."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from sluice.spec.plugins import STEP_KINDS_GROUP, PluginError, discover, distribution


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


#: What sluice's own step kinds are configured with (another package's kind brings its own type).
StepConfig = WatchConfig | ApprovalConfig | PodDeployConfig | None

#: sluice's own step kinds, and the config type each needs (None: none). The Airflow renderer
#: has one renderer a kind (``tests/airflow/test_render.py`` checks both agree). Other
#: packages' kinds come through entry points (:class:`StepKind`, :func:`plugin_step_kinds`).
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
    """A plan that could not run: an unknown step kind, or a step without the config its kind needs.

    Attributes:
        where: Dotted location in the spec the error comes from (``deployment.target``), or "".
        hint: How to fix it, or "".
    """

    def __init__(self, message: str, *, where: str = "", hint: str = "") -> None:
        super().__init__(message)
        self.where = where
        self.hint = hint


@dataclass(frozen=True)
class StepKind:
    """Another package's step kind: the value of its entry point in the ``sluice.step_kinds`` group.

    Declared in the package's light module (what the plan imports), e.g.
    ``DEPLOY_FLOPPY = StepKind("deploy_floppy", FloppyConfig, "floppy_sluice.render:deploy_floppy")``
    and named by ``deploy_floppy = "floppy_sluice:DEPLOY_FLOPPY"`` in its ``pyproject.toml``.

    Attributes:
        name: The kind (and the entry point's name); a deploy target's
            :class:`sluice.spec.targets.DeployStep` asks for it by this name.
        config: The type a step of this kind is configured with, built by keyword from the
            ``DeployStep.config`` fields (a frozen dataclass; a pydantic model validates its
            fields too), or None when the kind takes no config.
        renderer: ``module:function`` of its Airflow renderer, ``(Step, PipelinePlan) ->
            BaseOperator`` (see :func:`sluice.airflow.render.operator_kwargs`), imported only
            when a DAG with such a step is rendered: the declaring module stays free of Airflow.
    """

    name: str
    config: type[Any] | None
    renderer: str


def plugin_step_kinds() -> dict[str, StepKind]:
    """Step kinds other packages declare through ``sluice.step_kinds`` entry points (cached).

    Raises:
        PluginError: A package failed to load (the message names it), names something else
            than a :class:`StepKind` of the entry point's name, or reuses one of sluice's kinds.
    """
    found = discover(STEP_KINDS_GROUP)
    for name, kind in found.items():
        dist = distribution(STEP_KINDS_GROUP, name)
        if not isinstance(kind, StepKind) or kind.name != name:
            raise PluginError(
                f"{STEP_KINDS_GROUP} '{name}' of distribution {dist} names {kind!r}, not a StepKind named "
                f"'{name}': point the entry point at the kind's sluice.plan.model.StepKind"
            )
        if name in STEP_KINDS:
            raise PluginError(
                f"{STEP_KINDS_GROUP} '{name}' of distribution {dist} is one of sluice's own step kinds: "
                f"give the kind another name in {dist.split()[0]}"
            )
    return found


def config_type(kind: str) -> type[Any] | None:
    """The config type of step ``kind`` (None: it takes none), sluice's own or another package's.

    Entry points are read only for a kind that is not sluice's: a broken package touches
    only the pipelines that use one of its kinds.

    Raises:
        PlanError: No such kind.
        PluginError: A package's step kinds failed to load.
    """
    if kind in STEP_KINDS:
        return STEP_KINDS[kind]
    plugins = plugin_step_kinds()
    if kind not in plugins:
        known = [*sorted(STEP_KINDS), *sorted(plugins)]
        raise PlanError(
            f"{kind!r} is not a step kind (known: {', '.join(known)})",
            hint=f"install the package that declares it (entry point group {STEP_KINDS_GROUP})",
        )
    return plugins[kind].config


def make_config(kind: str, fields: Mapping[str, Any]) -> Any:
    """The config of a step of ``kind`` from JSON-able ``fields`` (a deploy target's ``DeployStep.config``).

    Raises:
        PlanError: No such kind, or its config type refuses ``fields`` (missing, unknown or
            invalid fields; the message says which).
        PluginError: A package's step kinds failed to load.
    """
    needs = config_type(kind)
    if needs is None:
        if fields:
            raise PlanError(f"step kind {kind!r} takes no config, got {dict(fields)!r}")
        return None
    try:
        return needs(**fields)
    except (TypeError, ValueError) as exc:
        raise PlanError(f"step kind {kind!r} needs a {needs.__name__}, got {dict(fields)!r}: {exc}") from None


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
        config: The kind's settings (:func:`config_type` says which type), or None.
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
    config: StepConfig | object = None
    alert: str | None = None
    timeout_minutes: float | None = None

    def __post_init__(self) -> None:
        try:
            needs = config_type(self.kind)
        except PlanError as exc:
            raise PlanError(f"step {self.task_id!r}: {exc}", hint=exc.hint) from None
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
