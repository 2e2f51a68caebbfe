"""Parse one DAG folder once in this fresh interpreter; print JSON: seconds in DagBag, DAGs, heavy modules.

Usage: ``python bench/parse_once.py FOLDER EXPECTED_DAGS``. Airflow's own import happens
before the clock starts (both sides of the bench pay it equally).
"""

import json
import sys
import time

from airflow.dag_processing.dagbag import DagBag

HEAVY = ("pandas", "pyspark", "great_expectations", "mlflow", "evidently", "sklearn")

before = {m for m in HEAVY if m in sys.modules}
started = time.perf_counter()
bag = DagBag(dag_folder=sys.argv[1])
elapsed = time.perf_counter() - started
assert not bag.import_errors, bag.import_errors
assert len(bag.dags) == int(sys.argv[2]), len(bag.dags)
tasks = sum(len(d.tasks) for d in bag.dags.values())
loaded = sorted(m for m in HEAVY if m in sys.modules and m not in before)
print(json.dumps({"seconds": elapsed, "dags": len(bag.dags), "tasks": tasks, "heavy_loaded": loaded}))
