"""Validation: the Great Expectations suite sluice builds for the demo spec vs the same checks in pandas.

Data: flights-like batches scaled from the demo's months (``harness.flights``), conformed to
the spec's declared columns as the validate step does (``sluice.steps.schema.conform``);
clean, and with 1% of rows given a negative ``distance`` (the demo's corruption, which the
spec quarantines: the quarantine path fetches the failing rows' indexes).

- sluice: the checks as the validate step runs them (:func:`sluice_checks`: one
  :class:`sluice.services.gx.Checks`, the row-level expectations per chunk of the spec's
  ``validation.chunk_rows`` rows, a BOOLEAN_ONLY pass then a COMPLETE pass over the failed ones, the
  batch-level ones on the batch's shape). The ``import great_expectations`` is timed apart.
- baseline: the same six checks as vectorised pandas masks, with the failing rows' indexes.

Each batch is made once and written as parquet, as landed and conformed; each (side, size,
clean/bad) then runs in its own interpreter (``python bench/validation.py child ...``) that
reads the conformed batch, so its peak memory (RSS, polled with psutil) is its own; sizes 1M
(median of 7: a pass is under a second) and 10M rows (median of 3), quick: 100k. Target:
<= 3x at every size.

Beside the ratio, the whole validate step (read, conform, check, write ``clean.parquet`` and
``quarantine.parquet``) runs on each size's 1%-bad batch in its own interpreter, in chunks of
the spec's ``validation.chunk_rows`` (the default users get: 250,000 rows; quick:
:data:`QUICK_CHUNK`): a batch larger than memory validates when the peak follows the chunk,
not the batch (met requires the 10M-row batch to peak at most :data:`MEMORY_GROWTH` times the
1M-row one). What is left of the growth is pyarrow decoding a whole row group (about 1M rows
as pandas writes them) while a chunk straddles two. Read whole, the 10M-row batch peaked at
7.9 GiB; in 1M-row chunks (the default until 2026-12) at 2.2 GiB, 1.86x the 1M-row batch's
peak: the verdict missed, which is why the default is now 250,000 rows.
"""

from __future__ import annotations

import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from harness import ROOT, entry, mib, run_child

TARGET = 3.0
#: What cProfile showed (run_expectations at 1M rows, 1% bad), and what was done about it.
PROFILE = (
    "cProfile of run_expectations at 1M rows with 1% bad: GX fingerprinted the batch with "
    "pandas.util.hash_pandas_object on each of its get_batch calls (0.54 s of 1.15 s; above 1 GB of frame "
    "memory it skips this, which is why a 10M-row batch read whole was not faster per row), copied the "
    "frame in its map-metric helpers (boolean filters, 0.3 s) and built SUMMARY results it did not need. "
    "sluice now hands GX only the columns its checks read (services/gx.columns_read), turns the fingerprint "
    "off (HASH_THRESHOLD = 0), and runs the checks per chunk of validation.chunk_rows rows in one GX "
    "context, the batch-level checks on the batch's shape: 10M rows went from 38-64 s to about 3 s. The worst "
    "case was then 1M rows with 1% bad (3.0-3.1x): its BASIC pass built a sample of unexpected values no one "
    "read, the COMPLETE pass that lists the failing rows copied every checked column, and serialising "
    "COMPLETE's full lists cost more than the pass. Now a BOOLEAN_ONLY pass gives the verdicts, COMPLETE runs "
    "only over the failed checks on their columns, and the full lists are dropped before serialising: 0.27 -> "
    "0.22 s at 1M rows with 1% bad. What remains is GX's per-pass cost (metric graph, the filtered copies, "
    "isna over object strings) at about 1.7-2.7x the pandas masks; `import great_expectations` "
    "(6-40 s here, once per task process, preloaded by the embedded scheduler's forkserver) is not in the "
    "ratio. The step measurement (read, conform, check, write) shows the chunked step's peak memory "
    "following the chunk, not the batch."
)
BAD_SHARE = 0.01
#: Chunk size of the quick step measurement, so that its 100k-row batch is read in chunks too
#: (a full run uses the spec's ``validation.chunk_rows``: the default, the demo spec sets none).
QUICK_CHUNK = 25_000
#: Most the step's peak memory may grow from the smallest batch to the largest (10x the rows).
MEMORY_GROWTH = 1.5


def pandas_checks(df: Any, expectations: list[Any]) -> list[dict[str, Any]]:
    """The spec's checks as pandas masks: per check success, unexpected count and failing row indexes."""
    results = []
    for exp in expectations:
        kw = exp.gx_kwargs()
        if exp.type == "column_exists":
            results.append({"check": exp.type, "success": kw["column"] in df.columns, "unexpected": 0, "index": []})
            continue
        col = df[kw["column"]]
        if exp.type == "not_null":
            bad = col.isna()
        elif exp.type == "between":
            lo, hi = kw["min_value"], kw["max_value"]
            inside = (col >= lo if lo is not None else True) & (col <= hi if hi is not None else True)
            bad = col.notna() & ~inside.fillna(False).astype(bool)
        elif exp.type == "in_set":
            bad = col.notna() & ~col.isin(kw["value_set"])
        else:
            raise NotImplementedError(f"no pandas version of {exp.type} in this bench")
        mask = bad.to_numpy(dtype=bool)
        n = int(mask.sum())
        results.append(
            {"check": exp.type, "success": n == 0, "unexpected": n, "index": list(df.index[mask]) if n else []}
        )
    return results


def sluice_checks(df: Any, expectations: list[Any], chunk_rows: int) -> list[int]:
    """The checks as the validate step runs them on a batch: GX per chunk of ``chunk_rows``, shape at the end.

    Returns:
        Each check's unexpected count, in spec order.
    """
    from sluice.services.gx import Checks

    checks = Checks(expectations)
    counts = dict.fromkeys(range(len(expectations)), 0)
    for start in range(0, len(df), chunk_rows):
        for i, result in zip(
            checks.row_level, checks.run(df.iloc[start : start + chunk_rows], checks.row_level)[0], strict=True
        ):
            counts[i] += result.unexpected_count
    for i, result in zip(checks.batch_level, checks.on_shape(list(df.columns), len(df))[0], strict=True):
        counts[i] += result.unexpected_count
    return list(counts.values())


def _child(side: str, batch: str, reps: int) -> dict[str, Any]:
    """One configuration in this interpreter: read the conformed batch, time the checks ``reps`` times."""
    import pandas as pd
    import psutil

    from sluice.spec.loader import load_spec

    spec = load_spec(ROOT / "dags" / "flights_delay.pipeline.yaml").spec
    # The batch as the validate step checks it: conformed to the spec's columns once, by _batches.
    df = pd.read_parquet(Path(batch).with_name(f"conformed_{Path(batch).name}"))
    expectations = list(spec.validation.expectations)
    data_rss = psutil.Process().memory_info().rss
    import_seconds = 0.0
    if side == "gx":
        started = time.perf_counter()
        import great_expectations  # noqa: F401

        import_seconds = time.perf_counter() - started

        def check() -> list[int]:
            return sluice_checks(df, expectations, spec.validation.chunk_rows)
    else:

        def check() -> list[int]:
            return [c["unexpected"] for c in pandas_checks(df, expectations)]

    times, counts = [], []
    for _ in range(reps):
        started = time.perf_counter()
        counts = check()
        times.append(time.perf_counter() - started)
    return {
        "seconds": statistics.median(times),
        "samples": [round(t, 3) for t in times],
        "import_seconds": import_seconds,
        "unexpected": counts,
        "data_rss": data_rss,
    }


def _step(batch: str, chunk_rows: int) -> dict[str, Any]:
    """The whole validate step (read, conform, check, write clean and quarantine rows) on one landed batch."""
    import shutil

    import great_expectations  # noqa: F401  (imported before the clock starts, as in a warm task process)

    from sluice.services.landing import LocalInbox
    from sluice.services.storage import PipelineStore
    from sluice.spec.loader import load_spec
    from sluice.steps.ingest import land_new_files
    from sluice.steps.validate import validate_batch

    spec = load_spec(ROOT / "dags" / "flights_delay.pipeline.yaml").spec
    with tempfile.TemporaryDirectory(prefix="sluice-bench-validate-step-") as tmp:
        inbox = Path(tmp, "inbox")
        inbox.mkdir()
        shutil.copy(batch, inbox / "batch.parquet")
        store = PipelineStore(Path(tmp, "store"), "bench")
        (batch_id,) = land_new_files(LocalInbox(inbox, "*.parquet", settle_seconds=0), store, "bench").new
        validation = spec.validation.model_copy(update={"chunk_rows": chunk_rows})
        started = time.perf_counter()
        outcome = validate_batch(store, batch_id, validation, "parquet", spec.source.columns)
        seconds = time.perf_counter() - started
    return {"seconds": seconds, "status": str(outcome.status), "quarantined": outcome.quarantined}


def _batches(rows: int, folder: Path) -> dict[bool, Path]:
    """The clean and the 1%-bad batch of ``rows`` rows as parquet files (made once, read by each child)."""
    import numpy as np

    from harness import flights
    from sluice.spec.loader import load_spec
    from sluice.steps.schema import conform

    columns = load_spec(ROOT / "dags" / "flights_delay.pipeline.yaml").spec.source.columns or {}
    df = flights(rows, seed=4)
    clean, bad = folder / f"clean_{rows}.parquet", folder / f"bad_{rows}.parquet"
    conformed = conform(df, columns, "parquet").frame
    conformed.to_parquet(folder / f"conformed_{clean.name}")
    # A negative distance is still a whole number: conforming the bad batch changes nothing else.
    hit = np.random.default_rng(5).choice(rows, size=int(rows * BAD_SHARE), replace=False)
    df.loc[hit, "distance"] = -1
    df.to_parquet(bad, index=False)  # as landed: the step measurement reads and conforms it itself
    conformed.loc[hit, "distance"] = -1
    conformed.to_parquet(folder / f"conformed_{bad.name}")
    return {False: clean, True: bad}


def _measure(side: str, batch: Path, reps: int) -> dict[str, Any]:
    out, peak = run_child(["bench/validation.py", "child", side, str(batch), str(reps)])
    return out | {"peak_rss_mib": mib(peak), "data_rss_mib": mib(out.pop("data_rss"))}


def _measure_step(batch: Path, chunk_rows: int | None) -> dict[str, Any]:
    from sluice.spec.loader import load_spec

    chunk = chunk_rows or load_spec(ROOT / "dags" / "flights_delay.pipeline.yaml").spec.validation.chunk_rows
    out, peak = run_child(["bench/validation.py", "step", str(batch), str(chunk)])
    rows = int(batch.stem.rsplit("_", 1)[-1])
    return out | {"rows": rows, "chunk_rows": chunk, "seconds": round(out["seconds"], 2), "peak_rss_mib": mib(peak)}


def run(quick: bool) -> dict[str, Any]:
    """GX vs pandas per size, clean and 1% bad; the ratio is the worst GX/pandas time."""
    import psutil

    sizes = [100_000] if quick else [1_000_000, 10_000_000]
    configs: dict[str, Any] = {}
    step: dict[str, Any] = {}
    skipped = []
    for rows in sizes:
        # ~1.1 GB per million rows at the GX peak (data included): skip a size that cannot fit.
        if rows * 1100 > psutil.virtual_memory().available:
            skipped.append(rows)
            continue
        # A GX pass at 1M rows is under a second: more repetitions steady its median.
        reps = 7 if rows <= 1_000_000 else 3
        with tempfile.TemporaryDirectory(prefix="sluice-bench-validation-") as tmp:
            batches = _batches(rows, Path(tmp))
            runs = {
                bad: (_measure("gx", batches[bad], reps), _measure("pandas", batches[bad], reps))
                for bad in (False, True)
            }
            step[str(rows)] = _measure_step(batches[True], QUICK_CHUNK if quick else None)
        for bad, (gx, pd_) in runs.items():
            configs[f"{rows}_{'bad' if bad else 'clean'}"] = {
                "rows": rows,
                "bad_rows": int(rows * BAD_SHARE) if bad else 0,
                "repetitions": reps,
                "gx_seconds": round(gx["seconds"], 3),
                "pandas_seconds": round(pd_["seconds"], 4),
                "ratio": round(gx["seconds"] / pd_["seconds"], 1),
                "gx_import_seconds": round(gx["import_seconds"], 2),
                "gx_samples": gx["samples"],
                "pandas_samples": pd_["samples"],
                "gx_peak_rss_mib": gx["peak_rss_mib"],
                "pandas_peak_rss_mib": pd_["peak_rss_mib"],
                "data_rss_mib": pd_["data_rss_mib"],
                "same_unexpected_counts": gx["unexpected"] == pd_["unexpected"],
            }
    ratio = max(c["ratio"] for c in configs.values())
    # Memory follows the chunk, not the batch: 10x the rows in the same chunks, about the same peak.
    small, big = step[str(min(map(int, step)))], step[str(max(map(int, step)))]
    growth = big["peak_rss_mib"] / small["peak_rss_mib"]
    memory_follows_the_chunk = quick or growth <= MEMORY_GROWTH
    largest = max(configs.values(), key=lambda c: (c["rows"], c["bad_rows"]))
    return entry(
        "validation",
        measured=(
            "sluice's Great Expectations suite for the demo spec as the validate step runs it (six checks, per "
            "chunk of validation.chunk_rows rows, plus the failing rows' indexes when a row check fails) on "
            "conformed flights batches, clean and with 1% bad rows"
        ),
        baseline="the same six checks as vectorised pandas masks with the failing rows' indexes, same batch",
        values={
            "configs": configs,
            "skipped_sizes_for_memory": skipped,
            "step_1pct_bad": step,
            "step_memory_growth": round(growth, 2),
        },
        ratio=ratio,
        target=f"<= {TARGET:g}x; the step's peak memory at most {MEMORY_GROWTH:g}x for 10x the rows",
        target_ratio=TARGET,
        met=ratio <= TARGET and all(c["same_unexpected_counts"] for c in configs.values()) and memory_follows_the_chunk,
        notes=PROFILE,
        summary=(
            f"{largest['rows']:,} rows, 1% bad: GX {largest['gx_seconds']:.1f} s "
            f"(+{largest['gx_import_seconds']:.0f} s import), peak {largest['gx_peak_rss_mib'] / 1024:.1f} GiB vs "
            f"pandas {largest['pandas_seconds']:.2f} s, {largest['pandas_peak_rss_mib'] / 1024:.1f} GiB; "
            f"the whole validate step in chunks of {big['chunk_rows']:,} rows peaks at "
            f"{big['peak_rss_mib'] / 1024:.2f} GiB on {big['rows']:,} rows vs {small['peak_rss_mib'] / 1024:.2f} GiB "
            f"on {small['rows']:,} ({growth:.2f}x for {big['rows'] // small['rows']}x the rows)"
        ),
    )


if __name__ == "__main__" and sys.argv[1:2] == ["child"]:
    print(json.dumps(_child(sys.argv[2], sys.argv[3], int(sys.argv[4]))))
if __name__ == "__main__" and sys.argv[1:2] == ["step"]:
    print(json.dumps(_step(sys.argv[2], int(sys.argv[3]))))
