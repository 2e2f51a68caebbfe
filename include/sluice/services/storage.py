"""One interface for all of a pipeline's state: batches, reports, feature tables, run and
decision records, deploy records.

Everything that reads or writes pipeline state (steps, the DAG renderer's sensors, the CLI,
the reports plugin, alerts) goes through a :class:`PipelineStore`, built once per pipeline
from the spec by :func:`open_store`. Names inside a pipeline are ``/``-separated *keys*
(``batches/<id>/batch.json``); a backend maps them to where the bytes live. No ``Path`` of
pipeline state crosses this interface: engines that read or write files themselves
(pandas, pyarrow, Spark) get a *location* string (a local path or a URI).

The key layout is :class:`~sluice.services.store_layout.StoreLayout` (``store.keys``); the
batch records are :class:`~sluice.services.batch_store.BatchStore` (``store.batches``); file
formats are readers over the bytes (``store.json``, ``store.parquet``,
:mod:`sluice.services.store_formats`). The backend itself only moves bytes.

Guarantees every backend keeps:

- :meth:`StorageBackend.write_bytes` (and so ``store.json.write``) is atomic per
  key: a reader sees the old content or the new, never a torn one.
- :meth:`StorageBackend.stage` builds a folder that readers see whole or not at all: the
  local backend builds it under a temporary name and renames it; an object store writes
  every file first and the folder's commit marker last (readers go by the marker).
"""

from __future__ import annotations

import hashlib
import tempfile
from collections.abc import Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, ClassVar, Protocol, runtime_checkable

from sluice.services.batch_store import BatchStore
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
from sluice.services.store_formats import CHUNK_ROWS, JsonFiles, ParquetFiles, encode_json
from sluice.services.store_layout import BATCH_RECORD, FEATURES_META, StoreLayout, join, safe_name

if TYPE_CHECKING:
    from fsspec import AbstractFileSystem

    from sluice.spec.loader import LoadedSpec

__all__ = [
    "BATCH_RECORD",
    "CHUNK_ROWS",
    "FEATURES_META",
    "STALE_AFTER_SECONDS",
    "LocalBackend",
    "PipelineStore",
    "Staging",
    "StorageBackend",
    "StorageUnavailable",
    "atomic_dir",
    "backend_for",
    "clean_stale_temporaries",
    "encode_json",
    "join",
    "open_store",
    "read_json",
    "safe_name",
    "sha256_file",
    "write_json_atomic",
]


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
    """Where one pipeline's keys live, as bytes. Keys are relative to the pipeline's folder.

    Bytes and streams only: what the bytes mean (JSON, parquet) is for the readers of
    :mod:`sluice.services.store_formats`, where a key is (its layout) for
    :class:`~sluice.services.store_layout.StoreLayout`.
    """

    def location(self, key: str) -> str:
        """Where ``key`` is: what messages show and what pandas, pyarrow or Spark open (a path or a URI)."""
        ...

    def filesystem(self, key: str) -> tuple[AbstractFileSystem, str]:
        """An fsspec filesystem and ``key``'s path on it, for engines that open files themselves.

        The filesystem's ``storage_options`` are what another engine needs to open the same
        place (an object store's credentials and endpoint, as Spark's S3A takes them).
        """
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
    """One pipeline's state: its bytes on a :class:`StorageBackend`, its key layout
    (:attr:`keys`), its batch records (:attr:`batches`) and readers of its formats
    (:attr:`json`, :attr:`parquet`).

    ``PipelineStore(root, pipeline)`` opens the backend for ``root`` (a local folder, or a
    ``backend=`` given directly); :func:`open_store` builds it from a spec.
    """

    #: The key layout (pure; also usable on the class: ``PipelineStore.keys.batch(id)``).
    keys: ClassVar[type[StoreLayout]] = StoreLayout

    pipeline: str
    backend: StorageBackend
    #: The batch records (``batches/<id>/batch.json``).
    batches: BatchStore
    #: JSON documents (records, reports).
    json: JsonFiles
    #: Parquet tables (batches, feature tables, holdouts).
    parquet: ParquetFiles

    def __init__(self, root: str | Path | None, pipeline: str, backend: StorageBackend | None = None) -> None:
        if backend is None:
            if root is None:
                raise ValueError("PipelineStore needs a root or a backend")
            backend = backend_for(root, pipeline)
        object.__setattr__(self, "pipeline", pipeline)
        object.__setattr__(self, "backend", backend)
        object.__setattr__(self, "batches", BatchStore(backend))
        object.__setattr__(self, "json", JsonFiles(backend))
        object.__setattr__(self, "parquet", ParquetFiles(backend))

    def location(self, key: str = "") -> str:
        """Where ``key`` is: for messages, and what an engine opens to read or write it."""
        return self.backend.location(key)

    def filesystem_options(self) -> dict[str, Any]:
        """What an engine needs besides :meth:`location` to open it (an object store's
        credentials and endpoint); empty for a local folder."""
        fs, _ = self.backend.filesystem("")
        return dict(fs.storage_options)

    def key_of(self, location: str) -> str:
        """The key of a location this store handed out (a record keeps locations, readers need keys).

        Raises:
            ValueError: When ``location`` is not inside this pipeline's storage.
        """
        base = self.location("").rstrip("/") + "/"
        key = location[len(base) :]
        if not location.startswith(base) or ".." in key.split("/"):
            raise ValueError(f"{location} is not inside the pipeline's storage {base}")
        return key

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

    # --- upkeep ---------------------------------------------------------------------------

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

    def local_path(self, key: str) -> Path | None:
        """The file or folder of ``key`` on this machine, or None when the store is an object store."""
        fs, path = self.backend.filesystem(key)
        protocols = (fs.protocol,) if isinstance(fs.protocol, str) else tuple(fs.protocol)
        return Path(path) if "file" in protocols else None

    def scratch(self, name: str) -> Path:
        """A local working folder on this machine, created (never pipeline state others read).

        On a local store it is ``<pipeline folder>/<name>``, on the same filesystem as the
        state, so a finished file moves in by a rename; on an object store it is under the
        system's temporary folder, one per pipeline location.
        """
        root = self.local_path("")
        if root is not None:
            folder = root / name
        else:
            digest = hashlib.sha256(self.location("").encode()).hexdigest()[:12]
            folder = Path(tempfile.gettempdir()) / "sluice-scratch" / digest / name
        folder.mkdir(parents=True, exist_ok=True)
        return folder

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
