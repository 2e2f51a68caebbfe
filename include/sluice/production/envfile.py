"""The kit's environment file: its template (``sluice production init``) and its reading.

One file of ``NAME=value`` lines holds every variable the production shape needs: where the kit
keeps its state, the ports a team chose, the addresses of PostgreSQL, Redis, S3, MLflow, Spark
and SMTP (local parts for a one-host trial, or a team's own services), and the secrets every
Airflow component must share. ``${NAME}`` refers to a variable above it (python-dotenv's
interpolation, the same as a shell's ``set -a; . production.env``).

Variables named ``SLUICE_KIT_*`` are the kit's own; every other one is given as it is to the
Airflow components (their own settings win over what the kit derives).
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

#: The file ``sluice production init FOLDER`` writes in FOLDER.
FILE_NAME = "production.env"
#: The kit's own variables start with this; the rest go to the Airflow components.
PREFIX = "SLUICE_KIT_"


class KitError(ValueError):
    """The kit's environment file is missing, or a value in it is unusable (the message says the fix)."""


@dataclass(frozen=True)
class Entry:
    """One line of the template: a variable, its value (``{name}`` fields filled at init), what it is."""

    name: str
    value: str
    help: str


#: The template, section by section: (title, what the section is for, its entries).
SECTIONS: tuple[tuple[str, str, tuple[Entry, ...]], ...] = (
    (
        "This host",
        "One copy of this file per host; between hosts only SLUICE_KIT_PARTS and SLUICE_KIT_HOST differ.",
        (
            Entry("SLUICE_KIT_STATE", "{state}", "pid files, logs (logs/<part>.log) and the data of the local parts"),
            Entry(
                "SLUICE_KIT_PARTS",
                "postgres,redis,s3,mlflow,spark-master,spark-worker,airflow-api-server,airflow-scheduler,"
                "airflow-dag-processor,airflow-triggerer,airflow-worker,flower",
                "what `up` starts here without --only (airflow-worker: every worker of SLUICE_KIT_WORKERS); leave "
                "out postgres, redis or s3 to use your own services (then set their addresses below)",
            ),
            Entry("SLUICE_KIT_HOST", "127.0.0.1", "this host's address as the other hosts reach it (Spark, drivers)"),
            Entry("SLUICE_KIT_BIND", "127.0.0.1", "the address the parts started here listen on (0.0.0.0: every one)"),
            Entry("SLUICE_KIT_START_TIMEOUT", "300", "seconds a part may take to answer after it starts"),
            Entry("SLUICE_KIT_GRACE_SECONDS", "20", "seconds between SIGTERM and SIGKILL when `down` stops a part"),
        ),
    ),
    (
        "PostgreSQL",
        "The metadata database of Airflow and the store of MLflow (part `postgres`, or your own server).",
        (
            Entry("SLUICE_KIT_POSTGRES_HOST", "127.0.0.1", "where PostgreSQL is reached"),
            Entry("SLUICE_KIT_POSTGRES_PORT", "{postgres_port}", "its port"),
            Entry(
                "SLUICE_KIT_AIRFLOW_DB_PASSWORD", "{airflow_db_password}", "role `airflow` (part postgres creates it)"
            ),
            Entry("SLUICE_KIT_MLFLOW_DB_PASSWORD", "{mlflow_db_password}", "role `mlflow` (part postgres creates it)"),
            Entry(
                "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN",
                "postgresql+psycopg2://airflow:${SLUICE_KIT_AIRFLOW_DB_PASSWORD}@${SLUICE_KIT_POSTGRES_HOST}:"
                "${SLUICE_KIT_POSTGRES_PORT}/airflow",
                "Airflow's database (name the driver: SQLAlchemy 2's bare postgresql:// means psycopg 3)",
            ),
            Entry(
                "SLUICE_KIT_MLFLOW_DB_URL",
                "postgresql+psycopg2://mlflow:${SLUICE_KIT_MLFLOW_DB_PASSWORD}@${SLUICE_KIT_POSTGRES_HOST}:"
                "${SLUICE_KIT_POSTGRES_PORT}/mlflow",
                "MLflow's store",
            ),
        ),
    ),
    (
        "Redis",
        "The Celery broker (part `redis`, or your own); messages only, no persistence.",
        (
            Entry("SLUICE_KIT_REDIS_HOST", "127.0.0.1", "where Redis is reached"),
            Entry("SLUICE_KIT_REDIS_PORT", "{redis_port}", "its port"),
            Entry("SLUICE_KIT_REDIS_PASSWORD", "{redis_password}", "part redis requires it"),
            Entry(
                "AIRFLOW__CELERY__BROKER_URL",
                "redis://:${SLUICE_KIT_REDIS_PASSWORD}@${SLUICE_KIT_REDIS_HOST}:${SLUICE_KIT_REDIS_PORT}/0",
                "Celery's broker",
            ),
            Entry("AIRFLOW__CELERY__RESULT_BACKEND", "db+${AIRFLOW__DATABASE__SQL_ALCHEMY_CONN}", "Celery's results"),
        ),
    ),
    (
        "S3",
        "Pipeline state, landing zones and MLflow's artifacts (part `s3` is moto's server, for a trial).",
        (
            Entry("SLUICE_KIT_S3_HOST", "127.0.0.1", "where part s3 is reached"),
            Entry("SLUICE_KIT_S3_PORT", "{s3_port}", "its port"),
            Entry(
                "SLUICE_KIT_S3_ENDPOINT",
                "http://${SLUICE_KIT_S3_HOST}:${SLUICE_KIT_S3_PORT}",
                "the S3 API (empty: AWS itself)",
            ),
            Entry("SLUICE_KIT_S3_ACCESS_KEY", "sluice", "empty with AWS: the host's credential chain (role, profile)"),
            Entry("SLUICE_KIT_S3_SECRET_KEY", "{s3_secret}", "empty with AWS, as above"),
            Entry("SLUICE_KIT_S3_REGION", "us-east-1", "the region"),
            Entry("SLUICE_KIT_BUCKETS", "sluice,mlflow", "buckets part s3 creates (pipelines; MLflow's artifacts)"),
            Entry(
                "SLUICE_KIT_S3_CONN_IDS",
                "aws_default,sluice_s3",
                "Airflow connections (type aws) the kit defines for this S3; a spec's storage.conn_id names one",
            ),
        ),
    ),
    (
        "MLflow",
        "The tracking server and model registry (part `mlflow`), artifacts proxied: clients need no S3 keys.",
        (
            Entry("SLUICE_KIT_MLFLOW_HOST", "127.0.0.1", "where MLflow is reached"),
            Entry("SLUICE_KIT_MLFLOW_PORT", "{mlflow_port}", "its port"),
            Entry("SLUICE_KIT_MLFLOW_ARTIFACTS", "s3://mlflow/", "where the server puts artifacts"),
            Entry("SLUICE_KIT_MLFLOW_WORKERS", "1", "its uvicorn workers"),
            Entry("MLFLOW_TRACKING_URI", "http://${SLUICE_KIT_MLFLOW_HOST}:${SLUICE_KIT_MLFLOW_PORT}", "for the steps"),
            Entry("MLFLOW_REGISTRY_URI", "${MLFLOW_TRACKING_URI}", "the same server"),
            Entry("SLUICE_MLFLOW_UI_URL", "${MLFLOW_TRACKING_URI}", "MLflow in the links of the UI and of e-mails"),
        ),
    ),
    (
        "Spark",
        "A standalone cluster (parts `spark-master`, `spark-worker`); specs name it in features.master.",
        (
            Entry("SLUICE_KIT_SPARK_HOST", "127.0.0.1", "the master's address (it listens there)"),
            Entry("SLUICE_KIT_SPARK_MASTER_PORT", "{spark_master_port}", "the master's port"),
            Entry("SLUICE_KIT_SPARK_UI_PORT", "{spark_ui_port}", "the master's web UI (/json/ for its state)"),
            Entry("SLUICE_KIT_SPARK_WORKER_UI_PORT", "{spark_worker_ui_port}", "the worker's web UI"),
            Entry("SLUICE_KIT_SPARK_WORKER_CORES", "2", "cores the worker offers"),
            Entry("SLUICE_KIT_SPARK_WORKER_MEMORY", "2g", "memory the worker offers"),
            Entry("SLUICE_KIT_SPARK_POOL_SLOTS", "1", "slots of pool sluice_spark: Spark jobs at once"),
            Entry(
                "SLUICE_KIT_SPARK_MASTER",
                "spark://${SLUICE_KIT_SPARK_HOST}:${SLUICE_KIT_SPARK_MASTER_PORT}",
                "the master URL (a spec's features.master)",
            ),
            Entry("SLUICE_S3A_JARS", "{jars}", "the S3A jars (`make s3a-jars`) the drivers give Spark for s3://"),
        ),
    ),
    (
        "Airflow",
        "API server, scheduler, DAG processor, triggerer and Celery workers; secrets shared by all of them.",
        (
            Entry("SLUICE_KIT_AIRFLOW_HOST", "127.0.0.1", "where the API server is reached"),
            Entry("SLUICE_KIT_AIRFLOW_PORT", "{airflow_port}", "the UI and REST API"),
            Entry("SLUICE_KIT_ADMIN_PASSWORD", "{admin_password}", "the UI's user `admin` (SimpleAuthManager)"),
            Entry("SLUICE_KIT_TRIGGER_LOG_PORT", "{trigger_log_port}", "the triggerer's log server"),
            Entry("SLUICE_KIT_WORKERS", "w1,w2", "Celery workers of this host (parts airflow-worker-<name>)"),
            Entry("SLUICE_KIT_WORKER_LOG_PORTS", "{worker_log_ports}", "each worker's log server, in that order"),
            Entry("SLUICE_KIT_WORKER_CONCURRENCY", "2", "task slots per worker"),
            Entry("SLUICE_KIT_FLOWER_PORT", "{flower_port}", "Flower (part flower): admin and the admin password"),
            Entry(
                "AIRFLOW__API__BASE_URL",
                "http://${SLUICE_KIT_AIRFLOW_HOST}:${SLUICE_KIT_AIRFLOW_PORT}",
                "the UI's address in links and e-mails",
            ),
            Entry(
                "AIRFLOW__CORE__EXECUTION_API_SERVER_URL",
                "${AIRFLOW__API__BASE_URL}/execution/",
                "where task processes report",
            ),
            Entry("AIRFLOW__API_AUTH__JWT_SECRET", "{jwt_secret}", "the same on every component"),
            Entry("AIRFLOW__API__SECRET_KEY", "{api_secret}", "the same on every component"),
            Entry("AIRFLOW__CORE__FERNET_KEY", "{fernet_key}", "the same on every component (encrypts connections)"),
            Entry("AIRFLOW__API__WORKERS", "1", "API server workers (2 or more on a real host)"),
            Entry("AIRFLOW__CORE__DAGS_FOLDER", "{dags}", "the DAG file and the specs: the same path on every host"),
            Entry("AIRFLOW__CORE__PLUGINS_FOLDER", "{plugins}", "sluice's UI plugin (links to MLflow and reports)"),
            Entry("SLUICE_PROJECT_DIR", "{project}", "sluice's project folder (caches beside it)"),
        ),
    ),
    (
        "SMTP",
        "Alert e-mails (connection smtp_default): point it at your relay.",
        (
            Entry(
                "AIRFLOW_CONN_SMTP_DEFAULT",
                "smtp://smtp.example.com:25?from_email=sluice%40example.com",
                "an Airflow connection URI",
            ),
        ),
    ),
)
#: The port variables and their values in a new file (a team chooses others with ``--set``).
DEFAULT_PORTS = {
    "postgres_port": "5432",
    "redis_port": "6379",
    "s3_port": "9000",
    "mlflow_port": "5000",
    "spark_master_port": "7077",
    "spark_ui_port": "8081",
    "spark_worker_ui_port": "8082",
    "airflow_port": "8080",
    "trigger_log_port": "8794",
    "worker_log_ports": "8793,8795",
    "flower_port": "5555",
}


def port_variables() -> list[str]:
    """Every variable of the template that names one port (the workers' list of ports is not one)."""
    return [entry.name for _, _, entries in SECTIONS for entry in entries if entry.name.endswith("_PORT")]


def _fields(folder: Path, project: Path) -> dict[str, str]:
    """The values a new file gets: its folders, default ports and fresh secrets."""
    from cryptography.fernet import Fernet

    return {
        **DEFAULT_PORTS,
        "state": str(folder / "state"),
        "dags": str(folder / "dags"),
        "plugins": str(project / "plugins"),
        "project": str(project),
        "jars": str(project / ".jars" / "s3a"),
        "airflow_db_password": secrets.token_hex(16),
        "mlflow_db_password": secrets.token_hex(16),
        "redis_password": secrets.token_hex(16),
        "s3_secret": secrets.token_hex(16),
        "admin_password": secrets.token_urlsafe(12),
        "jwt_secret": secrets.token_urlsafe(32),
        "api_secret": secrets.token_urlsafe(32),
        "fernet_key": Fernet.generate_key().decode(),
    }


def _fill(value: str, fields: Mapping[str, str]) -> str:
    """``{field}`` in a template value replaced (``${NAME}`` references are left for the reader)."""
    return re.sub(r"(?<!\$)\{(\w+)\}", lambda m: fields[m.group(1)], value)


def render(folder: Path, project: Path, overrides: Mapping[str, str] | None = None) -> str:
    """The text of a new environment file for a kit in ``folder``.

    Args:
        folder: Where the file goes; its state and DAG folders go under it.
        project: The sluice project (its ``plugins/`` and ``.jars/s3a``).
        overrides: Values that replace the template's (``--set NAME=VALUE``); names the
            template does not have are added at the end.
    """
    fields = _fields(folder, project)
    extra = dict(overrides or {})
    lines = [
        "# sluice production kit: every variable of the production shape, for `sluice production up|down|status`.",
        "# Plain NAME=value lines; ${NAME} refers to a variable above it. Keep this file private (secrets).",
        "# Variables named SLUICE_KIT_* are the kit's; every other one goes as it is to the Airflow components.",
    ]
    for title, about, entries in SECTIONS:
        lines += ["", f"# --- {title}: {about}"]
        for entry in entries:
            value = extra.pop(entry.name) if entry.name in extra else _fill(entry.value, fields)
            lines += [f"# {entry.help}", f"{entry.name}={value}"]
    if extra:
        lines += ["", "# --- Added by `sluice production init --set`"]
        lines += [f"{name}={value}" for name, value in extra.items()]
    return "\n".join(lines) + "\n"


def init(folder: Path, project: Path, overrides: Mapping[str, str] | None = None, force: bool = False) -> Path:
    """Write ``folder/production.env`` (mode 0600: it holds secrets) and an empty DAG folder beside it.

    Raises:
        KitError: The file exists already (and ``force`` is false), or an override is not ``NAME=value``.
    """
    folder = folder.resolve()
    path = folder / FILE_NAME
    if path.exists() and not force:
        raise KitError(f"{path} exists already: edit it, or run init again with --force to write a new one")
    for name in overrides or {}:
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
            raise KitError(f"--set {name}=...: {name!r} is not a variable name")
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "dags").mkdir(exist_ok=True)
    loader = project / "dags" / "load_pipelines.py"
    if loader.exists() and not (folder / "dags" / loader.name).exists():
        # The DAG file that turns every spec beside it into DAGs: drop specs in and they appear.
        (folder / "dags" / loader.name).write_text(loader.read_text())
    path.write_text(render(folder, project, overrides))
    path.chmod(0o600)
    return path


@dataclass(frozen=True)
class Kit:
    """A kit's environment file, read and interpolated.

    Attributes:
        path: The file.
        values: Every variable in it, ``${NAME}`` references resolved.
    """

    path: Path
    values: Mapping[str, str]

    def where(self, name: str) -> str:
        """``file:line`` of the line that sets ``name`` (the file alone if none does)."""
        for number, line in enumerate(self.path.read_text().splitlines(), start=1):
            if re.match(rf"\s*(export\s+)?{re.escape(name)}\s*=", line):
                return f"{self.path}:{number}"
        return str(self.path)

    def get(self, name: str, default: str | None = None) -> str:
        """The value of ``name``.

        Raises:
            KitError: It is missing or empty and there is no default.
        """
        value = (self.values.get(name) or "").strip()
        if value:
            return value
        if default is not None:
            return default
        raise KitError(f"{self.where(name)}: {name} is not set: add `{name}=...` (`sluice production init` writes it)")

    def number(self, name: str, value: str | None = None) -> int:
        """A whole number setting (``value``: one item of a list setting).

        Raises:
            KitError: It is not a whole number.
        """
        raw = value if value is not None else self.get(name)
        if not raw.strip().isdigit():
            raise KitError(f"{self.where(name)}: {name}={raw!r} is not a whole number")
        return int(raw)

    def port(self, name: str, value: str | None = None) -> int:
        """A TCP port setting (``value``: one item of a list setting).

        Raises:
            KitError: It is not a port (1-65535).
        """
        port = self.number(name, value)
        if not 0 < port < 65536:
            raise KitError(f"{self.where(name)}: {name}={port} is not a TCP port (1-65535): choose another")
        return port

    def names(self, name: str) -> list[str]:
        """A comma-separated list setting, its items stripped (empty items dropped)."""
        return [item.strip() for item in self.get(name, "").split(",") if item.strip()]

    @property
    def state(self) -> Path:
        """The state folder (pid files, logs, the local parts' data)."""
        return Path(self.get("SLUICE_KIT_STATE")).expanduser()

    @property
    def workers(self) -> list[tuple[str, int]]:
        """This host's Celery workers: (name, log server port).

        Raises:
            KitError: The two lists differ in length, or a name is not a plain word.
        """
        names, ports = self.names("SLUICE_KIT_WORKERS"), self.names("SLUICE_KIT_WORKER_LOG_PORTS")
        if len(names) != len(ports):
            raise KitError(
                f"{self.where('SLUICE_KIT_WORKER_LOG_PORTS')}: {len(ports)} log port(s) for {len(names)} worker(s) "
                f"of SLUICE_KIT_WORKERS: give each worker one port, in the same order"
            )
        for name in names:
            if not re.fullmatch(r"[a-z0-9][a-z0-9_-]*", name):
                raise KitError(f"{self.where('SLUICE_KIT_WORKERS')}: worker name {name!r}: use a-z, 0-9, - and _")
        return [(name, self.port("SLUICE_KIT_WORKER_LOG_PORTS", port)) for name, port in zip(names, ports, strict=True)]

    @property
    def forwarded(self) -> dict[str, str]:
        """The variables given as they are to the Airflow components (every one not named SLUICE_KIT_*)."""
        return {k: v for k, v in self.values.items() if not k.startswith(PREFIX) and v is not None}


def load(path: Path) -> Kit:
    """Read a kit's environment file.

    Raises:
        KitError: There is no such file.
    """
    from dotenv import dotenv_values

    path = path.expanduser().resolve()
    if not path.is_file():
        raise KitError(f"{path}: no such file: write one with `sluice production init FOLDER` (or pass --env FILE)")
    values = {k: v for k, v in dotenv_values(path, interpolate=True).items() if v is not None}
    return Kit(path, values)
