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
}
#: Where the driver listens when every executor is on this machine (local mode, or a cluster
#: master on a loopback address): a laptop's or a CI box's host name may not resolve.
LOOPBACK_DRIVER = {"spark.driver.bindAddress": "127.0.0.1", "spark.driver.host": "127.0.0.1"}


def driver_defaults(master: str | None) -> dict[str, str]:
    """The driver's address settings for ``master``.

    Local mode and a master on a loopback address pin the driver to 127.0.0.1. A master on
    another host gets none: Spark's own defaults apply (the host's name, or ``SPARK_LOCAL_IP``
    and ``SPARK_LOCAL_HOSTNAME`` set on each Airflow worker host), so executors on other hosts
    can call the driver back. A spec's ``features.conf`` still overrides either.
    """
    from urllib.parse import urlsplit

    if master is None or master.startswith("local"):
        return dict(LOOPBACK_DRIVER)
    host = urlsplit(master.split(",")[0]).hostname or ""
    if host == "localhost" or host.startswith("127.") or host == "::1":
        return dict(LOOPBACK_DRIVER)
    return {}


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
    merged = {**LOCAL_DEFAULTS, **driver_defaults(master), **(conf or {})}
    _stop_jvm_unless_it_fits(merged)
    builder = SparkSession.builder.appName(app_name).master(master or "local[*]")
    for key, value in merged.items():
        builder = builder.config(key, value)
    return builder.getOrCreate()


def _jar_paths(jars: str) -> set[str]:
    """Jar paths of a ``spark.jars`` value (spark-submit turns ``/x.jar`` into ``file:/x.jar``)."""
    return {j.strip().removeprefix("file://").removeprefix("file:") for j in jars.split(",") if j.strip()}


def _hadoop_settings(settings: Mapping[str, str]) -> dict[str, str]:
    return {k: v for k, v in settings.items() if k.startswith("spark.hadoop.")}


def _running_settings(jvm: Any) -> dict[str, str]:
    """The ``spark.*`` settings of the running JVM: its active context's, else those it was launched with."""
    from pyspark import SparkContext

    active = SparkContext._active_spark_context
    if active is not None:
        return dict(active.getConf().getAll())
    props = jvm.java.lang.System.getProperties()
    return {str(k): str(props.get(k)) for k in props.stringPropertyNames() if str(k).startswith("spark.")}


def _stop_jvm_unless_it_fits(wanted: Mapping[str, str]) -> None:
    """Stop Spark, JVM included, when it runs without jars now asked for or with other Hadoop settings.

    ``getOrCreate`` would return the running session as it is. A new session in the same JVM
    does not put ``spark.jars`` on the driver's class path (S3A's classes stay unknown: only
    jars given when the JVM starts do), and it keeps the first session's ``spark.hadoop.*``
    settings (the JVM's system properties hold them, and Hadoop caches each opened file system
    with its credentials): a second store's S3 settings would silently be the first's.
    """
    from pyspark import SparkContext

    gateway = SparkContext._gateway
    jvm = SparkContext._jvm
    if gateway is None or jvm is None:
        return
    running = _running_settings(jvm)
    jars = _jar_paths(wanted.get("spark.jars", ""))
    hadoop = _hadoop_settings(wanted)
    # A session that asks for no Hadoop settings (local files) works with any.
    same_hadoop = not hadoop or hadoop == _hadoop_settings(running)
    if jars <= _jar_paths(running.get("spark.jars", "")) and same_hadoop:
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


#: S3A's providers (hadoop-aws 3.5.0 class names; ``fs.s3a.aws.credentials.provider``).
S3A_SIMPLE = "org.apache.hadoop.fs.s3a.SimpleAWSCredentialsProvider"
S3A_TEMPORARY = "org.apache.hadoop.fs.s3a.TemporaryAWSCredentialsProvider"
S3A_ASSUMED_ROLE = "org.apache.hadoop.fs.s3a.auth.AssumedRoleCredentialProvider"
#: The AWS SDK v2 default chain (environment, system properties, web identity token as IRSA
#: sets it, shared config and credentials files, container credentials as ECS and EKS Pod
#: Identity serve them, EC2 instance profile). S3A's own default list has neither the web
#: identity token nor the shared files, so a store without keys names this one.
AWS_DEFAULT_CHAIN = "software.amazon.awssdk.auth.credentials.DefaultCredentialsProvider"
#: The entry of the store's options that describes a role to assume (s3fs ignores it; S3A reads it).
ASSUMED_ROLE_OPTION = "s3a_assumed_role"


class S3ACredentialsUnsupported(ValueError):
    """The connection gets its credentials in a way S3A cannot repeat (the message names the fix)."""


def s3a_conf(options: Mapping[str, Any]) -> dict[str, str]:
    """Spark settings that give S3A what the s3fs ``options`` give the store (same bucket, same credentials).

    Credentials, in order:

    - a role to assume (``options["s3a_assumed_role"]``, from a connection with ``role_arn``):
      S3A's ``AssumedRoleCredentialProvider`` calls STS AssumeRole with the role's ARN, session
      name, external id, duration and policy, authenticating with the connection's keys when it
      has them, else with the AWS default chain; the STS endpoint only when the connection
      names one for STS (as the amazon provider, which never sends AssumeRole to the
      connection's ``endpoint_url``; S3A calls it at ``https://<host>``, port 443 only);
    - keys (``key``, ``secret``, ``token``): S3A's simple (or temporary) provider;
    - nothing: the AWS SDK's default chain (:data:`AWS_DEFAULT_CHAIN`), never a failure for
      want of keys.

    Args:
        options: s3fs filesystem options (``key``, ``secret``, ``token``,
            ``client_kwargs={"endpoint_url", "region_name"}``, ``s3a_assumed_role``), as
            :func:`sluice.airflow.runtime.connections.s3_filesystem_options` builds them.

    Returns:
        ``spark.hadoop.fs.s3a.*`` settings; with an endpoint (MinIO, a test server), path-style
        access, and plain HTTP when the endpoint is ``http://``.

    Raises:
        S3ACredentialsUnsupported: The role is assumed with SAML or a web identity token: S3A
            only calls AssumeRole.
    """
    prefix = "spark.hadoop.fs.s3a."
    conf: dict[str, str] = {}
    role: Mapping[str, Any] = options.get(ASSUMED_ROLE_OPTION) or {}
    keys: Mapping[str, Any] = role if role else options
    if keys.get("key"):
        conf[prefix + "access.key"] = str(keys["key"])
        conf[prefix + "secret.key"] = str(keys.get("secret", ""))
    if keys.get("token"):
        conf[prefix + "session.token"] = str(keys["token"])
    source = (S3A_TEMPORARY if keys.get("token") else S3A_SIMPLE) if keys.get("key") else AWS_DEFAULT_CHAIN
    client = options.get("client_kwargs") or {}
    if role:
        conf.update(_assumed_role_conf(prefix, role, source, client.get("region_name")))
    else:
        conf[prefix + "aws.credentials.provider"] = source
    if client.get("region_name"):
        conf[prefix + "endpoint.region"] = str(client["region_name"])
    endpoint = client.get("endpoint_url")
    if endpoint:
        conf[prefix + "endpoint"] = str(endpoint)
        conf[prefix + "path.style.access"] = "true"
        conf[prefix + "connection.ssl.enabled"] = str(str(endpoint).startswith("https://")).lower()
    return conf


def _assumed_role_conf(prefix: str, role: Mapping[str, Any], source: str, region: str | None) -> dict[str, str]:
    method = role.get("method") or "assume_role"
    if method != "assume_role":
        raise S3ACredentialsUnsupported(
            f"Airflow connection '{role.get('conn_id')}' assumes its role with {method}; Spark's S3A can only "
            "call STS AssumeRole. Fix: use assume_role_method 'assume_role' in the connection, or give Spark its "
            "own credentials in the spec's features.conf (spark.hadoop.fs.s3a.aws.credentials.provider: "
            f"{AWS_DEFAULT_CHAIN} and the AWS_* variables it reads)"
        )
    conf = {
        prefix + "aws.credentials.provider": S3A_ASSUMED_ROLE,
        prefix + "assumed.role.arn": str(role["role_arn"]),
        prefix + "assumed.role.credentials.provider": source,
    }
    if role.get("session_name"):
        conf[prefix + "assumed.role.session.name"] = str(role["session_name"])
    if role.get("external_id"):
        conf[prefix + "assumed.role.external.id"] = str(role["external_id"])
    if role.get("duration_seconds"):
        conf[prefix + "assumed.role.session.duration"] = f"{int(role['duration_seconds'])}s"
    if role.get("policy"):
        conf[prefix + "assumed.role.policy"] = str(role["policy"])
    if role.get("sts_endpoint"):
        conf[prefix + "assumed.role.sts.endpoint"] = _sts_host(str(role["sts_endpoint"]), role.get("conn_id"))
        # hadoop-aws refuses an STS endpoint without its signing region (and the reverse).
        conf[prefix + "assumed.role.sts.endpoint.region"] = str(role.get("sts_region") or region or "us-east-1")
    return conf


def _sts_host(endpoint: str, conn_id: str | None) -> str:
    """hadoop-aws 3.5.0 takes the STS endpoint as a bare host name and calls ``https://<host>`` (port 443)."""
    from urllib.parse import urlsplit

    parts = urlsplit(endpoint if "://" in endpoint else f"https://{endpoint}")
    if parts.scheme != "https" or parts.port not in (None, 443) or not parts.hostname:
        raise S3ACredentialsUnsupported(
            f"Airflow connection '{conn_id}' names the STS endpoint {endpoint}; Spark's S3A calls STS only at "
            "https://<host> on port 443. Fix: such an endpoint in the connection's service_config.sts.endpoint_url"
        )
    return parts.hostname


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
        S3ACredentialsUnsupported: The store's connection assumes its role in a way S3A cannot,
            and ``overrides`` do not choose Spark's credentials provider.
    """
    from sluice.services.spark_jars import s3a_jars

    conf: dict[str, str] = {}
    overrides = overrides or {}
    if store.location().startswith("s3://"):
        conf["spark.jars"] = ",".join(str(jar) for jar in s3a_jars(jars_dir))
        options = store.filesystem_options()
        if "spark.hadoop.fs.s3a.aws.credentials.provider" in overrides:
            options.pop(ASSUMED_ROLE_OPTION, None)  # the spec chose Spark's credentials itself
        conf.update(s3a_conf(options))
    for key, value in overrides.items():
        conf[key] = f"{conf[key]},{value}" if key == "spark.jars" and conf.get(key) else str(value)
    return conf
