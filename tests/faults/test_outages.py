"""MLflow, storage or SMTP down for one attempt, then for all: bounded, clear, alerted, nothing lost.

Every outage is real: an ``mlflow server`` process killed or frozen (SIGSTOP), the storage
root a tmpfs remounted read-only (root ignores permission bits, not a read-only mount), an
aiosmtpd server stopped. "One attempt" calls the step as its task would, fails, brings the
service back and calls it again (what Airflow's retry does); "all attempts" runs the task
through ``dag.test()`` with the real failure callback, so the alert path is the real one.

The measured times printed here (``pytest -s``) are reported in docs/failures.md; nothing asserts a
duration.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sluice.services.storage import PipelineStore, StorageUnavailable, write_json_atomic
from sluice.steps.records import (
    ChampionScore,
    GateDecision,
    GateThresholds,
    GateVerdict,
    HoldoutInfo,
    ScoredRun,
    encode,
)
from tests.conftest import Project, free_port, fresh_mlflow_store
from tests.integration.conftest import run_dag, small_spec
from tests.smtp_server import MailCatcher, body_text, smtp_conn
from tests.storage import local

pytestmark = [pytest.mark.integration, pytest.mark.faults]

MODEL = "flights_delay"

PROBE_DAG = """
import json
from datetime import datetime
from pathlib import Path

from airflow.providers.standard.operators.python import PythonOperator
from airflow.sdk import DAG

from sluice.airflow.notifications.alerts import AlertNotifier


def land():
    from sluice.services.storage import PipelineStore
    from sluice.steps.ingest import land_new_files

    land_new_files(@LANDING@, PipelineStore(Path(@STORAGE@), "flights_delay"), "outage-run")


def promote():
    from sluice.spec.loader import load_spec
    from sluice.steps.promote import promote

    from sluice.steps.records import GateDecision, decode

    promote(load_spec(@SPEC@), decode(GateDecision, json.loads(Path(@DECISION@).read_text())))


with DAG("@PIPELINE@__probe", schedule=None, start_date=datetime(2024, 1, 1), catchup=False) as dag:
    PythonOperator(
        task_id="@TASK@",
        python_callable=@TASK@,
        retries=0,
        on_failure_callback=AlertNotifier(alert="failure", pipeline="@PIPELINE@", to=["oncall@example.com"]),
    )
"""


def probe_dag(task: str, **paths: str) -> tuple[Any, str]:
    """A one-task DAG running sluice's real ``land`` or ``promote`` with the failure alert."""
    from airflow.dag_processing.dagbag import DagBag

    pipeline = f"outage_{uuid.uuid4().hex[:8]}"  # its own alert Variable in the session's database
    text = PROBE_DAG.replace("@PIPELINE@", pipeline).replace("@TASK@", task)
    for key in ("LANDING", "STORAGE", "SPEC", "DECISION"):
        text = text.replace(f"@{key}@", repr(paths.get(key.lower(), "")))
    # dag.test() runs only DAGs it can serialize from a file in the DAG folder.
    path = Path(os.environ["AIRFLOW__CORE__DAGS_FOLDER"]) / f"{pipeline}.py"
    path.write_text(text)
    return DagBag(dag_folder=str(path)).dags[f"{pipeline}__probe"], pipeline


def timed_run(dag: Any) -> tuple[str, dict[str, str], float]:
    """Run a DAG once; its state, task states and wall time in seconds."""
    start = time.monotonic()
    state, tasks = run_dag(dag)
    elapsed = time.monotonic() - start
    Path(os.environ["AIRFLOW__CORE__DAGS_FOLDER"], f"{dag.dag_id.removesuffix('__probe')}.py").unlink()
    return state, tasks, elapsed


def measured(case: str, seconds: float) -> None:
    """Print a measured time for docs/failures.md (run with ``-s``)."""
    print(f"\nMEASURED {case}: {seconds:.1f} s")


# --- SMTP: a real server the test can stop and start on the same port ----------------------------


class Smtp:
    """aiosmtpd on a fixed free port; ``smtp_default`` points at it whether it runs or not."""

    def __init__(self) -> None:
        self.catcher = MailCatcher()
        self.port = free_port()
        self.controller: Any = None

    def start(self) -> None:
        from aiosmtpd.controller import Controller

        self.controller = Controller(self.catcher, hostname="127.0.0.1", port=self.port)
        self.controller.start()

    def stop(self) -> None:
        if self.controller is not None:
            self.controller.stop()
            self.controller = None


@pytest.fixture()
def smtp(monkeypatch: pytest.MonkeyPatch, airflow_db: Path) -> Iterator[Smtp]:
    """A running SMTP server the test may stop (and the Airflow database dag.test needs)."""
    server = Smtp()
    monkeypatch.setenv("AIRFLOW_CONN_SMTP_DEFAULT", smtp_conn(server.port))
    server.start()
    try:
        yield server
    finally:
        server.stop()


# --- storage: a tmpfs the test remounts read-only ---------------------------------------------------


class Storage:
    """The pipeline's storage root on its own tmpfs."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def _remount(self, mode: str) -> None:
        subprocess.run(["mount", "-o", f"remount,{mode}", str(self.root)], check=True, capture_output=True)

    def down(self) -> None:
        self._remount("ro")

    def up(self) -> None:
        self._remount("rw")


@pytest.fixture()
def storage(tmp_path: Path) -> Iterator[Storage]:
    """Storage root on a tmpfs (needs root and ``mount``; skipped elsewhere)."""
    root = tmp_path / "storage"
    root.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=64m", "sluice-outage", str(root)], capture_output=True, text=True
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({done.stderr.strip()}): the storage outage needs root")
    try:
        yield Storage(root)
    finally:
        subprocess.run(["umount", "-l", str(root)], check=False, capture_output=True)


def landing_with_a_month(project: Project) -> list[str]:
    """One month of flights waiting in the landing folder; the names waiting."""
    from demo.producer import drop_month

    drop_month(project.landing, 1, sample=500)
    return sorted(p.name for p in project.landing.glob("*.parquet"))


# --- MLflow: a real tracking server process ---------------------------------------------------------


class TrackingServer:
    """``mlflow server`` on a free port with its own SQLite store and artifacts."""

    def __init__(self, folder: Path, template: Path) -> None:
        self.folder = folder
        # A migrated store: a server given an empty file migrates it first (~40 s here).
        fresh_mlflow_store(template, folder)
        self.port = free_port()
        self.uri = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        command = [
            str(Path(sys.executable).parent / "mlflow"),
            "server",
            "--backend-store-uri",
            f"sqlite:///{self.folder / 'mlflow.db'}",
            "--artifacts-destination",
            str(self.folder / "artifacts"),
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--workers",
            "1",
        ]
        env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
        # Its job runner (for GenAI jobs) is not needed and slows start-up by about a minute here.
        env["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] = "false"
        log = (self.folder / "server.log").open("ab")
        self.proc = subprocess.Popen(command, env=env, stdout=log, stderr=log, start_new_session=True)
        began = time.monotonic()
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"{self.uri}/health", timeout=2):
                    print(f"\nmlflow server up in {time.monotonic() - began:.1f} s")
                    return
            except OSError:
                if self.proc.poll() is not None:
                    break
                time.sleep(0.5)
        raise AssertionError((self.folder / "server.log").read_text()[-3000:])

    def kill(self) -> None:
        if self.proc is not None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
            self.proc = None

    def freeze(self) -> None:
        """Stop the server's processes: connections are accepted but never answered."""
        assert self.proc is not None
        os.killpg(self.proc.pid, signal.SIGSTOP)

    def thaw(self) -> None:
        assert self.proc is not None
        os.killpg(self.proc.pid, signal.SIGCONT)

    def stop(self) -> None:
        if self.proc is not None:
            os.killpg(self.proc.pid, signal.SIGCONT)
            self.kill()


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory, mlflow_store_template: Path) -> Iterator[TrackingServer]:
    """One tracking server for the module (a start takes 20-60 s on this machine); tests use their own model."""
    server = TrackingServer(tmp_path_factory.mktemp("mlflow-server"), mlflow_store_template)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture()
def tracking_server(project: Project, mlflow_server: TrackingServer, monkeypatch: pytest.MonkeyPatch) -> TrackingServer:
    """The running tracking server; MLFLOW_TRACKING_URI points at it."""
    if mlflow_server.proc is None:
        mlflow_server.start()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server.uri)
    monkeypatch.setenv("MLFLOW_REGISTRY_URI", mlflow_server.uri)
    return mlflow_server


def log_model_run(model: str) -> str:
    """A finished run holding a tiny fitted model (what train leaves); its id."""
    import mlflow
    import mlflow.sklearn
    from sklearn.linear_model import LogisticRegression

    # Not mlflow.set_experiment(): its process-wide "active experiment" would outlive this test
    # and make later tests' start_run(run_id=...) on other stores refuse their own runs.
    client = mlflow.MlflowClient()
    found = client.get_experiment_by_name(model)
    experiment = found.experiment_id if found else client.create_experiment(model)
    with mlflow.start_run(experiment_id=experiment) as run:
        fitted = LogisticRegression().fit([[0.0], [1.0], [0.0], [1.0]], [0, 1, 0, 1])
        mlflow.sklearn.log_model(fitted, name="model", pip_requirements=["scikit-learn"])
    return str(run.info.run_id)


class Champion:
    """A pipeline whose v1 is champion and deployed (``current.json``); a candidate passed its gate."""

    def __init__(self, project: Project, model: str) -> None:
        import mlflow

        from sluice.services import tracking
        from sluice.spec.loader import load_spec

        self.model = model
        self.spec = small_spec(project, name=model)
        self.loaded = load_spec(self.spec)
        self.client = tracking.configure(project.root)
        v1 = mlflow.register_model(f"runs:/{log_model_run(model)}/model", model)
        self.client.set_registered_model_alias(model, tracking.CHAMPION, str(v1.version))
        self.deployed = local(PipelineStore(project.root / "data" / "sluice", model), "deploy") / "current.json"
        write_json_atomic(self.deployed, {"version": str(v1.version), "pid": 0, "port": 0})
        self.deployed_bytes = self.deployed.read_bytes()
        self.decision = GateDecision(
            pipeline=model,
            verdict=GateVerdict.PASS,
            reason="candidate 0.9 >= champion",
            metric="roc_auc",
            higher_is_better=True,
            thresholds=GateThresholds(),
            candidate=ScoredRun(run_id=log_model_run(model), score=0.9),
            champion=ChampionScore(version=str(v1.version), run_id=None),
            holdout=HoldoutInfo(path="holdout.parquet", rows=10, split="random"),
            checks=[],
            airflow_run_id="outage-run",
            decided_at=time.time(),
        )
        self.decision_file = project.root / f"{model}.decision.json"
        self.decision_file.write_text(json.dumps(encode(self.decision)))

    def version(self) -> str | None:
        """The version behind ``@champion`` now (the server must answer)."""
        from sluice.services import tracking

        found = tracking.champion(self.client, self.model)
        return None if found is None else str(found.version)

    def versions(self) -> list[str]:
        """Every registered version."""
        return sorted(str(v.version) for v in self.client.search_model_versions(f"name='{self.model}'"))


@pytest.fixture()
def champion(project: Project, tracking_server: TrackingServer) -> Iterator[Champion]:
    """v1 champion and deployed, a passed candidate, under a model name of this test's own."""
    made = Champion(project, f"outage_{uuid.uuid4().hex[:8]}")
    yield made
    made.spec.unlink()  # the DAG folder is the session's: leave no pipeline behind


def hang_limits(monkeypatch: pytest.MonkeyPatch) -> None:
    """Shorter MLflow HTTP limits for a frozen server (default 20 s x 3 tries): the same bound, quicker."""
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "3")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")


# --- MLflow ------------------------------------------------------------------------------------------


def test_mlflow_down_for_one_attempt_the_retry_promotes_once(
    tracking_server: TrackingServer, champion: Champion, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sluice.services.tracking import TrackingStoreError
    from sluice.steps.promote import promote

    hang_limits(monkeypatch)
    tracking_server.freeze()
    start = time.monotonic()
    try:
        with pytest.raises(TrackingStoreError) as failed:
            promote(champion.loaded, champion.decision)
        measured("MLflow frozen (3 s x 2 tries), one promote attempt", time.monotonic() - start)
    finally:
        tracking_server.thaw()
    assert f"the MLflow tracking server {tracking_server.uri} does not answer" in str(failed.value)
    assert "point MLFLOW_TRACKING_URI at one that runs" in str(failed.value)
    assert champion.version() == "1", "the failed attempt did not move the champion"

    result = promote(champion.loaded, champion.decision)  # the retry
    assert (result.version, result.previous, result.changed) == ("2", "1", True)
    assert champion.version() == "2"
    assert champion.versions() == ["1", "2"], "the candidate is registered once"
    assert promote(champion.loaded, champion.decision).changed is False, "another retry changes nothing"
    assert champion.deployed.read_bytes() == champion.deployed_bytes


# "refused" kills the server: it runs last, and the next user restarts it.
@pytest.mark.parametrize("outage", ["hanging", "refused"])
def test_mlflow_down_for_all_attempts_fails_bounded_with_an_alert_and_the_champion_kept(
    tracking_server: TrackingServer, champion: Champion, smtp: Smtp, monkeypatch: pytest.MonkeyPatch, outage: str
) -> None:
    if outage == "refused":
        tracking_server.kill()
    else:
        hang_limits(monkeypatch)
        tracking_server.freeze()
    dag, pipeline = probe_dag("promote", spec=str(champion.spec), decision=str(champion.decision_file))
    try:
        state, tasks, elapsed = timed_run(dag)
    finally:
        if outage == "refused":
            tracking_server.start()
        else:
            tracking_server.thaw()
    measured(f"MLflow {outage}, promote task through dag.test", elapsed)
    assert (state, tasks) == ("failed", {"promote": "failed"})

    (mail,) = smtp.catcher.wait_for(1)
    assert mail["Subject"].startswith(f"[sluice] {pipeline}: promote failed: ")
    assert f"the MLflow tracking server {tracking_server.uri} does not answer" in mail["Subject"]
    body = body_text(mail)
    assert "point MLFLOW_TRACKING_URI at one that runs" in body
    assert "the champion alias has not moved" in body

    assert champion.version() == "1"
    assert champion.versions() == ["1"], "nothing was registered"
    assert champion.deployed.read_bytes() == champion.deployed_bytes


# --- storage ---------------------------------------------------------------------------------------


def test_storage_read_only_for_one_attempt_the_retry_lands_the_files_once(project: Project, storage: Storage) -> None:
    from sluice.steps.ingest import land_new_files

    waiting = landing_with_a_month(project)
    store = PipelineStore(storage.root, MODEL)
    inbox = str(project.landing / "*.parquet")

    storage.down()
    start = time.monotonic()
    with pytest.raises(StorageUnavailable) as failed:
        land_new_files(inbox, store, "ingest-1")
    measured("storage read-only, one land attempt", time.monotonic() - start)
    assert str(failed.value).startswith(
        f"[Errno 30] the pipeline's storage {local(store)} is not writable (Read-only file system): "
    )
    assert "mount it read-write" in str(failed.value)
    assert sorted(p.name for p in project.landing.glob("*.parquet")) == waiting, "the files wait in landing"

    storage.up()
    result = land_new_files(inbox, store, "ingest-1")  # the retry
    assert len(result.new) == 1 and result.archived == waiting
    assert store.batches.ids() == result.new
    assert list(project.landing.glob("*.parquet")) == []
    again = land_new_files(inbox, store, "ingest-2")
    assert again.new == [] and store.batches.ids() == result.new, "nothing doubled"


def test_storage_read_only_for_all_attempts_fails_with_an_alert_and_the_files_kept(
    project: Project, storage: Storage, smtp: Smtp
) -> None:
    waiting = landing_with_a_month(project)
    storage.down()
    dag, pipeline = probe_dag("land", landing=str(project.landing / "*.parquet"), storage=str(storage.root))
    state, tasks, elapsed = timed_run(dag)
    measured("storage read-only, land task through dag.test", elapsed)
    assert (state, tasks) == ("failed", {"land": "failed"})

    (mail,) = smtp.catcher.wait_for(1)
    assert mail["Subject"].startswith(f"[sluice] {pipeline}: land failed: [Errno 30] the pipeline's storage /")
    body = body_text(mail)
    assert f"{storage.root / MODEL} is not writable (Read-only file system)" in body
    assert "mount it read-write" in body and "Files stay in the landing folder until they land" in body

    assert sorted(p.name for p in project.landing.glob("*.parquet")) == waiting, "no file lost"
    storage.up()
    assert list(storage.root.iterdir()) == [], "no batch, no temporary"


# --- SMTP --------------------------------------------------------------------------------------------


def _alert_log(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.getMessage().startswith("alert email")]


def test_smtp_down_for_one_alert_the_same_failure_alerts_once_it_is_back(
    project: Project, storage: Storage, smtp: Smtp, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="sluice.airflow.notifications.alerts")
    landing_with_a_month(project)
    storage.down()
    smtp.stop()
    dag, pipeline = probe_dag("land", landing=str(project.landing / "*.parquet"), storage=str(storage.root))
    path = Path(os.environ["AIRFLOW__CORE__DAGS_FOLDER"]) / f"{pipeline}.py"
    text = path.read_text()
    state, tasks, _ = timed_run(dag)
    assert (state, tasks) == ("failed", {"land": "failed"}), "the task fails for its own reason"
    (not_sent,) = _alert_log(caplog)
    assert not_sent.startswith(f"alert email not sent: failure alert for {pipeline} to oncall@example.com")
    assert "Connection refused" in not_sent or "ConnectionRefusedError" in not_sent

    # Before: the lost email was recorded as sent, silencing the same failure for an hour.
    smtp.start()
    caplog.clear()
    path.write_text(text)
    from airflow.dag_processing.dagbag import DagBag

    again = DagBag(dag_folder=str(path)).dags[f"{pipeline}__probe"]
    assert timed_run(again)[:2] == ("failed", {"land": "failed"})
    (mail,) = smtp.catcher.wait_for(1)
    assert mail["Subject"].startswith(f"[sluice] {pipeline}: land failed: [Errno 30] the pipeline's storage ")
    assert _alert_log(caplog) == [f"alert email sent: failure alert for {pipeline} to oncall@example.com"]


def test_smtp_down_for_all_alerts_changes_no_outcome_and_says_so(
    project: Project, storage: Storage, smtp: Smtp, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="sluice.airflow.notifications.alerts")
    landing_with_a_month(project)
    smtp.stop()

    # A task that succeeds stays green with no SMTP server.
    ok, pipeline = probe_dag("land", landing=str(project.landing / "*.parquet"), storage=str(storage.root))
    assert timed_run(ok)[:2] == ("success", {"land": "success"})
    assert _alert_log(caplog) == []
    assert len(PipelineStore(storage.root, MODEL).batches.ids()) == 1

    # A failing task fails as it would, and the log says no alert went out.
    from demo.producer import drop_month

    drop_month(project.landing, 2, sample=500)
    waiting = sorted(p.name for p in project.landing.glob("*.parquet"))
    storage.down()
    failing, pipeline = probe_dag("land", landing=str(project.landing / "*.parquet"), storage=str(storage.root))
    state, tasks, elapsed = timed_run(failing)
    measured("SMTP refused, failing land task through dag.test", elapsed)
    assert (state, tasks) == ("failed", {"land": "failed"})
    (not_sent,) = _alert_log(caplog)
    assert not_sent.startswith(f"alert email not sent: failure alert for {pipeline}")
    assert smtp.catcher.messages == []
    assert sorted(p.name for p in project.landing.glob("*.parquet")) == waiting, "the waiting file stays in landing"
    storage.up()
    store = PipelineStore(storage.root, MODEL)
    assert len(store.batches.ids()) == 1 and store.batches.get(store.batches.ids()[0]).status == "landed"
