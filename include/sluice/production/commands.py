"""The exact command and environment of each part of the production shape.

One place for what the kit (:mod:`sluice.production.parts`) and the test harness
(``include/demo/production_stack.py``) start, so a fix to a part reaches both: PostgreSQL's
pool-sized ``max_connections``, Redis without persistence, moto's S3 server with its journal,
MLflow without job consumers, Spark's standalone daemons in the foreground with single-node
recovery, Celery workers with their own names and log server ports, and Flower.

Pure builders (lists and dicts) plus the few helpers they need; nothing here starts a process
except :func:`ensure_debian_packages` and :func:`celery_workers` (a ping through the broker).
"""

from __future__ import annotations

import glob
import os
import stat
import subprocess
import sys
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path

#: Seconds a part gets between SIGTERM and SIGKILL.
GRACE_SECONDS = 20.0
#: The Airflow connection ids both the harness and the kit define for their S3 server.
S3_CONN_ID = "sluice_s3"
#: Airflow's ``[core] hostname_callable`` of the Celery workers (see :func:`celery_hostname`).
HOSTNAME_CALLABLE = "sluice.production.commands.celery_hostname"


def include_dir() -> Path:
    """The folder this sluice is imported from (``include/`` of a checkout): first on every part's PYTHONPATH.

    The virtualenv may point at another checkout's sources; the parts must run these.
    """
    return Path(__file__).resolve().parents[2]


def with_pythonpath(env: Mapping[str, str], *folders: Path) -> dict[str, str]:
    """``env`` with ``folders`` (default: :func:`include_dir`) first on PYTHONPATH."""
    first = [str(f) for f in folders or (include_dir(),)]
    return {**env, "PYTHONPATH": os.pathsep.join(filter(None, [*first, env.get("PYTHONPATH")]))}


def airflow_command(*args: str) -> list[str]:
    """``python -m airflow ARGS`` with this interpreter."""
    return [sys.executable, "-m", "airflow", *args]


# --- PostgreSQL --------------------------------------------------------------------------


def ensure_debian_packages(binary: str, packages: list[str], say: Callable[[str], None] = print) -> None:
    """Install ``packages`` with ``apt-get`` unless ``binary`` (a path glob) exists already.

    ``apt-get update`` runs only when the first install fails (stale or empty lists).

    Raises:
        subprocess.CalledProcessError: The install failed after an update too.
    """
    if glob.glob(binary):
        return
    install = ["apt-get", "install", "-y", "--no-install-recommends", *packages]
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    say(f"installing {' '.join(packages)} (apt-get, once)")
    if subprocess.run(install, env=env, capture_output=True, check=False).returncode != 0:
        subprocess.run(["apt-get", "update"], env=env, capture_output=True, check=True)
        subprocess.run(install, env=env, capture_output=True, check=True)


def postgres_bin() -> Path:
    """The newest ``/usr/lib/postgresql/<version>/bin`` (Debian's layout).

    Raises:
        FileNotFoundError: PostgreSQL's server is not installed.
    """
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not found:
        raise FileNotFoundError("no /usr/lib/postgresql/<version>/bin/initdb: install Debian's `postgresql` package")
    return Path(found[-1]).parent


def as_postgres_user() -> list[str]:
    """The prefix that runs a PostgreSQL binary: ``runuser -u postgres --`` as root (it refuses root), else none."""
    return ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []


def let_others_through(folder: Path) -> None:
    """Give other users search (not read) permission on the temporary folders above ``folder``.

    A private temporary folder (the tests put everything under one of mode 0700, and each
    pytest-xdist worker one more inside it) would otherwise stop the ``postgres`` user from
    reaching its data folder. Every folder between ``folder`` and the outermost temporary root
    it is under (``/tmp``, ``/var/tmp`` or ``$TMPDIR``) is opened, if it is ours.
    """
    here = folder.resolve()
    system = (Path("/tmp"), Path("/var/tmp"))  # noqa: S108 (compared with, never written to)
    roots = [r for r in (Path(tempfile.gettempdir()).resolve(), *system) if r in here.parents]
    if not roots:
        return
    top = min(roots, key=lambda r: len(r.parts))
    for parent in here.parents:
        if parent == top:
            break
        info = parent.stat()
        if info.st_uid == os.getuid() and not info.st_mode & stat.S_IXOTH:
            parent.chmod(stat.S_IMODE(info.st_mode) | stat.S_IXOTH)


def initdb_command(data: Path, passwords: bool, durable: bool = True) -> list[str]:
    """``initdb`` of a data folder: superuser ``postgres``, UTF8.

    Args:
        data: The data folder.
        passwords: Connections over TCP need a password (``scram-sha-256``); the local socket
            stays trusted (its folder is the server user's). Else everything is trusted (tests).
        durable: Sync the new files to disk (``False``: ``--no-sync``, for data thrown away).
    """
    auth = ["--auth-local=trust", "--auth-host=scram-sha-256"] if passwords else ["--auth=trust"]
    cmd = [*as_postgres_user(), str(postgres_bin() / "initdb"), "-D", str(data), "-U", "postgres", *auth, "-E", "UTF8"]
    return cmd + ([] if durable else ["--no-sync"])


def postgres_command(data: Path, socket_dir: Path, host: str, port: int, durable: bool = True) -> list[str]:
    """The PostgreSQL server in the foreground on ``host:port``.

    Airflow's components, its Celery result backend and MLflow each hold a pool of connections:
    300 of them. ``durable=False`` (the test harness, whose data is thrown away) turns fsync off.
    """
    cmd = [*as_postgres_user(), str(postgres_bin() / "postgres"), "-D", str(data), "-k", str(socket_dir)]
    cmd += ["-h", host, "-p", str(port), "-c", "max_connections=300"]
    if not durable:
        cmd += ["-c", "fsync=off", "-c", "synchronous_commit=off"]
    return cmd


def pg_ctl_stop_command(data: Path) -> list[str]:
    """``pg_ctl stop -m fast``: PostgreSQL ends its sessions and checkpoints before it exits."""
    return [*as_postgres_user(), str(postgres_bin() / "pg_ctl"), "stop", "-D", str(data), "-m", "fast", "-t", "30"]


# --- Redis, S3, MLflow ----------------------------------------------------------------------


def redis_command(host: str, port: int, folder: Path, password: str = "") -> list[str]:
    """``redis-server`` in the foreground, no persistence (a broker: messages only)."""
    cmd = ["redis-server", "--port", str(port), "--bind", host, "--save", "", "--appendonly", "no"]
    cmd += ["--daemonize", "no", "--dir", str(folder)]
    return cmd + (["--requirepass", password] if password else [])


def s3_command(host: str, port: int, journal: Path) -> list[str]:
    """moto's S3 server keeping its state in ``journal`` (:mod:`sluice.production.moto_journal`)."""
    module = "sluice.production.moto_journal"
    return [sys.executable, "-m", module, "--host", host, "--port", str(port), "--journal", str(journal)]


def mlflow_command(
    backend: str, artifacts: str, host: str, port: int, workers: int = 1, allowed_hosts: str = ""
) -> list[str]:
    """``mlflow server`` on a database store, artifacts proxied to ``artifacts`` (clients need no S3 keys).

    Args:
        backend: The SQLAlchemy URL of its database.
        artifacts: Where artifacts go, e.g. ``s3://mlflow/``.
        host: The address it listens on.
        port: Its port.
        workers: Its uvicorn workers.
        allowed_hosts: ``--allowed-hosts`` (MLflow 3 answers only ``Host`` headers it allows:
            localhost and private addresses by default); empty: the default.
    """
    cmd = [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", backend]
    cmd += ["--artifacts-destination", artifacts, "--serve-artifacts"]
    cmd += ["--host", host, "--port", str(port), "--workers", str(workers)]
    return cmd + (["--allowed-hosts", allowed_hosts] if allowed_hosts else [])


def mlflow_env(base: Mapping[str, str], endpoint: str, key: str, secret: str, region: str) -> dict[str, str]:
    """The MLflow server's environment: S3 access for its artifacts, no job consumers, no telemetry.

    The clients' tracking URIs are left out (a server must not inherit one); an empty
    ``endpoint``, ``key`` or ``secret`` is left out too (real AWS: boto3's credential chain).
    """
    env = {k: v for k, v in base.items() if not k.startswith(("MLFLOW_TRACKING", "MLFLOW_REGISTRY"))}
    s3 = {
        "MLFLOW_S3_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": key,
        "AWS_SECRET_ACCESS_KEY": secret,
        "AWS_DEFAULT_REGION": region,
    }
    env.update({k: v for k, v in s3.items() if v})
    # Without this the server spawns job consumers: a slower start (45-85 s instead of 11-24 s).
    env.update(MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false", MLFLOW_DISABLE_TELEMETRY="true")
    return env


# --- Spark --------------------------------------------------------------------------------


def spark_home() -> Path:
    """The pyspark package folder: ``bin/spark-class`` and the jars of the drivers' Spark."""
    import pyspark

    return Path(pyspark.__file__).parent


def spark_env(base: Mapping[str, str], folder: Path, local_ip: str) -> dict[str, str]:
    """The Spark daemons' environment: logs and work under ``folder``, single-node recovery.

    The master keeps its workers and applications in ``folder/recovery``: a master started
    again on the same port finds them, and they register again by themselves (without it, a
    restarted master knows no running application, which would get no executor again).
    Executors' Python workers import what the driver's tasks ship: this sluice.
    """
    (folder / "work").mkdir(parents=True, exist_ok=True)
    (folder / "recovery").mkdir(exist_ok=True)
    env = with_pythonpath(dict(base, SPARK_HOME=str(spark_home()), SPARK_LOCAL_IP=local_ip))
    env.update(
        SPARK_DAEMON_MEMORY="512m",
        SPARK_LOG_DIR=str(folder),
        SPARK_WORKER_DIR=str(folder / "work"),
        PYSPARK_PYTHON=sys.executable,
        SPARK_MASTER_OPTS="-Dspark.deploy.recoveryMode=FILESYSTEM "
        f"-Dspark.deploy.recoveryDirectory={folder / 'recovery'}",
    )
    return env


def spark_master_command(host: str, port: int, ui_port: int) -> list[str]:
    """The standalone master, its JVM in the foreground (``spark-class`` execs it; ``sbin`` would daemonise)."""
    spark_class = str(spark_home() / "bin" / "spark-class")
    return [
        *(spark_class, "org.apache.spark.deploy.master.Master", "--host", host),
        *("--port", str(port), "--webui-port", str(ui_port)),
    ]


def spark_worker_command(master: str, host: str, cores: int, memory: str, ui_port: int, work_dir: Path) -> list[str]:
    """A standalone worker of ``master`` (``spark://host:port``), in the foreground."""
    spark_class = str(spark_home() / "bin" / "spark-class")
    return [
        *(spark_class, "org.apache.spark.deploy.worker.Worker", master, "--host", host),
        *("--cores", str(cores), "--memory", memory, "--webui-port", str(ui_port), "--work-dir", str(work_dir)),
    ]


# --- Airflow's Celery side ------------------------------------------------------------------


def celery_hostname() -> str:
    """Airflow's hostname of a task on a Celery worker: the worker's name, ``SLUICE_CELERY_HOSTNAME``.

    The name (``w1@host``) becomes each task instance's ``hostname``, so two workers on one
    machine show as two hosts, as they would on a real cluster.
    """
    return os.environ["SLUICE_CELERY_HOSTNAME"]


def celery_worker_command(name: str, concurrency: int) -> list[str]:
    """``airflow celery worker`` named ``name`` (``w1@host``)."""
    return airflow_command("celery", "worker", "--celery-hostname", name, "--concurrency", str(concurrency))


def celery_worker_env(env: Mapping[str, str], name: str, log_port: int) -> dict[str, str]:
    """One worker's environment: its name as its task instances' hostname, its own log server port.

    Two workers on one machine each serve their task logs on a port of their own. A
    ``hostname_callable`` already in ``env`` wins (several hosts: the host's name, which the API
    server can reach for the logs of a running task).
    """
    worker = dict(env, SLUICE_CELERY_HOSTNAME=name, AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT=str(log_port))
    worker.setdefault("AIRFLOW__CORE__HOSTNAME_CALLABLE", HOSTNAME_CALLABLE)
    return worker


def flower_command(host: str, port: int, basic_auth: str = "") -> list[str]:
    """``airflow celery flower``: Celery's monitoring UI (queues, workers, tasks)."""
    cmd = airflow_command("celery", "flower", "--hostname", host, "--port", str(port))
    return cmd + (["--basic-auth", basic_auth] if basic_auth else [])


def celery_workers(broker_url: str) -> set[str]:
    """Hostnames of the Celery workers that answer a ping through ``broker_url``."""
    from celery import Celery

    app = Celery(broker=broker_url)
    try:
        replies = app.control.ping(timeout=2.0) or []
    finally:
        app.close()
    return {name for reply in replies for name in reply}
