"""Airflow DAG file: builds the DAGs of every ``*.pipeline.yaml`` spec beside it.

It only loads: no network, no database, and nothing heavier than pydantic and YAML is
imported at parse time (pyspark, mlflow, great_expectations, evidently and kubernetes
load inside tasks).
"""

from pathlib import Path

# The Airflow modules sluice's DAGs are made of, named here because the DAG processor
# imports the airflow.* modules a DAG file imports once, before it forks the process that
# parses the file ([dag_processor] parsing_pre_import_modules): each parse then skips them.
import airflow.providers.smtp.notifications.smtp
import airflow.providers.standard.operators.hitl
import airflow.providers.standard.operators.python
import airflow.providers.standard.sensors.filesystem
import airflow.sdk
import airflow.triggers.base  # noqa: F401

from sluice.airflow.loader import build_all

globals().update(build_all(Path(__file__).parent))
