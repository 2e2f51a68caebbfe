"""Land new files into the raw zone, keyed by content hash."""

from __future__ import annotations

import logging
import time
import uuid
from pathlib import Path
from typing import Any

from sluice.services import faults
from sluice.services.landing import HIDDEN, PROCESSED, Inbox, InboxFile, LocalInbox, Scan, printable
from sluice.services.storage import BATCH_RECORD, PipelineStore, encode_json, sha256_file
from sluice.steps.records import BatchRecord, BatchStatus, LandResult

__all__ = [
    "PROCESSED",
    "LandResult",
    "archive_watch",
    "batch_id_for",
    "clean_killed_land",
    "known_hidden",
    "land_new_files",
    "pending_batches",
    "refused_inputs",
    "rejected_duplicate_message",
    "revalidate",
    "unfinished_batches",
]

log = logging.getLogger(__name__)

#: Archived landing files still watched for changes (``{path: {batch, version, at}}``).
WATCHED = "archived.json"
#: Inputs refused, newest last (``[{name, why, version, at, run}]``).
REFUSED = "refused.json"
#: How long an archived landing file is watched for a writer that finishes it late.
WATCH_SECONDS = 7 * 24 * 3600.0
#: Refused inputs kept in ``refused.json`` (the oldest are dropped beyond this).
REFUSED_KEPT = 200


class _ContentChanged(Exception):
    """The landing file changed between listing and the end of its copy."""


def batch_id_for(sha256: str) -> str:
    """Batch id: the first 16 hex digits of the content hash."""
    return sha256[:16]


def _names_in_use(store: PipelineStore) -> dict[str, list[str]]:
    """``{source file name: [batch ids]}`` of every landed batch."""
    names: dict[str, list[str]] = {}
    for batch_id in store.batches.ids():
        names.setdefault(store.batches.get(batch_id).source_file, []).append(batch_id)
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
        refused=dict(scan.refused),
        held=scan.held,
    )
    _log_scan(scan)
    watch = archive_watch(store)
    changed = _changed_archives(inbox, watch)
    if scan.ready or changed or scan.refused or scan.hidden:
        store.check_writable()  # one clear error before the first write, files left in landing
    _record_refused(store, scan, result, run_id)
    names = _names_in_use(store) if scan.ready or changed else {}
    for item in scan.ready:
        _land_ready(inbox, item, store, run_id, names, result, watch)
    for item in changed:
        _land_changed_archive(inbox, item, store, run_id, names, result, watch)
    result.rejected_again.update(
        {n: b for n, b in result.duplicates.items() if store.batches.get(b).status == BatchStatus.REJECTED}
    )
    _save_watch(store, watch)
    return result


def _land_ready(
    inbox: Inbox,
    item: InboxFile,
    store: PipelineStore,
    run_id: str,
    names: dict[str, list[str]],
    result: LandResult,
    watch: dict[str, dict[str, Any]],
) -> None:
    """Land one settled file and archive it (watched for a late writer where the inbox can be)."""
    try:
        batch_id = _land_one(inbox, item, store, run_id, names, result)
    except _ContentChanged:
        log.warning("%s changed while it was being landed: left for the next run", printable(item.name))
        result.changed.append(item.name)
        return
    archived = inbox.archive(item, batch_id)
    if archived is None:
        log.warning("%s changed after it was hashed: not archived, left for the next run", printable(item.name))
        result.changed.append(item.name)
        return
    result.archived.append(item.name)
    if inbox.watches_archives:
        _watch(store, watch, item, batch_id, archived)


def _watch(store: PipelineStore, watch: dict[str, dict[str, Any]], item: InboxFile, batch_id: str, to: str) -> None:
    """Watch the archived file for a late writer; its batch records where it went (first archive only)."""
    watch[to] = {"batch": batch_id, "version": item.version, "at": time.time()}
    if not store.batches.get(batch_id).archived_to:
        store.batches.update(batch_id, archived_to=to, archived_version=item.version)


def _changed_archives(inbox: Inbox, watch: dict[str, dict[str, Any]]) -> list[InboxFile]:
    """Watched archived files that changed and are complete now; those still held are logged."""
    changed, held = inbox.changed_archives({p: w["version"] for p, w in watch.items()})
    for path, why in held.items():
        log.info("archived %s changed after it was landed but is %s", printable(path), why)
    return changed


def _land_changed_archive(
    inbox: Inbox,
    item: InboxFile,
    store: PipelineStore,
    run_id: str,
    names: dict[str, list[str]],
    result: LandResult,
    watch: dict[str, dict[str, Any]],
) -> None:
    """Land the complete content of an archived file that changed after it was landed.

    The earlier batch (the part that was there when it landed) is marked ``superseded_by``
    the new one, which lands under the same source file name (so ``replaces_name_of``
    names the earlier batch): training reads the complete rows once.
    """
    earlier = str(watch[item.location]["batch"])
    name = store.batches.get(earlier).source_file or item.name
    source = InboxFile(name, item.location, item.size, item.version, item.mtime)
    fresh = LandResult()
    try:
        batch_id = _land_one(inbox, source, store, run_id, names, fresh)
    except _ContentChanged:
        log.warning("archived %s changed again while it was being landed: left for the next run", item.location)
        return
    watch[item.location] = {"batch": batch_id, "version": item.version, "at": time.time()}
    if not fresh.new:  # same content as a batch already landed (e.g. only its mtime changed)
        return
    result.new.extend(fresh.new)
    result.replaced_names.update(fresh.replaced_names)
    result.changed_after_landing[batch_id] = earlier
    store.batches.update(batch_id, archived_to=item.location, archived_version=item.version)
    store.batches.update(earlier, superseded_by=batch_id)
    log.warning(
        "%s changed after it was landed as batch %s and archived (its writer had paused longer than the settle "
        "time): its complete content (%d bytes) lands as batch %s, which supersedes %s",
        item.location,
        earlier,
        item.size,
        batch_id,
        earlier,
    )


def archive_watch(store: PipelineStore) -> dict[str, dict[str, Any]]:
    """``{archived path: {batch, version, at}}`` of archived local files still watched for changes."""
    watched = store.json.read_or_none(store.keys.landing(WATCHED)) or {}
    now = time.time()
    return {p: w for p, w in watched.items() if now - float(w.get("at", 0)) < WATCH_SECONDS}


def _save_watch(store: PipelineStore, watch: dict[str, dict[str, Any]]) -> None:
    before = store.json.read_or_none(store.keys.landing(WATCHED)) or {}
    if watch != before:
        store.json.write(store.keys.landing(WATCHED), watch)


def refused_inputs(store: PipelineStore) -> list[dict[str, Any]]:
    """Inputs refused so far, oldest first: ``{name, why, version, at, run}`` each."""
    return list(store.json.read_or_none(store.keys.landing(REFUSED)) or [])


def known_hidden(store: PipelineStore) -> list[str]:
    """``"<name>/<version>"`` of the dot-named files already reported (each is reported once)."""
    return [f"{r['name']}/{r.get('version', '')}" for r in refused_inputs(store) if r.get("why") == HIDDEN]


def _record_refused(store: PipelineStore, scan: Scan, result: LandResult, run_id: str) -> None:
    """Add the inputs refused for the first time to ``refused.json`` (and to ``result.refused``).

    Folders and symlinks are moved aside as they are refused, so each is seen once; a
    dot-named file stays where it is and is reported once per content (name and version).
    """
    known = refused_inputs(store)
    seen = set(known_hidden(store))
    for name, version in scan.hidden.items():
        if f"{name}/{version}" not in seen:
            result.refused[name] = HIDDEN
            log.warning("%s is %s", printable(name), HIDDEN)
    if not result.refused:
        return
    now = time.time()
    added = [
        {"name": n, "why": why, "version": scan.hidden.get(n, ""), "at": now, "run": run_id}
        for n, why in result.refused.items()
    ]
    store.json.write(store.keys.landing(REFUSED), (known + added)[-REFUSED_KEPT:])


def rejected_duplicate_message(name: str, record: BatchRecord, spec_path: str = "<spec>") -> str:
    """What to say when a file's content is that of a rejected batch: it was rejected, why, and how to re-submit."""
    return (
        f"{printable(name)} has the content of batch {record.batch_id}, which was rejected: {record.reason}. "
        "The same content is never landed twice, so it was not validated again. To re-submit: fix the data "
        "and drop the corrected file (new content lands as a new batch); or, if the data was right and the "
        f"spec was wrong, fix the spec and run `sluice revalidate {spec_path} {record.batch_id}` (the next "
        "ingest run validates that batch again)."
    )


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
    for name, why in scan.held.items():
        log.info("%s is %s: left for the next run", printable(name), why)


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
        if store.batches.has(batch_id):
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
        with store.stage(store.keys.batch(batch_id), BATCH_RECORD) as staging:
            staging.put_file(copy, f"source{suffix}")
            staging.write_bytes(BATCH_RECORD, encode_json(record.model_dump(mode="json")))
            faults.point("land.batch_built")
        faults.point("land.batch_committed")
        names.setdefault(item.name, []).append(batch_id)
        result.new.append(batch_id)
        return batch_id
    finally:
        copy.unlink(missing_ok=True)


#: What validation writes beside a batch's raw copy (removed before it is validated again).
VALIDATION_OUTPUTS = ("validation.json", "gx_result.json", "clean.parquet", "quarantine.parquet")


def revalidate(store: PipelineStore, batch_id: str) -> BatchRecord:
    """Put a rejected batch back to ``landed``, so the next ingest run validates it again.

    For content that was right when the spec was wrong (a declared type, a bound): the same
    content never lands twice, so dropping the file again would do nothing.

    Raises:
        ValueError: No such batch, or it was not rejected.
    """
    if not store.batches.has(batch_id):
        raise ValueError(f"no batch {batch_id} in {store.location()}")
    record = store.batches.get(batch_id)
    if record.status != BatchStatus.REJECTED:
        raise ValueError(f"batch {batch_id} is {record.status}, not rejected: nothing to validate again")
    for name in VALIDATION_OUTPUTS:
        store.remove(store.keys.batch(batch_id, name))
    return store.batches.update(batch_id, status=BatchStatus.LANDED, reason="", rows=0, quarantined=0)


def pending_batches(store: PipelineStore) -> list[str]:
    """Landed batches that have no validation outcome yet (oldest first)."""
    return [b for b in store.batches.ids() if store.batches.get(b).status == BatchStatus.LANDED]


def unfinished_batches(store: PipelineStore) -> list[str]:
    """Batches a failed or killed run left half-way: landed but not validated, or accepted but
    not announced (oldest first). The next ingest run finishes them."""
    out = []
    for batch_id in store.batches.ids():
        record = store.batches.get(batch_id)
        if record.status == BatchStatus.LANDED or (record.status == BatchStatus.ACCEPTED and not record.published):
            out.append(batch_id)
    return out
