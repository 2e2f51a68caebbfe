"""Tests look at the local backend's files directly: what a user sees on disk."""

from __future__ import annotations

from pathlib import Path

from sluice.services.storage import PipelineStore


def local(store: PipelineStore, key: str = "") -> Path:
    """The local path of ``key`` in a store on the local backend."""
    return Path(store.location(key))


def accept_month(store: PipelineStore, month: int, sample: int, landed_at: float | None = None) -> tuple[str, int]:
    """Commit an accepted batch of one month's demo flights (clean.parquet + batch.json) via the store.

    Args:
        store: The pipeline's storage (any backend).
        month: Month of 2013 (the demo producer's data).
        sample: Flights sampled from the month.
        landed_at: The batch's landing time (epoch seconds); default: the month number, so
            batches sort by month.

    Returns:
        The batch id and how many of its flights have an arrival delay (its feature rows).
    """
    import uuid

    from demo.producer import month_frame
    from sluice.services.batch_record import BatchRecord, BatchStatus
    from sluice.services.storage import BATCH_RECORD, encode_json

    frame = month_frame(month, sample=sample)
    batch_id = f"m{month}-{uuid.uuid4().hex[:6]}"
    record = BatchRecord(
        batch_id=batch_id,
        sha256=uuid.uuid4().hex,
        landed_at=float(month) if landed_at is None else landed_at,
        status=BatchStatus.ACCEPTED,
    )
    with store.stage(store.batch_key(batch_id), BATCH_RECORD) as staging:
        local_file = store.scratch("test") / f"{batch_id}.parquet"
        frame.to_parquet(local_file, index=False)
        staging.put_file(local_file, "clean.parquet")
        staging.write_bytes(BATCH_RECORD, encode_json(record.model_dump(mode="json")))
    return batch_id, int(frame["arr_delay"].notna().sum())
