"""Parse one DAG folder once in this fresh interpreter; print JSON: wall and CPU seconds in DagBag, DAGs, heavy ones.

Usage: ``python bench/parse_once.py FOLDER EXPECTED_DAGS``.

Before the clock starts, this does what Airflow's DAG processor does before it forks the
process that parses a file, so both sides are measured as the DAG processor runs them:

- it imports the ``airflow.*`` modules each DAG file imports
  (``airflow.dag_processing.processor._pre_import_airflow_modules``, on by default:
  ``[dag_processor] parsing_pre_import_modules``);
- it moves everything loaded so far out of the garbage collector's reach (``gc.freeze()``
  in ``DagFileProcessorManager.before_run``). Without it each full collection walks
  Airflow's whole import graph (about 0.15 s each here), which a real parse never does.
"""

import gc
import importlib
import json
import sys
import time
from pathlib import Path

from airflow.dag_processing.dagbag import DagBag
from airflow.utils.file import iter_airflow_imports

HEAVY = ("pandas", "pyspark", "great_expectations", "mlflow", "evidently", "sklearn")

for dag_file in sorted(Path(sys.argv[1]).glob("*.py")):
    for module in iter_airflow_imports(str(dag_file)):
        importlib.import_module(module)
gc.freeze()
before = {m for m in HEAVY if m in sys.modules}
started, cpu = time.perf_counter(), time.process_time()
bag = DagBag(dag_folder=sys.argv[1])
elapsed, cpu_elapsed = time.perf_counter() - started, time.process_time() - cpu
assert not bag.import_errors, bag.import_errors
assert len(bag.dags) == int(sys.argv[2]), len(bag.dags)
tasks = sum(len(d.tasks) for d in bag.dags.values())
loaded = sorted(m for m in HEAVY if m in sys.modules and m not in before)
print(
    json.dumps(
        {"seconds": elapsed, "cpu_seconds": cpu_elapsed, "dags": len(bag.dags), "tasks": tasks, "heavy_loaded": loaded}
    )
)
