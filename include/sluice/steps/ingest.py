"""Land new files into the raw zone, keyed by content hash."""

from __future__ import annotations

import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from sluice.services.landing import PROCESSED, Inbox, LocalInbox
from sluice.services.storage import PipelineStore, atomic_dir, sha256_file, write_json_atomic

__all__ = ["PROCESSED", "LandResult", "batch_id_for", "land_new_files", "pending_batches"]


@dataclass
class LandResult:
    """What one landing pass did.

    Attributes:
        new: Ids of batches landed by this pass.
        duplicates: ``{file name: batch id}`` for files whose content was already landed.
        archived: Landing files moved to ``_processed/``.
    """

    new: list[str] = field(default_factory=list)
    duplicates: dict[str, str] = field(default_factory=dict)
    archived: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, object]:
        """JSON-able form (for XCom)."""
        return asdict(self)


def batch_id_for(sha256: str) -> str:
    """Batch id: the first 16 hex digits of the content hash."""
    return sha256[:16]


def land_new_files(inbox: Inbox | str, store: PipelineStore, run_id: str) -> LandResult:
    """Copy every file waiting in ``inbox`` into the raw zone, then archive it.

    The copy is built in a temporary folder and renamed into place, so a crash leaves no
    half batch. A file whose content is already in the raw zone lands nothing (same
    content, same batch id) and is only archived, so re-ingesting is a no-op, and so is a
    retry after a crash between landing and archiving.

    Args:
        inbox: The landing zone (local folder or S3 prefix); a string is read as the
            absolute glob of a local folder (``.../landing/flights/*.parquet``).
        store: The pipeline's storage.
        run_id: Airflow run id, recorded as lineage.

    Returns:
        What was landed, skipped and archived.
    """
    if isinstance(inbox, str):
        inbox = LocalInbox(Path(inbox).parent, Path(inbox).name)
    result = LandResult()
    for item in inbox.waiting():
        suffix = Path(item.name).suffix
        with inbox.local_copy(item, store.base / ".incoming") as path:
            digest = sha256_file(path)
            batch_id = batch_id_for(digest)
            final = store.batch_dir(batch_id)
            if (final / "batch.json").exists():
                result.duplicates[item.name] = batch_id
            else:
                with atomic_dir(final) as tmp:
                    shutil.copy2(path, tmp / f"source{suffix}")
                    write_json_atomic(
                        tmp / "batch.json",
                        {
                            "batch_id": batch_id,
                            "sha256": digest,
                            "source_file": item.name,
                            "source_uri": item.location,
                            "source_suffix": suffix,
                            "size_bytes": item.size,
                            "landed_at": time.time(),
                            "landed_by_run": run_id,
                            "status": "landed",
                        },
                    )
                result.new.append(batch_id)
        inbox.archive(item, batch_id)
        result.archived.append(item.name)
    return result


def pending_batches(store: PipelineStore) -> list[str]:
    """Landed batches that have no validation outcome yet (oldest first)."""
    return [b for b in store.batch_ids() if store.batch_record(b).get("status") == "landed"]
