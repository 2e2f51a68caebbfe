"""reaction: a drift event posted over Airflow's REST API -> the train DAG's first task running.

An outside monitor (or sluice's own ``monitor`` DAG) reports drift as an asset event on
``sluice://<pipeline>/drift``; the ``<pipeline>__train`` DAG is scheduled on it. This measures,
under the real embedded Airflow (API server, scheduler, DAG processor, triggerer; LocalExecutor,
SQLite, the intervals a user gets), from the POST to the first task of the created run
(``check_trigger``) starting, split into posted -> run queued (the scheduler's loop notices the
event) and run queued -> task started (it queues the task, a worker process starts it).

Baseline: the scheduler's heartbeat interval (``[scheduler] scheduler_heartbeat_sec``, 5 s), the
cadence at which Airflow promises to act; target: the median at most 2x that.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

if str(Path(__file__).parent) not in sys.path:
    sys.path.insert(0, str(Path(__file__).parent))

from scratch import PIPELINE, scratch_project

FIRST_TASK = "check_trigger"
TARGET = 2.0


def _epoch(value: datetime | None) -> float | None:
    return value.timestamp() if value else None


def _heartbeat_seconds(env: dict[str, str]) -> float:
    """``[scheduler] scheduler_heartbeat_sec`` as the embedded Airflow sees it (environment first)."""
    from airflow.configuration import conf

    key = "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC"
    return float(env[key]) if key in env else conf.getfloat("scheduler", "scheduler_heartbeat_sec")


def _one_event(airflow: Any, api: Any, n: int, pipeline: str) -> dict[str, float]:
    """Post one drift event; wait for its run's first task to start, then for the run to end."""
    import airflow_client.client as af

    from sluice.services.airflow_api import post_asset_event

    train = f"{pipeline}__train"
    runs, tis = af.DagRunApi(api), af.TaskInstanceApi(api)
    before = {r.dag_run_id for r in runs.get_dag_runs(train, limit=100).dag_runs}
    posted = time.time()
    post_asset_event(airflow.api_url, airflow.token(), f"sluice://{pipeline}/drift", {"bench": n, "drift_share": 1.0})

    def started() -> tuple[Any, Any] | None:
        new = [r for r in runs.get_dag_runs(train, limit=100).dag_runs if r.dag_run_id not in before]
        if not new:
            return None
        found = {t.task_id: t for t in tis.get_task_instances(train, new[0].dag_run_id).task_instances}
        first = found.get(FIRST_TASK)
        return (new[0], first) if first is not None and first.start_date else None

    run, task = airflow.wait_for(started, 300, f"{train}: {FIRST_TASK} to start", every=0.2)

    def finished() -> bool:
        return str(runs.get_dag_run(train, run.dag_run_id).state.value) in {"success", "failed"}

    airflow.wait_for(finished, 600, f"{train}: the run to end", every=1)
    queued, start = _epoch(run.queued_at), _epoch(task.start_date)
    assert queued is not None and start is not None
    return {"reaction": start - posted, "to_queued": queued - posted, "to_start": start - queued}


def summary(values: dict[str, Any]) -> str:
    """The performance table's "measured here" text of a reaction entry."""
    return (
        f"median {values['median_seconds']:.2f} s (max {values['max_seconds']:.2f} s) "
        f"vs {values['baseline_seconds']:g} s"
    )


def measure(airflow: Any, api: Any, pipeline: str, events: int) -> list[dict[str, float]]:
    """``events`` drift events for ``pipeline`` (no accepted batch yet, so each run skips at once).

    Its train DAG is unpaused for the events and paused again after them: events of other
    assets (new data) while it is paused start nothing.
    """
    import airflow_client.client as af
    from airflow_client.client.exceptions import NotFoundException

    train = f"{pipeline}__train"
    dags = af.DAGApi(api)

    def registered() -> bool:
        try:
            return bool(dags.get_dag(train).dag_id == train)
        except NotFoundException:
            return False

    airflow.wait_for(registered, 300, f"{train} to be registered", every=2)
    # Events posted while a DAG is paused start nothing.
    dags.patch_dag(train, af.DAGPatchBody(is_paused=False))
    rows = []
    for n in range(events):
        rows.append(_one_event(airflow, api, n, pipeline))
        print(f"  reaction event {n + 1}: {rows[-1]['reaction']:.2f}s", flush=True)
    dags.patch_dag(train, af.DAGPatchBody(is_paused=True))
    return rows


def events_for(quick: bool) -> int:
    """How many drift events a run posts."""
    return 3 if quick else 5


def result(rows: list[dict[str, float]], env: dict[str, str], pipeline: str) -> dict[str, Any]:
    """The reaction entry from the events' rows and the embedded Airflow's environment."""
    heartbeat = _heartbeat_seconds(env)
    median = statistics.median(r["reaction"] for r in rows)
    ratio = median / heartbeat
    values = {
        "median_seconds": round(median, 2),
        "max_seconds": round(max(r["reaction"] for r in rows), 2),
        "to_queued_median_seconds": round(statistics.median(r["to_queued"] for r in rows), 2),
        "to_start_median_seconds": round(statistics.median(r["to_start"] for r in rows), 2),
        "baseline_seconds": heartbeat,
        "events": [{k: round(v, 2) for k, v in r.items()} for r in rows],
    }
    return {
        "name": "reaction",
        "summary": summary(values),
        "measured": (
            f"a drift asset event POSTed to Airflow's REST API -> `{pipeline}__train`'s first task ({FIRST_TASK}) "
            f"started, embedded Airflow (LocalExecutor, SQLite), median of {len(rows)} events"
        ),
        "baseline": f"the scheduler's heartbeat interval (scheduler_heartbeat_sec = {heartbeat:g} s)",
        "values": values,
        "ratio": round(ratio, 2),
        "target": f"<= {TARGET:g}x",
        "target_ratio": TARGET,
        "met": ratio <= TARGET,
        "notes": (
            "to_queued: the scheduler notices the event and creates the run; to_start: it queues "
            f"{FIRST_TASK} and a LocalExecutor process starts it (parses the DAG file, then runs). "
            f"{FIRST_TASK} then skips the run (no accepted batch), so each event costs seconds. "
            "Measured in the landing-latency bench's embedded Airflow (bench/latency.py), before its drops."
        ),
    }


def run(quick: bool) -> dict[str, Any]:
    """The reaction entry alone, in an embedded Airflow of its own (``make bench`` measures it in latency's)."""
    from sluice.airflow.runtime.standalone import Standalone, isolated_env

    with tempfile.TemporaryDirectory(prefix="sluice-bench-reaction-") as tmp:
        project = scratch_project(Path(tmp) / "project")
        env = isolated_env(project)
        with Standalone(project, env) as airflow, airflow.client() as api:
            rows = measure(airflow, api, PIPELINE, events_for(quick))
    return result(rows, env, PIPELINE)


if __name__ == "__main__":
    from sluice.services import processes

    processes.exit_on_sigterm()  # interrupted, it still stops the servers it started
    import json

    print(json.dumps(run(quick="--quick" in sys.argv), indent=2))
