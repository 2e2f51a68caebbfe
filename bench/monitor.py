"""Monitor: the real monitor step (compute_drift) on 1M and 10M rows a side (issue 27).

Data: flights-like batches scaled from the demo's months (``harness.flights``), conformed to
the demo spec's columns and written as the validate step writes ``clean.parquet`` (row groups
of the spec's ``validation.chunk_rows``). Reference: the champion's training history, N rows
of January to March in batches of 1M rows (ten batches at 10M); current: one batch of N rows
of July (the summer destination mix: the drift bench's drifted case). The champion is a real
one in an MLflow SQLite store (``bench/evaluate.py``'s set-up) whose run names the reference
batches as trained on.

Each measurement runs :func:`sluice.steps.monitor.monitor_batches` (footers, seeded sample
while reading, Evidently, report, MLflow run and the champion's series, batch records) in its
own interpreter, for its wall time and the peak RSS of its process tree. Target: 10x the rows
on both sides cost at most :data:`TIME_GROWTH` times the time and :data:`MEMORY_GROWTH` times
the peak memory, with the same verdict at both sizes. Beside it, at the smaller size the
clean rows are read whole and compared (``monitor.read_clean`` + ``compare``: the step before
issue 27): the sample is the same rows, so the scores must be the same (to 1e-9 relative, see
:func:`same_scores`). Before, 10M rows a
side took 19.2 s and 4.1 GB.
"""

from __future__ import annotations

import json
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

from harness import ROOT, entry, flights, mib, run_child

TIME_GROWTH = 12.0
MEMORY_GROWTH = 1.5
PIPELINE = "flights_delay"
#: Rows per reference batch (a month of a busy pipeline).
BATCH_ROWS = 1_000_000


def _write_clean(store: Any, batch_id: str, rows: int, months: tuple[int, ...], seed: int, landed_at: float) -> None:
    """An accepted batch of ``rows`` flights: ``clean.parquet`` as validate writes it, and ``batch.json``."""
    import pyarrow.parquet as pq

    from sluice.spec.loader import load_spec
    from sluice.steps.schema import conform, to_arrow

    spec = load_spec(ROOT / "dags" / f"{PIPELINE}.pipeline.yaml").spec
    columns = spec.source.columns or {}
    with store.open_write(store.keys.batch(batch_id, "clean.parquet")) as fh:
        writer: Any = None
        for k, start in enumerate(range(0, rows, BATCH_ROWS)):
            piece = conform(flights(min(BATCH_ROWS, rows - start), months=months, seed=seed + k), columns, "parquet")
            table = to_arrow(piece.frame, columns)
            if writer is None:
                writer = pq.ParquetWriter(fh, table.schema)
            writer.write_table(table, row_group_size=spec.validation.chunk_rows)
        writer.close()
    record = {"batch_id": batch_id, "landed_at": landed_at, "status": "accepted", "rows": rows}
    store.json.write(store.keys.batch(batch_id, "batch.json"), record)


def _batches(setup: Any, rows: int) -> str:
    """Replace the store's batches with ``rows`` reference rows and one ``rows``-row new batch; its id.

    The champion's run is tagged as trained on the reference batches.
    """
    from unittest import mock

    from sluice.services import tracking
    from sluice.services.storage import PipelineStore

    store = PipelineStore(setup.store_root, PIPELINE)
    store.remove("batches")
    reference = [f"ref-{rows}-{k}" for k in range(-(-rows // BATCH_ROWS))]
    for k, batch_id in enumerate(reference):
        _write_clean(store, batch_id, min(BATCH_ROWS, rows - k * BATCH_ROWS), (1, 2, 3), 100 + 10 * k, float(k))
    current = f"new-{rows}"
    _write_clean(store, current, rows, (7,), 500, float(len(reference)))
    with mock.patch.dict("os.environ", setup.env):
        client = tracking.configure_uri(setup.env["MLFLOW_TRACKING_URI"])
        client.set_tag(setup.champion_run_id, "sluice.batches.trained_on", ",".join(reference))
    return current


def _child(mode: str, project: str, store_root: str, batch_id: str, run_id: str) -> dict[str, Any]:
    """One monitor run in this interpreter: ``step`` (monitor_batches) or ``whole`` (the rows read whole)."""
    import time

    from sluice.services.storage import PipelineStore
    from sluice.spec.loader import load_spec
    from sluice.steps.monitor import compare, monitor_batches, read_clean

    loaded = load_spec(Path(project) / "dags" / f"{PIPELINE}.pipeline.yaml")
    store = PipelineStore(store_root, PIPELINE)
    drift = loaded.spec.monitoring.drift
    started = time.perf_counter()
    if mode == "step":
        result = monitor_batches(loaded, store, [batch_id], f"{PIPELINE}__monitor", run_id)
        scores = {c.column: c.score for c in result.columns}
        detected, share, status = result.drift_detected, result.drift_share, str(result.status)
        reference_batches = result.reference_batches
    else:
        from sluice.services import tracking
        from sluice.steps.lineage import run_batches

        client = tracking.configure(loaded.project_dir)
        champ = tracking.champion(client, PIPELINE)
        assert champ is not None
        reference_batches = run_batches(client.get_run(str(champ.run_id)).data.tags).trained_on
        results, share, detected, _ = compare(
            read_clean(store, reference_batches), read_clean(store, [batch_id]), drift
        )
        scores = {c.column: c.score for c in results}
        status = "compared"
    return {
        "seconds": time.perf_counter() - started,
        "status": status,
        "drift_detected": detected,
        "drift_share": share,
        "scores": scores,
        "reference_batches": len(reference_batches),
    }


def _measure(mode: str, setup: Any, batch_id: str, run_id: str) -> dict[str, Any]:
    args = ["bench/monitor.py", "child", mode, str(setup.project), str(setup.store_root), batch_id, run_id]
    out, peak = run_child(args, env=setup.env)
    return out | {"peak_rss_mib": mib(peak)}


def same_scores(a: dict[str, float], b: dict[str, float]) -> bool:
    """The same columns with the same scores, to 1e-9 relative.

    Not bit for bit: each measurement is its own interpreter, and Evidently sums a categorical
    column's per-category terms in the order of a Python set of strings, which string hash
    randomisation changes from process to process (the last bits of the sum move; two runs in
    one interpreter agree exactly).
    """
    import math

    return a.keys() == b.keys() and all(math.isclose(a[c], b[c], rel_tol=1e-9, abs_tol=1e-12) for c in a)


def run(quick: bool) -> dict[str, Any]:
    """The monitor step at two sizes 10x apart (both sides); the ratio is the time growth."""
    from evaluate import gate_project
    from sluice.spec.loader import load_spec

    sample_size = load_spec(ROOT / "dags" / f"{PIPELINE}.pipeline.yaml").spec.monitoring.drift.sample_size
    sizes = [100_000, 1_000_000] if quick else [1_000_000, 10_000_000]
    values: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="sluice-bench-monitor-") as tmp:
        setup = gate_project(Path(tmp), candidate=False)
        for rows in sizes:
            reps = 3 if rows == sizes[0] else 2
            current = _batches(setup, rows)
            runs = [_measure("step", setup, current, f"bench-{rows}-{i}") for i in range(reps)]
            values[str(rows)] = {
                "rows_per_side": rows,
                "reference_batches": runs[0]["reference_batches"],
                "repetitions": reps,
                "seconds": round(statistics.median(r["seconds"] for r in runs), 2),
                "samples": [round(r["seconds"], 2) for r in runs],
                "peak_rss_mib": max(r["peak_rss_mib"] for r in runs),
                "verdict": "drift" if runs[0]["drift_detected"] else "no drift",
                "drift_share": runs[0]["drift_share"],
                "scores": {c: round(s, 4) for c, s in runs[0]["scores"].items()},
            }
            if rows == sizes[0]:
                whole = _measure("whole", setup, current, "whole")
                values[f"{rows}_whole"] = {
                    "seconds": round(whole["seconds"], 2),
                    "peak_rss_mib": whole["peak_rss_mib"],
                    "verdict": "drift" if whole["drift_detected"] else "no drift",
                }
                values["same_scores_as_whole"] = same_scores(whole["scores"], runs[0]["scores"])
                values["max_score_difference_vs_whole"] = max(
                    abs(whole["scores"][c] - runs[0]["scores"][c]) for c in runs[0]["scores"]
                )
    small, big = values[str(sizes[0])], values[str(sizes[1])]
    time_growth = big["seconds"] / small["seconds"]
    memory_growth = big["peak_rss_mib"] / small["peak_rss_mib"]
    same_verdict = small["verdict"] == big["verdict"] == values[f"{sizes[0]}_whole"]["verdict"]
    values |= {"time_growth": round(time_growth, 2), "memory_growth": round(memory_growth, 2)}
    met = time_growth <= TIME_GROWTH and memory_growth <= MEMORY_GROWTH and same_verdict
    whole = values[f"{sizes[0]}_whole"]
    return entry(
        "monitor",
        measured=(
            f"the monitor step (monitor_batches: a seeded {sample_size:,}-row sample per side read from the clean "
            "batches, "
            f"Evidently, report, MLflow) on {sizes[1]:,} rows a side (reference in 1M-row batches, one new "
            "batch), own interpreter; wall time and peak process-tree RSS"
        ),
        baseline=f"the same step on {sizes[0]:,} rows a side (10x fewer)",
        values=values,
        ratio=time_growth,
        target=(
            f"time <= {TIME_GROWTH:g}x and peak memory <= {MEMORY_GROWTH:g}x for 10x the rows; same verdict, "
            "same scores as read whole"
        ),
        target_ratio=TIME_GROWTH,
        met=met and values["same_scores_as_whole"] and not quick,
        notes=(
            "The row counts come from the parquet footers, the sample positions are drawn first (NumPy's Floyd "
            "sampling: memory follows monitoring.drift.sample_size), and each batch is read for its share of them: "
            "only the compared columns, only row groups holding a sampled row, the rest dropped before pandas. "
            f"Read whole at {sizes[0]:,} rows a side (the step before issue 27): {whole['seconds']:.1f} s, "
            f"{whole['peak_rss_mib'] / 1024:.2f} GiB, {whole['verdict']}. Before, 10M rows a side took 19.2 s "
            "and 4.1 GB." + (" Quick run: sizes 100k and 1M, target not judged." if quick else "")
        ),
        summary=(
            f"{sizes[1]:,} rows a side {big['seconds']:.1f} s, {big['peak_rss_mib'] / 1024:.2f} GiB ({big['verdict']}) "
            f"vs {sizes[0]:,} {small['seconds']:.1f} s, {small['peak_rss_mib'] / 1024:.2f} GiB ({small['verdict']}) "
            f"(memory {memory_growth:.2f}x); same scores as read whole: {values['same_scores_as_whole']}"
        ),
    )


if __name__ == "__main__" and sys.argv[1:2] == ["child"]:
    print(json.dumps(_child(*sys.argv[2:7])))
