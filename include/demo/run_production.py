"""`make demo-production`: the demo pipeline end to end in the production shape (issue 11).

Starts the production harness (:mod:`demo.production_stack`: PostgreSQL, Redis, an S3
server, an MLflow server, a Spark cluster, Airflow on Celery with two workers) and plays the
demo spec (``dags/flights_delay.pipeline.yaml``) adapted to it: storage and landing zone in
the S3 bucket through an Airflow connection, features on the Spark cluster, MLflow through
the tracking server. A second pipeline beside it trains its model on the Spark cluster
(``training.engine: spark``). Months are dropped into the bucket one at a time; the driver follows
them through Airflow's REST API and the store, as :mod:`demo.run_demo` does for the embedded
default. Every part is stopped at the end and the stack's folder removed.

With ``--keep`` the shape is the production kit's instead (``sluice production up`` on free
ports in ``--folder``, default ``.sluice/production-demo``): it stays running after the demo,
with its model servers, and a "where to look" table says where each part is, how to log in
and how to stop it all (``make production-down``).

The tests (``tests/production/test_demo_production.py``) call :func:`play` on their own stack.
"""

from __future__ import annotations

import argparse
import io
import shutil
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import requests
import tenacity
import yaml

PROJECT = Path(__file__).resolve().parents[2]
if str(PROJECT / "include") not in sys.path:
    sys.path.insert(0, str(PROJECT / "include"))

if TYPE_CHECKING:
    from demo.production_stack import AnyStack

PIPELINE = "flights_delay"
#: The second pipeline that trains and promotes at the same time as the first (same spec,
#: but its model trained on the Spark cluster: :data:`CLUSTER_TRAINING`).
BESIDE = "flights_twin"
#: What the pipeline beside the demo trains with (``training.engine: spark``): XGBoost's PySpark
#: classifier on the stack's Spark cluster, one Spark task (the cluster's one worker core).
CLUSTER_TRAINING: dict[str, Any] = {
    "engine": "spark",
    "model": "xgboost.spark.SparkXGBClassifier",
    "params": {"n_estimators": 100, "max_depth": 6, "learning_rate": 0.1, "random_state": 42, "num_workers": 1},
}
SPEC = PROJECT / "dags" / f"{PIPELINE}.pipeline.yaml"
#: The bucket the stack creates for pipelines (the other, ``mlflow``, holds MLflow's artifacts).
BUCKET = "sluice"
TERMINAL = {"success", "failed"}
T = TypeVar("T")


def log(msg: str) -> None:
    """Progress line with a timestamp."""
    print(f"[demo-production {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def production_spec(
    stack: AnyStack, reference: Path, pipeline: str = PIPELINE, port: int | None = None, train_on_cluster: bool = False
) -> str:
    """The demo spec adapted to ``stack``, as YAML text.

    Storage root ``s3://sluice/<pipeline>/state`` and landing zone ``s3://sluice/<pipeline>/landing``
    through the stack's S3 connection (two workers on two hosts share no disk), features on the
    stack's Spark master (executors sized for its one small worker), the feature job and the
    reference tables by absolute path (read-only inputs every worker host has), the model
    server on a free port, and no alert e-mails (the stack has no SMTP server). With
    ``train_on_cluster`` the model is fitted on the Spark cluster too (:data:`CLUSTER_TRAINING`).

    Args:
        stack: The running stack.
        reference: Folder of the reference tables (:func:`demo.producer.write_reference`).
        pipeline: The pipeline's name (a second pipeline runs beside the first under another).
        port: The model server's port; default a free one.
        train_on_cluster: Train with ``training.engine: spark`` on the stack's Spark cluster.
    """
    from demo.production_stack import S3_CONN_ID
    from sluice.airflow.runtime.standalone import free_port

    spec: dict[str, Any] = yaml.safe_load(SPEC.read_text())
    spec["pipeline"] = pipeline
    spec.pop("alerts", None)
    spec["source"].update(uri=f"s3://{BUCKET}/{pipeline}/landing", conn_id=S3_CONN_ID)
    spec["storage"] = {"root": f"s3://{BUCKET}/{pipeline}/state", "conn_id": S3_CONN_ID}
    features = spec["features"]
    job_file, job_func = features["job"].split(":", 1)
    features["job"] = f"{PROJECT / job_file}:{job_func}"
    for table in features["inputs"].values():
        table["uri"] = str(reference / Path(table["uri"]).name)
    features.update(
        engine="cluster",
        master=stack.spark.master,
        conf={"spark.executor.memory": "512m", "spark.cores.max": "1", "spark.driver.host": "127.0.0.1"},
    )
    if train_on_cluster:
        spec["training"].update(CLUSTER_TRAINING)
    spec["deployment"]["local"]["port"] = port or free_port()
    return yaml.safe_dump(spec, sort_keys=False)


class AirflowApi:
    """Airflow's REST API (v2) of a stack, as ``admin``."""

    def __init__(self, stack: AnyStack) -> None:
        """Log in to the stack's API server."""
        self.url = f"{stack.airflow.api_url}/api/v2"
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Bearer {stack.airflow.token()}"

    def call(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        """One request; waits out a busy API server (one uvicorn worker on two shared cores)."""
        for attempt in tenacity.Retrying(
            stop=tenacity.stop_after_attempt(5),
            wait=tenacity.wait_fixed(2),
            retry=tenacity.retry_if_exception_type((requests.ConnectionError, requests.Timeout)),
            reraise=True,
        ):
            with attempt:
                return self.session.request(method, f"{self.url}{path}", timeout=60, **kwargs)
        raise AssertionError("unreachable")

    def registered(self, dag_ids: list[str]) -> bool:
        """Whether the DAG processor has registered every one of ``dag_ids``."""
        return all(self.call("GET", f"/dags/{d}").status_code == 200 for d in dag_ids)

    def unpause(self, dag_id: str) -> None:
        """Unpause ``dag_id``."""
        self.call("PATCH", f"/dags/{dag_id}", json={"is_paused": False}).raise_for_status()

    def trigger(self, dag_id: str) -> str:
        """Trigger ``dag_id`` now; return the run id."""
        resp = self.call("POST", f"/dags/{dag_id}/dagRuns", json={"logical_date": None})
        resp.raise_for_status()
        return str(resp.json()["dag_run_id"])

    def task_instances(self, dag_id: str, run_id: str) -> list[dict[str, Any]]:
        """The task instances of one run (task_id, state, hostname...)."""
        resp = self.call("GET", f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances", params={"limit": 100})
        resp.raise_for_status()
        return list(resp.json()["task_instances"])

    def runs(self, dag_id: str, since: float = 0.0) -> list[dict[str, Any]]:
        """Runs of ``dag_id`` queued after ``since`` (epoch seconds), oldest first.

        Each: run_id, state, run_type, queued_at, start and end (epoch seconds; 0.0 when not
        yet), tasks ({task_id: state}) as :func:`sluice.airflow.runtime.standalone.dag_runs` gives
        them for the embedded default, and seconds ({task_id: duration}).
        """
        resp = self.call("GET", f"/dags/{dag_id}/dagRuns", params={"limit": 100})
        resp.raise_for_status()
        out = []
        for run in resp.json()["dag_runs"]:
            queued = _epoch(run.get("queued_at"))
            if queued < since:
                continue
            tis = self.task_instances(dag_id, run["dag_run_id"])
            out.append(
                {
                    "run_id": run["dag_run_id"],
                    "state": run["state"],
                    "run_type": run["run_type"],
                    "queued_at": queued,
                    "start": _epoch(run.get("start_date")),
                    "end": _epoch(run.get("end_date")),
                    "tasks": {ti["task_id"]: ti["state"] for ti in tis},
                    "seconds": {ti["task_id"]: round(ti["duration"] or 0.0, 1) for ti in tis},
                }
            )
        return sorted(out, key=lambda r: r["queued_at"])

    def hostnames(self, dag_ids: list[str]) -> dict[str, int]:
        """How many finished task instances of ``dag_ids`` ran on each hostname."""
        counts: dict[str, int] = {}
        for dag_id in dag_ids:
            for run in self.runs(dag_id):
                for ti in self.task_instances(dag_id, run["run_id"]):
                    if ti.get("hostname") and ti["state"] in TERMINAL:
                        counts[ti["hostname"]] = counts.get(ti["hostname"], 0) + 1
        return counts


def _epoch(stamp: str | None) -> float:
    """An ISO time stamp of the REST API as epoch seconds (0.0 for none)."""
    return datetime.fromisoformat(stamp).timestamp() if stamp else 0.0


def wait_for(predicate: Callable[[], T | None], timeout: float, what: str, interval: float = 3.0) -> T:
    """Poll ``predicate`` until it returns something truthy.

    Raises:
        TimeoutError: Nothing truthy within ``timeout`` seconds, naming ``what``.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")


def drop_month(stack: AnyStack, pipeline: str, month: int, bad_rows: int = 0) -> str:
    """Put one month's flights into the pipeline's landing zone in the bucket; return the file name."""

    from demo.producer import month_frame

    name = f"flights_2013-{month:02d}.parquet"
    buf = io.BytesIO()
    month_frame(month, bad_rows=bad_rows).to_parquet(buf, index=False)
    s3 = stack.s3.client()
    # One PUT: an object appears whole or not at all (no write-then-rename as on a disk).
    s3.put_object(Bucket=BUCKET, Key=f"{pipeline}/landing/{name}", Body=buf.getvalue())
    return name


class Player:
    """Plays months of one pipeline on a running stack."""

    def __init__(self, stack: AnyStack, api: AirflowApi, spec_path: Path) -> None:
        """Open the pipeline's store (in the bucket) for the spec at ``spec_path``."""
        from sluice.services.storage import open_store
        from sluice.spec.loader import load_spec

        self.stack = stack
        self.api = api
        self.loaded = load_spec(spec_path)
        self.pipeline = self.loaded.spec.pipeline
        self.store = open_store(self.loaded, stack.s3.fsspec_options)
        self.dag_ids = [f"{self.pipeline}__{role}" for role in ("ingest", "train", "monitor")]

    def finished_run(self, role: str, since: float) -> dict[str, Any] | None:
        """The first run of the pipeline's ``role`` DAG queued after ``since`` once finished."""
        runs = self.api.runs(f"{self.pipeline}__{role}", since)
        return runs[0] if runs and runs[0]["state"] in TERMINAL else None

    def start(self) -> None:
        """Wait for the DAG processor to register the DAGs; unpause them."""
        wait_for(lambda: self.api.registered(self.dag_ids), 300, f"the DAGs of {self.pipeline}")
        for dag_id in self.dag_ids:
            self.api.unpause(dag_id)
        log(f"{self.pipeline}: DAGs registered and unpaused; ingest waits (deferred, triggerer) on the bucket")

    def play_month(
        self, month: int, bad: int, first: bool, before_train: Callable[[], object] | None = None
    ) -> dict[str, Any]:
        """Drop one month and follow it: ingest, monitor, (retrain), gate, deploy.

        Args:
            month: The month of 2013 to drop.
            bad: Corrupted rows to put in it.
            first: Train the first model by hand (a REST API trigger) once the month is in.
            before_train: Called just before that trigger (two pipelines meet there).
        """
        from demo.run_demo import batch_outcome
        from sluice.steps.deploy import current_deployment

        dropped_at = time.time()
        name = drop_month(self.stack, self.pipeline, month, bad)
        log(f"{self.pipeline} month {month:02d}: put {name} in s3://{BUCKET}/{self.pipeline}/landing/")

        def landed() -> dict[str, Any] | None:
            for run in self.api.runs(f"{self.pipeline}__ingest", dropped_at):
                if run["state"] == "failed" and run["tasks"].get("check_batches") != "failed":
                    raise RuntimeError(f"ingest run {run['run_id']} failed (tasks: {run['tasks']})")
            return batch_outcome(self.store, name)

        batch = wait_for(landed, 900, f"month {month} to be ingested")
        row: dict[str, Any] = {"month": month, "batch": batch, "drift": None, "trigger": None, "decision": None}
        row["deployed"] = None
        log(f"{self.pipeline} month {month:02d}: batch {batch['batch_id']} {batch['status']}")
        if batch["status"] != "accepted":
            return row
        monitor = wait_for(lambda: self.finished_run("monitor", dropped_at), 900, f"the monitor run of month {month}")
        drift = self.store.json.read_or_none(self.store.keys.monitor(monitor["run_id"], "drift.json"))
        row["drift"] = drift
        row["monitor"] = monitor["state"]
        log(f"{self.pipeline} month {month:02d}: monitor {monitor['state']}: " + (drift["reason"] if drift else "-"))
        since = time.time()
        if first:
            if before_train is not None:
                before_train()
            since = time.time()
            self.api.trigger(f"{self.pipeline}__train")
            log(f"{self.pipeline} month {month:02d}: first model: train triggered through the REST API")
        elif not (drift and drift["drift_detected"]):
            log(f"{self.pipeline} month {month:02d}: no drift: no retraining")
            return row
        else:
            since = dropped_at
        # A model trained on the cluster waits for the Spark worker's slots on a busy machine.
        train = wait_for(lambda: self.finished_run("train", since), 1800, f"the train run of month {month}")
        row["trigger"] = self.store.json.read_or_none(self.store.keys.run(train["run_id"], "trigger.json"))
        row["run"] = train
        row["decision"] = self.store.json.read_or_none(self.store.keys.run(train["run_id"], "decision.json"))
        deployed = current_deployment(self.store)
        if deployed and train["tasks"].get("deploy") == "success":
            row["deployed"] = deployed["version"]
        decision = row["decision"]
        log(
            f"{self.pipeline} month {month:02d}: train run {train['state']}: "
            + (f"gate {decision['verdict']} ({decision['reason']})" if decision else "no gate")
            + (f", deployed v{row['deployed']}" if row["deployed"] else "")
        )
        slowest = sorted(train["seconds"].items(), key=lambda item: -item[1])[:4]
        log(f"{self.pipeline} month {month:02d}: slowest train tasks: " + ", ".join(f"{t} {s}s" for t, s in slowest))
        return row

    def stop_model_server(self) -> None:
        """Stop the model server the deploy task started (it outlives the task by design)."""
        from sluice.steps.deploy import stop_local

        local = self.loaded.spec.deployment.local
        # Every server on the port: the workers started them, in their own working folders.
        stopped = stop_local(self.store, local.host, local.port)
        if stopped:
            log(f"{self.pipeline}: model server stopped ({len(stopped)} process(es))")


def install_pipeline(
    stack: AnyStack, reference: Path, pipeline: str = PIPELINE, train_on_cluster: bool = False
) -> Path:
    """Write the reference tables, the DAG file and the adapted spec into the stack's DAG folder.

    ``train_on_cluster``: the spec trains on the stack's Spark cluster (:func:`production_spec`).
    """
    from demo.producer import write_reference

    write_reference(reference)
    loader = stack.dags_folder / "load_pipelines.py"
    if not loader.exists():
        shutil.copy(PROJECT / "dags" / "load_pipelines.py", loader)
    spec_path = stack.dags_folder / f"{pipeline}.pipeline.yaml"
    spec_path.write_text(production_spec(stack, reference, pipeline, train_on_cluster=train_on_cluster))
    return spec_path


def _first_month_together(players: list[Player], month: int, bad: int) -> list[dict[str, Any]]:
    """Play ``month`` as the first month of every player at once; their train runs start together.

    Each player drops, ingests and monitors on its own; a barrier holds each first-model
    trigger until every pipeline is ready, so the train runs (features, train, gate, promote,
    deploy) overlap on the two workers and the one MLflow server. Only the first player's
    month gets ``bad`` corrupted rows.
    """
    barrier = threading.Barrier(len(players), timeout=1800)

    def one(player: Player) -> dict[str, Any]:
        try:
            return player.play_month(month, bad if player is players[0] else 0, first=True, before_train=barrier.wait)
        except BaseException:
            barrier.abort()  # the other pipeline must not wait for a trigger that never comes
            raise

    with ThreadPoolExecutor(len(players)) as pool:
        return list(pool.map(one, players))


def _summary(player: Player, api: AirflowApi, rows: list[dict[str, Any]], started: float) -> dict[str, Any]:
    """What one pipeline did: its months, what is deployed, where its tasks ran, its batches.

    ``served`` is what the model server answers now (status and body) to the rows its deploy
    smoke-tested it with, asked before the servers are stopped; None when nothing is deployed.
    """
    from sluice.steps.deploy import current_deployment, http_json

    deployed = current_deployment(player.store)
    served = None
    if deployed is not None:
        status, body = http_json(deployed["url"], {"dataframe_records": deployed["smoke"]["inputs"]}, timeout=60)
        served = {"status": status, "body": body}
    return {
        "pipeline": player.pipeline,
        "months": rows,
        "deployed": deployed,
        "served": served,
        "hostnames": api.hostnames(player.dag_ids),
        "batches": player.store.batches.ids(),
        "seconds": round(time.time() - started, 1),
    }


def play(
    stack: AnyStack,
    months: list[int],
    bad_rows: int = 40,
    pipeline: str = PIPELINE,
    beside: str | None = None,
    stop_servers: bool = True,
) -> dict[str, Any]:
    """Play ``months`` of the demo on ``stack``; return the summary (months, deployed, hostnames...).

    The second month played gets ``bad_rows`` corrupted rows; the first trains the first model
    by hand (a REST API trigger), later ones retrain only on drift. The model servers the
    deploy tasks started are stopped before returning.

    Args:
        stack: The running stack.
        months: Months of 2013 to play, in order.
        bad_rows: Corrupted rows in the second month played (the first, if only one).
        pipeline: The pipeline's name.
        beside: A second pipeline (the same spec under this name: its own prefixes in the
            bucket, registered model and model server) that plays the first month at the same
            time, its first model trained together with the first pipeline's (two pipelines
            training and promoting at once against one MLflow server), and on the Spark
            cluster (``training.engine: spark``, :data:`CLUSTER_TRAINING`). Its summary is the
            result's ``beside``.
        stop_servers: Stop the model servers the deploy tasks started (``False``: leave them
            serving, for a look at a kept shape).
    """
    started = time.time()
    api = AirflowApi(stack)
    names = [pipeline, *([beside] if beside else [])]
    reference = stack.root / "reference"
    players = [
        Player(stack, api, install_pipeline(stack, reference, name, train_on_cluster=name == beside)) for name in names
    ]
    try:
        for player in players:
            player.start()
        firsts = _first_month_together(players, months[0], bad_rows if len(months) == 1 else 0)
        rows = firsts[:1]
        for i, month in enumerate(months[1:], start=1):
            rows.append(players[0].play_month(month, bad_rows if i == 1 else 0, first=False))
        summary = _summary(players[0], api, rows, started)
        if beside:
            summary["beside"] = _summary(players[1], api, firsts[1:], started)
    finally:
        for player in players if stop_servers else ():
            player.stop_model_server()
    return summary


def train_overlap(summary: dict[str, Any]) -> float:
    """Seconds during which the first train runs of the pipeline and the one beside it both ran."""
    first, other = summary["months"][0].get("run"), summary["beside"]["months"][0].get("run")
    if not first or not other:
        return 0.0
    return max(0.0, min(first["end"], other["end"]) - max(first["start"], other["start"]))


#: Later months known to drift against a first month, in the demo's data (``tests/steps/test_monitor.py``:
#: against January, months 2-4 stay calm, May and December drift). A run that plays one of them
#: after that first month must show a drift retrain; other months only if their monitor found drift.
KNOWN_DRIFT = {1: {5, 12}}


def _month_problems(summary: dict[str, Any]) -> list[str]:
    """What one pipeline's months missed of what those months allow (see :func:`problems`)."""
    name, rows = summary["pipeline"], summary["months"]
    if not rows:
        return [f"{name}: no month was played"]
    found = [
        f"{name} month {r['month']:02d}: batch {r['batch']['status']}"
        for r in rows
        if r["batch"]["status"] != "accepted"
    ]
    if rows[0]["decision"] is None:
        found.append(f"{name} month {rows[0]['month']:02d}: the first model never reached the gate")
    if summary["deployed"] is None:
        found.append(f"{name}: no model is deployed")
    for r in rows[1:]:
        drifted = bool(r["drift"] and r["drift"].get("drift_detected"))
        retrained = bool(r["trigger"] and r["trigger"]["triggers"] == ["drift"] and r["decision"] is not None)
        if drifted and not retrained:
            found.append(f"{name} month {r['month']:02d}: drift detected but no retrain reached the gate")
    return found


def problems(summary: dict[str, Any], months: list[int] | None = None) -> list[str]:
    """Why a demo run did not do what the months asked for allow; an empty list when it did.

    Every month played and its batch accepted; the first model gated and a model deployed;
    every later month whose monitor found drift retrained by itself up to a gate decision, and
    at least one drift retrain when a month known to drift (:data:`KNOWN_DRIFT`) was played
    after the first; tasks on both Celery workers; with a pipeline beside, its month too and
    the two first train runs overlapping. One month alone asks for no drift retrain.

    Args:
        summary: What :func:`play` returned.
        months: The months asked for (default: those in the summary).
    """
    rows = summary["months"]
    asked = months if months is not None else [r["month"] for r in rows]
    found = []
    if [r["month"] for r in rows] != asked:
        found.append(f"months played {[r['month'] for r in rows]}, asked {asked}")
    found += _month_problems(summary)
    drifting = KNOWN_DRIFT.get(asked[0], set()) & set(asked[1:]) if asked else set()
    drift_retrains = [r for r in rows[1:] if r["trigger"] and r["trigger"]["triggers"] == ["drift"] and r["decision"]]
    if drifting and not drift_retrains:
        found.append(f"month(s) {sorted(drifting)} should drift against month {asked[0]}: no drift retrain happened")
    if len(summary["hostnames"]) < 2:
        found.append(f"tasks ran on {len(summary['hostnames'])} Celery worker(s), not both")
    if "beside" in summary:
        found += _month_problems(summary["beside"])
        if train_overlap(summary) <= 0:
            found.append("the two first train runs did not overlap")
    return found


def _print_months(summary: dict[str, Any]) -> None:
    """One line per month of one pipeline."""
    rows = summary["months"]
    print(f"\n{summary['pipeline']}: {len(rows)} month(s) in {summary['seconds'] / 60:.1f} min")
    for r in rows:
        b, d, t, drift = r["batch"], r["decision"], r["trigger"], r["drift"]
        drift_text = "-" if not drift or drift["status"] != "compared" else f"{drift['drift_share']:.2f}"
        print(
            f"  month {r['month']:02d}: batch {b['batch_id']} {b['status']} ({b.get('quarantined', 0)} quarantined)"
            f", drift {drift_text}, retrain {'+'.join(t['triggers']) if t else '-'}"
            f", gate {d['verdict'] if d else '-'}, deployed {'v' + r['deployed'] if r['deployed'] else 'kept'}"
        )


def print_summary(summary: dict[str, Any], months: list[int] | None = None) -> bool:
    """Print one line per month and what went short; return whether the demo did what ``months`` allow.

    The rule is :func:`problems`.
    """
    _print_months(summary)
    print(f"  task instances per worker: {summary['hostnames']}")
    if "beside" in summary:
        _print_months(summary["beside"])
        print(f"  the two first train runs overlapped for {train_overlap(summary):.0f}s")
    found = problems(summary, months)
    for problem in found:
        print(f"  NOT AS EXPECTED: {problem}")
    print("demo-production: OK" if not found else "demo-production: FAILED")
    return not found


#: Where ``--keep`` puts the production kit it leaves running (``make production-up``).
KEPT = PROJECT / ".sluice" / "production-demo"


def start_kept(folder: Path) -> Path:
    """A new production kit in ``folder`` on free ports, started; its environment file.

    A kit kept by an earlier run there is stopped and removed first (a demo plays from empty).
    """
    from sluice.airflow.runtime.standalone import free_port
    from sluice.production.envfile import FILE_NAME, init, load, port_variables
    from sluice.production.supervise import down, up

    env_file = folder / FILE_NAME
    if env_file.exists():
        log(f"stopping and removing the demo kept in {folder} before")
        left = down(load(env_file), say=log)
        if left:
            raise SystemExit(f"demo-production: the kept demo left processes running: {left}")
        shutil.rmtree(folder)
    names = [*port_variables(), "w1", "w2"]
    ports: dict[str, int] = {}
    while len(set(ports.values())) < len(names):
        ports = {name: free_port() for name in names}
    overrides = {name: str(ports[name]) for name in port_variables()}
    overrides["SLUICE_KIT_WORKER_LOG_PORTS"] = f"{ports['w1']},{ports['w2']}"
    init(folder, PROJECT, overrides)
    up(load(env_file), say=log)
    return env_file


def kept(args: argparse.Namespace) -> bool:
    """``--keep``: the demo on the production kit, left running; print where to look."""
    from demo.production_stack import kit_stack
    from sluice.cli.production import print_where

    started = time.monotonic()
    env_file = start_kept(args.folder.resolve())
    stack = kit_stack(env_file)
    log(f"kit up in {time.monotonic() - started:.0f}s ({env_file}); playing months {args.months}")
    ok = False
    try:
        summary = play(stack, args.months, args.bad_rows, beside=args.beside or None, stop_servers=False)
        ok = print_summary(summary, args.months)
        for each in (summary, summary.get("beside")):
            if each and each["deployed"]:
                print(f"model server of {each['pipeline']}: {each['deployed']['url']} (v{each['deployed']['version']})")
    except Exception as exc:
        log(f"FAILED: {exc}")
    print_where(stack.kit)
    print("left running: `make production-down` (or the command above) stops every part and the model servers")
    return ok


def main() -> None:
    """Command line: start the stack, play the months, print, stop everything."""
    from demo.production_stack import production_stack
    from demo.run_demo import parse_months

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--months", type=parse_months, default=parse_months("1,2,5"), help="e.g. 5 or 1,2,5")
    parser.add_argument("--bad-rows", type=int, default=40, help="corrupted rows injected in the second month")
    parser.add_argument(
        "--beside",
        default=BESIDE,
        help="a second pipeline whose first model trains at the same time, on the Spark cluster ('' for none)",
    )
    parser.add_argument(
        "--keep",
        action="store_true",
        help="run it on the production kit and leave it running afterwards, with a where-to-look table",
    )
    parser.add_argument("--folder", type=Path, default=KEPT, help=f"the kept kit's folder (default {KEPT})")
    args = parser.parse_args()
    if args.keep:
        sys.exit(0 if kept(args) else 1)
    from sluice.services import processes

    processes.exit_on_sigterm()  # a stopped demo still stops the whole stack
    started = time.monotonic()
    ok = False
    with production_stack() as stack:
        log(f"stack up in {time.monotonic() - started:.0f}s (folder {stack.root}); playing months {args.months}")
        try:
            summary = play(stack, args.months, args.bad_rows, beside=args.beside or None)
            ok = print_summary(summary, args.months)
        except Exception as exc:
            log(f"FAILED: {exc}")
        log("stopping the stack")
    leftovers = stack.processes.leftovers()
    log(
        f"all stopped in {time.monotonic() - started:.0f}s total"
        + (f"; LEFT RUNNING: {leftovers}" if leftovers else "")
    )
    sys.exit(0 if ok and not leftovers else 1)


if __name__ == "__main__":
    main()
