"""Accepted demo batches put straight into a pipeline's storage.

Tests and benches of the steps after validation (features, train) need accepted batches but
not the landing and validation that make them: this commits a month of the demo producer's
flights the way ``validate`` leaves it (``clean.parquet``, then ``batch.json`` as the marker).
"""

from __future__ import annotations

import uuid

from demo.producer import month_frame
from sluice.services.batch_record import BatchRecord, BatchStatus
from sluice.services.storage import BATCH_RECORD, PipelineStore, encode_json

#: Seconds in 30 days: the landing-time step between monthly batches.
MONTH_SECONDS = 30 * 86_400.0


def accept_month(
    store: PipelineStore, month: int, sample: int | None = None, landed_at: float | None = None
) -> tuple[str, int]:
    """Commit an accepted batch of one month's demo flights (clean.parquet + batch.json) via the store.

    Args:
        store: The pipeline's storage (any backend).
        month: 1-based month number; months past 12 repeat the year's months (as new batches,
            with their own ids and content hashes).
        sample: Flights sampled from the month (all of them when None).
        landed_at: The batch's landing time (epoch seconds); default: the month number, so
            batches sort by month.

    Returns:
        The batch id and how many of its flights have an arrival delay (its feature rows).
    """
    frame = month_frame((month - 1) % 12 + 1, sample=sample)
    batch_id = f"m{month}-{uuid.uuid4().hex[:6]}"
    record = BatchRecord(
        batch_id=batch_id,
        sha256=uuid.uuid4().hex,
        landed_at=float(month) if landed_at is None else landed_at,
        status=BatchStatus.ACCEPTED,
        rows=len(frame),
    )
    with store.stage(store.keys.batch(batch_id), BATCH_RECORD) as staging:
        local_file = store.scratch("demo-batches") / f"{batch_id}.parquet"
        frame.to_parquet(local_file, index=False)
        staging.put_file(local_file, "clean.parquet")
        staging.write_bytes(BATCH_RECORD, encode_json(record.model_dump(mode="json")))
    return batch_id, int(frame["arr_delay"].notna().sum())
