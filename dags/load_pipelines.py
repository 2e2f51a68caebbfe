"""Airflow DAG file: builds the DAGs of every ``*.pipeline.yaml`` spec beside it.

It only loads: no network, no database, and nothing heavier than pydantic and YAML is
imported at parse time (pyspark, mlflow, great_expectations, evidently and kubernetes
load inside tasks).
"""

from pathlib import Path

from sluice.airflow.loader import build_all

globals().update(build_all(Path(__file__).parent))
