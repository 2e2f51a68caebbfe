"""Land new files into the raw zone, keyed by content hash."""

from __future__ import annotations

import logging
import time
import uuid
from pathlib import Path

from sluice.services import faults
from sluice.services.landing import PROCESSED, Inbox, InboxFile, LocalInbox, Scan, printable
from sluice.services.storage import BATCH_RECORD, PipelineStore, encode_json, sha256_file
from sluice.steps.records import BatchRecord, BatchStatus, LandResult

__all__ = [
    "PROCESSED",
    "LandResult",
    "batch_id_for",
    "clean_killed_land",
    "land_new_files",
    "pending_batches",
    "unfinished_batches",
]

log = logging.getLogger(__name__)


class _ContentChanged(Exception):
    """The landing file changed between listing and the end of its copy."""


def batch_id_for(sha256: str) -> str:
    """Batch id: the first 16 hex digits of the content hash."""
    return sha256[:16]


def _names_in_use(store: PipelineStore) -> dict[str, list[str]]:
    """``{source file name: [batch ids]}`` of every landed batch."""
    names: dict[str, list[str]] = {}
    for batch_id in store.batch_ids():
        names.setdefault(store.batch_record(batch_id).source_file, []).append(batch_id)
    return names


def land_new_files(inbox: Inbox | str, store: PipelineStore, run_id: str) -> LandResult:
    """Copy every complete file waiting in ``inbox`` into the raw zone, then archive it.

    Each file is copied to a private scratch file, the copy is hashed, and the copy is
    landed only if the landing file still has the size and mtime (S3: ETag) it had when
    listed; otherwise it is left for the next run. The batch folder is built under a
    temporary name and renamed into place, so a crash leaves no half batch. A file whose
    content is already in the raw zone lands nothing (same content, same batch id) and is
    only archived, so re-ingesting is a no-op, and so is a retry after a crash between
    landing and archiving. Archiving re-checks the file first: content that changed after
    it was hashed is never archived unread.

    Args:
        inbox: The landing zone (local folder or S3 prefix); a string is read as the
            absolute glob of a local folder (``.../landing/flights/*.parquet``), one look.
        store: The pipeline's storage.
        run_id: Airflow run id, recorded as lineage.

    Returns:
        What was landed, skipped, left and archived.
    """
    if isinstance(inbox, str):
        inbox = LocalInbox(Path(inbox).parent, Path(inbox).name)
    clean_killed_land(store)
    scan = inbox.scan()
    result = LandResult(
        ignored=scan.ignored,
        unsettled=scan.unsettled,
        waiting_for_marker=scan.waiting_for_marker,
        refused=scan.refused,
    )
    _log_scan(scan)
    if scan.ready:
        store.check_writable()  # one clear error before the first write, files left in landing
    names = _names_in_use(store) if scan.ready else {}
    for item in scan.ready:
        try:
            batch_id = _land_one(inbox, item, store, run_id, names, result)
        except _ContentChanged:
            log.warning("%s changed while it was being landed: left for the next run", printable(item.name))
            result.changed.append(item.name)
            continue
        if inbox.archive(item, batch_id) is None:
            log.warning("%s changed after it was hashed: not archived, left for the next run", printable(item.name))
            result.changed.append(item.name)
        else:
            result.archived.append(item.name)
    return result


def clean_killed_land(store: PipelineStore) -> list[str]:
    """Remove what a killed land left: its scratch copies and its half-built batch folders.

    Only ``land`` writes there (``.incoming/`` and the ``.tmp-*`` folders directly under
    ``batches/``), and the ingest DAG runs one run at a time: whatever is there when a land
    starts belongs to a dead try, so the retry removes it rather than a day-old sweep.
    A clean-up that fails (read-only storage) is logged; landing goes on and says why it
    cannot write.

    Returns:
        What was removed.
    """
    try:
        removed = store.clear_scratch(".incoming") + store.clean_own_temporaries("batches", deep=False)
    except OSError as exc:
        log.warning("cannot remove the temporaries of a killed land yet: %s", exc)
        return []
    for path in removed:
        log.info("removed %s, left by a killed land", path)
    return removed


def _log_scan(scan: Scan) -> None:
    """Say why each file the scan found is not landed now."""
    if scan.ignored:
        shown = ", ".join(printable(n) for n in scan.ignored[:5]) + (", ..." if len(scan.ignored) > 5 else "")
        log.info("ignored %d hidden or temporary file(s) in the landing folder: %s", len(scan.ignored), shown)
    for name in scan.unsettled:
        log.info("%s is still being written (size or mtime changed): left for the next run", printable(name))
    for name in scan.waiting_for_marker:
        log.info("%s has no completion marker yet: left for the next run", printable(name))
    for name, why in scan.refused.items():
        log.warning("%s is %s: moved to _rejected/, not landed", printable(name), why)


def _land_one(
    inbox: Inbox, item: InboxFile, store: PipelineStore, run_id: str, names: dict[str, list[str]], result: LandResult
) -> str:
    """Fetch, hash and (unless its content is already there) land one file; return its batch id.

    Raises:
        _ContentChanged: The landing file changed while it was fetched.
    """
    suffix = Path(item.name).suffix
    copy = store.scratch(".incoming") / f".copy-{uuid.uuid4().hex}"
    try:
        inbox.fetch(item, copy)
        digest = sha256_file(copy)
        if not inbox.unchanged(item):
            raise _ContentChanged
        batch_id = batch_id_for(digest)
        faults.point("land.copied")
        if store.has_batch(batch_id):
            result.duplicates[item.name] = batch_id
            return batch_id
        earlier = [b for b in names.get(item.name, []) if b != batch_id]
        record = BatchRecord(
            batch_id=batch_id,
            sha256=digest,
            source_file=item.name,
            source_uri=item.location,
            source_suffix=suffix,
            size_bytes=item.size,
            landed_at=time.time(),
            landed_by_run=run_id,
            status=BatchStatus.LANDED,
            replaces_name_of=earlier,
        )
        if earlier:
            result.replaced_names[batch_id] = earlier
            log.warning(
                "%s was landed before with other content (batch %s): landing the new content as batch %s",
                printable(item.name),
                ", ".join(earlier),
                batch_id,
            )
        with store.stage(store.batch_key(batch_id), BATCH_RECORD) as staging:
            staging.put_file(copy, f"source{suffix}")
            staging.write_bytes(BATCH_RECORD, encode_json(record.model_dump(mode="json")))
            faults.point("land.batch_built")
        faults.point("land.batch_committed")
        names.setdefault(item.name, []).append(batch_id)
        result.new.append(batch_id)
        return batch_id
    finally:
        copy.unlink(missing_ok=True)


def pending_batches(store: PipelineStore) -> list[str]:
    """Landed batches that have no validation outcome yet (oldest first)."""
    return [b for b in store.batch_ids() if store.batch_record(b).status == BatchStatus.LANDED]


def unfinished_batches(store: PipelineStore) -> list[str]:
    """Batches a failed or killed run left half-way: landed but not validated, or accepted but
    not announced (oldest first). The next ingest run finishes them."""
    out = []
    for batch_id in store.batch_ids():
        record = store.batch_record(batch_id)
        if record.status == BatchStatus.LANDED or (record.status == BatchStatus.ACCEPTED and not record.published):
            out.append(batch_id)
    return out
