"""A Spark session sized for where it runs."""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

    from sluice.services.storage import PipelineStore

# On a small machine the default 200 shuffle partitions make tiny tasks dominate run time.
LOCAL_DEFAULTS = {
    "spark.sql.shuffle.partitions": "4",
    "spark.default.parallelism": "4",
    "spark.driver.memory": "2g",
    "spark.ui.enabled": "false",
    "spark.sql.session.timeZone": "UTC",
    "spark.sql.adaptive.enabled": "true",
    "spark.driver.bindAddress": "127.0.0.1",
    "spark.driver.host": "127.0.0.1",
}


def spark_session(app_name: str, master: str | None = None, conf: dict[str, str] | None = None) -> SparkSession:
    """Create (or reuse) a Spark session.

    Args:
        app_name: Shown in the Spark UI and logs.
        master: ``local[*]`` when None, or a cluster URL such as ``spark://host:7077``.
        conf: Settings that override the defaults.
    """
    from pyspark.sql import SparkSession

    # Python workers must run the same interpreter (and packages) as the driver.
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    merged = {**LOCAL_DEFAULTS, **(conf or {})}
    _stop_if_missing_jars(merged.get("spark.jars", ""))
    builder = SparkSession.builder.appName(app_name).master(master or "local[*]")
    for key, value in merged.items():
        builder = builder.config(key, value)
    return builder.getOrCreate()


def _jar_paths(jars: str) -> set[str]:
    """Jar paths of a ``spark.jars`` value (spark-submit turns ``/x.jar`` into ``file:/x.jar``)."""
    return {j.strip().removeprefix("file://").removeprefix("file:") for j in jars.split(",") if j.strip()}


def _stop_if_missing_jars(jars: str) -> None:
    """Stop Spark, JVM included, when it runs without jars now asked for.

    ``getOrCreate`` would return the running session as it is, and a new session in the same
    JVM does not put ``spark.jars`` on the driver's class path either (S3A's classes stay
    unknown): only jars given when the JVM starts do.
    """
    from pyspark import SparkContext

    wanted = _jar_paths(jars)
    gateway = SparkContext._gateway
    if gateway is None or not wanted:
        return
    jvm = SparkContext._jvm
    launched = _jar_paths(str(jvm.java.lang.System.getProperty("spark.jars") or "")) if jvm is not None else set()
    if wanted <= launched:
        return
    if SparkContext._active_spark_context is not None:
        SparkContext._active_spark_context.stop()
    proc = getattr(gateway, "proc", None)
    gateway.shutdown()
    if proc is not None:  # the JVM exits when its stdin closes
        proc.stdin.close()
        proc.wait(timeout=60)
    SparkContext._gateway = None
    SparkContext._jvm = None


def spark_location(location: str) -> str:
    """The URI Spark opens for a store location: ``s3://`` becomes Hadoop's ``s3a://``."""
    return "s3a://" + location[len("s3://") :] if location.startswith("s3://") else location


def s3a_conf(options: Mapping[str, Any]) -> dict[str, str]:
    """Spark settings that give S3A what the s3fs ``options`` give the store (same bucket, same keys).

    Args:
        options: s3fs filesystem options (``key``, ``secret``, ``token``,
            ``client_kwargs={"endpoint_url", "region_name"}``), as
            :func:`sluice.airflow.runtime.connections.s3_filesystem_options` builds them.

    Returns:
        ``spark.hadoop.fs.s3a.*`` settings; with an endpoint (MinIO, a test server), path-style
        access, and plain HTTP when the endpoint is ``http://``.
    """
    prefix = "spark.hadoop.fs.s3a."
    conf: dict[str, str] = {}
    if options.get("key"):
        conf[prefix + "access.key"] = str(options["key"])
        conf[prefix + "secret.key"] = str(options.get("secret", ""))
        provider = "TemporaryAWSCredentialsProvider" if options.get("token") else "SimpleAWSCredentialsProvider"
        conf[prefix + "aws.credentials.provider"] = f"org.apache.hadoop.fs.s3a.{provider}"
    if options.get("token"):
        conf[prefix + "session.token"] = str(options["token"])
    client = options.get("client_kwargs") or {}
    if client.get("region_name"):
        conf[prefix + "endpoint.region"] = str(client["region_name"])
    endpoint = client.get("endpoint_url")
    if endpoint:
        conf[prefix + "endpoint"] = str(endpoint)
        conf[prefix + "path.style.access"] = "true"
        conf[prefix + "connection.ssl.enabled"] = str(str(endpoint).startswith("https://")).lower()
    return conf


def store_spark_conf(
    store: PipelineStore, jars_dir: Path, overrides: Mapping[str, str] | None = None
) -> dict[str, str]:
    """The Spark settings that open ``store``'s locations, then ``overrides`` (the spec's ``conf``).

    For an ``s3://`` store: ``spark.jars`` = the fetched S3A jars, and :func:`s3a_conf` of the
    store's options (same bucket, endpoint and keys as the store). For a local store, nothing
    but ``overrides``. Jars in ``overrides["spark.jars"]`` are added to the S3A ones.

    Args:
        store: The pipeline's storage.
        jars_dir: Where ``sluice fetch-jars`` put the S3A jars
            (:func:`sluice.services.spark_jars.default_jars_dir`).
        overrides: Settings that win over the store's (a bigger cluster's, from the spec).

    Raises:
        S3AJarsMissing: The store is on S3 and the jars were not fetched; names ``make s3a-jars``.
    """
    from sluice.services.spark_jars import s3a_jars

    conf: dict[str, str] = {}
    if store.location().startswith("s3://"):
        conf["spark.jars"] = ",".join(str(jar) for jar in s3a_jars(jars_dir))
        conf.update(s3a_conf(store.filesystem_options()))
    for key, value in (overrides or {}).items():
        conf[key] = f"{conf[key]},{value}" if key == "spark.jars" and conf.get(key) else str(value)
    return conf
