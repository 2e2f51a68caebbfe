"""A Spark session sized for where it runs."""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

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
    builder = SparkSession.builder.appName(app_name).master(master or "local[*]")
    for key, value in {**LOCAL_DEFAULTS, **(conf or {})}.items():
        builder = builder.config(key, value)
    return builder.getOrCreate()


def spark_location(location: str) -> str:
    """The URI Spark opens for a store location: ``s3://`` becomes Hadoop's ``s3a://``."""
    return "s3a://" + location[len("s3://") :] if location.startswith("s3://") else location


def s3a_conf(options: Mapping[str, Any]) -> dict[str, str]:
    """Spark settings that give S3A what the s3fs ``options`` give the store (same bucket, same keys).

    Args:
        options: s3fs filesystem options (``key``, ``secret``, ``token``,
            ``client_kwargs={"endpoint_url", "region_name"}``), as
            :func:`sluice.airflow.connections.s3_filesystem_options` builds them.

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
