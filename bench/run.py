"""Performance suite: each bench a ratio against a baseline measured side by side in the same run.

Every bench is a module ``bench/<name>.py`` with ``run(quick: bool) -> dict`` (see
``bench/harness.py`` for the entry's keys; ``latency`` returns three: its two and reaction's,
measured in the same embedded Airflow). This runner runs
them in the order of :data:`NAMES`, adds the command, date and machine, and merges each entry
into the committed ``bench/results.json`` (one entry per name, replaced on a re-run), from
which ``bench/report.py`` writes the performance table of docs/performance.md.

Run: ``make bench`` (everything, then the report), ``make bench-quick`` (fewer repetitions and
smaller sizes; entries marked ``"quick": true``), or
``python bench/run.py [--quick] [--only NAME ...]``.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import shlex
import shutil
import sys
import tempfile
import time
import traceback
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
RESULTS = BENCH / "results.json"
#: Every bench of issue 12, in run order; a name whose module does not exist yet is skipped.
NAMES = (
    "parse",
    "overhead",
    "overhead_production",
    "features",
    "features_duckdb",
    "validation",
    "drift",
    "evaluate",
    "monitor",
    "tracking",
    "train",
    "train_cluster",
    "history",
    "serving",
    "latency",
)
#: Benches that another one measures in a full run (latency's embedded Airflow measures reaction
#: too), runnable alone with ``--only``.
ALONE = ("reaction",)
#: The order of entries in results.json (and the performance table).
ORDER = (*NAMES[:-1], "reaction", "latency")


def machine() -> dict[str, Any]:
    """What the numbers were measured on."""
    import psutil

    model = platform.processor()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        names = [
            line.split(":", 1)[1].strip() for line in cpuinfo.read_text().splitlines() if line.startswith("model name")
        ]
        model = names[0] if names else model
    return {
        "cpus": psutil.cpu_count(),
        "cpu_model": model,
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "python": platform.python_version(),
        "os": platform.platform(),
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
    }


def load_results(path: Path = RESULTS) -> dict[str, dict[str, Any]]:
    """The committed results, by bench name (empty when there are none yet)."""
    return json.loads(path.read_text()) if path.exists() else {}


def save_results(results: dict[str, dict[str, Any]], path: Path = RESULTS) -> None:
    """Write results in :data:`NAMES` order (entries of benches not in it last, by name)."""
    order = {name: i for i, name in enumerate(ORDER)}
    ordered = dict(sorted(results.items(), key=lambda kv: (order.get(kv[0].split("_")[0], len(ORDER)), kv[0])))
    path.write_text(json.dumps(ordered, indent=2) + "\n")


def run_bench(name: str, quick: bool) -> list[dict[str, Any]]:
    """Run ``bench/<name>.py``; its entry or entries."""
    if str(BENCH) not in sys.path:
        sys.path.insert(0, str(BENCH))
    module = importlib.import_module(name)
    produced = module.run(quick)
    return produced if isinstance(produced, list) else [produced]


def main(argv: list[str] | None = None) -> int:
    """Run the chosen benches and merge their entries into ``bench/results.json``."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer repetitions, smaller sizes")
    choices = (*NAMES, *ALONE)
    parser.add_argument("--only", nargs="+", choices=choices, metavar="NAME", help=f"run these: {', '.join(choices)}")
    args = parser.parse_args(argv)
    from sluice.services import processes

    processes.exit_on_sigterm()  # an interrupted bench still stops the servers it started
    command = "python bench/run.py " + shlex.join(sys.argv[1:] if argv is None else argv)
    host = machine()
    results = load_results()
    # The libraries' temporary files (MLflow's database locks, model downloads) go under one
    # folder removed at the end, so a bench run leaves nothing in /tmp.
    scratch = tempfile.mkdtemp(prefix="sluice-bench-")
    os.environ["TMPDIR"] = scratch
    tempfile.tempdir = None
    try:
        failed = _run_all(args.only or NAMES, args.quick, command, host, results)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    if failed:
        print(f"benches that failed to run: {', '.join(failed)}")
    return 1 if failed else 0


def _run_all(
    names: Sequence[str], quick: bool, command: str, host: dict[str, Any], results: dict[str, dict[str, Any]]
) -> list[str]:
    """Run ``names`` in order, saving after each; the names that failed."""
    failed: list[str] = []
    began = time.monotonic()
    for name in names:
        if not (BENCH / f"{name}.py").exists():
            print(f"[{name}] skipped: bench/{name}.py does not exist yet", flush=True)
            continue
        print(f"[{name}] running{' (quick)' if quick else ''} ...", flush=True)
        started = time.monotonic()
        try:
            entries = run_bench(name, quick)
        except Exception:
            traceback.print_exc()
            print(f"[{name}] FAILED: no entry written", flush=True)
            failed.append(name)
            continue
        minutes = round((time.monotonic() - started) / 60, 1)
        stamp = datetime.now(UTC).isoformat(timespec="seconds")
        # Read again before merging: another bench run may have saved its entries meanwhile.
        results.update(load_results())
        for e in entries:
            e |= {"quick": quick, "command": command, "date": stamp, "machine": host, "bench_minutes": minutes}
            results[e["name"]] = e
            verdict = "met" if e["met"] else "MISSED"
            print(f"[{e['name']}] ratio {e['ratio']:.3g} (target {e['target']}): {verdict}", flush=True)
        print(f"[{name}] took {minutes} min", flush=True)
        save_results(results)  # after each bench: a later failure keeps what was measured
    print(f"all benches: {(time.monotonic() - began) / 60:.1f} min", flush=True)
    return failed


if __name__ == "__main__":
    sys.exit(main())
