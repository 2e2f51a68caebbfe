"""MLflow tracking and registry: where runs go and who the champion is."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sluice.settings import settings

if TYPE_CHECKING:
    from mlflow.entities.model_registry import ModelVersion
    from mlflow.tracking import MlflowClient

CHAMPION = "champion"


#: A tracking server that stops answering fails a call in about 90 s (3 tries of 20 s plus
#: backoff), not MLflow's default of 120 s times 7 retries (~15 minutes). Values already in
#: the environment win.
HTTP_LIMITS = {
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "20",
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "2",
}


class TrackingStoreError(RuntimeError):
    """The MLflow store cannot be used as it is; the message says how to recover."""


def tracking_uri(project_dir: Path) -> str:
    """``MLFLOW_TRACKING_URI`` if set, else a SQLite store inside the project."""
    return settings().mlflow_tracking_uri or f"sqlite:///{project_dir / '.sluice' / 'mlflow.db'}"


def sqlite_path(uri: str) -> Path | None:
    """The database file of a ``sqlite:///`` URI, None for any other store."""
    if not uri.startswith("sqlite:///"):
        return None
    return Path(uri.removeprefix("sqlite:///").split("?", 1)[0])


def _sqlite_tables(path: Path) -> set[str]:
    import sqlite3

    with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=60)) as db:
        return {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}


def init_store(uri: str) -> str:
    """Create or migrate the MLflow store at ``uri``, once, before any task uses it.

    ``sluice bootstrap`` calls this. Tasks never create or migrate a store (see
    :func:`check_store`): two tasks migrating one SQLite file at once broke it for good.
    A migration interrupted earlier leaves Alembic's ``_alembic_tmp_*`` scratch tables,
    which are dropped before migrating again. The SQLite file is switched to WAL so that
    readers never block the one writer.

    Returns:
        What was done, for the bootstrap log.
    """
    path = sqlite_path(uri)
    if path is None:
        return f"MLflow store {uri}: not SQLite, migrated by its operator (`mlflow db upgrade`)"
    import sqlite3

    path.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.closing(sqlite3.connect(path, timeout=60)) as db:
        db.execute("PRAGMA journal_mode=WAL")
        tables = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        scratch = [t for t in tables if t.startswith("_alembic_tmp_")]
        for table in scratch:
            db.execute(f'DROP TABLE "{table}"')
        db.commit()
    from mlflow.exceptions import MlflowException
    from mlflow.store.db.utils import _safe_initialize_tables, _upgrade_db, _verify_schema, create_sqlalchemy_engine

    engine = create_sqlalchemy_engine(f"sqlite:///{path}")
    try:
        _safe_initialize_tables(engine)
        try:
            _verify_schema(engine)
        except MlflowException:
            _upgrade_db(engine)
    finally:
        engine.dispose()
    dropped = f" (dropped {', '.join(scratch)} of an interrupted migration)" if scratch else ""
    return f"MLflow store {path}: ready{dropped}"


def check_store(uri: str) -> None:
    """Refuse a SQLite store that ``sluice bootstrap`` has not prepared, or a broken one.

    MLflow would otherwise create and migrate the file from inside a task.

    Raises:
        TrackingStoreError: With the recovery step.
    """
    path = sqlite_path(uri)
    if path is None:
        return
    fix = "run `make setup` (or `./sluice bootstrap`) with the same MLFLOW_TRACKING_URI"
    if not path.is_file():
        raise TrackingStoreError(f"the MLflow store {path} does not exist: {fix}; tasks never create it")
    tables = _sqlite_tables(path)
    if "alembic_version" not in tables:
        raise TrackingStoreError(f"the MLflow store {path} is not initialised: {fix}")
    scratch = sorted(t for t in tables if t.startswith("_alembic_tmp_"))
    if scratch:
        raise TrackingStoreError(
            f"the MLflow store {path} holds {', '.join(scratch)} from an interrupted migration: stop Airflow, "
            f"copy the file as a backup, then {fix}; it drops them and finishes the migration"
        )


def check_server(uri: str) -> None:
    """Fail fast, naming the server and the fix, when an HTTP tracking server does not answer.

    Tried with the same limits as MLflow's own calls (:data:`HTTP_LIMITS`, or the environment):
    a server that refuses connections fails in about 6 s, one that hangs in about 66 s, before
    the step has read or written anything in MLflow. Any HTTP answer (even an error) passes:
    the server is up, and MLflow's own error will say what is wrong.

    Raises:
        TrackingStoreError: The server did not answer on any try.
    """
    if not uri.startswith(("http://", "https://")):
        return
    import requests
    import tenacity

    env = settings()
    timeout = env.mlflow_http_request_timeout
    tries = 1 + env.mlflow_http_request_max_retries
    backoff = env.mlflow_http_request_backoff_factor

    def answers() -> None:
        # Any HTTP status means the server is up; only a connection or read failure retries.
        requests.get(f"{uri.rstrip('/')}/health", timeout=timeout, allow_redirects=False)

    try:
        tenacity.Retrying(
            stop=tenacity.stop_after_attempt(tries),
            wait=tenacity.wait_exponential(multiplier=backoff, exp_base=2, min=0, max=float("inf")),
            retry=tenacity.retry_if_exception_type(requests.RequestException),
            reraise=True,
        )(answers)
        return
    except requests.RequestException as exc:
        reason = f"{type(exc).__name__}: {exc}"
    raise TrackingStoreError(
        f"the MLflow tracking server {uri} does not answer ({reason}; {tries} tries, {timeout:g} s each): "
        "start it (or fix its network or proxy), or point MLFLOW_TRACKING_URI at one that runs, then clear "
        "the task; this step stopped before reading or writing MLflow, so the champion is unchanged"
    )


def configure(project_dir: Path) -> MlflowClient:
    """Point MLflow at the right store and return a client (what every step calls first).

    Raises:
        TrackingStoreError: A SQLite store that is missing, not initialised or broken, or a
            tracking server that does not answer (see :func:`check_server`).
    """
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    client = configure_uri(tracking_uri(project_dir))
    check_server(tracking_uri(project_dir))
    return client


def configure_uri(uri: str) -> MlflowClient:
    """Point MLflow at the store ``uri`` and return a client (the deployer pod has no project dir).

    Raises:
        TrackingStoreError: A SQLite store that is missing, not initialised or broken.
    """
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    for key, value in HTTP_LIMITS.items():
        os.environ.setdefault(key, value)
    check_store(uri)
    import mlflow
    from mlflow.tracking import MlflowClient

    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def ensure_experiment(client: MlflowClient, name: str, project_dir: Path) -> str:
    """Return the id of experiment ``name``, creating it on first use.

    With a SQLite store, artifacts go to ``mlartifacts/`` beside the database file (MLflow would
    otherwise write to ``./mlruns`` relative to whatever folder the worker runs in).
    """
    existing = client.get_experiment_by_name(name)
    if existing is not None:
        return str(existing.experiment_id)
    location = None
    store = sqlite_path(tracking_uri(project_dir))
    if store is not None:
        # Artifacts live beside the database they belong to, so a second store (the demo's)
        # never mixes its artifacts with the project's.
        location = (store.parent / "mlartifacts" / name).as_uri()
    try:
        return str(client.create_experiment(name, artifact_location=location))
    except Exception:  # a concurrent creator won the race
        found = client.get_experiment_by_name(name)
        if found is None:
            raise
        return str(found.experiment_id)


def close_abandoned_runs(client: MlflowClient, experiment_id: str, role: str, airflow_run_id: str) -> list[str]:
    """Mark ``KILLED`` the runs of ``role`` that a killed task left ``RUNNING``.

    Called before a task starts its own run. Every sluice DAG has ``max_active_runs=1``, so
    when a task of role ``role`` starts, no other task of that role in the pipeline is alive:
    any run of the role still ``RUNNING`` was left by a killed process (this run's earlier
    try, or an earlier Airflow run that failed for good).

    Returns:
        The ids of the runs closed.
    """
    abandoned = client.search_runs(
        [experiment_id], filter_string=f"tags.`sluice.role` = '{role}' and attributes.status = 'RUNNING'"
    )
    for run in abandoned:
        client.set_tag(run.info.run_id, "sluice.abandoned_by", f"its task was killed; closed by {airflow_run_id}")
        client.set_terminated(run.info.run_id, "KILLED")
    return [run.info.run_id for run in abandoned]


def champion(client: MlflowClient, model_name: str) -> ModelVersion | None:
    """The version behind ``models:/<name>@champion``, or None when there is none yet."""
    from mlflow.exceptions import MlflowException

    try:
        return client.get_model_version_by_alias(model_name, CHAMPION)
    except MlflowException as exc:
        if exc.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE", "NOT_FOUND"):
            return None
        raise


def version_for_run(client: MlflowClient, model_name: str, run_id: str) -> ModelVersion | None:
    """The registered version created from ``run_id``, if any (keeps promotion idempotent)."""
    from mlflow.exceptions import MlflowException

    try:
        found: list[Any] = list(client.search_model_versions(f"name='{model_name}' and run_id='{run_id}'"))
    except MlflowException:
        return None
    return found[0] if found else None
