"""An S3-compatible server as its own process (moto's server mode), for tests and the demo.

moto rather than MinIO: it is a PyPI wheel already in the lock, starts in about a second and
needs no build; MinIO from its Go module is a ~10-minute compile on this 2-core machine,
every CI run. The S3 API surface sluice uses (put, get, list, copy, delete, conditional
copy) is the same.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests
import tenacity

from sluice.airflow.runtime.standalone import free_port


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


#: Requests that change a moto server's state; the rest (GET, HEAD) are not replayed.
_CHANGES = ("PUT", "POST", "DELETE")


def replay_journal(app: Any, journal: Path) -> int:
    """Apply the state-changing requests of a moto recording ``journal`` to ``app``, in order.

    A last line cut short (the server was killed while writing it) is a request that was
    never answered: it is skipped, so nothing half-written comes back. Multipart uploads get
    new upload ids when replayed; later parts of the same upload are sent with the new id.

    Returns:
        How many requests were replayed.
    """
    import base64
    import json
    import re
    from urllib.parse import urlsplit

    from werkzeug.test import Client

    client = Client(app)
    upload_ids: dict[str, str] = {}
    pending_new: dict[str, str] = {}  # path -> the replayed upload id not yet matched to its recorded one
    replayed = 0
    lines = journal.read_text().splitlines() if journal.exists() else []
    for line in lines:
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            continue  # a record torn by the kill: its request was never answered
        if entry.get("method") not in _CHANGES:
            continue
        body = entry.get("body") or b""
        if entry.get("body_encoded"):
            body = base64.b64decode(body)
        url = urlsplit(entry["url"])
        query = url.query
        old = re.search(r"(?:^|&)uploadId=([^&]+)", query)
        if old and old.group(1) not in upload_ids and url.path in pending_new:
            upload_ids[old.group(1)] = pending_new.pop(url.path)
        if old and old.group(1) in upload_ids:
            query = query.replace(old.group(1), upload_ids[old.group(1)])
        headers = {k: v for k, v in entry.get("headers", {}).items() if k.lower() != "transfer-encoding"}
        resp = client.open(path=url.path, query_string=query, method=entry["method"], headers=headers, data=body)
        if entry["method"] == "POST" and re.search(r"(?:^|&)uploads(?:=|&|$)", query):
            found = re.search(rb"<UploadId>([^<]+)</UploadId>", resp.get_data())
            if found:
                pending_new[url.path] = found.group(1).decode()
        replayed += 1
    return replayed


def serve_journaled(host: str, port: int, journal: Path) -> None:
    """moto's S3 server that keeps its state in ``journal`` across a kill (``kill -9``, a lost host).

    moto holds everything in memory. Here every request is appended to ``journal`` (moto's
    recorder, written before the request is handled) and, on start, the state-changing ones
    already there are replayed into the new server before it listens: a server started again
    on the same port with the same journal has the buckets and objects it had.
    """
    os.environ["MOTO_RECORDER_FILEPATH"] = str(journal)
    os.environ.pop("MOTO_ENABLE_RECORDING", None)
    os.environ.setdefault("MOTO_PORT", str(port))
    from moto.moto_api import recorder
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
    from werkzeug.serving import run_simple

    app = DomainDispatcherApplication(create_backend_app)
    replayed = replay_journal(app, journal)
    print(f"s3 journal {journal}: replayed {replayed} request(s)", flush=True)
    recorder.start_recording()
    run_simple(host, port, app, threaded=True, request_handler=MotoRequestHandler)


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description="moto's S3 server with a journal that survives a kill")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--journal", type=Path, required=True)
    args = parser.parse_args()
    serve_journaled(args.host, args.port, args.journal)
