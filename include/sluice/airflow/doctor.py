"""``sluice doctor``: check the live setup a spec needs, and name the fix of each broken part.

Lint checks what a spec says; the doctor checks what it needs from the running world: the
Airflow connections it names exist (whether their servers answer is the storage, landing and
SMTP checks' job), the pools its tasks wait in exist, the MLflow store answers, the pipeline's
storage takes a write, an S3 landing zone can be listed with its connection, the Spark master
answers and the S3A jars are here, the executor's workers answer, and the SMTP server of the
alert emails accepts a connection. Each check is one small function returning a
:class:`Finding`; none changes anything but a probe object that it removes again.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from sluice.spec.loader import LoadedSpec

#: Seconds a network probe waits for an answer.
PROBE_TIMEOUT = 5.0


@dataclass(frozen=True)
class Finding:
    """The verdict of one check.

    Attributes:
        check: What was checked (``connection aws_default``, ``pool sluice_spark``).
        ok: Whether it is fine.
        detail: What was seen (an address, a count, the error).
        fix: What to do when it is not fine.
    """

    check: str
    ok: bool
    detail: str
    fix: str = ""


Check = Callable[["LoadedSpec"], list[Finding]]


def _reachable(host: str, port: int) -> str | None:
    """None when a TCP connection to ``host:port`` opens, else why not."""
    try:
        with socket.create_connection((host, port), timeout=PROBE_TIMEOUT):
            return None
    except OSError as exc:
        return f"{type(exc).__name__}: {exc}"


def check_connections(loaded: LoadedSpec) -> list[Finding]:
    """The Airflow connections the spec's bucket storage, S3 landing zone and alerts name exist."""
    from airflow.sdk import BaseHook

    from sluice.airflow.render import SMTP_CONN_ID

    spec = loaded.spec
    named: list[tuple[str, str]] = []
    if spec.storage.is_s3:
        named.append(("storage", spec.storage.aws_conn_id))
    if spec.source.is_s3:
        named.append(("source", spec.source.aws_conn_id))
    if spec.alerts.email:
        named.append(("alerts", SMTP_CONN_ID))
    found = []
    for section, conn_id in named:
        try:
            conn = BaseHook.get_connection(conn_id)
            found.append(Finding(f"connection {conn_id}", True, f"{section}: type {conn.conn_type}"))
        except Exception as exc:
            found.append(
                Finding(
                    f"connection {conn_id}",
                    False,
                    f"{section}: {exc}",
                    f"create it: `airflow connections add {conn_id} --conn-type "
                    f"{'smtp' if section == 'alerts' else 'aws'} ...` (docs: Operations, Starting each component)",
                )
            )
    return found


def check_pools(loaded: LoadedSpec) -> list[Finding]:
    """Every pool a task of the spec's DAGs waits in exists (a missing one makes it wait for ever)."""
    from airflow.models.pool import Pool

    from sluice.plan.build import build_plan

    pools = sorted({step.pool for dag in build_plan(loaded).dags for step in dag.steps if step.pool})
    found = []
    for name in pools:
        pool = Pool.get_pool(name)
        if pool is None:
            found.append(
                Finding(
                    f"pool {name}",
                    False,
                    "missing: its tasks stay 'scheduled' for ever",
                    f"airflow pools set {name} 1 'sluice Spark tasks' (or ./sluice bootstrap on the embedded default)",
                )
            )
        else:
            found.append(Finding(f"pool {name}", True, f"{pool.slots} slots"))
    return found


def check_mlflow(loaded: LoadedSpec) -> list[Finding]:
    """The MLflow store the steps use answers (an HTTP server) or is prepared (a SQLite file)."""
    from sluice.services.tracking import TrackingStoreError, check_server, check_store, tracking_uri

    uri = tracking_uri(loaded.project_dir)
    try:
        check_store(uri)
        check_server(uri)
    except TrackingStoreError as exc:
        return [Finding("MLflow", False, uri, str(exc))]
    return [Finding("MLflow", True, uri)]


def check_storage(loaded: LoadedSpec) -> list[Finding]:
    """The pipeline's storage takes a write (a probe, removed again)."""
    from sluice.airflow.runtime.connections import open_pipeline_store
    from sluice.services.storage import StorageUnavailable

    try:
        store = open_pipeline_store(loaded)
        store.check_writable()
    except (StorageUnavailable, OSError, ValueError) as exc:
        return [Finding("storage", False, loaded.spec.storage.root, str(exc))]
    return [Finding("storage", True, f"{store.location()} is writable")]


def check_landing(loaded: LoadedSpec) -> list[Finding]:
    """An S3 landing zone can be listed with its connection, as the ``land`` task lists it."""
    from airflow.providers.amazon.aws.hooks.s3 import S3Hook

    from sluice.plan.build import landing_config
    from sluice.plan.model import S3Landing

    landing = landing_config(loaded)
    if not isinstance(landing, S3Landing):
        return []
    where = f"s3://{landing.bucket}/{landing.prefix}"
    try:
        client = S3Hook(aws_conn_id=landing.conn_id).get_conn()
        listed = client.list_objects_v2(Bucket=landing.bucket, Prefix=landing.prefix, MaxKeys=100)
    except Exception as exc:
        fix = (
            f"check that bucket {landing.bucket} exists at connection {landing.conn_id}'s endpoint and that its "
            f"credentials may list it (s3:ListBucket on the bucket, s3:GetObject under the prefix)"
        )
        return [Finding("landing zone", False, f"{where}: {type(exc).__name__}: {exc}", fix)]
    count = len(listed.get("Contents", []))
    more = "+" if listed.get("IsTruncated") else ""
    return [Finding("landing zone", True, f"{where} lists ({count}{more} objects) with connection {landing.conn_id}")]


def check_spark(loaded: LoadedSpec) -> list[Finding]:
    """With a Spark cluster, its master answers; with s3:// storage, the S3A jars are here."""
    from sluice.services.spark_jars import S3AJarsError, default_jars_dir, s3a_jars

    spec = loaded.spec
    found = []
    if spec.features.engine == "cluster" and spec.features.master:
        address = urlsplit(spec.features.master)
        host, port = address.hostname or "", address.port or 7077
        why = _reachable(host, port)
        fix = f"start the Spark master on {host}:{port}, or fix features.master; workers need the same address"
        found.append(Finding("Spark master", why is None, why or f"{host}:{port} answers", fix if why else ""))
    # Spark reads S3 storage through S3A; features.engine: duckdb reads it through the store instead.
    if spec.storage.is_s3 and (spec.features.engine != "duckdb" or spec.training.engine == "spark"):
        try:
            jars = s3a_jars(default_jars_dir(loaded.project_dir))
            found.append(Finding("S3A jars", True, f"{len(jars)} jars"))
        except S3AJarsError as exc:
            found.append(Finding("S3A jars", False, "missing", str(exc)))
    return found


def check_workers(loaded: LoadedSpec) -> list[Finding]:
    """With the CeleryExecutor, at least one worker answers a ping."""
    from airflow.configuration import conf

    executor = conf.get("core", "executor", fallback="")
    if "Celery" not in executor:
        return [Finding("executor", True, f"{executor or 'default'} (no workers to ask)")]
    from airflow.providers.celery.executors.celery_executor_utils import app

    try:
        answers = app.control.inspect(timeout=PROBE_TIMEOUT).ping() or {}
    except Exception as exc:
        return [Finding("Celery workers", False, str(exc), "check the broker URL ([celery] broker_url) and Redis")]
    if not answers:
        return [
            Finding(
                "Celery workers",
                False,
                "no worker answered",
                "start one: `airflow celery worker` on each worker host (docs: Operations, Starting each component)",
            )
        ]
    return [Finding("Celery workers", True, f"{len(answers)} answered: {', '.join(sorted(answers))}")]


def check_smtp(loaded: LoadedSpec) -> list[Finding]:
    """With alert emails, the SMTP connection's server accepts a connection."""
    from airflow.sdk import BaseHook

    from sluice.airflow.render import SMTP_CONN_ID

    if not loaded.spec.alerts.email:
        return []
    try:
        conn = BaseHook.get_connection(SMTP_CONN_ID)
    except Exception:
        return []
    host, port = conn.host or "localhost", int(conn.port or 25)
    why = _reachable(host, port)
    fix = f"start the SMTP server on {host}:{port}, or fix connection {SMTP_CONN_ID}"
    return [Finding("SMTP", why is None, why or f"{host}:{port} answers", fix if why else "")]


#: Every check, in the order ``sluice doctor`` prints them.
CHECKS: tuple[Check, ...] = (
    check_connections,
    check_pools,
    check_mlflow,
    check_storage,
    check_landing,
    check_spark,
    check_workers,
    check_smtp,
)


def diagnose(loaded: LoadedSpec, checks: tuple[Check, ...] = CHECKS) -> list[Finding]:
    """Run every check on one spec; a check that itself fails is a finding, never a traceback."""
    found: list[Finding] = []
    for check in checks:
        try:
            found += check(loaded)
        except Exception as exc:
            name = check.__name__.removeprefix("check_")
            found.append(Finding(name, False, f"the check failed: {type(exc).__name__}: {exc}", "see the detail"))
    return found
