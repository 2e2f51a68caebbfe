"""Tracking: the train step with MLflow logging vs the same fit without it.

Data: the demo's feature table (flights joined with weather and planes, the columns of
``include/features/flights.py``) built with pandas from January to March scaled to N rows
(``harness.flights``; 120k, quick 30k), held out by month as the demo spec says.

- with: :func:`sluice.steps.train.train_candidate`, the train task's body: fit, score, then an
  MLflow run with params, metrics, lineage, model (skops), signature and input example in a
  SQLite store with a file artifact root, both in a temp folder.
- without: the fit alone (the same function ``train_candidate`` calls: read the table, split,
  fit, score the holdout).

Target: <= 1.1x, or <= 2 s of absolute overhead (median of N, alternating).
"""

from __future__ import annotations

import statistics
import tempfile
from pathlib import Path
from typing import Any
from unittest import mock

from harness import ROOT, entry, flights, timed

TARGET = 1.1
SLACK_SECONDS = 2.0
WEATHER_COLUMNS = ["temp", "dewp", "humid", "wind_dir", "wind_speed", "wind_gust", "precip", "pressure", "visib"]


def feature_table(rows: int, reference: Path, months: tuple[int, ...] = (1, 2, 3)) -> Any:
    """The demo feature job's output, computed with pandas on ``rows`` scaled flights of ``months``."""
    import pandas as pd

    from demo.producer import write_reference

    write_reference(reference)
    f = flights(rows, months=months, seed=3)
    f = f[f["arr_delay"].notna()]
    weather = pd.read_parquet(reference / "weather.parquet")[["origin", "time_hour", *WEATHER_COLUMNS]]
    planes = pd.read_parquet(reference / "planes.parquet").rename(columns={"year": "plane_year", "type": "plane_type"})[
        ["tailnum", "plane_year", "seats", "engines", "plane_type"]
    ]
    weather = weather.drop_duplicates(["origin", "time_hour"])
    j = f.merge(weather, on=["origin", "time_hour"], how="left").merge(planes, on="tailnum", how="left")
    day = pd.to_datetime(dict(year=j["year"], month=j["month"], day=j["day"]))
    return pd.DataFrame(
        {
            "is_delayed": (j["arr_delay"] >= 15).astype("int32"),
            "month": j["month"],
            "day_of_week": day.dt.dayofweek.add(1) % 7 + 1,  # Spark's dayofweek: Sunday = 1
            "day": j["day"],
            "dep_hour": j["sched_dep_time"] // 100,
            "sched_dep_time": j["sched_dep_time"],
            "sched_arr_time": j["sched_arr_time"],
            "carrier": j["carrier"],
            "origin": j["origin"],
            "dest": j["dest"],
            "distance": j["distance"],
            **{c: j[c] for c in WEATHER_COLUMNS},
            "plane_age": j["year"] - j["plane_year"],
            "seats": j["seats"],
            "engines": j["engines"],
            "plane_type": j["plane_type"],
        }
    )


def _project(tmp: Path) -> Path:
    import shutil

    project = tmp / "project"
    (project / "dags").mkdir(parents=True)
    shutil.copy(ROOT / "dags" / "flights_delay.pipeline.yaml", project / "dags")
    shutil.copytree(ROOT / "include" / "features", project / "include" / "features")
    shutil.copy(ROOT / "pyproject.toml", project)
    return project


def run(quick: bool) -> dict[str, Any]:
    """Median seconds of the train step with and without MLflow, alternating, and their ratio."""
    from threadpoolctl import threadpool_limits

    from sluice.services import tracking
    from sluice.services.storage import PipelineStore
    from sluice.spec.loader import load_spec
    from sluice.steps import train
    from sluice.steps.records import FeatureResult

    rows, reps = (30_000, 3) if quick else (60_000, 5)
    with tempfile.TemporaryDirectory(prefix="sluice-bench-tracking-") as tmp_name:
        tmp = Path(tmp_name)
        project = _project(tmp)
        uri = f"sqlite:///{tmp / 'mlflow' / 'mlflow.db'}"
        env = {"MLFLOW_TRACKING_URI": uri, "SLUICE_PROJECT_DIR": str(project), "GIT_DIR": str(tmp / "no-git")}
        # One OpenMP thread for the fit on both sides: on a shared 2-core machine, spinning
        # OpenMP threads made the same fit take anywhere from 8 s to 95 s.
        with mock.patch.dict("os.environ", env), threadpool_limits(1):
            tracking.init_store(uri)
            loaded = load_spec(project / "dags" / "flights_delay.pipeline.yaml")
            store = PipelineStore(tmp / "store", loaded.spec.pipeline)
            table = feature_table(rows, tmp / "reference")
            key = store.keys.features("bench", "part-0.parquet")
            with store.open_write(key) as fh:
                table.to_parquet(fh, index=False)
            features = FeatureResult(
                path=store.location(key), key="bench", batches={}, job_hash="bench", rows=len(table)
            )
            train._fit(loaded, store, features)  # warm-up: imports and first-fit costs on neither side
            train.train_candidate(loaded, store, features, "flights_delay__train", "warm-up")
            plain, logged = [], []
            for i in range(reps):
                plain.append(timed(lambda: train._fit(loaded, store, features))[0])
                seconds, result = timed(
                    lambda i=i: train.train_candidate(loaded, store, features, "flights_delay__train", f"bench-{i}")
                )
                logged.append(seconds)
            artifacts = sum(f.stat().st_size for f in (tmp / "mlflow").rglob("*") if f.is_file())
    p, w = statistics.median(plain), statistics.median(logged)
    ratio, overhead = w / p, w - p
    return entry(
        "tracking",
        measured=(
            f"the train step (train_candidate: fit HistGradientBoosting on the demo features, {rows:,} rows, then "
            "log params, metrics, lineage, model, signature and input example to MLflow on SQLite + local files)"
        ),
        baseline="the same fit and holdout score without MLflow (the function train_candidate calls)",
        values={
            "rows": rows,
            "threads": 1,
            "train_rows": result.train_rows,
            "with_mlflow_seconds": round(w, 3),
            "without_mlflow_seconds": round(p, 3),
            "overhead_seconds": round(overhead, 3),
            "with_samples": [round(s, 3) for s in logged],
            "without_samples": [round(s, 3) for s in plain],
            "repetitions": reps,
            "mlflow_store_bytes_after_all_runs": artifacts,
        },
        ratio=ratio,
        target=f"<= {TARGET}x or <= {SLACK_SECONDS:.0f} s overhead",
        target_ratio=TARGET,
        met=ratio <= TARGET or overhead <= SLACK_SECONDS,
        summary=f"{w:.2f} s vs {p:.2f} s: {overhead:+.2f} s per run",
    )
