"""Parse at scale: 100 sluice pipelines in one DAG folder vs 100 hand-written DAG files.

sluice side: a scratch project whose ``dags/`` holds ``load_pipelines.py`` and 100 specs made
from the demo spec (``dags/flights_delay.pipeline.yaml``) under other names, each with its own
landing folder and serving port. Baseline: 100 copies of ``bench/baseline_dags.py`` (the same
three DAGs and tasks, hand-written) under the same names. Each parse is Airflow's ``DagBag``
in a fresh interpreter prepared as the DAG processor prepares the process that parses a file
(``bench/parse_once.py``: the files' ``airflow.*`` imports loaded and ``gc.freeze()`` first),
sides alternating, median of N.

The DAG processor parses the same unchanged files again and again, so the target is on that
steady state: bytecode written and read (``PYTHONDONTWRITEBYTECODE`` emptied for the children:
the hand-written files get their ``.pyc``, sluice its modules' ``.pyc`` and its cached spec
readings, ``sluice.spec.document_cache``), after one unmeasured parse of each side that
writes them. That first parse of each side is reported apart (``*_first_seconds``).
"""

from __future__ import annotations

import os
import shutil
import statistics
import tempfile
from pathlib import Path
from typing import Any

import yaml

from harness import ROOT, entry, mib, run_child

PIPELINES = 100
TARGET = 1.2


def _names() -> list[str]:
    return [f"p{i:03d}" for i in range(PIPELINES)]


def sluice_project(root: Path) -> Path:
    """A scratch project with 100 specs; returns its ``dags/`` folder."""
    dags = root / "dags"
    dags.mkdir(parents=True)
    shutil.copytree(ROOT / "include" / "features", root / "include" / "features")
    shutil.copy(ROOT / "dags" / "load_pipelines.py", dags / "load_pipelines.py")
    for name in ("airflow_settings.yaml", "pyproject.toml"):
        shutil.copy(ROOT / name, root / name)
    base = yaml.safe_load((ROOT / "dags" / "flights_delay.pipeline.yaml").read_text())
    for i, name in enumerate(_names()):
        spec = dict(base, pipeline=name)
        spec["source"] = dict(base["source"], uri=f"data/landing/{name}")
        spec["deployment"] = {"target": "local", "local": {"port": 20_000 + i}}
        (dags / f"{name}.pipeline.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    return dags


def baseline_folder(root: Path) -> Path:
    """100 hand-written DAG files, ``bench/baseline_dags.py`` under each pipeline's name."""
    folder = root / "baseline"
    folder.mkdir(parents=True)
    text = (ROOT / "bench" / "baseline_dags.py").read_text()
    for name in _names():
        own = text.replace("flights_delay", name).replace("/tmp/landing/", f"/tmp/landing/{name}/")
        (folder / f"{name}_dags.py").write_text(own)
    return folder


def _parse(folder: Path, env: dict[str, str]) -> tuple[dict[str, Any], int]:
    return run_child(["bench/parse_once.py", str(folder), str(3 * PIPELINES)], env=env)


def run(quick: bool) -> dict[str, Any]:
    """Median DagBag seconds of each side and their ratio; heavy modules loaded while parsing."""
    reps = 3 if quick else 7
    with tempfile.TemporaryDirectory(prefix="sluice-bench-parse-") as tmp:
        project = Path(tmp) / "project"
        dags, baseline = sluice_project(project), baseline_folder(Path(tmp))
        env = {
            "SLUICE_PROJECT_DIR": str(project),
            "AIRFLOW_HOME": str(Path(tmp) / "airflow"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            # Empty is unset for Python: each side caches as a DAG processor does by default.
            "PYTHONDONTWRITEBYTECODE": "",
        }
        os.makedirs(env["AIRFLOW_HOME"])
        first = {"baseline": _parse(baseline, env)[0], "sluice": _parse(dags, env)[0]}
        sluice_runs, base_runs = [], []
        for _ in range(reps):
            base_runs.append(_parse(baseline, env))
            sluice_runs.append(_parse(dags, env))
    s = statistics.median(r["seconds"] for r, _ in sluice_runs)
    b = statistics.median(r["seconds"] for r, _ in base_runs)
    heavy = sorted({m for r, _ in sluice_runs for m in r["heavy_loaded"]})
    ratio = s / b
    return entry(
        "parse",
        measured=(
            f"Airflow's DagBag over one folder of {PIPELINES} sluice pipelines (load_pipelines.py + "
            f"{PIPELINES} specs from the demo spec: {3 * PIPELINES} DAGs, {sluice_runs[0][0]['tasks']} tasks), "
            "fresh interpreter"
        ),
        baseline=f"{PIPELINES} hand-written DAG files with the same DAGs and tasks (bench/baseline_dags.py renamed)",
        values={
            "sluice_seconds": round(s, 3),
            "baseline_seconds": round(b, 3),
            "sluice_samples": [round(r["seconds"], 3) for r, _ in sluice_runs],
            "baseline_samples": [round(r["seconds"], 3) for r, _ in base_runs],
            "sluice_cpu_seconds": round(statistics.median(r["cpu_seconds"] for r, _ in sluice_runs), 3),
            "baseline_cpu_seconds": round(statistics.median(r["cpu_seconds"] for r, _ in base_runs), 3),
            "sluice_first_seconds": round(first["sluice"]["seconds"], 3),
            "baseline_first_seconds": round(first["baseline"]["seconds"], 3),
            "repetitions": reps,
            "pipelines": PIPELINES,
            "dags": sluice_runs[0][0]["dags"],
            "tasks": sluice_runs[0][0]["tasks"],
            "heavy_modules_loaded": heavy,
            "load_average_after": [round(x, 2) for x in os.getloadavg()],
            "sluice_peak_rss_mib": mib(max(p for _, p in sluice_runs)),
            "baseline_peak_rss_mib": mib(max(p for _, p in base_runs)),
        },
        ratio=ratio,
        target=f"<= {TARGET}x, no heavy module loaded",
        target_ratio=TARGET,
        met=ratio <= TARGET and not heavy,
        notes=(
            "Both sides vary with the machine's load (each parse is a fresh interpreter): read the samples "
            "beside the medians, and the CPU seconds. Each parse is prepared as Airflow's DAG processor "
            "prepares the process that parses a file: the file's airflow.* imports loaded first "
            "(parsing_pre_import_modules) and gc.freeze() (DagFileProcessorManager.before_run). Measured in "
            "the DAG processor's steady state: bytecode on for both sides, after one unmeasured parse each "
            "(the hand-written files then read their .pyc; sluice reads an unchanged spec's cached reading, "
            "keyed by its bytes, from __pycache__ beside it: 0.09 s -> 0.04 s for 100 specs); the first parse "
            "of each side is reported apart. The baseline sets what sluice's DAGs set (tags, owner, docs; each "
            "task's retries, retry delay, timeout, pool, doc, arguments and an alert notifier); until "
            "2026-12-05 it had the task ids and edges only, and the ratio was 1.17-1.24 against it. What "
            "sluice pays beyond the hand-written files: importing sluice (spec models and step records "
            "build their validators on first use: defer_build), loading 100 specs (a cached reading, "
            "pydantic validation, the project checks) and the plan; building the 300 DAGs costs what the "
            "hand-written files cost (operator constructors, and DAG.__hash__ hashing the asset schedule "
            "on every >>)."
        ),
        summary=f"{s:.2f} s vs {b:.2f} s for {PIPELINES} pipelines; heavy modules: {', '.join(heavy) or 'none'}",
    )
