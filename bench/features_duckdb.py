"""``features.engine: duckdb`` vs ``local`` (Spark local[*]): the build_features step on ~100k rows (issue 30).

What an Airflow task on the embedded default pays: the whole ``build_features`` call in a fresh
process, Spark's session start (JVM) included on the local side and the sqlframe child
process's start on the DuckDB side, as a task would. Data: four accepted demo batches (the
producer's months 1-4, 25,000 flights each) in a local pipeline store of a temporary project
with the demo spec and its unchanged feature job (``scope: batch``: four tables a run). Each
repetition removes the feature tables first, so every run computes all four. Both sides'
tables are compared once (same rows and columns, sorted; floats within 1e-9 relative).

Run: ``python bench/run.py --only features_duckdb``, or ``python bench/features_duckdb.py
[--quick]`` (prints the entry as JSON).
"""

from __future__ import annotations

import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT / "include") not in sys.path:
    sys.path.insert(0, str(ROOT / "include"))

ENGINES = ("local", "duckdb")
MONTHS = (1, 2, 3, 4)
SAMPLE = 25_000
TARGET = 0.3


def _project(root: Path) -> dict[str, Path]:
    """A project with the demo job and reference tables, and one spec per engine (same pipeline, same store)."""
    import yaml

    from demo.producer import write_reference

    (root / "dags").mkdir(parents=True)
    (root / "include" / "features").mkdir(parents=True)
    (root / "pyproject.toml").write_text("[project]\nname = 'sluice-bench-features-duckdb'\n")
    shutil.copy(ROOT / "include" / "features" / "flights.py", root / "include" / "features" / "flights.py")
    write_reference(root / "data" / "reference")
    specs = {}
    for engine in ENGINES:
        spec = yaml.safe_load((ROOT / "dags" / "flights_delay.pipeline.yaml").read_text())
        spec["features"]["engine"] = engine
        specs[engine] = root / "dags" / f"flights_delay_{engine}.pipeline.yaml"
        specs[engine].write_text(yaml.safe_dump(spec, sort_keys=False))
    return specs


def _child(spec: Path) -> dict[str, Any]:
    """One build_features call from a clean feature store (in this fresh process)."""
    from sluice.services.storage import open_store
    from sluice.spec.loader import load_spec
    from sluice.steps.features import build_features

    loaded = load_spec(spec)
    store = open_store(loaded)
    store.remove("features")
    store.remove("feature_cache")
    started = time.perf_counter()
    result = build_features(loaded, store)
    seconds = time.perf_counter() - started
    return {"seconds": seconds, "rows": result.rows, "parts": result.parts}


def _measure(spec: Path, reps: int) -> tuple[dict[str, Any], list[str]]:
    from harness import run_child

    runs = [run_child([__file__, "--child", str(spec)]) for _ in range(reps)]
    seconds = [r["seconds"] for r, _ in runs]
    values = {
        "seconds": round(statistics.median(seconds), 3),
        "samples": [round(s, 3) for s in seconds],
        "peak_rss_mb": round(max(peak for _, peak in runs) / 1e6, 1),
        "rows": runs[-1][0]["rows"],
    }
    return values, runs[-1][0]["parts"]


def _same_tables(a: list[str], b: list[str]) -> int:
    """Both engines' tables hold the same rows (sorted); the rows compared."""
    import pandas as pd

    left, right = (pd.concat([pd.read_parquet(p) for p in parts], ignore_index=True) for parts in (a, b))
    assert list(left.columns) == list(right.columns), (list(left.columns), list(right.columns))
    left, right = (t.sort_values(list(t.columns)).reset_index(drop=True) for t in (left, right))
    pd.testing.assert_frame_equal(left, right, check_dtype=False, check_exact=False, rtol=1e-9)
    return len(left)


def run(quick: bool) -> dict[str, Any]:
    """DuckDB vs local Spark for the build_features step on 100k rows (median of 3; quick: 1)."""
    from demo.batches import accept_month
    from harness import entry
    from sluice.services.storage import open_store
    from sluice.spec.loader import load_spec

    reps = 1 if quick else 3
    with tempfile.TemporaryDirectory(prefix="bench-features-duckdb-") as tmp:
        specs = _project(Path(tmp) / "project")
        store = open_store(load_spec(specs["local"]))  # the project is found by its pyproject.toml
        for month in MONTHS:
            accept_month(store, month, SAMPLE)
        values: dict[str, Any] = {"batch_rows": SAMPLE * len(MONTHS), "repetitions": reps}
        parts: dict[str, list[str]] = {}
        for engine in ENGINES:
            values[engine], parts[engine] = _measure(specs[engine], reps)
            # The next engine's run removes this one's tables: keep them aside for the comparison.
            kept = Path(tmp) / f"kept-{engine}"
            kept.mkdir()
            parts[engine] = [shutil.copytree(p, kept / str(n)) for n, p in enumerate(parts[engine])]
        values["checked_rows"] = _same_tables(*(list(map(str, parts[e])) for e in ENGINES))
    ratio = values["duckdb"]["seconds"] / values["local"]["seconds"]
    return entry(
        "features_duckdb",
        measured=(
            f"The build_features step (features.engine: duckdb) on {SAMPLE * len(MONTHS):,} demo flights in "
            f"{len(MONTHS)} batches, in a fresh process, median of {reps}"
        ),
        baseline="the same step with features.engine: local (Spark local[*]; its session start included)",
        values=values,
        ratio=ratio,
        target="<= 0.3x local Spark's time, the same feature table",
        target_ratio=TARGET,
        met=ratio <= TARGET and not quick,
        summary=f"{values['duckdb']['seconds']:.1f} s vs {values['local']['seconds']:.1f} s",
        notes=(
            "Both sides time the build_features call alone (interpreter and sluice imports excluded): Spark's "
            "session start and DuckDB's child process start are in. Peak RSS is the process tree's (the JVM and "
            f"the DuckDB child included). Same tables checked on all {values['checked_rows']:,} rows."
            + (" Quick mode: one repetition, target not judged." if quick else "")
        ),
    )


if __name__ == "__main__":
    if "--child" in sys.argv:
        print(json.dumps(_child(Path(sys.argv[sys.argv.index("--child") + 1]))))
    else:
        print(json.dumps(run(quick="--quick" in sys.argv), indent=2))
