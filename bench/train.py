"""train: the train step at 1M and 10M feature rows, with the default settings and with ``training.sample``.

Data: the demo's feature table for the whole demo year (flights joined with weather and
planes as ``include/features/flights.py`` does it, computed with pandas:
``tracking.feature_table``), each month's rows repeated up to N rows in all, written as 12
monthly tables in the layout ``features.scope: batch`` caches them (one table a batch, the
types Spark writes: 32-bit integers, doubles, plain strings, no pandas metadata). The spec is
the demo's (HistGradientBoostingClassifier, the latest month held out, roc_auc).

Each (size, setting) runs :func:`sluice.steps.train.train_candidate` (read, split, sample,
fit, score, write the holdout, log the MLflow run with its model) in its own interpreter with
one OpenMP thread and a fresh MLflow SQLite store (copied from one migrated template); the
parent polls the resident memory of the child's process tree (``harness.run_child``). The
time is the call's, after the imports.

Targets: the time at 10M rows at most :data:`TARGET` times the time at 1M (10x the rows), with
``training.sample`` set (the quick run: default settings, every training row fitted, at 100k
and 1M; the default at 10M takes over an hour on the 2-core bench machine); with ``training.sample`` set, the peak
memory at 10M rows at most :data:`MEMORY_GROWTH` times the peak at 1M (what grows is the
first pass over the label and split columns and the holdout, the latest month, which is
never sampled).

Run: ``python bench/train.py [--quick]`` (prints the entries as JSON); the suite calls :func:`run`.
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

TARGET = 12.0
MEMORY_GROWTH = 1.5
PIPELINE = "flights_delay"
#: Rows fitted with ``training.sample`` (quick: :data:`QUICK_SAMPLE`).
SAMPLE, QUICK_SAMPLE = 500_000, 50_000
SIZES, QUICK_SIZES = (1_000_000, 10_000_000), (100_000, 1_000_000)
#: Columns Spark writes as 32-bit integers (``int`` in the job); the rest as they are.
INT_COLUMNS = ("is_delayed", "month", "day_of_week", "day", "dep_hour", "sched_dep_time", "sched_arr_time", "distance")
NULLABLE_INT_COLUMNS = ("plane_age", "seats", "engines")
#: ``training.max_memory_gb`` of every run: this share of the machine's memory.
BUDGET_SHARE = 0.8
#: What the old train step measured (before the compact read; given in issue 27): seconds, GB.
BEFORE = {"1M": (20.5, 3.0), "10M": (170.0, 15.5)}


# --------------------------------------------------------------------------- data


def demo_year(reference: Path) -> Any:
    """The demo's feature table over its whole year (about 327k labelled flights), as Spark types it."""
    import pandas as pd

    from demo.producer import month_frame
    from tracking import feature_table

    rows = sum(len(month_frame(m)) for m in range(1, 13))
    table = feature_table(rows, reference, months=tuple(range(1, 13)))
    for col in INT_COLUMNS:
        table[col] = table[col].astype("int32")
    for col in NULLABLE_INT_COLUMNS:
        table[col] = table[col].astype("Int32")
    return table.astype({c: pd.CategoricalDtype() for c in ("carrier", "origin", "dest", "plane_type")})


def write_batches(store: Any, year: Any, rows: int) -> Any:
    """``rows`` feature rows as 12 monthly batch tables in ``store``'s feature cache; the FeatureResult."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    from sluice.steps.records import FeatureResult

    months = sorted(year["month"].unique())
    counts = year["month"].value_counts()
    parts, batches = [], {}
    for m in months:
        base = year[year["month"] == m]
        want = round(rows * counts[m] / len(year))
        part = base.iloc[np.resize(np.arange(len(base)), want)]
        table = pa.Table.from_pandas(part, preserve_index=False)
        plain = [pa.field(f.name, f.type.value_type) if pa.types.is_dictionary(f.type) else f for f in table.schema]
        batch = f"2013-{m:02d}"
        key = store.keys.feature_cache(batch, "bench", "features.parquet")
        with store.open_write(key) as fh:
            pq.write_table(table.cast(pa.schema(plain)).replace_schema_metadata(None), fh)
        parts.append(store.location(key))
        batches[batch] = f"sha-{m}"
    total = sum(pq.ParquetFile(p).metadata.num_rows for p in parts)
    return FeatureResult(
        path=store.location(store.keys.features("bench")),
        key="bench",
        batches=batches,
        job_hash="bench",
        rows=total,
        parts=parts,
    )


# --------------------------------------------------------------------------- one measurement (child)


def write_project(folder: Path, training: dict[str, Any], features: dict[str, Any] | None = None) -> Path:
    """A project in ``folder``: the demo spec with its ``training`` (and ``features``) sections updated; its path."""
    import yaml

    (folder / "dags").mkdir(parents=True)
    shutil.copytree(ROOT / "include" / "features", folder / "include" / "features")
    (folder / "pyproject.toml").write_text("[project]\nname = 'sluice-bench-train'\n")
    spec = yaml.safe_load((ROOT / "dags" / f"{PIPELINE}.pipeline.yaml").read_text())
    spec["training"].update(training)
    spec["features"].update(features or {})
    path = folder / "dags" / f"{PIPELINE}.pipeline.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def _project(folder: Path, sample: int | None, budget_gb: float) -> Path:
    """A project with the demo spec, ``training.max_memory_gb`` and ``training.sample`` (when given) set."""
    return write_project(folder, {"max_memory_gb": budget_gb} | ({"sample": sample} if sample is not None else {}))


def _child(store_root: str, features_json: str, work: str, sample: str, budget_gb: str) -> dict[str, Any]:
    """Train once in this interpreter; seconds of train_candidate, what it fitted, its memory estimate."""
    import mlflow  # noqa: F401  (imports before the clock: a task's worker has them preloaded)
    import sklearn.ensemble  # noqa: F401

    from sluice.services import tracking
    from sluice.services.storage import PipelineStore
    from sluice.spec.loader import load_spec
    from sluice.steps.records import FeatureResult, decode
    from sluice.steps.train import train_candidate

    project = _project(Path(work) / "project", None if sample == "none" else int(sample), float(budget_gb))
    loaded = load_spec(project)
    store = PipelineStore(store_root, PIPELINE)
    features = decode(FeatureResult, json.loads(Path(features_json).read_text()))
    started = time.perf_counter()
    result = train_candidate(loaded, store, features, f"{PIPELINE}__train", f"bench-{sample}-{os.getpid()}")
    seconds = time.perf_counter() - started
    fitted = result.fitted
    params = tracking.configure(loaded.project_dir).get_run(result.mlflow_run_id).data.params
    return {
        "seconds": seconds,
        "estimated_gib": float(params["memory.estimated_gib"]),
        "train_rows": result.train_rows,
        "holdout_rows": result.holdout_rows,
        "available_rows": fitted.available if fitted else None,
        "fitted": fitted.describe() if fitted else None,
    }


# --------------------------------------------------------------------------- the suite's entry


def child_env(work: Path, template: Path) -> dict[str, str]:
    """The environment of one measuring child in ``work``: a fresh MLflow store (a copy of ``template``), one thread."""
    db = work / "mlflow" / "mlflow.db"
    db.parent.mkdir()
    shutil.copy(template, db)
    return {
        "MLFLOW_TRACKING_URI": f"sqlite:///{db}",
        "SLUICE_PROJECT_DIR": str(work / "project"),
        "GIT_DIR": str(work / "no-git"),
        "OMP_NUM_THREADS": "1",
    }


def _measure(
    store_root: Path, features_json: Path, template: Path, sample: int | None, budget_gb: float
) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="sluice-bench-train-run-") as work:
        env = child_env(Path(work), template)
        args = ["bench/train.py", "child", str(store_root), str(features_json), work, str(sample or "none")]
        args.append(str(budget_gb))
        out, peak = run_child(args, env=env, timeout=3600)
    return out | {"seconds": round(out["seconds"], 2), "peak_rss_mib": mib(peak), "max_memory_gb": budget_gb}


def measure_all(
    sizes: tuple[int, ...], sample: int, settings: tuple[str, ...] = ("default", "sample")
) -> dict[str, dict[str, Any]]:
    """Every (size, setting) measured in its own child; keyed ``<rows>_default`` / ``<rows>_sample``.

    The budget (``training.max_memory_gb``) is :data:`BUDGET_SHARE` of the machine's memory, so
    a busy moment on a shared machine does not refuse the largest fit (the default budget
    follows the memory available when the step starts; the refusal is tested in
    ``tests/steps/test_training_data.py``).
    """
    import psutil

    from sluice.services import tracking
    from sluice.services.storage import PipelineStore
    from sluice.steps.records import encode

    results: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="sluice-bench-train-") as tmp_name:
        tmp = Path(tmp_name)
        template = tmp / "template" / "mlflow.db"
        template.parent.mkdir()
        tracking.init_store(f"sqlite:///{template}")
        year = demo_year(tmp / "reference")
        budget_gb = round(BUDGET_SHARE * psutil.virtual_memory().total / 2**30, 1)
        for rows in sizes:
            store_root = tmp / f"store_{rows}"
            features = write_batches(PipelineStore(store_root, PIPELINE), year, rows)
            features_json = tmp / f"features_{rows}.json"
            features_json.write_text(json.dumps(encode(features)))
            for setting, value in (("default", None), ("sample", sample)):
                if setting not in settings:
                    continue
                print(f"[train] {rows:,} rows, {setting} ...", flush=True)
                results[f"{rows}_{setting}"] = {"rows": features.rows, "sample": value} | _measure(
                    store_root, features_json, template, value, budget_gb
                )
            shutil.rmtree(store_root)
    return results


def run(quick: bool) -> list[dict[str, Any]]:
    """Time ratio (default settings) and peak-memory growth (with training.sample) for 10x the rows."""
    sizes, sample = (QUICK_SIZES, QUICK_SAMPLE) if quick else (SIZES, SAMPLE)
    # At 10M rows the default (every training row fitted, one thread) takes over an hour on the
    # 2-core bench machine: the full run times the sample setting, the quick run both.
    timed = "default" if quick else "sample"
    results = measure_all(sizes, sample, ("default", "sample") if quick else ("sample",))
    small, big = sizes
    d_small, d_big = results[f"{small}_{timed}"], results[f"{big}_{timed}"]
    s_small, s_big = results[f"{small}_sample"], results[f"{big}_sample"]
    ratio = d_big["seconds"] / d_small["seconds"]
    growth = s_big["peak_rss_mib"] / s_small["peak_rss_mib"]
    values = {"configs": results, "sample": sample, "threads": 1, "before_issue_27_seconds_gb": BEFORE}
    notes = (
        (
            ""
            if quick
            else "Timed with training.sample (the default, every row fitted, takes over an hour at 10M rows on "
            "2 cores with one thread; the quick run times the default at 100k and 1M). "
        )
        + "Before (the table read whole into pandas, strings as objects, copied for the split, no cap; from issue 27): "
        f"1M rows {BEFORE['1M'][0]} s and {BEFORE['1M'][1]} GB, 10M rows {BEFORE['10M'][0]} s and "
        f"{BEFORE['10M'][1]} GB. The holdout (the latest month, 1/12 of the rows) is never sampled."
    )
    time_entry = entry(
        "train",
        measured=(
            f"train_candidate (read, split, fit HistGradientBoosting, score, MLflow run) on demo-shaped feature "
            f"tables of {small:,} and {big:,} rows in 12 monthly batches, "
            + ("default settings" if timed == "default" else f"training.sample: {sample:,}")
            + ", one thread"
        ),
        baseline=f"the same at {small:,} rows ({d_small['seconds']:.1f} s)",
        values=values,
        ratio=ratio,
        target=f"<= {TARGET:g}x for {big // small}x the rows",
        target_ratio=TARGET,
        met=ratio <= TARGET,
        notes=notes,
        summary=(
            f"{d_big['seconds']:.0f} s, peak {d_big['peak_rss_mib'] / 1024:.1f} GiB at {big:,} rows vs "
            f"{d_small['seconds']:.1f} s, {d_small['peak_rss_mib'] / 1024:.1f} GiB"
        ),
    )
    memory_entry = entry(
        "train_sample",
        measured=(f"peak memory (process tree) of the same train step with training.sample: {sample} at {big:,} rows"),
        baseline=f"the same at {small:,} rows ({s_small['peak_rss_mib'] / 1024:.2f} GiB)",
        values={"configs": {k: v for k, v in results.items() if k.endswith("_sample")}, "sample": sample},
        ratio=growth,
        target=f"<= {MEMORY_GROWTH:g}x for {big // small}x the rows",
        target_ratio=MEMORY_GROWTH,
        met=growth <= MEMORY_GROWTH,
        notes=notes,
        summary=(
            f"{s_big['peak_rss_mib'] / 1024:.2f} GiB, {s_big['seconds']:.0f} s at {big:,} rows vs "
            f"{s_small['peak_rss_mib'] / 1024:.2f} GiB, {s_small['seconds']:.1f} s"
        ),
    )
    return [time_entry, memory_entry]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="100k and 1M rows, sample 50,000")
    args = parser.parse_args()
    print(json.dumps(run(args.quick), indent=2))
    return 0


if __name__ == "__main__" and sys.argv[1:2] == ["child"]:
    print(json.dumps(_child(*sys.argv[2:7])))
elif __name__ == "__main__":
    sys.path.insert(0, str(ROOT / "include"))
    raise SystemExit(main())
