"""The production shape's own failures (issue 26): each part SIGKILLed mid-run and started again.

On the session's stack (``conftest.py``), a pipeline of its own (``flights_faults``: the demo
spec on the stack, alerts to an SMTP catcher, 3,000-row months, a gate that passes) lands two
months in one ingest run and trains once. A task is held at a named point
(``SLUICE_FAULT_HOLD``, armed by :meth:`Stack.arm`), so the kill lands exactly mid-task; the
part is then started again on the same port with the same data folder (:meth:`Stack.restore`):

==========================  =======================================  ==========================
part killed                 held at                                  run
==========================  =======================================  ==========================
the S3 server               ``land.copied`` (ingest)                 the ingest run
PostgreSQL                  ``validate.before_report`` (ingest)      the ingest run
Redis                       ``publish.event_set`` (ingest)           the ingest run
the Spark master            ``features.table_written`` (train)       the train run
the Spark worker            ``features.table_written`` (train)       the train run
the MLflow server           ``train.run_started`` (train, 1st try)   the train run
a Celery worker             ``train.run_started`` (train, 2nd try)   the train run
==========================  =======================================  ==========================

Each part is restored before the next kill; the two Spark kills hit the same held build, one
after the other, and the MLflow and Celery kills two tries of ``train`` (the DAG is paused
while MLflow is down, so its retry meets the server started again). After each run: every
batch landed once and announced once, every object a reader trusts whole, no MLflow run left
RUNNING, and the run succeeded after retries with no alert (or, had it failed, an alert naming
the part). The times printed (``-s``) go to the
README; none is asserted.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import psutil
import pytest
import requests
import yaml

from demo.production_stack import HOLD_POINTS, Stack
from demo.run_production import BUCKET, TERMINAL, AirflowApi, Player, install_pipeline, wait_for
from tests.production.conftest import Holder
from tests.smtp_server import MailCatcher

pytestmark = [pytest.mark.production, pytest.mark.faults, pytest.mark.timeout(3600)]

PIPELINE = "flights_faults"
INGEST, TRAIN = f"{PIPELINE}__ingest", f"{PIPELINE}__train"
ASSET = f"sluice://{PIPELINE}/batches"
#: Rows per month: the kills are the point, not the model.
SAMPLE = 3000


def say(text: str) -> None:
    """A progress line (``-s``)."""
    print(f"[faults {time.strftime('%H:%M:%S')}] {text}", flush=True)


@dataclass
class Kill:
    """What one kill did: the part, where its task was held, and what followed."""

    part: str
    point: str
    dag_id: str = ""
    run_id: str = ""
    task_id: str = ""
    restored_seconds: float = 0.0
    #: Parts that died of this one's outage and were started again, as a supervisor would.
    revived: list[str] = field(default_factory=list)
    run_state: str = ""
    #: The held task's try_number when it was held (a retry's is 2 or more).
    first_try: int = 1
    #: Tries of the held task from the held one to the last.
    tries: int = 0
    #: The log of the held try (what it said when the part was gone).
    first_try_log: str = ""
    seconds: float = 0.0
    pid: int = 0


class Faults:
    """The fault pipeline on the stack, driven through Airflow's REST API."""

    def __init__(self, stack: Stack, api: AirflowApi, player: Player, mail: MailCatcher) -> None:
        self.stack, self.api, self.player, self.mail = stack, api, player, mail
        self.store = player.store
        self.kills: dict[str, Kill] = {}
        self.dropped: list[str] = []

    # --- Airflow ------------------------------------------------------------------------------

    def task(self, dag_id: str, run_id: str, task_id: str) -> dict[str, Any]:
        """One task instance (state, try_number, hostname...)."""
        resp = self.api.call("GET", f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}")
        resp.raise_for_status()
        return dict(resp.json())

    def running(self, dag_id: str, task_id: str) -> tuple[str, dict[str, Any]]:
        """The run of ``dag_id`` whose ``task_id`` is running now, and that task instance."""

        def find() -> tuple[str, dict[str, Any]] | None:
            for run in reversed(self.api.runs(dag_id)):
                if run["tasks"].get(task_id) == "running":
                    return run["run_id"], self.task(dag_id, run["run_id"], task_id)
            return None

        return wait_for(find, 120, f"{dag_id}.{task_id} running", interval=1.0)

    def try_log(self, dag_id: str, run_id: str, task_id: str, try_number: int) -> str:
        """The text of one try's log."""
        path = f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/logs/{try_number}"
        resp = self.api.call("GET", path, params={"full_content": "true"})
        return resp.text if resp.status_code == 200 else f"(no log: HTTP {resp.status_code})"

    def finished(self, dag_id: str, run_id: str, timeout: float = 1200) -> dict[str, Any]:
        """The run once it has finished."""

        def done() -> dict[str, Any] | None:
            run = next((r for r in self.api.runs(dag_id) if r["run_id"] == run_id), None)
            return run if run and run["state"] in TERMINAL else None

        return wait_for(done, timeout, f"run {run_id} of {dag_id}")

    def asset_events(self) -> list[dict[str, Any]]:
        """The batch announcements of the ingest DAG (asset events, extra = the batches)."""
        resp = self.api.call("GET", "/assets/events", params={"source_dag_id": INGEST, "limit": 100})
        resp.raise_for_status()
        return [e for e in resp.json()["asset_events"] if e.get("uri", ASSET) == ASSET]

    # --- the kills ----------------------------------------------------------------------------

    def revive(self, kill: Kill) -> None:
        """Start again every part that died while another was down (a supervisor's job)."""
        exited = self.stack.exited()
        if exited:
            say(f"{', '.join(exited)} died during the {kill.part} outage: starting them again")
            kill.revived.extend(exited)
            self.stack.restore_all(exited)

    def hold(self, point: str, dag_id: str, task_id: str, part: str) -> Kill:
        """Wait for the armed ``point`` to hold ``dag_id.task_id``; the record of killing ``part`` there."""
        pid = self.stack.held(point)
        run_id, ti = self.running(dag_id, task_id)
        first = int(ti["try_number"])
        return Kill(part=part, point=point, dag_id=dag_id, run_id=run_id, task_id=task_id, first_try=first, pid=pid)

    def kill_restore(self, kill: Kill) -> None:
        """Kill the part while its task is held, start it again, and any part that died of it."""
        self.stack.kill(kill.part)
        kill.restored_seconds = self.stack.restore(kill.part)
        self.revive(kill)

    def failed_once(self, kill: Kill) -> None:
        """Wait until the held try has failed (it met the dead part)."""

        def failed() -> bool:
            ti = self.task(kill.dag_id, kill.run_id, kill.task_id)
            return ti["state"] in ("up_for_retry", "failed") or int(ti["try_number"]) > kill.first_try

        wait_for(failed, 600, f"try {kill.first_try} of {kill.task_id} to fail", interval=1.0)

    def ended(self, kill: Kill, task_state: bool = False, timeout: float = 600) -> None:
        """Wait until the held task's process has exited, or (``task_state``) Airflow says it ended."""
        if task_state:
            done = lambda: self.task(kill.dag_id, kill.run_id, kill.task_id)["state"] in TERMINAL  # noqa: E731
            wait_for(done, timeout, f"{kill.task_id} to end", interval=1.0)
            return
        with contextlib.suppress(psutil.Error):
            psutil.Process(kill.pid).wait(timeout=timeout)

    def components_settled(self, since: float) -> None:
        """Wait until Airflow's scheduler, DAG processor and triggerer each beat after ``since`` or exited.

        Each either outlived the database's outage (a heartbeat after it came back) or died
        of it: only then does :meth:`revive` know what to start again.
        """
        health = f"{self.stack.airflow.api_url}/api/v2/monitor/health"

        def settled() -> bool:
            if self.stack.processes.started["airflow-api-server"].poll() is not None:
                return True  # no one to ask; revive() starts it, and whatever else died
            with contextlib.suppress(requests.RequestException, ValueError, KeyError):
                found = requests.get(health, timeout=5).json()
                for component in ("scheduler", "dag_processor", "triggerer"):
                    if self.stack.processes.started[f"airflow-{component.replace('_', '-')}"].poll() is not None:
                        continue
                    beat = found[component].get(f"latest_{component}_heartbeat")
                    if not beat or datetime.fromisoformat(beat).timestamp() <= since:
                        return False
                return True
            return False

        wait_for(settled, 300, "Airflow's components to beat again or exit", interval=1.0)

    def settle(self, kill: Kill, started: float) -> None:
        """After the run: its state, the held task's tries and the held try's log."""
        run = self.finished(kill.dag_id, kill.run_id)
        ti = self.task(kill.dag_id, kill.run_id, kill.task_id)
        kill.run_state, kill.tries = run["state"], int(ti["try_number"]) - kill.first_try + 1
        kill.first_try_log = self.try_log(kill.dag_id, kill.run_id, kill.task_id, kill.first_try)
        kill.seconds = round(time.monotonic() - started, 1)
        self.kills[kill.part] = kill
        say(
            f"{kill.part}: run {kill.run_state}, {kill.task_id} took {kill.tries} tries, "
            f"restored in {kill.restored_seconds}s, revived {kill.revived or 'nothing'}, {kill.seconds}s in all"
        )

    # --- months and train runs ----------------------------------------------------------------

    def drop(self, month: int) -> str:
        """Put one month (a seeded sample) into the landing prefix."""
        import io

        from demo.producer import month_frame

        name = f"flights_2013-{month:02d}.parquet"
        buf = io.BytesIO()
        month_frame(month, sample=SAMPLE).to_parquet(buf, index=False)
        self.stack.s3.client().put_object(Bucket=BUCKET, Key=f"{PIPELINE}/landing/{name}", Body=buf.getvalue())
        self.dropped.append(name)
        return name

    def published(self, name: str) -> dict[str, Any]:
        """The batch of ``name`` once announced (waits)."""
        from demo.run_demo import batch_outcome

        return wait_for(lambda: batch_outcome(self.store, name), 900, f"{name} to be landed and announced")

    def trigger_train(self) -> None:
        """Start a train run by hand (REST API)."""
        self.api.trigger(TRAIN)

    def pause(self, dag_id: str, paused: bool) -> None:
        """Pause (no task of its runs is queued) or unpause ``dag_id``."""
        self.api.call("PATCH", f"/dags/{dag_id}", json={"is_paused": paused}).raise_for_status()


@pytest.fixture(scope="module")
def mail(holder: Holder) -> Iterator[MailCatcher]:
    """An SMTP catcher in this process; the stack's ``smtp_default`` connection points at it."""
    from aiosmtpd.controller import Controller

    stack = holder.stack
    from sluice.airflow.runtime.standalone import free_port

    catcher = MailCatcher()
    port = free_port()
    controller = Controller(catcher, hostname="127.0.0.1", port=port)
    controller.start()
    api = AirflowApi(stack)
    extra = {"from_email": "sluice@test.example", "disable_tls": True, "disable_ssl": True, "timeout": 5}
    body = {"connection_id": "smtp_default", "conn_type": "smtp", "host": "127.0.0.1", "port": port}
    body["extra"] = json.dumps(extra | {"retry_limit": 0})
    api.call("DELETE", "/connections/smtp_default")
    api.call("POST", "/connections", json=body).raise_for_status()
    try:
        yield catcher
    finally:
        controller.stop()


def fault_spec(stack: Stack) -> Path:
    """The demo spec on the stack as ``flights_faults``: alerts by email, a gate that passes, calm drift."""
    path = install_pipeline(stack, stack.root / "reference", PIPELINE)
    spec = yaml.safe_load(path.read_text())
    spec["alerts"] = {"email": ["oncall@example.com"]}
    # The model's quality is not under test: every candidate passes, so each train run deploys.
    spec["evaluation"]["gate"] = {"max_regression_vs_champion": 1.0}
    # Monitoring runs (it follows every batch) but never starts a retrain: the test triggers them.
    spec["monitoring"]["drift"] = {"drift_share": 1.0, "threshold": 0.9, "sample_size": SAMPLE, "columns": ["origin"]}
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


@pytest.fixture(scope="module")
def faults(holder: Holder, mail: MailCatcher) -> Iterator[Faults]:
    """The fault pipeline registered and unpaused; its model server stopped after."""
    stack = holder.stack
    api = AirflowApi(stack)
    player = Player(stack, api, fault_spec(stack))
    player.start()
    made = Faults(stack, api, player, mail)
    try:
        yield made
    finally:
        if not holder.closed:
            for point in HOLD_POINTS:  # a test that failed may have left a task waiting
                stack.release(point)
            player.stop_model_server()


# --- what must hold after every kill -----------------------------------------------------------


def check_nothing_lost_or_doubled(f: Faults) -> None:
    """Each dropped file is one batch, announced in exactly one asset event."""
    records = [f.store.batches.get(b) for b in f.store.batches.ids()]
    sources = sorted(r.source_file for r in records)
    assert sources == sorted(f.dropped), f"batches: {sources}, dropped: {f.dropped}"
    announced: dict[str, int] = {}
    for event in f.asset_events():
        for batch in (event.get("extra") or {}).get("batches", []):
            announced[batch] = announced.get(batch, 0) + 1
    published = [r.batch_id for r in records if r.published]
    assert {b: announced.get(b, 0) for b in published} == dict.fromkeys(published, 1), announced


def check_trusted_objects_whole(f: Faults) -> None:
    """Every batch and feature table that a record or ``meta.json`` names reads whole."""
    store = f.store
    for batch_id in store.batches.ids():
        record = store.batches.get(batch_id)
        if record.status == "accepted":
            frame = store.parquet.read(store.keys.batch(batch_id, "clean.parquet"))
            assert len(frame) == record.rows - record.quarantined, batch_id
    metas = [k for k in f.stack.s3.keys(BUCKET, f"{PIPELINE}/state/") if k.endswith("/meta.json")]
    for key in metas:
        if "/." in key:  # a staging prefix: no reader looks there
            continue
        meta = store.json.read(store.key_of(f"s3://{BUCKET}/{key}"))
        if "entries" in meta or "rows" not in meta:  # a run's manifest names cache entries, each checked
            continue
        table = store.key_of(f"s3://{BUCKET}/{key.removesuffix('meta.json')}features.parquet")
        assert len(store.parquet.read(table)) == meta["rows"], key


def mlflow_runs(f: Faults) -> list[Any]:
    """Every MLflow run of the pipeline's experiment (asked of the server)."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f.stack.mlflow.url)
    experiment = client.get_experiment_by_name(PIPELINE)
    return [] if experiment is None else client.search_runs([experiment.experiment_id], max_results=500)


def check_no_mlflow_run_running(f: Faults) -> None:
    """No run of the pipeline is left RUNNING."""
    running = [(r.info.run_id, r.data.tags.get("sluice.role")) for r in mlflow_runs(f) if r.info.status == "RUNNING"]
    assert running == [], running


def check_outcome(f: Faults, kill: Kill, names: tuple[str, ...]) -> None:
    """The run succeeded after retries and no alert went out; had it failed, the alert names the part."""
    subjects = [str(m["Subject"]) for m in f.mail.messages]
    if kill.run_state == "failed":
        bodies = " ".join(str(m) for m in f.mail.messages)
        assert any(n in bodies for n in names), f"run failed; alerts {subjects} do not name {names}"
    assert kill.run_state == "success", (kill, subjects)
    assert not [s for s in subjects if f"{kill.task_id} failed" in s], subjects


def check_all(f: Faults, kill: Kill, names: tuple[str, ...]) -> None:
    """Everything that must hold after a kill."""
    check_outcome(f, kill, names)
    check_nothing_lost_or_doubled(f)
    check_trusted_objects_whole(f)
    check_no_mlflow_run_running(f)
    assert f.stack.exited() == [], "a part is still down"


# --- the runs (module fixtures: several tests read one run) ----------------------------------------


def ingest_with_kills(f: Faults) -> dict[str, Kill]:
    """Months 1 and 2 in one ingest run: S3 killed in ``land``, PostgreSQL in ``validate``, Redis in ``publish``."""
    started = time.monotonic()
    for point in ("land.copied", "validate.before_report", "publish.event_set"):
        f.stack.arm(point)
    names = [f.drop(1), f.drop(2)]

    s3 = f.hold("land.copied", INGEST, "land", "s3")
    say(f"{INGEST}: land held with its scratch copy made; killing s3")
    f.stack.kill("s3")
    f.stack.release("land.copied")
    f.failed_once(s3)
    s3.restored_seconds = f.stack.restore("s3")
    f.revive(s3)

    pg = f.hold("validate.before_report", INGEST, "validate", "postgres")
    say(f"{INGEST}: validate held before its report; killing postgres")
    f.stack.kill("postgres")
    # The task goes on (and may end) while Airflow's database is gone; then it comes back.
    f.stack.release("validate.before_report")
    f.ended(pg, timeout=15)
    back = time.time()
    pg.restored_seconds = f.stack.restore("postgres")
    f.components_settled(back)
    f.revive(pg)

    redis = f.hold("publish.event_set", INGEST, "publish", "redis")
    say(f"{INGEST}: publish held with its asset event set; killing redis")
    f.stack.kill("redis")
    # The task itself needs no broker: let it finish while Redis is down, so the next task of
    # the run must be queued through the Redis that comes back (empty: no persistence).
    f.stack.release("publish.event_set")
    f.ended(redis, task_state=True)
    redis.restored_seconds = f.stack.restore("redis")
    f.revive(redis)

    for name in names:
        f.published(name)
    for kill in (s3, pg, redis):
        f.settle(kill, started)
    return {k.part: k for k in (s3, pg, redis)}


def train_with_kills(f: Faults) -> dict[str, Kill]:
    """One train run: the Spark master, then the Spark worker, killed mid build; MLflow, then a Celery worker."""
    started = time.monotonic()
    f.stack.arm("features.table_written")
    f.stack.arm("train.run_started")
    f.trigger_train()
    master = f.hold("features.table_written", TRAIN, "build_features", "spark-master")
    say(f"{TRAIN}: build_features held with its table written; killing the Spark master")
    f.kill_restore(master)
    worker = dataclasses.replace(master, part="spark-worker", revived=[])
    say(f"{TRAIN}: build_features still held; killing the Spark worker (and its executor)")
    f.kill_restore(worker)
    f.stack.release("features.table_written")

    mlflow = f.hold("train.run_started", TRAIN, "train", "mlflow")
    say(f"{TRAIN}: train held inside its MLflow run; killing mlflow")
    f.stack.kill("mlflow")
    # The retry must meet the server started again, not race its start (15-40 s here): the
    # DAG is paused while it is down, so the scheduler queues no retry until it serves.
    f.pause(TRAIN, True)
    f.stack.release("train.run_started")
    f.failed_once(mlflow)
    mlflow.restored_seconds = f.stack.restore("mlflow")
    f.revive(mlflow)
    f.stack.arm("train.run_started")
    f.pause(TRAIN, False)

    task = f.hold("train.run_started", TRAIN, "train", "airflow-worker")
    host = f.task(TRAIN, task.run_id, "train")["hostname"]
    task.part = f"airflow-worker-{host.split('@')[0]}"
    say(f"{TRAIN}: the retry of train held inside its MLflow run on {host}; killing that Celery worker")
    f.kill_restore(task)
    for kill in (master, worker, mlflow, task):
        f.settle(kill, started)
    return {"spark-master": master, "spark-worker": worker, "mlflow": mlflow, "airflow-worker": task}


@pytest.fixture(scope="module")
def ingest_kills(faults: Faults) -> dict[str, Kill]:
    """The ingest run of months 1 and 2, with S3, PostgreSQL and Redis each killed mid-task."""
    return ingest_with_kills(faults)


@pytest.fixture(scope="module")
def train_kills(faults: Faults, ingest_kills: dict[str, Kill]) -> dict[str, Kill]:
    """The train run, with the Spark master, the Spark worker, MLflow and a Celery worker killed."""
    kills = train_with_kills(faults)
    faults.player.stop_model_server()  # before the teardown test, which counts what is left running
    return kills


# --- one test per part ------------------------------------------------------------------------------


def test_s3_server_killed_mid_land(faults: Faults, ingest_kills: dict[str, Kill]) -> None:
    kill = ingest_kills["s3"]
    check_all(faults, kill, ("S3", "s3", faults.stack.s3.endpoint))
    assert kill.tries >= 2, "the kill did not fail the try it was meant to"
    assert faults.stack.s3.endpoint.split("//")[1] in kill.first_try_log, "the error does not name the S3 server"


def test_postgres_killed_mid_validate(faults: Faults, ingest_kills: dict[str, Kill]) -> None:
    check_all(faults, ingest_kills["postgres"], ("database", "PostgreSQL", "postgres"))


def test_redis_killed_while_publish_announces(faults: Faults, ingest_kills: dict[str, Kill]) -> None:
    check_all(faults, ingest_kills["redis"], ("Redis", "redis", "broker"))


def test_spark_master_killed_mid_feature_build(faults: Faults, train_kills: dict[str, Kill]) -> None:
    check_all(faults, train_kills["spark-master"], ("Spark", "spark://"))


def test_spark_worker_killed_mid_feature_build(faults: Faults, train_kills: dict[str, Kill]) -> None:
    check_all(faults, train_kills["spark-worker"], ("Spark", "executor"))


def test_celery_worker_killed_while_it_runs_train(faults: Faults, train_kills: dict[str, Kill]) -> None:
    kill = train_kills["airflow-worker"]
    check_all(faults, kill, ("worker", "heartbeat"))
    assert kill.tries >= 2, "the killed try was not retried"
    # Two tries of train were killed (MLflow's, then this one): each left its MLflow run RUNNING.
    killed = [r for r in mlflow_runs(faults) if r.data.tags.get("sluice.abandoned_by")]
    assert [r.info.status for r in killed] == ["KILLED", "KILLED"], "a killed try's MLflow run was not closed"


def test_mlflow_server_killed_mid_train(faults: Faults, train_kills: dict[str, Kill]) -> None:
    kill = train_kills["mlflow"]
    check_all(faults, kill, ("MLflow", faults.stack.mlflow.url))
    assert kill.tries >= 2, "the kill did not fail the try it was meant to"
    assert f"the MLflow tracking server {faults.stack.mlflow.url}" in kill.first_try_log or (
        faults.stack.mlflow.url.split("//")[1] in kill.first_try_log
    ), "the error does not name the MLflow server"
    closed = [r for r in mlflow_runs(faults) if r.data.tags.get("sluice.abandoned_by")]
    assert len(closed) == 2 and {r.info.status for r in closed} == {"KILLED"}, "a killed try's run was not closed"


def test_teardown_leaves_nothing(holder: Holder) -> None:
    holder.check_teardown()
