"""Airflow connections turned into the plain options sluice's services take.

Services sit below the Airflow layer and never read a connection themselves: the Airflow
layer (task adapters, plugin, alerts) and the CLI resolve the spec's ``conn_id`` here and
hand the result down, as the landing zone's S3 client is handed to the ingest step.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sluice.services.spark import ASSUMED_ROLE_OPTION

if TYPE_CHECKING:
    from airflow.providers.amazon.aws.utils.connection_wrapper import AwsConnectionWrapper

    from sluice.services.storage import PipelineStore
    from sluice.spec.errors import SpecIssue
    from sluice.spec.loader import LoadedSpec


def s3_filesystem_options(conn_id: str) -> dict[str, Any]:
    """s3fs options (keys, session token, endpoint, region, role) from an Airflow ``aws`` connection.

    The amazon provider's connection wrapper does the reading, so an endpoint in the
    connection's extra (MinIO, a moto server) and the region are honoured as they are for
    the landing zone's boto3 client.

    With ``role_arn`` in the extra, the store works as the role, as the provider's own clients
    do: s3fs gets the provider's session (its credentials come from STS AssumeRole, with the
    connection's ``assume_role_kwargs``, and are renewed before they expire) instead of the
    keys, and ``s3a_assumed_role`` describes the same role for Spark's S3A
    (:func:`sluice.services.spark.s3a_conf`): its ARN, session name, external id, duration,
    policy, the STS endpoint the provider would call (``service_config.sts.endpoint_url``,
    never the connection's ``endpoint_url``) and the keys that authenticate the AssumeRole call.

    Args:
        conn_id: The Airflow connection id (``aws_default`` unless the spec names another).
    """
    from airflow.providers.amazon.aws.hooks.s3 import S3Hook

    hook = S3Hook(aws_conn_id=conn_id)
    config = hook.conn_config
    keys: dict[str, Any] = {}
    if config.aws_access_key_id:
        keys["key"] = config.aws_access_key_id
        keys["secret"] = config.aws_secret_access_key
    if config.aws_session_token:
        keys["token"] = config.aws_session_token
    options: dict[str, Any] = {}
    if config.role_arn:
        options["session"] = hook.get_session(deferrable=True)
        options[ASSUMED_ROLE_OPTION] = _assumed_role(conn_id, config) | keys
    else:
        options.update(keys)
    client_kwargs = {
        name: value
        for name, value in (("endpoint_url", config.endpoint_url), ("region_name", config.region_name))
        if value
    }
    if client_kwargs:
        options["client_kwargs"] = client_kwargs
    return options


def _assumed_role(conn_id: str, config: AwsConnectionWrapper) -> dict[str, Any]:
    """The role a connection assumes, as :func:`sluice.services.spark.s3a_conf` reads it."""
    from slugify import slugify

    kwargs = config.assume_role_kwargs
    role: dict[str, Any] = {
        "conn_id": conn_id,
        "role_arn": config.role_arn,
        "method": config.assume_role_method,
        # the provider's default session name, so CloudTrail shows one name for both clients
        "session_name": kwargs.get("RoleSessionName") or slugify(f"Airflow_{conn_id}", regex_pattern=r"[^\w+=,.@-]+"),
    }
    for name, arg in (("external_id", "ExternalId"), ("duration_seconds", "DurationSeconds"), ("policy", "Policy")):
        if kwargs.get(arg):
            role[name] = kwargs[arg]
    sts = config.get_service_endpoint_url("sts", sts_connection_assume=True)
    if sts:
        role["sts_endpoint"] = sts
        role["sts_region"] = config.get_service_config("sts").get("region_name") or config.region_name
    return role


def open_pipeline_store(loaded: LoadedSpec) -> PipelineStore:
    """The pipeline's store, with the spec's storage connection read when the root is a bucket.

    The one way the Airflow layer and the CLI open pipeline state, so every task, the reports
    page, the task links, the alerts and ``sluice status`` reach the same bucket with the
    same credentials.

    Args:
        loaded: The spec.
    """
    from sluice.services.storage import open_store

    storage = loaded.spec.storage
    return open_store(loaded, s3_filesystem_options(storage.aws_conn_id) if storage.is_s3 else None)


def connection_issues(loaded: LoadedSpec) -> list[SpecIssue]:
    """Spec issues for the Airflow connections an s3:// root or landing zone names but Airflow lacks.

    ``aws_default`` may be absent when boto3 finds credentials of its own (environment,
    instance profile); a connection the spec names explicitly must exist.

    Args:
        loaded: The spec.
    """
    spec = loaded.spec
    named = []
    if spec.storage.is_s3:
        named.append(("storage", spec.storage.conn_id))
    if spec.source.is_s3:
        named.append(("source", spec.source.conn_id))
    issues = []
    for section, explicit in named:
        conn_id = explicit or "aws_default"
        if _connection_exists(conn_id) or (explicit is None and _boto_has_credentials()):
            continue
        issues.append(
            loaded.issue(
                f"{section}.conn_id" if explicit else f"{section}.{'root' if section == 'storage' else 'uri'}",
                f"{section}: Airflow connection '{conn_id}' does not exist"
                + ("" if explicit else " and boto3 finds no AWS credentials of its own"),
                f"add it: airflow connections add {conn_id} --conn-type aws --conn-login KEY --conn-password SECRET "
                '--conn-extra \'{"endpoint_url": "https://..."}\' (or set AIRFLOW_CONN_'
                f"{conn_id.upper()}), or name an existing connection in {section}.conn_id",
            )
        )
    return issues


def _connection_exists(conn_id: str) -> bool:
    from airflow.sdk import BaseHook
    from airflow.sdk.exceptions import AirflowNotFoundException

    try:
        BaseHook.get_connection(conn_id)
    except AirflowNotFoundException:
        return False
    return True


def _boto_has_credentials() -> bool:
    import boto3

    return boto3.session.Session().get_credentials() is not None
