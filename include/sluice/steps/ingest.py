"""Land new files into the raw zone, keyed by content hash."""

from __future__ import annotations

import logging
import os
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path

from sluice.services import faults
from sluice.services.landing import PROCESSED, Inbox, LocalInbox, printable
from sluice.services.storage import PipelineStore, atomic_dir, sha256_file, write_json_atomic

__all__ = ["PROCESSED", "LandResult", "batch_id_for", "land_new_files", "pending_batches", "unfinished_batches"]

log = logging.getLogger(__name__)


@dataclass
class LandResult:
    """What one landing pass did.

    Attributes:
        new: Ids of batches landed by this pass.
        duplicates: ``{file name: batch id}`` for files whose content was already landed.
        archived: Landing files moved to ``_processed/``.
        ignored: Hidden or temporary names in the landing folder (never landed).
        unsettled: Files still being written (size or mtime changed during the settle time).
        waiting_for_marker: Files whose completion marker is not there yet.
        changed: Files whose content changed while being landed: left for the next run.
        refused: ``{name: why}``: matching folders and symlinks, moved to ``_rejected/``.
        replaced_names: ``{new batch id: [earlier batch ids]}`` for a name reused with new content.
    """

    new: list[str] = field(default_factory=list)
    duplicates: dict[str, str] = field(default_factory=dict)
    archived: list[str] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)
    unsettled: list[str] = field(default_factory=list)
    waiting_for_marker: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    refused: dict[str, str] = field(default_factory=dict)
    replaced_names: dict[str, list[str]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, object]:
        """JSON-able form (for XCom)."""
        return asdict(self)


class _ContentChanged(Exception):
    """The landing file changed between listing and the end of its copy."""


def batch_id_for(sha256: str) -> str:
    """Batch id: the first 16 hex digits of the content hash."""
    return sha256[:16]


def _names_in_use(store: PipelineStore) -> dict[str, list[str]]:
    """``{source file name: [batch ids]}`` of every landed batch."""
    names: dict[str, list[str]] = {}
    for batch_id in store.batch_ids():
        names.setdefault(str(store.batch_record(batch_id).get("source_file", "")), []).append(batch_id)
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
    scan = inbox.scan()
    result = LandResult(
        ignored=scan.ignored,
        unsettled=scan.unsettled,
        waiting_for_marker=scan.waiting_for_marker,
        refused=scan.refused,
    )
    if scan.ignored:
        shown = ", ".join(printable(n) for n in scan.ignored[:5]) + (", ..." if len(scan.ignored) > 5 else "")
        log.info("ignored %d hidden or temporary file(s) in the landing folder: %s", len(scan.ignored), shown)
    for name in scan.unsettled:
        log.info("%s is still being written (size or mtime changed): left for the next run", printable(name))
    for name in scan.waiting_for_marker:
        log.info("%s has no completion marker yet: left for the next run", printable(name))
    for name, why in scan.refused.items():
        log.warning("%s is %s: moved to _rejected/, not landed", printable(name), why)
    if scan.ready:
        store.check_writable()  # one clear error before the first write, files left in landing
    names = _names_in_use(store) if scan.ready else {}
    scratch = store.base / ".incoming"
    for item in scan.ready:
        suffix = Path(item.name).suffix
        scratch.mkdir(parents=True, exist_ok=True)
        copy = scratch / f".copy-{uuid.uuid4().hex}"
        try:
            inbox.fetch(item, copy)
            digest = sha256_file(copy)
            if not inbox.unchanged(item):
                raise _ContentChanged
            batch_id = batch_id_for(digest)
            faults.point("land.copied")
            final = store.batch_dir(batch_id)
            if (final / "batch.json").exists():
                result.duplicates[item.name] = batch_id
            else:
                record: dict[str, object] = {
                    "batch_id": batch_id,
                    "sha256": digest,
                    "source_file": item.name,
                    "source_uri": item.location,
                    "source_suffix": suffix,
                    "size_bytes": item.size,
                    "landed_at": time.time(),
                    "landed_by_run": run_id,
                    "status": "landed",
                }
                earlier = [b for b in names.get(item.name, []) if b != batch_id]
                if earlier:
                    record["replaces_name_of"] = earlier
                    result.replaced_names[batch_id] = earlier
                    log.warning(
                        "%s was landed before with other content (batch %s): landing the new content as batch %s",
                        printable(item.name),
                        ", ".join(earlier),
                        batch_id,
                    )
                with atomic_dir(final) as tmp:
                    os.replace(copy, tmp / f"source{suffix}")
                    write_json_atomic(tmp / "batch.json", record)
                    faults.point("land.batch_built")
                faults.point("land.batch_committed")
                names.setdefault(item.name, []).append(batch_id)
                result.new.append(batch_id)
        except _ContentChanged:
            log.warning("%s changed while it was being landed: left for the next run", printable(item.name))
            result.changed.append(item.name)
            continue
        finally:
            copy.unlink(missing_ok=True)
        if inbox.archive(item, batch_id) is None:
            log.warning("%s changed after it was hashed: not archived, left for the next run", printable(item.name))
            result.changed.append(item.name)
        else:
            result.archived.append(item.name)
    return result


def pending_batches(store: PipelineStore) -> list[str]:
    """Landed batches that have no validation outcome yet (oldest first)."""
    return [b for b in store.batch_ids() if store.batch_record(b).get("status") == "landed"]


def unfinished_batches(store: PipelineStore) -> list[str]:
    """Batches a failed or killed run left half-way: landed but not validated, or accepted but
    not announced (oldest first). The next ingest run finishes them."""
    out = []
    for batch_id in store.batch_ids():
        record = store.batch_record(batch_id)
        status = record.get("status")
        if status == "landed" or (status == "accepted" and not record.get("published")):
            out.append(batch_id)
    return out
