"""Parse one DAG folder once in this fresh interpreter; print seconds spent in DagBag."""

import sys
import time

from airflow.dag_processing.dagbag import DagBag

started = time.perf_counter()
bag = DagBag(dag_folder=sys.argv[1])
elapsed = time.perf_counter() - started
assert not bag.import_errors, bag.import_errors
assert len(bag.dags) == 3, sorted(bag.dags)  # ingest, train, monitor
print(elapsed)
