"""Airflow plugin of sluice: serves pipeline reports under /sluice on the API server.

The task buttons ("MLflow run", "Validation report", "Drift report") are operator extra links
attached by sluice's renderer (sluice.airflow.links); this plugin serves the local report files
they point at. Logic lives in include/sluice/airflow/.
"""

from airflow.plugins_manager import AirflowPlugin

from sluice.airflow.views.reports import create_app


class SluicePlugin(AirflowPlugin):
    """Mounts the sluice reports app at /sluice."""

    name = "sluice"
    fastapi_apps = [{"app": create_app(), "url_prefix": "/sluice", "name": "sluice reports"}]  # noqa: RUF012
