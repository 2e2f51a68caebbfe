"""Airflow connections turned into the plain options sluice's services take.

Services sit below the Airflow layer and never read a connection themselves: the Airflow
layer (task adapters, plugin, alerts) and the CLI resolve the spec's ``conn_id`` here and
hand the result down, as the landing zone's S3 client is handed to the ingest step.
"""

from __future__ import annotations

from typing import Any


def s3_filesystem_options(conn_id: str) -> dict[str, Any]:
    """s3fs options (keys, session token, endpoint, region) from an Airflow ``aws`` connection.

    The amazon provider's connection wrapper does the reading, so an endpoint in the
    connection's extra (MinIO, a moto server) and the region are honoured as they are for
    the landing zone's boto3 client.

    Args:
        conn_id: The Airflow connection id (``aws_default`` unless the spec names another).
    """
    from airflow.providers.amazon.aws.hooks.s3 import S3Hook

    config = S3Hook(aws_conn_id=conn_id).conn_config
    options: dict[str, Any] = {}
    if config.aws_access_key_id:
        options["key"] = config.aws_access_key_id
        options["secret"] = config.aws_secret_access_key
    if config.aws_session_token:
        options["token"] = config.aws_session_token
    client_kwargs = {
        name: value
        for name, value in (("endpoint_url", config.endpoint_url), ("region_name", config.region_name))
        if value
    }
    if client_kwargs:
        options["client_kwargs"] = client_kwargs
    return options
