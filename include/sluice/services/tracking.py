"""MLflow tracking and registry: where runs go and who the champion is."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mlflow.entities.model_registry import ModelVersion
    from mlflow.tracking import MlflowClient

CHAMPION = "champion"


def tracking_uri(project_dir: Path) -> str:
    """``MLFLOW_TRACKING_URI`` if set, else a SQLite store inside the project."""
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{project_dir / '.sluice' / 'mlflow.db'}"


def configure(project_dir: Path) -> MlflowClient:
    """Point MLflow at the right store and return a client."""
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    return configure_uri(tracking_uri(project_dir))


def configure_uri(uri: str) -> MlflowClient:
    """Point MLflow at the store ``uri`` and return a client (the deployer pod has no project dir)."""
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    import mlflow
    from mlflow.tracking import MlflowClient

    if uri.startswith("sqlite:///"):
        Path(uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def ensure_experiment(client: MlflowClient, name: str, project_dir: Path) -> str:
    """Return the id of experiment ``name``, creating it on first use.

    With the local SQLite store artifacts go under ``.sluice/mlartifacts`` (MLflow would
    otherwise write to ``./mlruns`` relative to whatever folder the worker runs in).
    """
    existing = client.get_experiment_by_name(name)
    if existing is not None:
        return str(existing.experiment_id)
    location = None
    if tracking_uri(project_dir).startswith("sqlite:///"):
        location = (project_dir / ".sluice" / "mlartifacts" / name).as_uri()
    try:
        return str(client.create_experiment(name, artifact_location=location))
    except Exception:  # a concurrent creator won the race
        found = client.get_experiment_by_name(name)
        if found is None:
            raise
        return str(found.experiment_id)


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
