"""What every bench module shares: timing, the result entry, scaled demo data, child processes.

A bench module ``bench/<name>.py`` exposes ``run(quick: bool) -> dict`` and returns
:func:`entry`'s dict; ``bench/run.py`` adds the command, date and machine and merges it
into ``bench/results.json``.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from functools import cache
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT / "include") not in sys.path:
    sys.path.insert(0, str(ROOT / "include"))

#: Modules too heavy for parse time (the DAG file must load without them).
HEAVY_MODULES = ("pandas", "pyspark", "great_expectations", "mlflow", "evidently", "sklearn")


def entry(
    name: str,
    *,
    measured: str,
    baseline: str,
    values: dict[str, Any],
    ratio: float,
    target: str,
    target_ratio: float,
    met: bool,
    notes: str | None = None,
    summary: str | None = None,
) -> dict[str, Any]:
    """One bench's result, in the shape ``bench/results.json`` keeps per bench name.

    ``summary`` (optional) is the short "measured here" text of the performance table (docs/performance.md), e.g.
    "1.05 s vs 0.98 s"; without it the table shows the ratio alone.
    """
    return {
        "name": name,
        "measured": measured,
        "baseline": baseline,
        "values": values,
        "ratio": round(float(ratio), 4),
        "target": target,
        "target_ratio": target_ratio,
        "met": bool(met),
        "notes": notes,
        "summary": summary,
    }


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    """Wall seconds of one call, and what it returned."""
    started = time.perf_counter()
    result = fn()
    return time.perf_counter() - started, result


def median_seconds(fn: Callable[[], Any], reps: int) -> tuple[float, list[float]]:
    """Median wall seconds over ``reps`` calls, and every sample (rounded to the millisecond)."""
    samples = [timed(fn)[0] for _ in range(reps)]
    return statistics.median(samples), [round(s, 3) for s in samples]


@cache
def _month(month: int) -> Any:
    from demo.producer import month_frame

    return month_frame(month)


def flights(rows: int, months: Sequence[int] = tuple(range(1, 13)), seed: int = 0) -> Any:
    """``rows`` flights-like rows: the demo's months (``include/demo/producer.py``) replicated.

    Rows are drawn in a seeded order and each repetition of a source row gets its own
    ``flight`` number, so the scaled batch is not the same few keys over and over.
    """
    import numpy as np
    import pandas as pd

    base = pd.concat([_month(m) for m in months], ignore_index=True)
    rng = np.random.default_rng(seed)
    order = np.concatenate([rng.permutation(len(base)) for _ in range(-(-rows // len(base)))])[:rows]
    df = base.iloc[order].reset_index(drop=True)
    copy = np.arange(rows) // len(base)
    df["flight"] = df["flight"].to_numpy() + 10_000 * copy
    return df


def run_child(args: Sequence[str], env: dict[str, str] | None = None, timeout: float = 1800) -> tuple[Any, int]:
    """Run ``python *args`` from the project root; return the JSON its last stdout line holds and peak RSS.

    The peak is the largest resident set of the child and its own children together, polled
    every 20 ms with psutil (short spikes between polls can be missed).

    Raises:
        RuntimeError: The child failed; its stderr tail is in the message.
    """
    import psutil

    child_env = dict(os.environ, PYTHONPATH=str(ROOT / "include")) | (env or {})
    proc = psutil.Popen(
        [sys.executable, *args], cwd=ROOT, env=child_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    peak = 0
    done = threading.Event()

    def poll() -> None:
        nonlocal peak
        while not done.is_set():
            try:
                tree = [proc, *proc.children(recursive=True)]
                peak = max(peak, sum(p.memory_info().rss for p in tree))
            except psutil.Error:
                pass
            time.sleep(0.02)

    watcher = threading.Thread(target=poll, daemon=True)
    watcher.start()
    try:
        out, err = proc.communicate(timeout=timeout)
    finally:
        done.set()
        watcher.join()
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed ({proc.returncode}): {err[-3000:]}")
    return json.loads(out.strip().splitlines()[-1]), peak


def mib(n_bytes: float) -> float:
    """Bytes as MiB, rounded."""
    return round(n_bytes / 2**20, 1)
