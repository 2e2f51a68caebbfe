"""One interface for all of a pipeline's state: batches, reports, feature tables, run and
decision records, deploy records.

Everything that reads or writes pipeline state (steps, the DAG renderer's sensors, the CLI,
the reports plugin, alerts) goes through a :class:`PipelineStore`, built once per pipeline
from the spec by :func:`open_store`. Names inside a pipeline are ``/``-separated *keys*
(``batches/<id>/batch.json``); a backend maps them to where the bytes live. No ``Path`` of
pipeline state crosses this interface: engines that read or write files themselves
(pandas, pyarrow, Spark) get a *location* string (a local path or a URI).

Layout under ``<storage.root>/<pipeline>/``::

    batches/<batch_id>/source.<ext>      the file as it landed (raw zone, immutable)
                      /batch.json        status and lineage of the batch (its commit marker)
                      /validation.json   sluice's summary of the checks
                      /gx_result.json    the Great Expectations result, as GX wrote it
                      /clean.parquet     accepted rows (what training reads)
                      /quarantine.parquet rows that failed a row-level check, with the reasons
    features/<key>/features.parquet      output of a ``scope: history`` feature job (meta.json: its
                                         commit marker); with ``scope: batch`` only meta.json, which
                                         names the per-batch tables below
    feature_cache/<batch_id>/<key>/features.parquet
                                         one batch's features (``scope: batch``), keyed by the batch's
                                         content, the job and its inputs (meta.json: commit marker)
    runs/<airflow run id>/...            per train run: trigger.json, holdout, decision record
    monitor/<airflow run id>/            per monitor run: report.html (Evidently), drift.json
    deploy/current.json                  what is served where (local target)
    schema/pinned.json                   the schema batches are held to when the spec declares no
                                         source.columns (the first accepted batch's; sluice schema-pin)
    landing/archived.json                archived landing files still watched for changes
    landing/refused.json                 inputs refused (folders, symlinks, hidden names), once each

Guarantees every backend keeps:

- :meth:`StorageBackend.write_bytes` (and so :meth:`PipelineStore.write_json`) is atomic per
  key: a reader sees the old content or the new, never a torn one.
- :meth:`StorageBackend.stage` builds a folder that readers see whole or not at all: the
  local backend builds it under a temporary name and renames it; an object store writes
  every file first and the folder's commit marker last (readers go by the marker).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, Protocol, runtime_checkable

from sluice.services.batch_record import BatchRecord, BatchStatus
from sluice.services.storage_local import (
    STALE_AFTER_SECONDS,
    LocalBackend,
    StorageUnavailable,
    atomic_dir,
    clean_stale_temporaries,
    read_json,
    sha256_file,
    write_json_atomic,
)

if TYPE_CHECKING:
    from sluice.spec.loader import LoadedSpec

__all__ = [
    "STALE_AFTER_SECONDS",
    "LocalBackend",
    "PipelineStore",
    "Staging",
    "StorageBackend",
    "StorageUnavailable",
    "atomic_dir",
    "backend_for",
    "clean_stale_temporaries",
    "open_store",
    "read_json",
    "safe_name",
    "sha256_file",
    "write_json_atomic",
]

#: The file whose presence commits a batch folder.
BATCH_RECORD = "batch.json"
#: The file whose presence commits a feature table folder.
FEATURES_META = "meta.json"


def safe_name(text: str) -> str:
    """Make an Airflow run id (with ':' and '+') safe as one key segment."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text)


def join(*parts: str) -> str:
    """Join key segments with ``/`` (empty segments dropped)."""
    return "/".join(p.strip("/") for p in parts if p and p.strip("/"))


@runtime_checkable
class Staging(Protocol):
    """A folder being built by :meth:`StorageBackend.stage`; nothing in it is visible yet."""

    @property
    def location(self) -> str:
        """Where an engine (Spark, pyarrow) may write files of the folder directly."""
        ...

    def write_bytes(self, name: str, data: bytes) -> None:
        """Write one file of the folder."""
        ...

    def put_file(self, local: Path, name: str) -> None:
        """Move (or upload) the local file ``local`` into the folder as ``name``."""
        ...


@runtime_checkable
class StorageBackend(Protocol):
    """Where one pipeline's keys live. Keys are relative to the pipeline's folder."""

    #: The filesystem options (credentials, endpoint) an engine needs to open
    #: :meth:`location` itself, as Spark's S3A does; empty for a local folder.
    options: Mapping[str, Any]

    def describe(self, key: str = "") -> str:
        """Where ``key`` is, for messages and logs (a path or a URI)."""
        ...

    def location(self, key: str) -> str:
        """What pandas, pyarrow or Spark should open to read or write ``key``."""
        ...

    def exists(self, key: str) -> bool:
        """Whether ``key`` is a file or a folder."""
        ...

    def is_folder(self, key: str) -> bool:
        """Whether ``key`` is a folder (has keys below it)."""
        ...

    def ls(self, prefix: str) -> list[str]:
        """Names directly under ``prefix``, sorted; folders end with ``/``; hidden names
        (temporaries) are left out."""
        ...

    def read_bytes(self, key: str) -> bytes:
        """The content of ``key``; ``FileNotFoundError`` when it is not there."""
        ...

    def write_bytes(self, key: str, data: bytes) -> None:
        """Replace ``key`` atomically with ``data``."""
        ...

    def open_read(self, key: str) -> BinaryIO:
        """A binary file object reading ``key`` (close it, or use ``with``)."""
        ...

    def open_write(self, key: str) -> AbstractContextManager[BinaryIO]:
        """A binary file object whose content replaces ``key`` atomically on a clean exit
        (nothing changes when the block raises)."""
        ...

    def size(self, key: str) -> int:
        """Size of ``key`` in bytes; ``FileNotFoundError`` when it is not there."""
        ...

    def read_parquet(self, key: str) -> Any:
        """A pandas DataFrame of the parquet file or folder (Spark's part files) at ``key``."""
        ...

    def parquet_files(self, key: str) -> tuple[Any, list[str]]:
        """The parquet file at ``key``, or every data file of the folder at ``key``, without reading them.

        Returns:
            A pyarrow filesystem and the files' paths on it, sorted, for ``pyarrow.dataset``
            (read footers, columns or row groups one at a time).
        """
        ...

    def put_file(self, local: Path, key: str) -> None:
        """Move (or upload) a finished local file to ``key`` atomically."""
        ...

    def modified(self, key: str) -> float | None:
        """Last change of ``key`` (seconds since the epoch), or ``None`` when absent."""
        ...

    def remove(self, key: str) -> None:
        """Delete ``key`` (a file, or a folder with everything below it); absent is fine."""
        ...

    def stage(self, key: str, marker: str) -> AbstractContextManager[Staging]:
        """Build folder ``key``; on a clean exit it becomes visible as a whole.

        ``marker`` is the file written last (an object store's commit); when ``key`` was
        committed meanwhile by a concurrent writer of the same content, the new copy is
        dropped. On an error nothing becomes visible.
        """
        ...

    def check_writable(self) -> None:
        """Write and delete a probe, so a step fails before its first real write.

        Raises:
            StorageUnavailable: With where, why and the fix.
        """
        ...

    def clean_stale(self, older_than: float = STALE_AFTER_SECONDS, under: str = "", deep: bool = True) -> list[str]:
        """Remove temporaries left by writers killed mid-way below key ``under``; return what went.

        ``deep`` False: only the temporaries directly below ``under``, not inside its folders.
        """
        ...

    def scratch(self, name: str) -> Path:
        """A local working folder on this machine (never pipeline state others read)."""
        ...


#: Schemes served by :class:`~sluice.services.storage_fsspec.FsspecBackend`.
OBJECT_STORE_SCHEMES = ("s3", "memory")


def backend_for(
    root: str | Path, pipeline: str, project_dir: Path | None = None, options: dict[str, Any] | None = None
) -> StorageBackend:
    """The backend for a ``storage.root``: a local folder (relative to the project) or an
    object store URL (``s3://bucket/prefix``).

    Args:
        root: The spec's ``storage.root``.
        pipeline: The pipeline, the folder (or prefix) under the root.
        project_dir: What a relative local root is relative to.
        options: For an object store, the fsspec filesystem's options (credentials,
            ``client_kwargs={"endpoint_url": ...}``), which the Airflow layer reads from the
            spec's connection.

    Raises:
        ValueError: For a root with a scheme no backend serves.
    """
    text = str(root)
    if "://" in text:
        scheme = text.split("://", 1)[0]
        if scheme not in OBJECT_STORE_SCHEMES:
            raise ValueError(f"storage.root {text!r}: no storage backend for {scheme}:// (use a local folder or s3://)")
        from sluice.services.storage_fsspec import FsspecBackend

        extra: dict[str, Any] = {"use_listings_cache": False} if scheme == "s3" else {}
        return FsspecBackend.for_url(join(text, pipeline), **(extra | (options or {})))
    path = Path(text)
    if project_dir is not None and not path.is_absolute():
        path = project_dir / path
    return LocalBackend(path / pipeline)


@dataclass(frozen=True, init=False)
class PipelineStore:
    """One pipeline's state: the key layout above over a :class:`StorageBackend`.

    ``PipelineStore(root, pipeline)`` opens the backend for ``root`` (a local folder, or a
    ``backend=`` given directly); :func:`open_store` builds it from a spec.
    """

    pipeline: str
    backend: StorageBackend

    def __init__(self, root: str | Path | None, pipeline: str, backend: StorageBackend | None = None) -> None:
        if backend is None:
            if root is None:
                raise ValueError("PipelineStore needs a root or a backend")
            backend = backend_for(root, pipeline)
        object.__setattr__(self, "pipeline", pipeline)
        object.__setattr__(self, "backend", backend)

    # --- keys -----------------------------------------------------------------------------

    @staticmethod
    def batch_key(batch_id: str, name: str = "") -> str:
        """Key of a batch's folder, or of ``name`` inside it."""
        return join("batches", batch_id, name)

    @staticmethod
    def features_key(key: str, name: str = "") -> str:
        """Key of a feature table's folder, or of ``name`` inside it."""
        return join("features", key, name)

    @staticmethod
    def feature_cache_key(batch_id: str, key: str = "", name: str = "") -> str:
        """Key of a batch's cached feature tables, of the one with content key ``key``, or of ``name`` in it."""
        return join("feature_cache", batch_id, key, name)

    @staticmethod
    def run_key(run_id: str, name: str = "") -> str:
        """Key of a train run's folder (any Airflow run id), or of ``name`` inside it."""
        return join("runs", safe_name(run_id), name)

    @staticmethod
    def monitor_key(run_id: str, name: str = "") -> str:
        """Key of a monitor run's folder, or of ``name`` inside it."""
        return join("monitor", safe_name(run_id), name)

    @staticmethod
    def landing_key(name: str = "") -> str:
        """Key of the landing bookkeeping (archived files watched, inputs refused)."""
        return join("landing", name)

    @staticmethod
    def schema_key(name: str = "") -> str:
        """Key of the pipeline's schema records (the pinned schema), or of ``name`` inside."""
        return join("schema", name)

    @staticmethod
    def deploy_key(name: str = "") -> str:
        """Key of the deploy records' folder, or of ``name`` inside it."""
        return join("deploy", name)

    # --- access ---------------------------------------------------------------------------

    def describe(self, key: str = "") -> str:
        """Where ``key`` is, for messages."""
        return self.backend.describe(key)

    def location(self, key: str) -> str:
        """What an engine opens to read or write ``key``."""
        return self.backend.location(key)

    @property
    def options(self) -> Mapping[str, Any]:
        """What an engine needs besides :meth:`location` to open it (an object store's
        credentials and endpoint); empty for a local folder."""
        return self.backend.options

    def key_of(self, location: str) -> str:
        """The key of a location this store handed out (a record keeps locations, readers need keys).

        Raises:
            ValueError: When ``location`` is not inside this pipeline's storage.
        """
        base = self.location("").rstrip("/") + "/"
        if not location.startswith(base):
            raise ValueError(f"{location} is not inside the pipeline's storage {base}")
        return location[len(base) :]

    def exists(self, key: str) -> bool:
        """Whether ``key`` exists."""
        return self.backend.exists(key)

    def ls(self, prefix: str) -> list[str]:
        """Names directly under ``prefix`` (folders end with ``/``)."""
        return self.backend.ls(prefix)

    def read_bytes(self, key: str) -> bytes:
        """The bytes of ``key``."""
        return self.backend.read_bytes(key)

    def write_bytes(self, key: str, data: bytes) -> None:
        """Replace ``key`` atomically."""
        self.backend.write_bytes(key, data)

    def open_read(self, key: str) -> BinaryIO:
        """A binary file object reading ``key``."""
        return self.backend.open_read(key)

    def open_write(self, key: str) -> AbstractContextManager[BinaryIO]:
        """A file object whose content replaces ``key`` atomically when the block ends cleanly."""
        return self.backend.open_write(key)

    def size(self, key: str) -> int:
        """Size of ``key`` in bytes."""
        return self.backend.size(key)

    def read_parquet(self, key: str) -> Any:
        """A pandas DataFrame of the parquet file or folder at ``key``."""
        return self.backend.read_parquet(key)

    def parquet_files(self, key: str) -> tuple[Any, list[str]]:
        """A pyarrow filesystem and the sorted data files of the parquet file or folder at ``key``.

        For reading a table piece by piece (its footers, some columns, one row group at a
        time) rather than whole, as :meth:`read_parquet` does.
        """
        return self.backend.parquet_files(key)

    def read_json(self, key: str) -> Any:
        """The JSON document at ``key``."""
        return json.loads(self.backend.read_bytes(key))

    def read_json_or_none(self, key: str) -> Any:
        """The JSON document at ``key``, or ``None`` when there is none."""
        try:
            return self.read_json(key)
        except FileNotFoundError:
            return None

    def write_json(self, key: str, data: Any) -> None:
        """Write a JSON document atomically (readers see the old one or the new one)."""
        self.backend.write_bytes(key, encode_json(data))

    def put_file(self, local: Path, key: str) -> None:
        """Move a finished local file to ``key``."""
        self.backend.put_file(local, key)

    def stage(self, key: str, marker: str) -> AbstractContextManager[Staging]:
        """Build a folder that readers see whole or not at all (see :meth:`StorageBackend.stage`)."""
        return self.backend.stage(key, marker)

    def remove(self, key: str) -> None:
        """Delete ``key`` and everything below it."""
        self.backend.remove(key)

    def modified(self, key: str) -> float | None:
        """Last change of ``key``, or ``None``."""
        return self.backend.modified(key)

    def check_writable(self) -> None:
        """Fail early, with the fix, when the storage cannot be written."""
        self.backend.check_writable()

    def clean_stale(self, older_than: float = STALE_AFTER_SECONDS) -> list[str]:
        """Remove temporaries of dead writers (any step's), once older than any try may run."""
        return self.backend.clean_stale(older_than)

    def clean_own_temporaries(self, under: str, deep: bool = True) -> list[str]:
        """Remove every temporary below key ``under`` now, whatever its age.

        For a step that is the only writer there: every sluice DAG runs one run at a time,
        so what a step finds there at its start is its killed predecessor's (its previous
        try's), and the retry cleans it instead of leaving it to the day-old sweep.
        """
        return self.backend.clean_stale(0.0, under=under, deep=deep)

    def scratch(self, name: str) -> Path:
        """A local working folder (see :meth:`StorageBackend.scratch`)."""
        return self.backend.scratch(name)

    def clear_scratch(self, name: str) -> list[str]:
        """Empty the local working folder ``name`` (a killed try's leftovers); return what went.

        Only for a step that alone uses that folder (see :meth:`clean_own_temporaries`).
        """
        import shutil

        folder = self.scratch(name)
        removed = []
        for path in sorted(folder.iterdir()):
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
            removed.append(str(path))
        return removed

    # --- batches --------------------------------------------------------------------------

    def batch_ids(self) -> list[str]:
        """Ids of every fully landed batch (its ``batch.json`` committed), oldest first."""
        records = []
        for name in self.ls("batches"):
            if not name.endswith("/"):
                continue
            batch_id = name.rstrip("/")
            record = self.read_json_or_none(self.batch_key(batch_id, BATCH_RECORD))
            if record is not None:
                records.append((float(record.get("landed_at", 0.0)), batch_id))
        return [batch_id for _, batch_id in sorted(records)]

    def batch_record(self, batch_id: str) -> BatchRecord:
        """The ``batch.json`` of a batch."""
        return BatchRecord.model_validate(self.read_json(self.batch_key(batch_id, BATCH_RECORD)))

    def has_batch(self, batch_id: str) -> bool:
        """Whether the batch is committed."""
        return self.exists(self.batch_key(batch_id, BATCH_RECORD))

    def write_batch_record(self, record: BatchRecord) -> None:
        """Replace a committed batch's ``batch.json`` atomically."""
        self.write_json(self.batch_key(record.batch_id, BATCH_RECORD), record.model_dump(mode="json"))

    def update_batch_record(self, batch_id: str, **changes: Any) -> BatchRecord:
        """Merge ``changes`` into ``batch.json`` atomically and return the result.

        Raises:
            pydantic.ValidationError: A change names a field the record does not have, or a
                value of the wrong type; nothing is written.
        """
        current = self.batch_record(batch_id).model_dump()
        record = BatchRecord.model_validate(current | changes)
        self.write_batch_record(record)
        return record

    def accepted_batches(self) -> list[BatchRecord]:
        """Records of batches whose rows may be used for training, oldest first."""
        records = [self.batch_record(b) for b in self.batch_ids()]
        # A superseded batch is a first part whose file was finished after landing: the
        # batch that superseded it holds all of its rows again.
        return [r for r in records if r.status == BatchStatus.ACCEPTED and not r.superseded_by]


def encode_json(data: Any) -> bytes:
    """The bytes every JSON record of a pipeline is written as (sorted keys, indented)."""
    return json.dumps(data, indent=2, sort_keys=True, default=str).encode()


def open_store(loaded: LoadedSpec, options: dict[str, Any] | None = None) -> PipelineStore:
    """The pipeline's store, from its spec's ``storage`` section.

    Args:
        loaded: The spec.
        options: An object store's filesystem options (see :func:`backend_for`).

    Raises:
        ValueError: When no backend serves the root (the spec check names it first).
    """
    spec = loaded.spec
    backend = backend_for(spec.storage.root, spec.pipeline, loaded.project_dir, options)
    return PipelineStore(None, spec.pipeline, backend)


def iter_keys(store: PipelineStore, prefix: str) -> Iterator[str]:
    """Every file key under ``prefix``, depth first, sorted."""
    for name in store.ls(prefix):
        key = join(prefix, name)
        if name.endswith("/"):
            yield from iter_keys(store, key)
        else:
            yield key
