"""The production shape on one machine, as real separate processes (issue 11).

``make demo-production`` (:mod:`demo.run_production`) and the production tests
(``tests/production/``) start the same harness from here.

Each context manager starts one part on free loopback ports in a folder of its own and stops
it on exit: :func:`postgres`, :func:`redis`, :func:`s3` (moto's server, see
:mod:`demo.object_store`), :func:`mlflow_server` (PostgreSQL + S3 artifacts, proxied),
:func:`spark_cluster` (standalone master and one worker from the pyspark distribution) and
:func:`airflow_celery` (PostgreSQL, CeleryExecutor on Redis: API server, scheduler, DAG
processor, triggerer and two workers). :func:`production_stack` composes them all.

Every process starts in a session (and process group) of its own, with :data:`TAG` in its
environment, so a test can stop it whole (SIGTERM, then SIGKILL after a grace period) and
then prove nothing is left (:meth:`Processes.leftovers`). :func:`production_stack` points
every Airflow component at the stack's MLflow server and S3 (connection :data:`S3_CONN_ID`),
and at this checkout's ``include/`` and S3A jars. PostgreSQL and Redis come from
Debian's packages, installed with ``apt-get`` the first time they are missing (as root).
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests
import tenacity
from cryptography.fernet import Fernet

from demo.object_store import ObjectStore
from demo.process_tags import in_sessions, tagged, wait_until_empty
from sluice.airflow.runtime.embedded import API_SERVER_READY_PATHS
from sluice.airflow.runtime.standalone import free_port
from sluice.production import commands
from sluice.services.processes import stop_group

#: In the environment of every process a stack starts, with the stack's own value.
TAG = "SLUICE_STACK_TAG"
#: The checkout this module belongs to: its ``include/`` goes on every component's PYTHONPATH.
PROJECT = Path(__file__).resolve().parents[2]
#: The Airflow connection (type aws) every component has for the stack's S3 server.
S3_CONN_ID = commands.S3_CONN_ID

#: Points of sluice's steps where the fault tests hold a task (``tests/production/test_faults.py``),
#: each disarmed until a test arms it (:meth:`Stack.arm`; see :mod:`sluice.services.faults`).
HOLD_POINTS = (
    "land.copied",
    "validate.before_report",
    "publish.event_set",
    "features.table_written",
    "train.run_started",
)
#: Seconds a process gets between SIGTERM and SIGKILL.
GRACE_SECONDS = commands.GRACE_SECONDS
#: How long one component may take to answer (a cold start on two busy cores is slow).
START_TIMEOUT = 300.0


def _say(text: str) -> None:
    print(f"production-stack | {text}", flush=True)


class Processes:
    """The processes a stack started, each the leader of a session of its own.

    Args:
        root: Folder for the log files (``<root>/logs/<name>.log``).
        tag: Put in every process's environment as :data:`TAG`; default: a new one.
    """

    def __init__(self, root: Path, tag: str | None = None) -> None:
        """Track processes whose logs go under ``root``."""
        self.root = root
        self.tag = tag or uuid.uuid4().hex
        self.started: dict[str, subprocess.Popen[bytes]] = {}
        self.commands: dict[str, tuple[list[str], dict[str, str], Path | None]] = {}
        self.timings: dict[str, float] = {}

    def log(self, name: str) -> Path:
        """The log file of the process called ``name``."""
        return self.root / "logs" / f"{name}.log"

    def spawn(self, name: str, cmd: list[str], env: dict[str, str], cwd: Path | None = None) -> subprocess.Popen[bytes]:
        """Start ``cmd`` in a session of its own, output to :meth:`log`."""
        log = self.log(name)
        log.parent.mkdir(parents=True, exist_ok=True)
        with log.open("ab") as out:
            proc = subprocess.Popen(
                cmd,
                env={**env, TAG: self.tag},
                cwd=cwd,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.started[name] = proc
        self.commands[name] = (list(cmd), dict(env), cwd)
        return proc

    def kill(self, name: str) -> list[int]:
        """SIGKILL ``name`` as a lost host would: its session and every process it started.

        Airflow's task processes leave the worker's session (each starts one of its own), so
        the descendants of the leader are found by the process tree, the rest by the session.
        Waits until every one of them is gone.

        Returns:
            The pids killed.
        """
        import psutil

        proc = self.started[name]
        found: dict[int, psutil.Process] = {}
        with contextlib.suppress(psutil.Error):
            leader = psutil.Process(proc.pid)
            found[leader.pid] = leader
            found.update({child.pid: child for child in leader.children(recursive=True)})
        for each in psutil.process_iter():
            with contextlib.suppress(psutil.Error, OSError):
                if os.getsid(each.pid) == proc.pid:
                    found[each.pid] = each
        for each in found.values():
            with contextlib.suppress(psutil.Error):
                each.kill()
        psutil.wait_procs(list(found.values()), timeout=30)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=10)
        _say(f"{name} killed (SIGKILL, {len(found)} process(es))")
        return sorted(found)

    def restart(self, name: str, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        """Start ``name`` again with the command, environment and folder it was first started with.

        Same command means the same port and the same data folder. ``env`` is added on top.
        """
        cmd, first_env, cwd = self.commands[name]
        _say(f"{name} restarting")
        return self.spawn(name, cmd, {**first_env, **(env or {})}, cwd=cwd)

    def stop(self, name: str) -> None:
        """SIGTERM the session of ``name``, SIGKILL what is left after :data:`GRACE_SECONDS`."""
        proc = self.started.get(name)
        if proc is None:
            return
        started = time.monotonic()
        stop_group(proc.pid, grace_seconds=GRACE_SECONDS)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=10)
        _say(f"{name} stopped in {time.monotonic() - started:.1f}s")

    def tail(self, name: str, lines: int = 40) -> str:
        """The last lines of the log of ``name``."""
        try:
            return "\n".join(self.log(name).read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def wait(self, name: str, ready: Callable[[], bool], timeout: float = START_TIMEOUT) -> None:
        """Poll ``ready`` until true; fail with a log's tail if a watched process exits or time runs out.

        Watched: ``name`` and every process whose name starts with ``<name>-``.

        Raises:
            RuntimeError: The process exited, or ``ready`` stayed false for ``timeout`` seconds.
        """
        watched = [n for n in self.started if n == name or n.startswith(f"{name}-")]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for each in watched:
                if (code := self.started[each].poll()) is not None:
                    raise RuntimeError(f"{each} exited with {code}:\n{self.tail(each, 80)}")
            with contextlib.suppress(Exception):
                if ready():
                    return
            time.sleep(0.5)
        raise RuntimeError(f"{name} not ready after {timeout:.0f}s:\n{self.tail(name)}")

    def timed(self, what: str, since: float) -> None:
        """Record (and print) how long ``what`` took to start since ``since`` (monotonic)."""
        self.timings[what] = round(time.monotonic() - since, 1)
        _say(f"{what} ready in {self.timings[what]:.1f}s")

    def leftovers(self, wait: float = 30.0) -> list[str]:
        """Command lines of processes still alive that this stack started.

        Found by :data:`TAG` in their environment, and by the session of a started process:
        PostgreSQL writes its process titles over its environment.
        """
        sessions = {proc.pid for proc in self.started.values()}
        return wait_until_empty(lambda: tagged(TAG, self.tag) + in_sessions(sessions), wait)


def ensure_debian_packages(binary: str, packages: list[str]) -> None:
    """Install ``packages`` with ``apt-get`` unless ``binary`` (a path glob) exists already (as the kit does)."""
    commands.ensure_debian_packages(binary, packages, say=_say)


@dataclass(frozen=True)
class Postgres:
    """A running PostgreSQL server (user ``postgres``, trust authentication on loopback)."""

    port: int
    socket_dir: Path
    host: str = "127.0.0.1"
    user: str = "postgres"

    def url(self, database: str, driver: str = "postgresql+psycopg2") -> str:
        """An SQLAlchemy-style URL of ``database`` on this server."""
        return f"{driver}://{self.user}@{self.host}:{self.port}/{database}"


#: Kept under its old name (the tests call it): the kit's :func:`sluice.production.commands.let_others_through`.
_let_others_through = commands.let_others_through


@contextlib.contextmanager
def postgres(procs: Processes, databases: tuple[str, ...] = ("airflow", "mlflow")) -> Iterator[Postgres]:
    """PostgreSQL as the ``postgres`` user on a free port, its data in ``<root>/postgres``.

    Creates ``databases``; stops with ``pg_ctl stop -m fast``.
    """
    started = time.monotonic()
    ensure_debian_packages("/usr/lib/postgresql/*/bin/initdb", ["postgresql"])
    folder = procs.root / "postgres"
    data, sock = folder / "data", folder / "socket"
    for path in (folder, data, sock):
        path.mkdir(parents=True, exist_ok=True)
    # PostgreSQL refuses root: the data and socket folders belong to the package's system user,
    # and the folders above them must let it through.
    procs.root.chmod(0o755)
    _let_others_through(procs.root)
    shutil.chown(folder, "postgres", "postgres")
    shutil.chown(data, "postgres", "postgres")
    shutil.chown(sock, "postgres", "postgres")
    subprocess.run(commands.initdb_command(data, passwords=False, durable=False), check=True, capture_output=True)
    server = Postgres(port=free_port(), socket_dir=sock)
    # Not durable (fsync off): the harness's data is thrown away; this is not a durability test.
    cmd = commands.postgres_command(data, sock, server.host, server.port, durable=False)
    procs.spawn("postgres", cmd, dict(os.environ))
    try:
        import psycopg2

        def accepts() -> bool:
            psycopg2.connect(host=server.host, port=server.port, user=server.user, dbname="postgres").close()
            return True

        procs.wait("postgres", accepts, timeout=120)
        conn = psycopg2.connect(host=server.host, port=server.port, user=server.user, dbname="postgres")
        conn.autocommit = True
        with conn.cursor() as cur:
            for name in databases:
                cur.execute(f'CREATE DATABASE "{name}"')
        conn.close()
        procs.timed("postgres", started)
        yield server
    finally:
        subprocess.run(commands.pg_ctl_stop_command(data), capture_output=True, check=False)
        procs.stop("postgres")


@dataclass(frozen=True)
class Redis:
    """A running Redis server."""

    port: int
    host: str = "127.0.0.1"

    def url(self, db: int = 0) -> str:
        """The ``redis://`` URL of database ``db``."""
        return f"redis://{self.host}:{self.port}/{db}"


@contextlib.contextmanager
def redis(procs: Processes) -> Iterator[Redis]:
    """``redis-server`` in the foreground on a free loopback port, no persistence."""
    started = time.monotonic()
    ensure_debian_packages("/usr/bin/redis-server", ["redis-server"])
    server = Redis(port=free_port())
    folder = procs.root / "redis"
    folder.mkdir(parents=True, exist_ok=True)
    procs.spawn("redis", commands.redis_command(server.host, server.port, folder), dict(os.environ))
    try:
        import redis as redis_client

        procs.wait("redis", lambda: bool(redis_client.Redis(host=server.host, port=server.port).ping()), timeout=60)
        procs.timed("redis", started)
        yield server
    finally:
        procs.stop("redis")


def s3_ready(store: ObjectStore) -> bool:
    """Whether the S3 server answers (its state is replayed before it listens)."""
    return requests.get(f"{store.endpoint}/moto-api/", timeout=5).status_code == 200


@contextlib.contextmanager
def s3(procs: Processes, buckets: tuple[str, ...] = ("sluice", "mlflow")) -> Iterator[ObjectStore]:
    """moto's S3 server as its own process, with ``buckets`` created.

    The state is kept in ``<root>/s3/journal.jsonl`` (:func:`sluice.production.moto_journal.serve_journaled`),
    so the server killed and started again (:meth:`Processes.restart`) has what it had.
    """
    started = time.monotonic()
    folder = procs.root / "s3"
    folder.mkdir(parents=True, exist_ok=True)
    store = ObjectStore(f"http://127.0.0.1:{free_port()}")
    port = int(store.endpoint.rsplit(":", 1)[1])
    cmd = commands.s3_command("127.0.0.1", port, folder / "journal.jsonl")
    procs.spawn("s3", cmd, commands.with_pythonpath(os.environ, PROJECT / "include"), cwd=folder)
    try:
        procs.wait("s3", lambda: s3_ready(store), timeout=120)
        for bucket in buckets:
            store.create_bucket(bucket)
        procs.timed("s3", started)
        yield store
    finally:
        procs.stop("s3")


@dataclass(frozen=True)
class MlflowServer:
    """A running MLflow tracking server (artifacts proxied to S3)."""

    url: str
    artifact_bucket: str = "mlflow"


@contextlib.contextmanager
def mlflow_server(procs: Processes, pg: Postgres, store: ObjectStore) -> Iterator[MlflowServer]:
    """``mlflow server`` on PostgreSQL (database ``mlflow``) with ``s3://mlflow/`` artifacts, proxied."""
    started = time.monotonic()
    port = free_port()
    env = commands.mlflow_env(os.environ, store.endpoint, store.key, store.secret, store.region)
    cmd = commands.mlflow_command(pg.url("mlflow"), "s3://mlflow/", "127.0.0.1", port, workers=1)
    procs.spawn("mlflow", cmd, env, cwd=procs.root)
    server = MlflowServer(url=f"http://127.0.0.1:{port}")
    try:
        procs.wait("mlflow", lambda: requests.get(f"{server.url}/health", timeout=5).status_code == 200)
        procs.timed("mlflow", started)
        yield server
    finally:
        procs.stop("mlflow")


@dataclass(frozen=True)
class SparkCluster:
    """A running Spark standalone cluster: its master URL and the master's web UI."""

    master: str
    ui: str

    def state(self) -> dict[str, Any]:
        """The master's JSON status (workers, active and completed applications)."""
        resp = requests.get(f"{self.ui}/json/", timeout=10)
        resp.raise_for_status()
        data: dict[str, Any] = resp.json()
        return data


@contextlib.contextmanager
def spark_cluster(procs: Processes, cores: int = 1, memory: str = "1g") -> Iterator[SparkCluster]:
    """A standalone master and one worker, JVMs run in the foreground as children.

    Started with ``bin/spark-class`` of the pyspark distribution (it ``exec``s the JVM), not
    the ``sbin`` scripts, which daemonise and would leave the PIDs to a pid file.
    """
    started = time.monotonic()
    folder = procs.root / "spark"
    env = commands.spark_env(os.environ, folder, "127.0.0.1")  # recovery folder, logs, this sluice
    port, ui_port = free_port(), free_port()
    cluster = SparkCluster(master=f"spark://127.0.0.1:{port}", ui=f"http://127.0.0.1:{ui_port}")
    master = commands.spark_master_command("127.0.0.1", port, ui_port)
    worker = commands.spark_worker_command(cluster.master, "127.0.0.1", cores, memory, free_port(), folder / "work")
    try:
        procs.spawn("spark-master", master, env)
        procs.wait("spark-master", lambda: "workers" in cluster.state())
        procs.spawn("spark-worker", worker, env)
        procs.wait("spark-master", lambda: [w["state"] for w in cluster.state()["workers"]] == ["ALIVE"])
        procs.timed("spark", started)
        yield cluster
    finally:
        procs.stop("spark-worker")
        procs.stop("spark-master")


@dataclass
class AirflowCelery:
    """A running Airflow on PostgreSQL with the CeleryExecutor."""

    api_url: str
    home: Path
    env: dict[str, str]
    workers: tuple[str, ...] = field(default_factory=tuple)

    def token(self) -> str:
        """A JWT for the REST API, as ``admin`` (SimpleAuthManager's generated password)."""

        passwords = json.loads((self.home / "simple_auth_manager_passwords.json.generated").read_text())
        resp = requests.post(
            f"{self.api_url}/auth/token", json={"username": "admin", "password": passwords["admin"]}, timeout=30
        )
        resp.raise_for_status()
        return str(resp.json()["access_token"])


#: Airflow's ``[core] hostname_callable`` for the workers: the Celery hostname (``w1@host``)
#: becomes each task instance's ``hostname``, as it would be the host's name on a real cluster.
#: The harness keeps its own copy of :func:`sluice.production.commands.celery_hostname` on its
#: workers' PYTHONPATH (as before the kit), which wins over the kit's default.
HOSTNAME_MODULE = '''"""Task instance hostnames of the harness's Celery workers (one machine, two names)."""

import os


def celery_hostname() -> str:
    """The worker's Celery hostname, ``SLUICE_CELERY_HOSTNAME``."""
    return os.environ["SLUICE_CELERY_HOSTNAME"]
'''


def _create_pools(env: dict[str, str]) -> None:
    """The pool the plan puts Spark tasks in (``sluice bootstrap`` makes it on the embedded default)."""
    cmd = commands.airflow_command("pools", "set", "sluice_spark", "1", "one Spark job at a time")
    subprocess.run(cmd, env=env, capture_output=True, check=True)


def api_server_ready(api_url: str) -> Callable[[], bool]:
    """Whether the API server answers every :data:`API_SERVER_READY_PATHS` (``/execution/health``
    for its side effect: the Execution API builds its routes on its first request)."""
    ready = [f"{api_url}{path}" for path in API_SERVER_READY_PATHS]
    return lambda: all(requests.get(url, timeout=5).status_code == 200 for url in ready)


@contextlib.contextmanager
def airflow_celery(
    procs: Processes,
    pg: Postgres,
    broker: Redis,
    dags_folder: Path,
    workers: tuple[str, ...] = ("w1", "w2"),
    extra_env: dict[str, str] | None = None,
) -> Iterator[AirflowCelery]:
    """Airflow on PostgreSQL with Celery on Redis: every component a separate process.

    ``airflow db migrate``, then the API server (waited for), scheduler, DAG processor,
    triggerer and one ``airflow celery worker`` per name in ``workers`` (``--celery-hostname
    <name>@<host>``, concurrency 2). The environment is the embedded default's
    (:func:`sluice.airflow.runtime.standalone.isolated_env`: AIRFLOW_HOME, free ports, SimpleAuthManager)
    with the production settings on top; the secrets every component must share (JWT, API
    secret key, Fernet key) are set explicitly, as on a cluster of hosts. ``extra_env`` goes
    into every component's environment last (connections, MLflow, PYTHONPATH...).
    """
    from sluice.airflow.runtime.standalone import isolated_env

    started = time.monotonic()
    project = procs.root / "airflow"
    pythonpath = project / "pythonpath"
    pythonpath.mkdir(parents=True, exist_ok=True)
    (pythonpath / "stack_hostname.py").write_text(HOSTNAME_MODULE)
    extra = {
        "AIRFLOW__CORE__DAGS_FOLDER": str(dags_folder),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": pg.url("airflow"),
        "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
        "AIRFLOW__CELERY__BROKER_URL": broker.url(),
        # Name the driver: SQLAlchemy 2.1's plain ``postgresql://`` means psycopg 3, not installed.
        "AIRFLOW__CELERY__RESULT_BACKEND": "db+" + pg.url("airflow"),
        "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_urlsafe(32),
        "AIRFLOW__API__SECRET_KEY": secrets.token_urlsafe(32),
        "AIRFLOW__CORE__FERNET_KEY": Fernet.generate_key().decode(),
        "AIRFLOW__API__WORKERS": "1",
        "AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK": "False",
        **(extra_env or {}),
    }
    env = isolated_env(project, extra=extra, fast=True)
    home = Path(env["AIRFLOW_HOME"])
    home.mkdir(parents=True, exist_ok=True)
    airflow = commands.airflow_command()
    host = socket.gethostname()
    names = [f"{w}@{host}" for w in workers]
    running = AirflowCelery(api_url=f"http://127.0.0.1:{env['AIRFLOW__API__PORT']}", home=home, env=env)
    try:
        t0 = time.monotonic()
        migrate = subprocess.run([*airflow, "db", "migrate"], env=env, capture_output=True, text=True, check=False)
        if migrate.returncode != 0:
            raise RuntimeError(f"airflow db migrate failed:\n{migrate.stdout[-3000:]}\n{migrate.stderr[-3000:]}")
        procs.timed("airflow db migrate", t0)
        _create_pools(env)
        t0 = time.monotonic()
        procs.spawn("airflow-api-server", [*airflow, "api-server"], env, cwd=project)
        health = f"{running.api_url}{API_SERVER_READY_PATHS[0]}"
        procs.wait("airflow-api-server", api_server_ready(running.api_url))
        procs.timed("airflow api-server", t0)
        t0 = time.monotonic()
        for component in ("scheduler", "dag-processor", "triggerer"):
            procs.spawn(f"airflow-{component}", [*airflow, component], env, cwd=project)
        for name, worker in zip(names, workers, strict=True):
            # The Celery name as the task instances' hostname; a log server port of its own.
            hostname = {
                "PYTHONPATH": os.pathsep.join(filter(None, [str(pythonpath), env.get("PYTHONPATH")])),
                "AIRFLOW__CORE__HOSTNAME_CALLABLE": "stack_hostname.celery_hostname",
            }
            worker_env = commands.celery_worker_env({**env, **hostname}, name, free_port())
            cmd = commands.celery_worker_command(name, 2)
            procs.spawn(f"airflow-worker-{worker}", cmd, worker_env, cwd=project)

        def all_up() -> bool:
            resp = requests.get(health, timeout=5).json()
            beats = [resp[c]["status"] for c in ("scheduler", "dag_processor", "triggerer")]
            return beats == ["healthy"] * 3 and celery_workers(broker) >= set(names)

        procs.wait("airflow", all_up)
        procs.timed("airflow scheduler, dag-processor, triggerer, workers", t0)
        procs.timed("airflow", started)
        running.workers = tuple(names)
        yield running
    finally:
        for name in reversed(list(procs.started)):
            if name.startswith("airflow-"):
                procs.stop(name)


def celery_workers(broker: Redis) -> set[str]:
    """Hostnames of the Celery workers that answer a ping through ``broker``."""
    return commands.celery_workers(broker.url())


@dataclass
class Stack:
    """The whole production shape, running."""

    root: Path
    processes: Processes
    postgres: Postgres
    redis: Redis
    s3: ObjectStore
    mlflow: MlflowServer
    spark: SparkCluster
    airflow: AirflowCelery

    @property
    def dags_folder(self) -> Path:
        """Where the Airflow DAG processor reads DAG files."""
        return Path(self.airflow.env["AIRFLOW__CORE__DAGS_FOLDER"])

    # --- fault injection: hold a task at a point, kill a part, start it again ----------------

    @property
    def faults(self) -> Path:
        """The components' ``SLUICE_FAULT_ONCE`` folder (markers of the :data:`HOLD_POINTS`)."""
        return self.root / "faults"

    def arm(self, point: str) -> None:
        """Make the next task that reaches ``point`` (one of :data:`HOLD_POINTS`) wait there once."""
        for name in (point, f"{point}.held", f"{point}.release"):
            (self.faults / name).unlink(missing_ok=True)

    def held(self, point: str, timeout: float = 900.0) -> int:
        """Wait until a task waits at the armed ``point``; its pid.

        Raises:
            TimeoutError: No task reached ``point`` within ``timeout`` seconds.
        """
        marker = self.faults / f"{point}.held"
        try:
            tenacity.Retrying(
                stop=tenacity.stop_after_delay(timeout),
                wait=tenacity.wait_fixed(0.5),
                retry=tenacity.retry_if_result(lambda found: not found),
            )(marker.exists)
        except tenacity.RetryError:
            raise TimeoutError(f"no task reached {point} within {timeout:.0f}s") from None
        return int(marker.read_text())

    def release(self, point: str) -> None:
        """Let the task waiting at ``point`` go on."""
        (self.faults / f"{point}.release").touch()

    def kill(self, part: str) -> list[int]:
        """SIGKILL one part (a name of :attr:`Processes.started`) and everything it started."""
        return self.processes.kill(part)

    def restore(self, part: str) -> float:
        """Start a killed ``part`` again (same port, same data folder); wait until it serves.

        Returns:
            Seconds from the start until it served.
        """
        return self.restore_all([part])[part]

    def restore_all(self, parts: list[str]) -> dict[str, float]:
        """Start every one of ``parts`` again at once, then wait until each serves.

        Started together, not one after the other: several components of Airflow die with
        its database, and each takes tens of seconds to start on two busy cores.

        Returns:
            For each part, seconds from the start until it served.
        """
        started = time.monotonic()
        ready = {part: self._ready(part) for part in parts}  # before the start: a heartbeat must be newer
        for part in parts:
            self.processes.restart(part)
        seconds: dict[str, float] = {}
        for part in parts:
            self.processes.wait(part, ready[part])
            seconds[part] = round(time.monotonic() - started, 1)
            _say(f"{part} restored in {seconds[part]:.1f}s")
        return seconds

    def exited(self) -> list[str]:
        """Names of the parts whose process has exited (a part that died of another's outage)."""
        return [name for name, proc in self.processes.started.items() if proc.poll() is not None]

    def _ready(self, part: str) -> Callable[[], bool]:
        """What says that ``part`` serves again."""
        import psycopg2
        import redis as redis_client

        def alive_workers() -> int:
            return sum(w["state"] == "ALIVE" for w in self.spark.state()["workers"])

        if part.startswith("airflow-worker-"):
            name = next(w for w in self.airflow.workers if w.startswith(part.removeprefix("airflow-worker-") + "@"))
            return lambda: name in celery_workers(self.redis)
        health = f"{self.airflow.api_url}/api/v2/monitor/health"
        if part in ("airflow-scheduler", "airflow-dag-processor", "airflow-triggerer"):
            # Healthy by a heartbeat of the new process: the dead one's last beat may still be fresh.
            component = part.removeprefix("airflow-").replace("-", "_")
            since = time.time()

            def beats() -> bool:
                found = requests.get(health, timeout=5).json()[component]
                beat = found.get(f"latest_{component}_heartbeat")
                return found["status"] == "healthy" and bool(beat) and _epoch(beat) > since

            return beats
        if part == "airflow-api-server":
            return api_server_ready(self.airflow.api_url)
        checks: dict[str, Callable[[], bool]] = {
            "postgres": lambda: (
                psycopg2.connect(
                    host=self.postgres.host, port=self.postgres.port, user=self.postgres.user, dbname="airflow"
                ).close()
                is None
            ),
            "redis": lambda: bool(redis_client.Redis(host=self.redis.host, port=self.redis.port).ping()),
            "s3": lambda: s3_ready(self.s3),
            "mlflow": lambda: requests.get(f"{self.mlflow.url}/health", timeout=5).status_code == 200,
            # A worker registers again with a master started again by itself.
            "spark-master": lambda: self.spark.state()["status"] == "ALIVE" and alive_workers() == 1,
            "spark-worker": lambda: alive_workers() == 1,
        }
        return checks[part]


def _epoch(stamp: str) -> float:
    """An ISO time stamp of Airflow's REST API as epoch seconds."""
    from datetime import datetime

    return datetime.fromisoformat(stamp).timestamp()


def component_env(
    store: ObjectStore, tracking: MlflowServer, jars: Path | None = None, faults: Path | None = None
) -> dict[str, str]:
    """What every Airflow component of the stack gets on top of Airflow's own settings.

    The S3 connection :data:`S3_CONN_ID`, the MLflow server as tracking and registry URI,
    this checkout's ``include/`` first on PYTHONPATH (the virtualenv may point at another
    checkout's), the S3A jars folder, and Spark's driver on loopback.

    Args:
        store: The stack's S3 server.
        tracking: The stack's MLflow server.
        jars: The S3A jars folder (default: ``$SLUICE_S3A_JARS`` or ``<checkout>/.jars/s3a``).
        faults: The fault tests' marker folder: every :data:`HOLD_POINTS` becomes a point where
            a task can be held (:meth:`Stack.arm`); none fires while its marker is there.
    """
    jars = jars or Path(os.environ.get("SLUICE_S3A_JARS") or PROJECT / ".jars" / "s3a")
    return {
        f"AIRFLOW_CONN_{S3_CONN_ID.upper()}": store.airflow_connection,
        "MLFLOW_TRACKING_URI": tracking.url,
        "MLFLOW_REGISTRY_URI": tracking.url,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(PROJECT / "include"), os.environ.get("PYTHONPATH")])),
        "SLUICE_S3A_JARS": str(jars),
        "SPARK_LOCAL_IP": "127.0.0.1",
        **(
            {"SLUICE_TEST_FAULTS": "1", "SLUICE_FAULT_ONCE": str(faults), "SLUICE_FAULT_HOLD": ",".join(HOLD_POINTS)}
            if faults
            else {}
        ),
    }


@contextlib.contextmanager
def production_stack(root: Path | None = None, jars: Path | None = None) -> Iterator[Stack]:
    """Start every part of the production shape; stop all and remove the folder on exit.

    Args:
        root: Folder for data, logs and homes; default: a new temporary folder (removed after).
        jars: The S3A jars folder the Airflow workers give Spark (see :func:`component_env`).
    """
    folder = root or Path(tempfile.mkdtemp(prefix="sluice-prodstack-"))
    procs = Processes(folder)
    for point in HOLD_POINTS:  # disarmed: each point has its marker; a test arms one by removing it
        (folder / "faults").mkdir(parents=True, exist_ok=True)
        (folder / "faults" / point).write_text("disarmed")
    dags = folder / "dags"
    dags.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    try:
        with (
            postgres(procs) as pg,
            redis(procs) as broker,
            s3(procs) as store,
            mlflow_server(procs, pg, store) as tracking,
            # Two slots: the two pipelines of the demo e2e (one training on the cluster) each run
            # their Spark application at once instead of queueing behind the other's.
            spark_cluster(procs, cores=2, memory="2g") as spark,
            airflow_celery(
                procs, pg, broker, dags, extra_env=component_env(store, tracking, jars, faults=folder / "faults")
            ) as af,
        ):
            procs.timed("whole stack", started)
            yield Stack(folder, procs, pg, broker, store, tracking, spark, af)
    finally:
        if root is None:
            shutil.rmtree(folder, ignore_errors=True)


@dataclass
class KitStack:
    """The production shape the kit started (``sluice production up``), seen as the demo sees a :class:`Stack`.

    What :mod:`demo.run_production` reads of a stack: its folder, DAG folder, S3 server, Airflow
    API and Spark master. Its parts are the kit's (``sluice production status|down``), not
    processes of this one.
    """

    root: Path
    kit: Any
    s3: ObjectStore
    airflow: AirflowCelery
    spark: SparkCluster

    @property
    def dags_folder(self) -> Path:
        """Where the Airflow DAG processor reads DAG files (the kit's ``AIRFLOW__CORE__DAGS_FOLDER``)."""
        return Path(self.airflow.env["AIRFLOW__CORE__DAGS_FOLDER"])


#: Either shape, for the code that only plays the demo on it.
AnyStack = Stack | KitStack


def kit_stack(env_file: Path) -> KitStack:
    """The running kit of ``env_file`` as a :class:`KitStack`."""
    from sluice.production.envfile import load
    from sluice.production.parts import airflow_env, api_url, s3_access

    kit = load(env_file)
    access = s3_access(kit)
    store = ObjectStore(access["endpoint"], access["key"], access["secret"], access["region"])
    env = airflow_env(kit)
    airflow = AirflowCelery(api_url=api_url(kit), home=Path(env["AIRFLOW_HOME"]), env=env)
    airflow.workers = tuple(f"{name}@{socket.gethostname()}" for name, _ in kit.workers)
    spark_ui = f"http://{kit.get('SLUICE_KIT_SPARK_HOST')}:{kit.port('SLUICE_KIT_SPARK_UI_PORT')}"
    return KitStack(env_file.parent, kit, store, airflow, SparkCluster(kit.get("SLUICE_KIT_SPARK_MASTER"), spark_ui))
