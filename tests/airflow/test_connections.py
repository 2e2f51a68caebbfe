"""An Airflow ``aws`` connection reaches S3 storage: its keys, endpoint and region become s3fs options."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator

import pytest

from sluice.airflow.runtime.connections import s3_filesystem_options
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
    connection = {
        "conn_type": "aws",
        "login": server.key,
        "password": server.secret,
        "extra": {"endpoint_url": server.endpoint, "region_name": server.region},
    }
    monkeypatch.setenv("AIRFLOW_CONN_SLUICE_STORAGE", json.dumps(connection))
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
