"""The real model server logs every scored request to pipeline storage and counts it in /metrics.

A ``sluice serve`` process (the model of ``test_scoring.py``) with a storage root: answers
carry ``X-Request-ID``, ``/metrics`` counts what was sent, each scored row lands in
``predictions/log/date=.../hour=.../*.parquet`` with its inputs, hash, prediction and id, the
log is flushed on SIGTERM, and a storage root remounted read-only costs no answer: the
failures are counted and the buffered rows are written once storage is back.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.conftest import S3Server, free_port
from tests.services.test_scoring import ROWS, model_dir  # noqa: F401 (fixture)

pytestmark = pytest.mark.integration


class Server:
    """A ``sluice serve`` process with a prediction log under ``root``."""

    def __init__(
        self, model: Path, root: Path | str, folder: Path, flush_seconds: float, env: dict[str, str] | None = None
    ) -> None:
        self.port, self.root, self.ready, self.log = free_port(), root, folder / "ready", folder / "serve.log"
        cmd = [sys.executable, "-m", "sluice.cli", "serve", "--model-uri", str(model), "--host", "127.0.0.1"]
        cmd += ["--port", str(self.port), "--ready-file", str(self.ready), "--pipeline", "p", "--version", "4"]
        cmd += ["--storage-root", str(root), "--id-column", "s"]
        full = dict(os.environ, SLUICE_PREDICTION_LOG_FLUSH_SECONDS=str(flush_seconds), **(env or {}))
        with self.log.open("w") as out:
            self.proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True, env=full)
        deadline = time.monotonic() + 120
        while not self.ready.exists() and self.proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        assert self.ready.exists(), self.log.read_text()[-3000:]
        self.url = f"http://127.0.0.1:{self.port}"

    def post(self, rows: Any, request_id: str | None = None) -> Any:
        import requests

        headers = {"X-Request-ID": request_id} if request_id else {}
        return requests.post(f"{self.url}/invocations", json={"dataframe_records": rows}, headers=headers, timeout=30)

    def metrics(self) -> dict[tuple[str, str], float]:
        """``/metrics`` samples by name and status class (prometheus-client's parser)."""
        import requests
        from prometheus_client.parser import text_string_to_metric_families

        text = requests.get(f"{self.url}/metrics", timeout=10).text
        return {
            (s.name, s.labels.get("status_class", "")): s.value
            for family in text_string_to_metric_families(text)
            for s in family.samples
            if s.labels.get("le") is None and (s.labels.get("model_version") in ("4", None))
        }

    def stop(self) -> int:
        os.killpg(self.proc.pid, signal.SIGTERM)
        return self.proc.wait(30)


@pytest.fixture()
def serve(model_dir: Path, tmp_path: Path) -> Iterator[Callable[..., Server]]:  # noqa: F811
    started: list[Server] = []

    def start(root: Path | str, flush_seconds: float, env: dict[str, str] | None = None) -> Server:
        started.append(Server(model_dir, root, tmp_path, flush_seconds, env))
        return started[-1]

    yield start
    for server in started:
        if server.proc.poll() is None:
            server.stop()


def logged(root: Path) -> Any:
    """Every row of the prediction log under ``root`` (pipeline ``p``), with its file."""
    import pandas as pd

    files = sorted((root / "p" / "predictions" / "log").glob("date=*/hour=*/*.parquet"))
    frames = [pd.read_parquet(f).assign(file=str(f.relative_to(root / "p"))) for f in files]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def wait_for(check: Callable[[], bool], seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.2)


def test_scored_requests_are_counted_in_metrics_and_logged_as_parquet_on_sigterm(
    serve: Callable[..., Server], tmp_path: Path
) -> None:
    root = tmp_path / "storage"
    server = serve(root, flush_seconds=600)  # only the shutdown flush writes
    answers = [server.post(ROWS, f"req-{i}") for i in range(5)] + [server.post(ROWS[:1]) for _ in range(2)]
    assert [a.status_code for a in answers] == [200] * 7
    assert [a.headers["X-Request-ID"] for a in answers[:5]] == [f"req-{i}" for i in range(5)]
    made_up = {a.headers["X-Request-ID"] for a in answers[5:]}
    assert len(made_up) == 2 and all(len(r) == 32 for r in made_up)
    bad = server.post([{"nope": 1}], "req-bad")
    assert bad.status_code == 400 and bad.headers["X-Request-ID"] == "req-bad"

    seen = server.metrics()
    assert seen[("sluice_requests_total", "")] == 8
    assert seen[("sluice_request_errors_total", "4xx")] == 1
    assert seen[("sluice_request_duration_seconds_count", "")] == 8
    assert seen[("sluice_prediction_log_write_failures_total", "")] == 0
    assert logged(root).empty, "nothing is written before a flush is due"
    from sluice.services.serving_metrics import load_lines

    (status,) = load_lines(server.url)
    assert "8 requests" in status and "1 errors" in status and "p99" in status, status

    assert server.stop() in (0, -signal.SIGTERM)
    log = logged(root)
    assert len(log) == 5 * len(ROWS) + 2, "every scored row is written at shutdown; the 400 is not logged"
    assert log["file"].str.fullmatch(r"predictions/log/date=\d{4}-\d\d-\d\d/hour=\d\d/[0-9a-f]{32}\.parquet").all()
    first = log[log["request_id"] == "req-0"].sort_values("row")
    assert first["row"].tolist() == [0, 1, 2]
    assert [json.loads(x) for x in first["inputs"]] == ROWS
    assert [json.loads(p) for p in first["prediction"]] == answers[0].json()["predictions"]
    assert first["id"].tolist() == [r["s"] for r in ROWS]
    canonical = [json.dumps(r, sort_keys=True, separators=(",", ":")) for r in ROWS]
    assert first["features_hash"].tolist() == [hashlib.sha256(c.encode()).hexdigest() for c in canonical]
    assert set(log["model_version"]) == {"4"} and set(log["pipeline"]) == {"p"}
    assert (abs(log["time"] - log["time"].max()).dt.total_seconds() < 120).all()


@pytest.fixture()
def tmpfs(tmp_path: Path) -> Iterator[Path]:
    """A storage root on its own tmpfs (needs root and ``mount``; skipped elsewhere)."""
    root = tmp_path / "storage"
    root.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "sluice-log", str(root)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({done.stderr.decode().strip()}): the outage needs root")
    try:
        yield root
    finally:
        subprocess.run(["umount", "-l", str(root)], check=False, capture_output=True)


def _remount(root: Path, mode: str) -> None:
    subprocess.run(["mount", "-o", f"remount,{mode}", str(root)], check=True, capture_output=True)


def test_storage_down_answers_every_request_counts_the_failures_and_writes_once_back(
    serve: Callable[..., Server], tmpfs: Path
) -> None:
    server = serve(tmpfs, flush_seconds=0.3)
    assert server.post(ROWS, "before").status_code == 200
    wait_for(lambda: len(logged(tmpfs)) == len(ROWS))

    _remount(tmpfs, "ro")
    try:
        answers = [server.post(ROWS, f"down-{i}") for i in range(20)]
        assert [a.status_code for a in answers] == [200] * 20, "a storage outage fails no request"
        wait_for(lambda: server.metrics()[("sluice_prediction_log_write_failures_total", "")] >= 2)
        import requests

        info = requests.get(f"{server.url}/sluice/info", timeout=10).json()["prediction_log"]
        assert info["failed_writes"] >= 2 and "Read-only" in info["last_error"]
        assert len(logged(tmpfs)) == len(ROWS)
    finally:
        _remount(tmpfs, "rw")
    wait_for(lambda: len(logged(tmpfs)) == 21 * len(ROWS))
    assert server.metrics()[("sluice_prediction_log_rows_total", "")] == 21 * len(ROWS)
    assert server.metrics()[("sluice_prediction_log_dropped_rows_total", "")] == 0


def test_the_log_of_an_s3_root_lands_in_the_bucket_through_the_aws_variables(
    serve: Callable[..., Server], s3: S3Server
) -> None:
    keys = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}
    server = serve(f"s3://{s3.bucket}/state", flush_seconds=0.3, env={**keys, "AWS_ENDPOINT_URL_S3": s3.endpoint})
    assert all(server.post(ROWS, f"s3-{i}").status_code == 200 for i in range(3))
    wait_for(lambda: server.metrics()[("sluice_prediction_log_rows_total", "")] == 3 * len(ROWS))
    written = s3.keys("state/p/predictions/log/")
    pattern = r"state/p/predictions/log/date=[\d-]+/hour=\d\d/\w{32}\.parquet"
    assert written and all(re.fullmatch(pattern, k) for k in written), written
