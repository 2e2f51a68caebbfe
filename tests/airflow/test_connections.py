"""An Airflow ``aws`` connection reaches S3 storage: its keys, endpoint, region and role become s3fs options."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from sluice.airflow.runtime.connections import s3_filesystem_options
from sluice.services.spark import ASSUMED_ROLE_OPTION
from sluice.services.storage import PipelineStore, backend_for
from tests.object_store import ObjectStore, s3_server_process


@pytest.fixture(scope="module")
def server() -> Iterator[ObjectStore]:
    with s3_server_process() as running:
        running.create_bucket("sluice")
        yield running


def test_a_connection_with_an_endpoint_opens_the_pipeline_store_on_that_server(
    server: ObjectStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_SLUICE_STORAGE", server.airflow_connection)
    options = s3_filesystem_options("sluice_storage")
    assert options == {
        "key": server.key,
        "secret": server.secret,
        "client_kwargs": {"endpoint_url": server.endpoint, "region_name": server.region},
    }
    prefix = f"s3://sluice/{uuid.uuid4().hex[:8]}"
    store = PipelineStore(None, "p", backend=backend_for(prefix, "p", options=options))
    store.json.write(store.keys.run("r", "decision.json"), {"verdict": "pass"})
    assert store.json.read("runs/r/decision.json") == {"verdict": "pass"}
    assert store.location("runs/r/decision.json") == f"{prefix}/p/runs/r/decision.json"


def test_a_connection_without_keys_leaves_credentials_to_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    # An instance role or AWS_* variables then apply, as for any boto3 client.
    monkeypatch.setenv("AIRFLOW_CONN_NO_KEYS", json.dumps({"conn_type": "aws", "extra": {"region_name": "eu-west-1"}}))
    assert s3_filesystem_options("no_keys") == {"client_kwargs": {"region_name": "eu-west-1"}}


async def _frozen(session: Any) -> Any:
    return await (await session.get_credentials()).get_frozen_credentials()


def _assumed_roles(server: ObjectStore) -> list[dict[str, Any]]:
    """The AssumeRole calls the server answered (moto keeps each assumed role)."""
    import requests

    return list(requests.get(f"{server.endpoint}/moto-api/data.json", timeout=10).json()["sts"]["AssumedRole"])


def test_a_connection_with_a_role_opens_the_store_as_that_role_and_describes_it_for_spark(
    server: ObjectStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    role_arn = "arn:aws:iam::123456789012:role/sluice-storage"
    connection = {
        "conn_type": "aws",
        "login": server.key,
        "password": server.secret,
        "extra": {
            "endpoint_url": server.endpoint,
            "region_name": server.region,
            "role_arn": role_arn,
            "assume_role_kwargs": {"ExternalId": "ext-42"},
            # the amazon provider sends AssumeRole to the STS endpoint of service_config, never to endpoint_url
            "service_config": {"sts": {"endpoint_url": server.endpoint}},
        },
    }
    monkeypatch.setenv("AIRFLOW_CONN_ROLE_STORAGE", json.dumps(connection))
    options = s3_filesystem_options("role_storage")

    assert "key" not in options and "secret" not in options, "s3fs would use the keys instead of the role"
    assert options["client_kwargs"] == {"endpoint_url": server.endpoint, "region_name": server.region}
    assert options[ASSUMED_ROLE_OPTION] == {
        "conn_id": "role_storage",
        "role_arn": role_arn,
        "method": "assume_role",
        "session_name": "airflow_role_storage",
        "external_id": "ext-42",
        "sts_endpoint": server.endpoint,
        "sts_region": server.region,
        "key": server.key,
        "secret": server.secret,
    }
    called = [r for r in _assumed_roles(server) if r["session_name"] == "airflow_role_storage"]
    assert called and called[-1]["role_arn"] == role_arn and called[-1]["external_id"] == "ext-42"

    prefix = f"s3://sluice/{uuid.uuid4().hex[:8]}"
    store = PipelineStore(None, "p", backend=backend_for(prefix, "p", options=options))
    store.json.write(store.keys.run("r", "decision.json"), {"verdict": "pass"})
    assert store.json.read("runs/r/decision.json") == {"verdict": "pass"}
    fs, _ = store.backend.filesystem("")
    assert getattr(fs, "session", None) is options["session"], "s3fs signs with the assumed role's session"
    credentials = asyncio.run(_frozen(options["session"]))
    assert credentials.access_key == called[-1]["access_key_id"] != server.key, "the role's keys, not the login's"
    assert store.filesystem_options()[ASSUMED_ROLE_OPTION]["role_arn"] == role_arn, "Spark sees the same role"
