"""The model server's prediction log: every scored request, in pipeline storage, by hour.

The request path only hands the raw request and answer to a bounded queue
(:meth:`PredictionLog.record`, a few microseconds); a background thread turns them into rows
(one per input row: request id, time, model version, the row as sent, a hash of it, its
prediction, the ``source.id_column`` value) and writes them as parquet through the pipeline's
store, every ``flush_rows`` rows or ``flush_seconds``::

    predictions/log/date=YYYY-MM-DD/hour=HH/<uuid>.parquet

Each file is written with the store's atomic ``open_write``, so a reader never sees part of
one. When storage fails, the rows stay buffered and are retried at the next flush; beyond
``max_rows`` the oldest rows are dropped. Failures and drops are counted (``/metrics``,
``/sluice/info``); a request never waits for, or fails because of, the log.
"""

from __future__ import annotations

import hashlib
import json
import logging
import queue
import threading
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sluice.services.storage import PipelineStore

log = logging.getLogger(__name__)

#: Column names of a log file, in order.
COLUMNS = (
    "request_id",
    "row",
    "time",
    "pipeline",
    "model_version",
    "id",
    "inputs",
    "features_hash",
    "prediction",
)


@dataclass(frozen=True)
class Scored:
    """One answered request, as the request path hands it over (nothing parsed yet).

    Attributes:
        request_id: ``X-Request-ID`` of the request, or the one the server made up.
        time: When it was answered (seconds since the epoch).
        body: The request body.
        content_type: Its ``Content-Type``.
        answer: The body of the 200 answer (``{"predictions": ...}``).
    """

    request_id: str
    time: float
    body: bytes
    content_type: str | None
    answer: str


@dataclass
class LogStats:
    """What the log did so far (``/metrics`` and ``/sluice/info`` show it)."""

    written_rows: int = 0
    written_files: int = 0
    failed_writes: int = 0
    dropped_rows: int = 0
    dropped_requests: int = 0
    last_error: str = ""


def input_rows(body: bytes, content_type: str | None) -> list[dict[str, Any]] | None:
    """The rows of a request body (JSON dataframe records or split, or CSV), or None when not tabular."""
    if (content_type or "").split(";")[0].strip() == "text/csv":
        import io

        import pandas as pd

        frame = pd.read_csv(io.BytesIO(body))
        return list(json.loads(frame.to_json(orient="records")))
    payload = json.loads(body)
    if not isinstance(payload, dict):
        return None
    if isinstance(payload.get("dataframe_split"), dict):
        split = payload["dataframe_split"]
        return [dict(zip(split.get("columns") or [], row, strict=False)) for row in split.get("data") or []]
    for key in ("dataframe_records", "inputs", "instances"):
        found = payload.get(key)
        if isinstance(found, list) and all(isinstance(r, dict) for r in found):
            return list(found)
    return None


def features_hash(row: Any) -> str:
    """SHA-256 of a row's canonical JSON (sorted keys): equal inputs, equal hash."""
    text = json.dumps(row, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def _text(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), default=str)


class PredictionLog:
    """Buffers scored requests and writes them to ``predictions/log/`` from a background thread.

    Args:
        store: The pipeline's store.
        pipeline: Pipeline name (a column of every row).
        version: The served model version (a column of every row).
        id_column: The spec's ``source.id_column``: its value in each input row goes to ``id``.
        flush_rows: Write once this many rows are buffered.
        flush_seconds: Write buffered rows at least this often.
        max_rows: Most rows kept while storage fails; older ones are dropped beyond it.
    """

    def __init__(
        self,
        store: PipelineStore,
        pipeline: str,
        version: str,
        id_column: str | None = None,
        flush_rows: int = 1000,
        flush_seconds: float = 10.0,
        max_rows: int = 100_000,
    ) -> None:
        self.store = store
        self.pipeline = pipeline
        self.version = version
        self.id_column = id_column
        self.flush_rows = flush_rows
        self.flush_seconds = flush_seconds
        self.max_rows = max_rows
        self.stats = LogStats()
        self._queue: queue.Queue[Scored | None] = queue.Queue(maxsize=max_rows)
        self._rows: list[dict[str, Any]] = []
        self._retry_at = 0.0
        self._thread = threading.Thread(target=self._run, name="prediction-log", daemon=True)

    def start(self) -> None:
        """Start the writer thread."""
        self._thread.start()

    def record(self, scored: Scored) -> None:
        """Hand over one answered request; never blocks (counted as dropped when the queue is full)."""
        try:
            self._queue.put_nowait(scored)
        except queue.Full:
            self.stats.dropped_requests += 1

    def close(self, timeout: float = 10.0) -> None:
        """Write what is buffered and stop the thread (at shutdown; waits at most ``timeout``)."""
        if not self._thread.is_alive():
            return
        try:
            self._queue.put(None, timeout=timeout)
        except queue.Full:
            log.warning("prediction log: the writer is stuck; %d requests not written", self._queue.qsize())
            return
        self._thread.join(timeout)

    def _run(self) -> None:
        deadline = time.monotonic() + self.flush_seconds
        while True:
            try:
                item = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                pass
            else:
                if item is None:
                    self._flush()
                    return
                self._add(item)
            now = time.monotonic()
            due = now >= deadline or (len(self._rows) >= self.flush_rows and now >= self._retry_at)
            if due and self._rows:
                self._flush()
            if now >= deadline:
                deadline = now + self.flush_seconds

    def _add(self, scored: Scored) -> None:
        try:
            self._rows += self.rows_of(scored)
        except Exception as exc:  # a body the scorer took but this parser does not: log it whole
            log.debug("prediction log: request %s logged whole: %r", scored.request_id, exc)
            self._rows.append(self._row(scored, -1, scored.body.decode(errors="replace"), scored.answer))
        excess = len(self._rows) - self.max_rows
        if excess > 0:
            del self._rows[:excess]
            self.stats.dropped_rows += excess

    def rows_of(self, scored: Scored) -> list[dict[str, Any]]:
        """The log rows of one request: one per input row when the answer has one prediction per row."""
        rows = input_rows(scored.body, scored.content_type)
        predictions = json.loads(scored.answer).get("predictions")
        if rows is None or not isinstance(predictions, list) or len(predictions) != len(rows):
            inputs = rows if rows is not None else scored.body.decode(errors="replace")
            return [self._row(scored, -1, inputs, predictions)]
        return [self._row(scored, i, row, pred) for i, (row, pred) in enumerate(zip(rows, predictions, strict=True))]

    def _row(self, scored: Scored, index: int, inputs: Any, prediction: Any) -> dict[str, Any]:
        ident = inputs.get(self.id_column) if self.id_column and isinstance(inputs, dict) else None
        return {
            "request_id": scored.request_id,
            "row": index,
            "time": scored.time,
            "pipeline": self.pipeline,
            "model_version": self.version,
            "id": None if ident is None else str(ident),
            "inputs": inputs if isinstance(inputs, str) else _text(inputs),
            "features_hash": features_hash(inputs),
            "prediction": _text(prediction),
        }

    def _flush(self) -> None:
        """Write the buffered rows, one file per hour they fall in; keep them when storage fails."""
        if not self._rows:
            return
        by_hour: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for row in self._rows:
            by_hour[time.strftime("date=%Y-%m-%d/hour=%H", time.gmtime(row["time"]))].append(row)
        for hour, rows in by_hour.items():
            try:
                self._write(self.store.keys.predictions(f"log/{hour}/{uuid.uuid4().hex}.parquet"), rows)
            except Exception as exc:  # storage down, full, refused: counted, retried, never raised
                self.stats.failed_writes += 1
                self.stats.last_error = f"{type(exc).__name__}: {exc}"[:500]
                self._retry_at = time.monotonic() + self.flush_seconds
                log.warning("prediction log: cannot write %d rows: %s", len(rows), self.stats.last_error)
                continue
            self.stats.written_rows += len(rows)
            self.stats.written_files += 1
            written = {id(r) for r in rows}
            self._rows = [r for r in self._rows if id(r) not in written]

    def _write(self, key: str, rows: list[dict[str, Any]]) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        schema = pa.schema(
            [
                ("request_id", pa.string()),
                ("row", pa.int32()),
                ("time", pa.timestamp("us", tz="UTC")),
                ("pipeline", pa.string()),
                ("model_version", pa.string()),
                ("id", pa.string()),
                ("inputs", pa.string()),
                ("features_hash", pa.string()),
                ("prediction", pa.string()),
            ]
        )
        columns: dict[str, list[Any]] = {name: [r[name] for r in rows] for name in COLUMNS}
        columns["time"] = [int(t * 1_000_000) for t in columns["time"]]
        table = pa.table(columns, schema=schema)
        with self.store.open_write(key) as fh:
            pq.write_table(table, fh)
