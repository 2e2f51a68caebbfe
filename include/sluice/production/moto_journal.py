"""moto's S3 server with a journal that survives a kill (the kit's and the harness's local S3).

moto rather than MinIO: it is a PyPI wheel already in the lock (with the development
dependencies), starts in about a second and needs no build; the S3 API surface sluice uses
(put, get, list, copy, delete, conditional copy) is the same. moto holds everything in memory:
:func:`serve_journaled` keeps it in a journal and replays it on start.

Run as ``python -m sluice.production.moto_journal --host H --port P --journal FILE``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

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
