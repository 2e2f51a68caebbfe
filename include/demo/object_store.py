"""An S3-compatible server as its own process (moto's server mode), for tests and the demo.

moto rather than MinIO: it is a PyPI wheel already in the lock, starts in about a second and
needs no build; MinIO from its Go module is a ~10-minute compile on this 2-core machine,
every CI run. The S3 API surface sluice uses (put, get, list, copy, delete, conditional
copy) is the same. The server with a journal that survives a kill (the production harness's
and the kit's) is :mod:`sluice.production.moto_journal`; its functions are re-exported here.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import requests
import tenacity

from sluice.airflow.runtime.standalone import free_port
from sluice.production.moto_journal import replay_journal, serve_journaled

__all__ = ["ObjectStore", "replay_journal", "s3_server_process", "serve_journaled"]


@dataclass(frozen=True)
class ObjectStore:
    """A running S3 server: its endpoint and the credentials it accepts."""

    endpoint: str
    key: str = "testing"
    secret: str = "testing"  # noqa: S105 (moto accepts any credentials)
    region: str = "us-east-1"

    @property
    def fsspec_options(self) -> dict[str, Any]:
        """s3fs options that reach this server."""
        return {
            "key": self.key,
            "secret": self.secret,
            "client_kwargs": {"endpoint_url": self.endpoint, "region_name": self.region},
        }

    @property
    def airflow_connection(self) -> str:
        """The ``AIRFLOW_CONN_<ID>`` value (JSON, type aws) that reaches this server."""
        return json.dumps(
            {
                "conn_type": "aws",
                "login": self.key,
                "password": self.secret,
                "extra": {"endpoint_url": self.endpoint, "region_name": self.region},
            }
        )

    def client(self) -> Any:
        """A boto3 S3 client of this server."""
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=self.key,
            aws_secret_access_key=self.secret,
            region_name=self.region,
        )

    def create_bucket(self, name: str) -> None:
        """Create a bucket (idempotent)."""
        client = self.client()
        with contextlib.suppress(client.exceptions.BucketAlreadyOwnedByYou):
            client.create_bucket(Bucket=name)

    def keys(self, bucket: str, prefix: str = "") -> list[str]:
        """Every key in ``bucket`` under ``prefix``."""
        pages = self.client().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        return [obj["Key"] for page in pages for obj in page.get("Contents", [])]


@contextlib.contextmanager
def s3_server_process(env: dict[str, str] | None = None) -> Iterator[ObjectStore]:
    """Start ``python -m moto.server`` on a free loopback port; stop it (and wait) after.

    Args:
        env: The server's environment (default: this process's).
    """
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    endpoint = f"http://127.0.0.1:{port}"
    try:
        for attempt in tenacity.Retrying(
            stop=tenacity.stop_after_delay(60), wait=tenacity.wait_fixed(0.2), reraise=True
        ):
            with attempt:
                if proc.poll() is not None:
                    raise RuntimeError(f"moto server exited with {proc.returncode}")
                requests.get(f"{endpoint}/moto-api/", timeout=2).raise_for_status()
        yield ObjectStore(endpoint)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
