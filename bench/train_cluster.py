"""train_cluster: ``training.engine: spark`` on a Spark standalone cluster vs the local engine, same rows.

Data: the train bench's demo-shaped feature table (:func:`train.demo_year`,
:func:`train.write_batches`: 12 monthly batch tables, N rows in all; 10M here). The spec is
the demo's (the latest month held out, roc_auc) with ``training.sample`` set to
:data:`train.SAMPLE` rows, and one learner on both sides, XGBoost with the same booster
settings (:data:`BOOSTER`):

- **cluster**: ``training.engine: spark``, ``xgboost.spark.SparkXGBClassifier`` with
  ``num_workers: 1`` on a standalone master and one worker of one core started by the bench
  (:func:`demo.production_stack.spark_cluster`, as the production stack and the engine's tests
  start theirs). Spark reads the 12 tables, holds out the latest month, samples, encodes and fits;
  the train task (the measuring child) is the driver and holds the holdout and a check sample.
- **local**: ``training.engine: local``, ``xgboost.XGBClassifier`` (the same booster, its
  scikit-learn class, one thread) with ``training.sample`` set to the number of rows the
  cluster fitted (Spark's sample is a Bernoulli draw of about the rows asked for; the local
  engine draws exactly the number given), so both fit as many rows of the same table.

Each runs :func:`sluice.steps.train.train_candidate` (read, split, sample, fit, score the
holdout, log the MLflow run with its model) in its own interpreter with a fresh MLflow store;
the time is the call's, after the imports (the cluster's includes starting the Spark
application: a task pays it too). Both score the same holdout (every row of the latest month).

Target: the cluster model's holdout roc_auc within :data:`METRIC_TOLERANCE` of the local one's
(the engine costs no accuracy). The time is reported, not targeted: on this 2-core machine the
cluster is one worker core on the same host, so it cannot be faster; what it buys is that the
fit runs outside the task's memory.

Run: ``python bench/train_cluster.py [--quick]`` (prints the entry as JSON); the suite calls :func:`run`.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from harness import ROOT, entry, mib, run_child
from train import BUDGET_SHARE, PIPELINE, QUICK_SAMPLE, SAMPLE, child_env, demo_year, write_batches, write_project

SIZE, QUICK_SIZE = 10_000_000, 1_000_000
#: Largest difference of holdout roc_auc (cluster vs local) the verdict accepts.
METRIC_TOLERANCE = 0.01
#: The booster both engines fit (XGBoost's defaults for the rest: hist trees, 256 bins).
BOOSTER = {"n_estimators": 100, "max_depth": 6, "learning_rate": 0.1, "random_state": 42}
#: The Spark application's settings: the executor and driver sized for 10M rows on one worker.
SPARK_CONF = {
    "spark.executor.memory": "4g",
    "spark.driver.memory": "2g",
    "spark.cores.max": "1",
    "spark.sql.shuffle.partitions": "4",
    "spark.driver.host": "127.0.0.1",
}
#: The worker's memory (the executor's 4g and room for its Python worker).
WORKER_MEMORY = "6g"


def _child(engine: str, store_root: str, features_json: str, work: str, sample: str, extra: str) -> dict[str, Any]:
    """Train once in this interpreter; seconds of train_candidate, what it fitted, the holdout metric.

    ``extra`` is the Spark master (engine ``spark``) or the memory budget in GB (``local``).
    """
    import mlflow  # noqa: F401  (imports before the clock: a task's worker has them preloaded)
    import xgboost  # noqa: F401

    from sluice.services import tracking
    from sluice.services.storage import PipelineStore
    from sluice.spec.loader import load_spec
    from sluice.steps.records import FeatureResult, decode
    from sluice.steps.train import train_candidate

    if engine == "spark":
        training = {
            "engine": "spark",
            "model": "xgboost.spark.SparkXGBClassifier",
            "params": BOOSTER | {"num_workers": 1},
            "sample": int(sample),
        }
        features = {"engine": "cluster", "master": extra, "conf": SPARK_CONF}
    else:
        training = {
            "model": "xgboost.XGBClassifier",
            "params": BOOSTER | {"n_jobs": 1},
            "sample": int(sample),
            "max_memory_gb": float(extra),
        }
        features = {}
    loaded = load_spec(write_project(Path(work) / "project", training, features))
    store = PipelineStore(store_root, PIPELINE)
    feature_result = decode(FeatureResult, json.loads(Path(features_json).read_text()))
    started = time.perf_counter()
    result = train_candidate(loaded, store, feature_result, f"{PIPELINE}__train", f"bench-{engine}-{os.getpid()}")
    seconds = time.perf_counter() - started
    run = tracking.configure(loaded.project_dir).get_run(result.mlflow_run_id)
    return {
        "seconds": seconds,
        "holdout_roc_auc": run.data.metrics["holdout_roc_auc"],
        "train_roc_auc": run.data.metrics["train_roc_auc"],
        "train_rows": result.train_rows,
        "holdout_rows": result.holdout_rows,
        "fitted": result.fitted.describe() if result.fitted else None,
        "spark_master": run.data.params.get("spark.master"),
    }


def _measure(engine: str, store_root: Path, features_json: Path, template: Path, sample: int, extra: str) -> Any:
    with tempfile.TemporaryDirectory(prefix="sluice-bench-train-cluster-run-") as work:
        args = ["bench/train_cluster.py", "child", engine, str(store_root), str(features_json), work, str(sample)]
        out, peak = run_child([*args, extra], env=child_env(Path(work), template), timeout=3600)
    return out | {"seconds": round(out["seconds"], 2), "peak_rss_mib": mib(peak)}


def measure(rows: int, sample: int) -> dict[str, dict[str, Any]]:
    """The cluster's fit, then the local one on as many rows; keyed ``spark`` and ``local``.

    ``peak_rss_mib`` is the measuring child's process tree: the train task, and for ``spark`` its
    driver JVM (the executor runs under the worker, outside it).
    """
    import psutil

    from demo.production_stack import Processes, spark_cluster
    from sluice.services import tracking
    from sluice.services.storage import PipelineStore
    from sluice.steps.records import encode

    with tempfile.TemporaryDirectory(prefix="sluice-bench-train-cluster-") as tmp_name:
        tmp = Path(tmp_name)
        template = tmp / "template" / "mlflow.db"
        template.parent.mkdir()
        tracking.init_store(f"sqlite:///{template}")
        store_root = tmp / "store"
        features = write_batches(PipelineStore(store_root, PIPELINE), demo_year(tmp / "reference"), rows)
        features_json = tmp / "features.json"
        features_json.write_text(json.dumps(encode(features)))
        results: dict[str, dict[str, Any]] = {}
        procs = Processes(tmp / "cluster")
        with spark_cluster(procs, cores=1, memory=WORKER_MEMORY) as cluster:
            print(f"[train_cluster] {features.rows:,} rows, engine spark on {cluster.master} ...", flush=True)
            results["spark"] = _measure("spark", store_root, features_json, template, sample, cluster.master)
        if procs.leftovers():
            raise RuntimeError(f"the bench's Spark cluster left processes: {procs.leftovers()}")
        fitted = results["spark"]["train_rows"]
        budget_gb = round(BUDGET_SHARE * psutil.virtual_memory().total / 2**30, 1)
        print(f"[train_cluster] {features.rows:,} rows, engine local on {fitted:,} rows ...", flush=True)
        results["local"] = _measure("local", store_root, features_json, template, fitted, str(budget_gb))
        for r in results.values():
            r["rows"] = features.rows
        shutil.rmtree(store_root)
    return results


def run(quick: bool) -> dict[str, Any]:
    """Holdout roc_auc and time of the cluster's fit and the local one's on the same number of rows."""
    rows, sample = (QUICK_SIZE, QUICK_SAMPLE) if quick else (SIZE, SAMPLE)
    results = measure(rows, sample)
    spark, local = results["spark"], results["local"]
    gap = spark["holdout_roc_auc"] - local["holdout_roc_auc"]
    return entry(
        "train_cluster",
        measured=(
            f"train_candidate with training.engine: spark (SparkXGBClassifier, 1 worker core of a standalone "
            f"cluster) on demo-shaped feature tables of {rows:,} rows, training.sample: {sample:,}: holdout roc_auc"
        ),
        baseline=(
            f"training.engine: local (XGBClassifier, same booster, 1 thread) fitting as many rows "
            f"({local['train_rows']:,}) of the same table: roc_auc {local['holdout_roc_auc']:.4f} in "
            f"{local['seconds']:.0f} s"
        ),
        values={"configs": results, "sample": sample, "booster": BOOSTER, "spark_conf": SPARK_CONF, "gap": gap},
        ratio=spark["seconds"] / local["seconds"],
        target=f"holdout roc_auc within {METRIC_TOLERANCE} of local's (time reported: the ratio is cluster/local)",
        target_ratio=METRIC_TOLERANCE,
        met=abs(gap) <= METRIC_TOLERANCE,
        notes=(
            "The ratio is the cluster's time over the local engine's; it is reported, not targeted: this machine "
            "has 2 cores, the cluster is one worker core on the same host, so the cluster cannot be faster here "
            "(it pays Spark's read, holdout mark, sample, encoding and a barrier stage for the fit, and the "
            "application's start). What it buys is a fit outside the task: the task holds the holdout and a check "
            "sample, not the training rows. At this sample the task's process tree peaked higher on the cluster "
            f"({spark['peak_rss_mib'] / 1024:.2f} GiB: its driver JVM, spark.driver.memory 2g, and the holdout) than "
            f"locally ({local['peak_rss_mib'] / 1024:.2f} GiB); it pays off when the training rows would not fit in "
            "the task. Spark samples each row with the share (about the rows asked for); the local engine is given the "
            "count the cluster fitted. Both score the same holdout, the latest month."
        ),
        summary=(
            f"cluster roc_auc {spark['holdout_roc_auc']:.4f} in {spark['seconds']:.0f} s vs local "
            f"{local['holdout_roc_auc']:.4f} in {local['seconds']:.0f} s (gap {gap:+.4f}; time ratio)"
        ),
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help=f"{QUICK_SIZE:,} rows, sample {QUICK_SAMPLE:,}")
    args = parser.parse_args()
    print(json.dumps(run(args.quick), indent=2))
    return 0


if __name__ == "__main__" and sys.argv[1:2] == ["child"]:
    print(json.dumps(_child(*sys.argv[2:8])))
elif __name__ == "__main__":
    sys.path.insert(0, str(ROOT / "include"))
    raise SystemExit(main())
