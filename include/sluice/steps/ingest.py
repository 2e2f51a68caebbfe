"""Land new files into the raw zone, keyed by content hash."""

from __future__ import annotations

import glob
import os
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from sluice.services.storage import PipelineStore, atomic_dir, sha256_file, write_json_atomic

PROCESSED = "_processed"


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


def land_new_files(landing_glob: str, store: PipelineStore, run_id: str) -> LandResult:
    """Copy every file matching ``landing_glob`` into the raw zone, then archive it.

    The copy is built in a temporary folder and renamed into place, so a crash leaves no
    half batch. A file whose content is already in the raw zone lands nothing (same
    content, same batch id) and is only archived, so re-ingesting is a no-op.

    Args:
        landing_glob: Absolute glob of batch files (``.../landing/flights/*.parquet``).
        store: The pipeline's storage.
        run_id: Airflow run id, recorded as lineage.

    Returns:
        What was landed, skipped and archived.
    """
    result = LandResult()
    for name in sorted(glob.glob(landing_glob)):
        path = Path(name)
        if not path.is_file():
            continue
        digest = sha256_file(path)
        batch_id = batch_id_for(digest)
        final = store.batch_dir(batch_id)
        if (final / "batch.json").exists():
            result.duplicates[path.name] = batch_id
        else:
            with atomic_dir(final) as tmp:
                shutil.copy2(path, tmp / f"source{path.suffix}")
                write_json_atomic(
                    tmp / "batch.json",
                    {
                        "batch_id": batch_id,
                        "sha256": digest,
                        "source_file": path.name,
                        "source_suffix": path.suffix,
                        "size_bytes": path.stat().st_size,
                        "landed_at": time.time(),
                        "landed_by_run": run_id,
                        "status": "landed",
                    },
                )
            result.new.append(batch_id)
        archive = path.parent / PROCESSED / path.name
        archive.parent.mkdir(exist_ok=True)
        if archive.exists():
            archive = archive.with_name(f"{path.stem}.{batch_id}{path.suffix}")
        os.replace(path, archive)
        result.archived.append(path.name)
    return result


def pending_batches(store: PipelineStore) -> list[str]:
    """Landed batches that have no validation outcome yet (oldest first)."""
    return [b for b in store.batch_ids() if store.batch_record(b).get("status") == "landed"]
