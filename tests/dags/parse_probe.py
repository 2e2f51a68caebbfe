"""Parse a DAGs folder the way Airflow does, with the network and the database made unusable.

Run as a script; prints one JSON line. Any socket connection raises, and the metadata
database points at a path that cannot exist, so a DAG file that reaches for either fails.
"""

import json
import os
import socket
import sys
import time

os.environ["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] = "sqlite:////nonexistent-sluice-dir/airflow.db"
attempts: list[str] = []


def _refuse(self: socket.socket, address: object) -> None:
    attempts.append(repr(address))
    raise OSError(f"network access during DAG parsing: {address!r}")


socket.socket.connect = _refuse  # type: ignore[method-assign]

before = set(sys.modules)
started = time.perf_counter()
from airflow.dag_processing.dagbag import DagBag  # noqa: E402

airflow_loaded = set(sys.modules)
bag = DagBag(dag_folder=sys.argv[1])
parse_seconds = time.perf_counter() - started
heavy = ("pyspark", "mlflow", "great_expectations", "evidently", "kubernetes", "sklearn", "skops", "sqlframe", "duckdb")
loaded_by_dags = set(sys.modules) - airflow_loaded
print(
    json.dumps(
        {
            "dags": {
                dag_id: {
                    "tags": sorted(dag.tags),
                    "retries": {t.task_id: t.retries for t in dag.tasks},
                    "schedule": type(dag.timetable).__name__,
                    "max_active_runs": dag.max_active_runs,
                    "catchup": dag.catchup,
                    "description": dag.description,
                }
                for dag_id, dag in bag.dags.items()
            },
            "import_errors": bag.import_errors,
            "heavy_modules": sorted({m.split(".")[0] for m in loaded_by_dags if m.split(".")[0] in heavy}),
            "heavy_anywhere": sorted({m.split(".")[0] for m in sys.modules if m.split(".")[0] in heavy}),
            "network_attempts": attempts,
            "parse_seconds": parse_seconds,
        }
    )
)
