"""Each part of a kit: what it listens on, how it is prepared, started, seen ready and stopped.

The commands come from :mod:`sluice.production.commands` (shared with the test harness); the
values from the kit's environment file (:class:`~sluice.production.envfile.Kit`). Parts start
in waves (:attr:`Part.wave`): the servers the others need first, then MLflow and the Spark
master, then the Spark worker and the Airflow API server (after ``airflow db migrate``), then
the rest of Airflow, the Celery workers and Flower.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from sluice.airflow.runtime.embedded import API_SERVER_READY_PATHS
from sluice.production import commands
from sluice.production.envfile import Kit, KitError

#: Every part in start order; ``airflow-worker`` stands for one part per worker of the kit.
ORDER = (
    "postgres",
    "redis",
    "s3",
    "mlflow",
    "spark-master",
    "spark-worker",
    "airflow-api-server",
    "airflow-scheduler",
    "airflow-dag-processor",
    "airflow-triggerer",
    "airflow-worker",
    "flower",
)
#: Names ``--only`` takes for several parts at once.
GROUPS = {
    "spark": ("spark-master", "spark-worker"),
    "airflow": (
        "airflow-api-server",
        "airflow-scheduler",
        "airflow-dag-processor",
        "airflow-triggerer",
        "airflow-worker",
    ),
}
#: Airflow components whose health the API server reports (``/api/v2/monitor/health``).
HEARTBEATS = {
    "airflow-scheduler": "scheduler",
    "airflow-dag-processor": "dag_processor",
    "airflow-triggerer": "triggerer",
}


@dataclass(frozen=True)
class Launch:
    """One process to start: its command, environment and working folder."""

    cmd: list[str]
    env: dict[str, str]
    cwd: Path | None = None


def _nothing() -> None:
    return None


@dataclass(frozen=True)
class Part:
    """One part of the shape on this host.

    Attributes:
        name: As ``--only`` and ``status`` name it.
        wave: Parts of a wave start together; a wave waits for the one before to be ready.
        listens: (the variable that sets it, port) of each port it listens on.
        launch: Its process.
        ready: Whether it answers (never raises).
        needs: (what, host, port) of servers it needs, waited for when they are elsewhere.
        prepare: Runs before the start (folders, ``initdb``, ``airflow db migrate``...).
        settle: Runs once it answers (databases, buckets).
        before_stop: Runs before its process group is stopped (``pg_ctl stop``).
    """

    name: str
    wave: int
    listens: tuple[tuple[str, int], ...]
    launch: Callable[[], Launch]
    ready: Callable[[], bool]
    needs: tuple[tuple[str, str, int], ...] = ()
    prepare: Callable[[], None] = field(default=_nothing)
    settle: Callable[[], None] = field(default=_nothing)
    before_stop: Callable[[], None] = field(default=_nothing)


def answers(check: Callable[[], Any]) -> Callable[[], bool]:
    """``check`` as a readiness test: true when it returns something truthy, false when it raises."""

    def ready() -> bool:
        try:
            return bool(check())
        except Exception:  # not answering, whatever the client raised
            return False

    return ready


def http_ok(url: str, auth: tuple[str, str] | None = None) -> bool:
    """Whether ``GET url`` answers 200 within 5 s."""
    import requests

    return requests.get(url, timeout=5, auth=auth).status_code == 200


def tcp_open(host: str, port: int) -> bool:
    """Whether ``host:port`` accepts a TCP connection within 3 s."""
    try:
        with socket.create_connection((host, port), timeout=3):
            return True
    except OSError:
        return False


def endpoint_of(url: str, default_port: int) -> tuple[str, int]:
    """(host, port) of a URL such as ``postgresql+psycopg2://u:p@host:5432/db``."""
    parts = urlsplit(url)
    return parts.hostname or "localhost", parts.port or default_port


def _run_quietly(cmd: list[str]) -> None:
    subprocess.run(cmd, capture_output=True, check=False)


# --- the servers: PostgreSQL, Redis, S3 -----------------------------------------------------


def postgres_socket_dir(kit: Kit) -> Path:
    """Where the local PostgreSQL puts its Unix socket: ``<state>/postgres/socket``, or a short folder.

    A socket's path is at most 107 bytes (``.s.PGSQL.<port>`` included): a deep state folder
    gets ``sluice-pg-<digest of the state folder>`` in the temporary folder (or ``/tmp`` when
    that is deep too), the same one every time.
    """
    fits = 107 - len("/.s.PGSQL.65535")
    inside = kit.state / "postgres" / "socket"
    if len(str(inside)) <= fits:
        return inside
    name = f"sluice-pg-{hashlib.sha256(str(kit.state.resolve()).encode()).hexdigest()[:12]}"
    short = Path(tempfile.gettempdir()) / name
    return short if len(str(short)) <= fits else Path("/tmp") / name  # noqa: S108 (a socket folder of ours)


def postgres_part(kit: Kit) -> Part:
    """PostgreSQL as the ``postgres`` user (as root) with roles ``airflow`` and ``mlflow``, their databases."""
    folder = kit.state / "postgres"
    data, sock, port = folder / "data", postgres_socket_dir(kit), kit.port("SLUICE_KIT_POSTGRES_PORT")

    def prepare() -> None:
        commands.ensure_debian_packages("/usr/lib/postgresql/*/bin/initdb", ["postgresql"])
        for path in (folder, data, sock):
            path.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:  # PostgreSQL refuses root: its folders belong to its system user
            # The socket folder may be outside the state folder (a short one in the temporary folder).
            commands.let_others_through(folder)
            commands.let_others_through(sock)
            for path in (folder, data, sock):
                shutil.chown(path, "postgres", "postgres")
        if not (data / "PG_VERSION").exists():
            subprocess.run(commands.initdb_command(data, passwords=True), check=True, capture_output=True)
            with (data / "pg_hba.conf").open("a") as hba:  # other hosts too, always with a password
                hba.write("host all all 0.0.0.0/0 scram-sha-256\nhost all all ::/0 scram-sha-256\n")

    def superuser() -> Any:
        import psycopg2

        return psycopg2.connect(host=str(sock), port=port, user="postgres", dbname="postgres")

    def settle() -> None:
        conn = superuser()
        conn.autocommit = True
        with conn.cursor() as cur:
            for role, secret in (("airflow", "AIRFLOW"), ("mlflow", "MLFLOW")):
                password = kit.get(f"SLUICE_KIT_{secret}_DB_PASSWORD")
                cur.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,))
                verb = "ALTER" if cur.fetchone() else "CREATE"
                cur.execute(f"{verb} ROLE {role} LOGIN PASSWORD %s", (password,))  # kept as the file says
                cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (role,))
                if not cur.fetchone():
                    cur.execute(f'CREATE DATABASE "{role}" OWNER {role}')
        conn.close()

    return Part(
        name="postgres",
        wave=0,
        listens=(("SLUICE_KIT_POSTGRES_PORT", port),),
        launch=lambda: Launch(
            commands.postgres_command(data, sock, kit.get("SLUICE_KIT_BIND"), port), dict(os.environ)
        ),
        ready=answers(lambda: superuser().close() is None),
        prepare=prepare,
        settle=settle,
        before_stop=lambda: _run_quietly(commands.pg_ctl_stop_command(data)),
    )


def redis_part(kit: Kit) -> Part:
    """``redis-server`` with the kit's password, no persistence."""
    folder, port = kit.state / "redis", kit.port("SLUICE_KIT_REDIS_PORT")
    password = kit.get("SLUICE_KIT_REDIS_PASSWORD", "")

    def prepare() -> None:
        commands.ensure_debian_packages("/usr/bin/redis-server", ["redis-server"])
        folder.mkdir(parents=True, exist_ok=True)

    def ping() -> bool:
        import redis

        host = kit.get("SLUICE_KIT_REDIS_HOST")
        if not tcp_open(host, port):  # the client would retry a refused connection for seconds
            return False
        return bool(redis.Redis(host=host, port=port, password=password or None, socket_timeout=5).ping())

    cmd = commands.redis_command(kit.get("SLUICE_KIT_BIND"), port, folder, password)
    return Part(
        "redis",
        0,
        (("SLUICE_KIT_REDIS_PORT", port),),
        lambda: Launch(cmd, dict(os.environ)),
        answers(ping),
        prepare=prepare,
    )


def s3_access(kit: Kit) -> dict[str, str]:
    """The S3 settings: endpoint (empty for AWS), key, secret, region."""
    return {
        "endpoint": kit.get("SLUICE_KIT_S3_ENDPOINT", ""),
        "key": kit.get("SLUICE_KIT_S3_ACCESS_KEY", ""),
        "secret": kit.get("SLUICE_KIT_S3_SECRET_KEY", ""),
        "region": kit.get("SLUICE_KIT_S3_REGION", "us-east-1"),
    }


def s3_client(kit: Kit) -> Any:
    """A boto3 S3 client of the kit's S3 (the credential chain when no keys are set)."""
    import boto3

    access = s3_access(kit)
    return boto3.client(
        "s3",
        endpoint_url=access["endpoint"] or None,
        aws_access_key_id=access["key"] or None,
        aws_secret_access_key=access["secret"] or None,
        region_name=access["region"],
    )


def s3_part(kit: Kit) -> Part:
    """moto's S3 server, its state in a journal under the state folder; creates the kit's buckets."""
    folder, port = kit.state / "s3", kit.port("SLUICE_KIT_S3_PORT")
    endpoint = f"http://{kit.get('SLUICE_KIT_S3_HOST')}:{port}"

    def prepare() -> None:
        folder.mkdir(parents=True, exist_ok=True)
        try:
            import moto  # noqa: F401
        except ImportError:
            raise KitError(
                f"{kit.where('SLUICE_KIT_PARTS')}: part s3 is moto's server, installed with sluice's development "
                "dependencies (`uv sync`); or leave s3 out of SLUICE_KIT_PARTS and point SLUICE_KIT_S3_ENDPOINT "
                "at your own S3"
            ) from None

    def settle() -> None:
        client = s3_client(kit)
        have = {b["Name"] for b in client.list_buckets().get("Buckets", [])}
        for bucket in kit.names("SLUICE_KIT_BUCKETS"):
            if bucket not in have:
                client.create_bucket(Bucket=bucket)

    cmd = commands.s3_command(kit.get("SLUICE_KIT_BIND"), port, folder / "journal.jsonl")
    return Part(
        name="s3",
        wave=0,
        listens=(("SLUICE_KIT_S3_PORT", port),),
        launch=lambda: Launch(cmd, commands.with_pythonpath(os.environ), folder),
        ready=answers(lambda: http_ok(f"{endpoint}/moto-api/")),
        prepare=prepare,
        settle=settle,
    )


# --- MLflow and Spark ----------------------------------------------------------------------


def mlflow_part(kit: Kit) -> Part:
    """The MLflow tracking server on PostgreSQL, artifacts proxied to S3."""
    port, host = kit.port("SLUICE_KIT_MLFLOW_PORT"), kit.get("SLUICE_KIT_MLFLOW_HOST")
    db = kit.get("SLUICE_KIT_MLFLOW_DB_URL")
    # MLflow 3 answers only Host headers it allows: localhost and private addresses by default.
    named = not host.replace(".", "").isdigit() and host != "localhost"
    allowed = ",".join([host, f"{host}:{port}", "localhost", f"localhost:{port}", f"127.0.0.1:{port}"]) if named else ""
    access = s3_access(kit)

    def launch() -> Launch:
        cmd = commands.mlflow_command(
            db, kit.get("SLUICE_KIT_MLFLOW_ARTIFACTS"), kit.get("SLUICE_KIT_BIND"), port,
            workers=kit.number("SLUICE_KIT_MLFLOW_WORKERS"), allowed_hosts=allowed,
        )  # fmt: skip
        env = commands.mlflow_env(os.environ, access["endpoint"], access["key"], access["secret"], access["region"])
        folder = kit.state / "mlflow"
        folder.mkdir(parents=True, exist_ok=True)
        return Launch(cmd, env, folder)

    needs = [("PostgreSQL (SLUICE_KIT_MLFLOW_DB_URL)", *endpoint_of(db, 5432))]
    if access["endpoint"]:
        needs.append(("S3 (SLUICE_KIT_S3_ENDPOINT)", *endpoint_of(access["endpoint"], 443)))
    return Part(
        name="mlflow",
        wave=1,
        listens=(("SLUICE_KIT_MLFLOW_PORT", port),),
        launch=launch,
        ready=answers(lambda: http_ok(f"http://{host}:{port}/health")),
        needs=tuple(needs),
    )


def spark_state(kit: Kit) -> dict[str, Any]:
    """The Spark master's JSON status (workers, applications)."""
    import requests

    ui = f"http://{kit.get('SLUICE_KIT_SPARK_HOST')}:{kit.port('SLUICE_KIT_SPARK_UI_PORT')}"
    resp = requests.get(f"{ui}/json/", timeout=10)
    resp.raise_for_status()
    data: dict[str, Any] = resp.json()
    return data


def spark_parts(kit: Kit) -> list[Part]:
    """The standalone master and one worker, JVMs in the foreground."""
    folder, host = kit.state / "spark", kit.get("SLUICE_KIT_SPARK_HOST")
    port, ui, worker_ui = (kit.port(f"SLUICE_KIT_SPARK_{n}_PORT") for n in ("MASTER", "UI", "WORKER_UI"))

    def worker_alive() -> bool:
        workers = spark_state(kit)["workers"]
        mine = [w for w in workers if str(w.get("webuiaddress", "")).endswith(f":{worker_ui}")]
        return any(w["state"] == "ALIVE" for w in mine or workers)

    def launch_worker() -> Launch:
        cores, memory = kit.number("SLUICE_KIT_SPARK_WORKER_CORES"), kit.get("SLUICE_KIT_SPARK_WORKER_MEMORY")
        cmd = commands.spark_worker_command(
            kit.get("SLUICE_KIT_SPARK_MASTER"), kit.get("SLUICE_KIT_HOST"), cores, memory, worker_ui, folder / "work"
        )
        return Launch(cmd, commands.spark_env(os.environ, folder, kit.get("SLUICE_KIT_HOST")))

    master = Part(
        name="spark-master",
        wave=1,
        listens=(("SLUICE_KIT_SPARK_MASTER_PORT", port), ("SLUICE_KIT_SPARK_UI_PORT", ui)),
        launch=lambda: Launch(
            commands.spark_master_command(host, port, ui), commands.spark_env(os.environ, folder, host)
        ),
        ready=answers(lambda: spark_state(kit)["status"] == "ALIVE"),
    )
    worker = Part(
        name="spark-worker",
        wave=2,
        listens=(("SLUICE_KIT_SPARK_WORKER_UI_PORT", worker_ui),),
        launch=launch_worker,
        ready=answers(worker_alive),
        needs=(("the Spark master (SLUICE_KIT_SPARK_MASTER)", host, port),),
    )
    return [master, worker]


# --- Airflow ----------------------------------------------------------------------------------


def s3_connection(kit: Kit) -> str:
    """The ``AIRFLOW_CONN_<ID>`` value (JSON, type aws) of the kit's S3; no keys or endpoint for AWS's own."""
    access = s3_access(kit)
    extra = {"region_name": access["region"], **({"endpoint_url": access["endpoint"]} if access["endpoint"] else {})}
    conn: dict[str, Any] = {"conn_type": "aws", "extra": extra}
    if access["key"]:
        conn.update(login=access["key"], password=access["secret"])
    return json.dumps(conn)


def airflow_env(kit: Kit) -> dict[str, str]:
    """The environment of every Airflow component: the file's variables over what the kit derives.

    Derived: the Airflow home in the state folder, the CeleryExecutor, the API port and address,
    the log server ports, one S3 connection per id of ``SLUICE_KIT_S3_CONN_IDS``, Spark's driver
    address, and this sluice first on PYTHONPATH; then the embedded default's settings
    (:func:`sluice.airflow.runtime.home.embedded_env`: examples off, heartbeat timeouts, the
    forkserver and Celery preload...) for whatever is still unset.
    """
    from sluice.airflow.runtime.home import PRIVATE_PREFIXES, embedded_env

    env = {k: v for k, v in os.environ.items() if not k.startswith(PRIVATE_PREFIXES)}
    env.update(kit.forwarded)
    workers = kit.workers
    derived = {
        "AIRFLOW_HOME": str(kit.state / "airflow"),
        "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
        "AIRFLOW__API__HOST": kit.get("SLUICE_KIT_BIND"),
        "AIRFLOW__API__PORT": str(kit.port("SLUICE_KIT_AIRFLOW_PORT")),
        "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(kit.port("SLUICE_KIT_TRIGGER_LOG_PORT")),
        "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(workers[0][1] if workers else 8793),
        "SLUICE_MLFLOW_UI_PORT": str(kit.port("SLUICE_KIT_MLFLOW_PORT")),
        "SPARK_LOCAL_IP": kit.get("SLUICE_KIT_HOST"),
        **{f"AIRFLOW_CONN_{conn_id.upper()}": s3_connection(kit) for conn_id in kit.names("SLUICE_KIT_S3_CONN_IDS")},
    }
    for key, value in derived.items():
        env.setdefault(key, value)
    project = Path(env.get("SLUICE_PROJECT_DIR") or kit.path.parent)
    return embedded_env(project, commands.with_pythonpath(env))


def api_url(kit: Kit) -> str:
    """The Airflow API server's base URL, as the other parts reach it."""
    return f"http://{kit.get('SLUICE_KIT_AIRFLOW_HOST')}:{kit.port('SLUICE_KIT_AIRFLOW_PORT')}"


def health(kit: Kit) -> dict[str, Any]:
    """The API server's ``/api/v2/monitor/health`` answer."""
    import requests

    resp = requests.get(f"{api_url(kit)}/api/v2/monitor/health", timeout=5)
    resp.raise_for_status()
    data: dict[str, Any] = resp.json()
    return data


def migrate(kit: Kit, env: dict[str, str]) -> None:
    """``airflow db migrate``, the ``sluice_spark`` pool, and the admin's password from the file.

    Raises:
        KitError: The migration failed (the log's tail in the message).
    """
    home = Path(env["AIRFLOW_HOME"])
    home.mkdir(parents=True, exist_ok=True)
    # SimpleAuthManager generates a password only for a user missing from this file.
    passwords = home / "simple_auth_manager_passwords.json.generated"
    passwords.write_text(json.dumps({"admin": kit.get("SLUICE_KIT_ADMIN_PASSWORD")}) + "\n")
    passwords.chmod(0o600)
    done = subprocess.run(
        commands.airflow_command("db", "migrate"), env=env, capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise KitError(f"airflow db migrate failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    slots = str(kit.number("SLUICE_KIT_SPARK_POOL_SLOTS"))
    pool = commands.airflow_command("pools", "set", "sluice_spark", slots, "Spark feature jobs at once")
    subprocess.run(pool, env=env, capture_output=True, check=True)


def fixed(launch: Launch) -> Callable[[], Launch]:
    """A launcher that always gives ``launch``."""
    return lambda: launch


def celery_worker_ready(broker: str, name: str) -> Callable[[], bool]:
    """Whether the Celery worker ``name`` answers a ping through ``broker``."""
    at = endpoint_of(broker, 6379)
    return answers(lambda: tcp_open(*at) and name in commands.celery_workers(broker))


def airflow_parts(kit: Kit) -> list[Part]:
    """The API server (after the migration), scheduler, DAG processor, triggerer and the Celery workers."""
    env, cwd = airflow_env(kit), kit.state / "airflow"
    broker, db, url = (
        kit.get("AIRFLOW__CELERY__BROKER_URL"),
        kit.get("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"),
        api_url(kit),
    )
    servers: tuple[tuple[str, str, int], ...] = (
        ("PostgreSQL (AIRFLOW__DATABASE__SQL_ALCHEMY_CONN)", *endpoint_of(db, 5432)),
        ("Redis (AIRFLOW__CELERY__BROKER_URL)", *endpoint_of(broker, 6379)),
    )
    needs = (*servers, ("the Airflow API server (SLUICE_KIT_AIRFLOW_HOST)", *endpoint_of(url, 8080)))

    def heartbeat(component: str) -> Callable[[], bool]:
        return answers(lambda: health(kit)[component]["status"] == "healthy")

    found = [
        Part(
            name="airflow-api-server",
            wave=2,
            listens=(("SLUICE_KIT_AIRFLOW_PORT", kit.port("SLUICE_KIT_AIRFLOW_PORT")),),
            launch=fixed(Launch(commands.airflow_command("api-server"), env, cwd)),
            ready=answers(lambda: all(http_ok(f"{url}{path}") for path in API_SERVER_READY_PATHS)),
            needs=servers,
            prepare=lambda: migrate(kit, env),
        )
    ]
    trigger_logs = (("SLUICE_KIT_TRIGGER_LOG_PORT", kit.port("SLUICE_KIT_TRIGGER_LOG_PORT")),)
    for name, component in HEARTBEATS.items():
        launch = Launch(commands.airflow_command(name.removeprefix("airflow-")), env, cwd)
        ports = trigger_logs if component == "triggerer" else ()
        found.append(Part(name, 3, ports, fixed(launch), heartbeat(component), needs))
    concurrency = kit.number("SLUICE_KIT_WORKER_CONCURRENCY")
    for worker, log_port in kit.workers:
        celery_name = f"{worker}@{socket.gethostname()}"
        cmd = commands.celery_worker_command(celery_name, concurrency)
        launch = Launch(cmd, commands.celery_worker_env(env, celery_name, log_port), cwd)
        listens = ((f"SLUICE_KIT_WORKER_LOG_PORTS (worker {worker})", log_port),)
        found.append(
            Part(f"airflow-worker-{worker}", 3, listens, fixed(launch), celery_worker_ready(broker, celery_name), needs)
        )
    return found


def flower_part(kit: Kit) -> Part:
    """Flower, Celery's UI, behind basic auth: ``admin`` and the admin password."""
    port, auth = kit.port("SLUICE_KIT_FLOWER_PORT"), ("admin", kit.get("SLUICE_KIT_ADMIN_PASSWORD"))
    cmd = commands.flower_command(kit.get("SLUICE_KIT_BIND"), port, ":".join(auth))
    host = kit.get("SLUICE_KIT_AIRFLOW_HOST")
    broker = kit.get("AIRFLOW__CELERY__BROKER_URL")
    return Part(
        name="flower",
        wave=3,
        listens=(("SLUICE_KIT_FLOWER_PORT", port),),
        launch=lambda: Launch(cmd, airflow_env(kit), kit.state / "airflow"),
        ready=answers(lambda: http_ok(f"http://{host}:{port}/healthcheck", auth=auth)),
        needs=(("Redis (AIRFLOW__CELERY__BROKER_URL)", *endpoint_of(broker, 6379)),),
    )


def parts(kit: Kit) -> dict[str, Part]:
    """Every part a kit can start here, by name, in start order (workers expanded)."""
    found = [postgres_part(kit), redis_part(kit), s3_part(kit), mlflow_part(kit), *spark_parts(kit)]
    found += [*airflow_parts(kit), flower_part(kit)]
    return {part.name: part for part in found}


def select(kit: Kit, only: list[str] | None) -> list[str]:
    """The names of the parts to act on: ``only`` (names or groups), else ``SLUICE_KIT_PARTS``; in start order.

    Raises:
        KitError: A name is no part (the message lists them).
    """
    workers = [f"airflow-worker-{name}" for name, _ in kit.workers]
    groups = {**GROUPS, "airflow-worker": tuple(workers)}
    known = [n for n in ORDER if n != "airflow-worker"]
    known = known[: known.index("airflow-triggerer") + 1] + workers + ["flower"]
    asked = only if only is not None else kit.names("SLUICE_KIT_PARTS")
    wanted: set[str] = set()
    for name in asked:
        expanded = [n for g in groups.get(name, (name,)) for n in groups.get(g, (g,))]
        unknown = [n for n in expanded if n not in known]
        if unknown:
            where = "--only" if only is not None else f"{kit.where('SLUICE_KIT_PARTS')}: SLUICE_KIT_PARTS"
            choices = ", ".join([*known, *groups])
            raise KitError(f"{where}: no part named {unknown[0]!r}; the parts: {choices}")
        wanted.update(expanded)
    return [name for name in known if name in wanted]


def where_to_look(kit: Kit) -> list[tuple[str, str, str]]:
    """What a person opens to inspect the shape: (what, address, how to log in)."""
    access = s3_access(kit)
    flower = f"http://{kit.get('SLUICE_KIT_AIRFLOW_HOST')}:{kit.port('SLUICE_KIT_FLOWER_PORT')}"
    spark_ui = f"http://{kit.get('SLUICE_KIT_SPARK_HOST')}:{kit.port('SLUICE_KIT_SPARK_UI_PORT')}"
    admin = f"admin / {kit.get('SLUICE_KIT_ADMIN_PASSWORD')}"
    return [
        ("Airflow UI and REST API", api_url(kit), admin),
        ("MLflow", kit.get("MLFLOW_TRACKING_URI"), "-"),
        ("S3 endpoint", access["endpoint"] or "AWS", f"key {access['key'] or '-'} / secret {access['secret'] or '-'}"),
        ("Spark master UI", spark_ui, f"master {kit.get('SLUICE_KIT_SPARK_MASTER')}"),
        ("Flower (Celery)", flower, admin),
        ("logs", str(kit.state / "logs"), "one file per part"),
    ]
