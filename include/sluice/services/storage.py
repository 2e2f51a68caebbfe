"""Where a pipeline keeps its files, and how they are written without half states.

Layout under ``<storage.root>/<pipeline>/``::

    batches/<batch_id>/source.<ext>      the file as it landed (raw zone, immutable)
                      /batch.json        status and lineage of the batch
                      /validation.json   sluice's summary of the checks
                      /gx_result.json    the Great Expectations result, as GX wrote it
                      /clean.parquet     accepted rows (what training reads)
                      /quarantine.parquet rows that failed a row-level check, with the reasons
    features/<key>/features.parquet      output of the feature job for a set of batches
    runs/<airflow run id>/...            per train run: trigger.json, holdout, decision record
    monitor/<airflow run id>/            per monitor run: report.html (Evidently), drift.json
    deploy/current.json                  what is served where (local target)
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file's content."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def write_json_atomic(path: Path, data: Any) -> None:
    """Write JSON so readers see the old file or the new one, never a torn one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True, default=str))
    os.replace(tmp, path)


def read_json(path: Path) -> Any:
    """Read a JSON file written by :func:`write_json_atomic`."""
    return json.loads(path.read_text())


@contextlib.contextmanager
def atomic_dir(final: Path) -> Iterator[Path]:
    """Build a directory under a temporary name and rename it into place when done.

    A crash leaves only a ``.tmp-*`` folder, which readers ignore; if ``final`` appeared
    meanwhile (a concurrent writer of the same content), the new copy is discarded.
    """
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.parent / f".tmp-{final.name}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        yield tmp
        try:
            os.rename(tmp, final)
        except OSError:
            if not final.exists():
                raise
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


#: A temporary older than this belongs to a dead writer: every task's time limit is shorter.
STALE_AFTER_SECONDS = 24 * 3600


def _is_temporary(path: Path) -> bool:
    """What the writers here leave while they work: ``.tmp-*`` folders, ``.*.tmp`` files,
    and the scratch copies in ``.incoming/``."""
    name = path.name
    if path.parent.name == ".incoming" and name.startswith("."):
        return True
    return (name.startswith(".tmp-") and path.is_dir()) or (name.startswith(".") and name.endswith(".tmp"))


def clean_stale_temporaries(base: Path, older_than: float = STALE_AFTER_SECONDS) -> list[Path]:
    """Remove temporaries under ``base`` that no live writer can own any more.

    A writer killed mid-way (``kill -9``, a lost worker) leaves its temporary behind: nothing
    reads it, but it holds disk (a land of a 1M-row file: ~17 MB). Only temporaries whose
    last change is older than ``older_than`` seconds go; committed files are never touched.

    Returns:
        What was removed.
    """
    import time

    if not base.is_dir():
        return []
    cutoff = time.time() - older_than
    removed = []
    for path in sorted(base.rglob(".*")):
        try:
            if not _is_temporary(path) or path.lstat().st_mtime >= cutoff:
                continue
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink()
        except FileNotFoundError:
            continue  # inside a folder removed just before
        removed.append(path)
    return removed


class StorageUnavailable(OSError):
    """The pipeline's storage cannot be written; the message names it and the fix."""


def safe_name(text: str) -> str:
    """Make an Airflow run id (with ':' and '+') safe as a folder name."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text)


@dataclass(frozen=True)
class PipelineStore:
    """Paths of one pipeline's files."""

    root: Path
    pipeline: str

    @property
    def base(self) -> Path:
        """``<root>/<pipeline>``."""
        return self.root / self.pipeline

    def check_writable(self) -> None:
        """Create and remove a small file under :attr:`base`, so a step fails before its first write.

        Root ignores permission bits, so only a real write tells: a read-only mount, a full
        disk, a lost network share or missing permissions all fail here with one message.

        Raises:
            StorageUnavailable: With the path, the system's reason and the fix (an ``OSError``
                with the same errno).
        """
        probe = self.base / f".write-check-{uuid.uuid4().hex}.tmp"
        try:
            self.base.mkdir(parents=True, exist_ok=True)
            probe.write_bytes(b"ok")
            probe.unlink()
        except OSError as exc:
            raise StorageUnavailable(
                exc.errno,
                f"the pipeline's storage {self.base} is not writable ({exc.strerror or exc}): "
                "free space, fix its permissions or mount it read-write (check credentials for a network "
                "share), then clear the task; nothing was written",
            ) from exc

    def batch_dir(self, batch_id: str) -> Path:
        """Folder of one batch."""
        return self.base / "batches" / batch_id

    def batch_ids(self) -> list[str]:
        """Ids of every fully landed batch, oldest first."""
        folder = self.base / "batches"
        if not folder.is_dir():
            return []
        found = [p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")]
        found = [p for p in found if (p / "batch.json").exists()]
        return [p.name for p in sorted(found, key=lambda p: (read_json(p / "batch.json")["landed_at"], p.name))]

    def batch_record(self, batch_id: str) -> dict[str, Any]:
        """The ``batch.json`` of a batch."""
        return dict(read_json(self.batch_dir(batch_id) / "batch.json"))

    def update_batch_record(self, batch_id: str, **changes: Any) -> dict[str, Any]:
        """Merge ``changes`` into ``batch.json`` atomically and return the result."""
        record = self.batch_record(batch_id)
        record.update(changes)
        write_json_atomic(self.batch_dir(batch_id) / "batch.json", record)
        return record

    def accepted_batches(self) -> list[dict[str, Any]]:
        """Records of batches whose rows may be used for training, oldest first."""
        records = [self.batch_record(b) for b in self.batch_ids()]
        return [r for r in records if r.get("status") == "accepted"]

    def features_dir(self, key: str) -> Path:
        """Folder of one feature table."""
        return self.base / "features" / key

    def run_dir(self, run_id: str) -> Path:
        """Folder of one train run's files."""
        return self.base / "runs" / safe_name(run_id)

    def monitor_dir(self, run_id: str) -> Path:
        """Folder of one monitor run's drift report and result."""
        return self.base / "monitor" / safe_name(run_id)

    @property
    def deploy_dir(self) -> Path:
        """Folder of local deployment state."""
        return self.base / "deploy"
