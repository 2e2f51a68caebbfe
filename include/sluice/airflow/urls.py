"""Where things are seen: URLs of Airflow runs, MLflow runs and sluice reports.

Pure functions plus two lookups of configuration (Airflow's ``[api] base_url``, else
``localhost`` on ``[api] port``; ``SLUICE_MLFLOW_UI_URL``, else ``localhost`` on
``SLUICE_MLFLOW_UI_PORT``); shared by the alert emails and the task links in the UI.
"""

from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import quote

if TYPE_CHECKING:
    from sluice.services.storage import PipelineStore

DEFAULT_MLFLOW_UI = "http://localhost:5000"
DEFAULT_AIRFLOW_UI = "http://localhost:8080"
#: Where the sluice plugin's FastAPI app is mounted on the Airflow API server.
PLUGIN_PREFIX = "/sluice"


def airflow_base_url() -> str:
    """Airflow's ``[api] base_url`` (what users type to reach the UI), without a trailing slash.

    Unset, it is ``http://localhost:<[api] port>``: the embedded Airflow's own address.
    """
    from airflow.configuration import conf

    base = conf.get("api", "base_url", fallback=None)
    if not base:
        base = f"http://localhost:{conf.get('api', 'port', fallback='8080')}"
    return str(base).rstrip("/")


def mlflow_ui_url() -> str:
    """``SLUICE_MLFLOW_UI_URL`` (the MLflow UI users reach), else ``localhost`` on ``SLUICE_MLFLOW_UI_PORT``."""
    from sluice.airflow.runtime.home import port_setting
    from sluice.settings import settings

    url = settings().mlflow_ui_url or f"http://localhost:{port_setting('SLUICE_MLFLOW_UI_PORT')}"
    return url.rstrip("/")


def mlflow_run_url(run_id: str, base: str | None = None) -> str:
    """Page of one MLflow run.

    MLflow's UI resolves ``#/runs/<run_id>`` to the run's experiment page itself, so the link
    needs no experiment id (and no MLflow call to find one).
    """
    return f"{(base or mlflow_ui_url()).rstrip('/')}/#/runs/{quote(run_id)}"


def dag_run_url(dag_id: str, run_id: str, base: str | None = None) -> str:
    """Page of one DAG run in the Airflow UI."""
    return f"{(base or airflow_base_url()).rstrip('/')}/dags/{quote(dag_id)}/runs/{quote(run_id, safe='')}"


def task_url(dag_id: str, run_id: str, task_id: str, base: str | None = None) -> str:
    """Page of one task of a DAG run (its log) in the Airflow UI."""
    return f"{dag_run_url(dag_id, run_id, base)}/tasks/{quote(task_id)}"


def task_log_url(
    dag_id: str,
    run_id: str,
    task_id: str,
    try_number: int | None = None,
    map_index: int | None = None,
    base: str | None = None,
) -> str:
    """Log of one try of a task in the Airflow UI, on the address this instance really answers.

    Airflow's own ``ti.log_url`` falls back to ``http://localhost:8080`` when ``[api] base_url``
    is unset, whatever ``[api] port`` says; this link follows the port (:func:`airflow_base_url`).

    Args:
        dag_id: DAG id.
        run_id: DAG run id.
        task_id: Task id.
        try_number: The try whose log to open (omitted: the UI shows the latest).
        map_index: Index of a mapped task instance (omitted or negative: not mapped).
        base: Airflow base URL; default from the configuration.
    """
    url = task_url(dag_id, run_id, task_id, base)
    if map_index is not None and map_index >= 0:
        url += f"/mapped/{map_index}"
    if try_number:
        url += f"?try_number={try_number}"
    return url


def report_url(pipeline: str, key: str, base: str | None = None) -> str:
    """URL under which the sluice plugin serves the report at ``key`` of a pipeline's storage.

    Args:
        pipeline: Pipeline name.
        key: The report's key in the pipeline's storage (``batches/<id>/validation.json``).
        base: Airflow base URL; default from the configuration.
    """
    root = (base or airflow_base_url()).rstrip("/")
    return f"{root}{PLUGIN_PREFIX}/reports/{quote(pipeline)}/{quote(key)}"


def stored_report_url(store: PipelineStore, location: str | None, base: str | None = None) -> str | None:
    """:func:`report_url` of a location a step recorded, or None when it is not in the pipeline's storage.

    The plugin only serves what is inside a pipeline's storage, so a path elsewhere has no
    URL and is shown as a path instead.
    """
    if not location:
        return None
    try:
        key = store.key_of(str(location))
    except ValueError:
        return None
    return report_url(store.pipeline, key, base)
