"""Performance suite: ratios against a baseline measured side by side in the same run.

Targets (ratios, never absolute times, so a slower or busier machine does not fail them):

- parse: parsing ``dags/`` (the sluice DAG file building the demo pipeline from its spec)
  takes at most 2.0x the time of parsing a hand-written Airflow file with the same DAGs and
  tasks. Each measurement is a fresh interpreter (Airflow's own import is excluded: both
  sides pay it equally), alternating sides, median of N.

- latency_local / latency_s3: from a batch file being complete in the landing zone (a local
  folder; an S3 prefix on a moto server) to the ingest DAG's ``land`` task starting, under the
  real scheduler, triggerer and DAG processor (``airflow standalone``), median of N drops made
  at random phases of the poll cycle. Baseline: the poll interval (``poll_seconds``, 5 s).
  Target: at most 2.0x. Why: detection alone averages half a poll (at most one); the rest is
  Airflow's fixed hand-off (the scheduler sees the trigger event, a worker resumes the sensor,
  the scheduler queues ``land``, a worker starts it), which should cost no more than about
  one poll interval. A ratio above 2 means sluice adds waiting of its own.

Run: ``make bench`` (or ``uv run python bench/run.py --repeat 7``; ``--only parse`` skips the
few minutes the latency bench takes). Results are printed and written to
``bench/results/latest.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TARGETS = {"parse": 2.0, "latency_local": 2.0, "latency_s3": 2.0}


def parse_seconds(folder: Path, env: dict[str, str]) -> float:
    out = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "parse_once.py"), str(folder)],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
    ).stdout
    return float(out.strip().splitlines()[-1])


def bench_parse(repeat: int) -> dict[str, float]:
    env = dict(os.environ, SLUICE_PROJECT_DIR=str(ROOT), AIRFLOW__CORE__LOAD_EXAMPLES="False")
    env.setdefault("AIRFLOW_HOME", tempfile.mkdtemp(prefix="sluice-bench-"))
    with tempfile.TemporaryDirectory() as tmp:
        baseline = Path(tmp) / "baseline"
        baseline.mkdir()
        shutil.copy(ROOT / "bench" / "baseline_dags.py", baseline / "baseline_dags.py")
        sluice_times, base_times = [], []
        for _ in range(repeat):
            base_times.append(parse_seconds(baseline, env))
            sluice_times.append(parse_seconds(ROOT / "dags", env))
    s, b = statistics.median(sluice_times), statistics.median(base_times)
    return {"sluice_seconds": s, "baseline_seconds": b, "ratio": s / b}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--samples", type=int, default=5, help="file drops per landing zone (latency)")
    parser.add_argument("--only", choices=["parse", "latency"], help="run one bench")
    args = parser.parse_args()
    results = {}
    if args.only in (None, "parse"):
        results["parse"] = bench_parse(args.repeat)
    if args.only in (None, "latency"):
        sys.path.insert(0, str(ROOT / "bench"))
        from latency import bench_latency

        results.update(bench_latency(samples=args.samples))
    failed = False
    print(f"{'bench':<15}{'sluice':>10}{'baseline':>10}{'ratio':>8}{'target':>8}  verdict")
    for name, r in results.items():
        ok = r["ratio"] <= TARGETS[name]
        failed |= not ok
        print(
            f"{name:<15}{r['sluice_seconds']:>9.3f}s{r['baseline_seconds']:>9.3f}s{r['ratio']:>8.2f}"
            f"{TARGETS[name]:>8.1f}  {'ok' if ok else 'MISSED'}"
        )
        if "sensed_median_seconds" in r:
            print(
                f"{'':<15}median landed->sensor done {r['sensed_median_seconds']:.2f}s, sensor done->land "
                f"{r['to_land_median_seconds']:.2f}s; max {r['max_seconds']:.2f}s over {len(r['samples'])} drops"
            )
    out = ROOT / "bench" / "results"
    out.mkdir(exist_ok=True)
    latest = out / "latest.json"
    # A partial run (--only) keeps the other benches' last results.
    kept = json.loads(latest.read_text()).get("results", {}) if latest.exists() else {}
    latest.write_text(json.dumps({"targets": TARGETS, "results": kept | results}, indent=2))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
