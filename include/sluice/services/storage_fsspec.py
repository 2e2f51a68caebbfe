"""The object-store storage backend, over fsspec (``memory://`` here; ``s3://`` through s3fs).

An object store has no rename, so a folder is committed by its marker: :meth:`stage` lets
the writer fill a hidden ``.tmp-*`` prefix, copies every file but the marker to the final
prefix, then writes the marker last. Readers trust a folder only when its marker is there
(a batch by ``batch.json``, a feature table by ``meta.json``), so a writer killed at any
point leaves nothing they trust; a retry writes the same content again. Single objects are
replaced atomically by the store itself.
"""

from __future__ import annotations

import contextlib
import errno
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from sluice.services.storage_local import STALE_AFTER_SECONDS, StorageUnavailable

if TYPE_CHECKING:
    from fsspec import AbstractFileSystem


class _ObjectStaging:
    """Files of a folder being built under a hidden prefix (see :meth:`FsspecBackend.stage`)."""

    def __init__(self, backend: FsspecBackend, prefix: str) -> None:
        self._backend = backend
        self._prefix = prefix

    @property
    def location(self) -> str:
        """URI of the hidden prefix."""
        return self._backend.location(self._prefix)

    def write_bytes(self, name: str, data: bytes) -> None:
        """Write one file of the folder."""
        self._backend.write_bytes(f"{self._prefix}/{name}", data)

    def put_file(self, local: Path, name: str) -> None:
        """Upload ``local`` into the folder (then delete the local file)."""
        self._backend.put_file(local, f"{self._prefix}/{name}")


def _is_temporary(name: str) -> bool:
    return name.startswith(".tmp-") or (name.startswith(".") and name.endswith(".tmp"))


def _mtime(info: dict[str, Any]) -> float | None:
    for field in ("mtime", "LastModified", "created"):
        value = info.get(field)
        if value is None:
            continue
        return float(value.timestamp()) if hasattr(value, "timestamp") else float(value)
    return None


class FsspecBackend:
    """A pipeline's keys as objects under one URL prefix of an fsspec filesystem."""

    def __init__(self, fs: AbstractFileSystem, base: str) -> None:
        self.fs = fs
        self.base = base.rstrip("/")

    @classmethod
    def for_url(cls, url: str, **options: Any) -> FsspecBackend:
        """The backend for ``url`` (``memory://bucket/prefix``, ``s3://bucket/prefix``)."""
        import fsspec

        fs, path = fsspec.core.url_to_fs(url, **options)
        return cls(fs, path)

    def __repr__(self) -> str:
        return f"FsspecBackend({self.location('')!r})"

    def _path(self, key: str) -> str:
        if key.startswith("/") or ".." in key.split("/"):
            raise ValueError(f"not a key inside the pipeline's storage: {key!r}")
        return f"{self.base}/{key}" if key else self.base

    def location(self, key: str) -> str:
        """The URI of ``key`` (what messages show and pandas and pyarrow open through fsspec)."""
        return str(self.fs.unstrip_protocol(self._path(key)))

    def filesystem(self, key: str) -> tuple[AbstractFileSystem, str]:
        """The fsspec filesystem (built with the store's options) and the path of ``key`` on it."""
        return self.fs, self._path(key)

    def exists(self, key: str) -> bool:
        """Whether ``key`` is an object or a prefix with objects."""
        return bool(self.fs.exists(self._path(key)))

    def is_folder(self, key: str) -> bool:
        """Whether ``key`` is a prefix with objects below it."""
        return bool(self.fs.isdir(self._path(key)))

    def ls(self, prefix: str) -> list[str]:
        """Names under ``prefix``; folders end with ``/``; hidden names left out."""
        path = self._path(prefix)
        try:
            entries = self.fs.ls(path, detail=True)
        except FileNotFoundError:
            return []
        names = []
        for entry in entries:
            name = str(entry["name"]).rstrip("/").rsplit("/", 1)[-1]
            if name.startswith(".") or str(entry["name"]).rstrip("/") == path.rstrip("/"):
                continue
            names.append(name + ("/" if entry.get("type") == "directory" else ""))
        return sorted(set(names))

    def read_bytes(self, key: str) -> bytes:
        """The content of ``key``."""
        return bytes(self.fs.cat_file(self._path(key)))

    def write_bytes(self, key: str, data: bytes) -> None:
        """Put one object (the store replaces it atomically)."""
        self.fs.pipe_file(self._path(key), data)

    def open_read(self, key: str) -> BinaryIO:
        """A file object reading the object (ranged reads on an object store)."""
        return self.fs.open(self._path(key), "rb")  # type: ignore[no-any-return]

    @contextlib.contextmanager
    def open_write(self, key: str) -> Iterator[BinaryIO]:
        """A local temporary file, uploaded as ``key`` in one put when the block ends cleanly.

        fsspec's own writable files commit on close even when the block raised, which would
        publish a torn object; a local spool never does.
        """
        with tempfile.NamedTemporaryFile(prefix=".sluice-upload-", suffix=".tmp") as fh:
            yield fh  # type: ignore[misc]
            fh.flush()
            self.fs.put_file(fh.name, self._path(key))

    def size(self, key: str) -> int:
        """Size of the object in bytes."""
        return int(self.fs.size(self._path(key)))

    def put_file(self, local: Path, key: str) -> None:
        """Upload a finished local file, then delete it."""
        self.fs.put_file(str(local), self._path(key))
        local.unlink(missing_ok=True)

    def modified(self, key: str) -> float | None:
        """When ``key`` was last written, or ``None``."""
        try:
            return _mtime(self.fs.info(self._path(key)))
        except FileNotFoundError:
            return None

    def remove(self, key: str) -> None:
        """Delete an object or everything under a prefix; absent is fine."""
        path = self._path(key)
        if self.fs.exists(path):
            self.fs.rm(path, recursive=True)

    @contextlib.contextmanager
    def stage(self, key: str, marker: str) -> Iterator[_ObjectStaging]:
        """Fill a hidden prefix; on success copy it to ``key`` with ``marker`` last.

        When ``key``'s marker already exists (a concurrent writer of the same content
        committed first), the staged copy is dropped and the committed folder is untouched.
        """
        parent, _, name = key.rpartition("/")
        tmp = f"{parent}/.tmp-{name}-{uuid.uuid4().hex[:8]}" if parent else f".tmp-{name}-{uuid.uuid4().hex[:8]}"
        try:
            yield _ObjectStaging(self, tmp)
            if not self.exists(f"{key}/{marker}"):
                self._commit(self._path(tmp), self._path(key), marker)
        finally:
            self.remove(tmp)

    def _commit(self, tmp_path: str, final_path: str, marker: str) -> None:
        marker_path = f"{tmp_path}/{marker}"
        staged = sorted(self.fs.find(tmp_path))
        for source in staged:
            if source != marker_path:
                self.fs.copy(source, final_path + source[len(tmp_path) :])
        if marker_path in staged:  # last: from now on readers trust the folder
            self.fs.copy(marker_path, f"{final_path}/{marker}")

    def check_writable(self) -> None:
        """Put and delete a probe object.

        Raises:
            StorageUnavailable: With the URI, the store's reason and the fix.
        """
        probe = f".write-check-{uuid.uuid4().hex}.tmp"
        try:
            self.write_bytes(probe, b"ok")
            self.remove(probe)
        # Not only OSError: an endpoint that does not answer reaches here as botocore's
        # EndpointConnectionError, which s3fs passes on as it is.
        except Exception as exc:
            reason = str(exc) if isinstance(exc, OSError) else f"{type(exc).__name__}: {exc}"
            raise StorageUnavailable(
                getattr(exc, "errno", None) or errno.EIO,
                f"the pipeline's storage {self.location('')} is not writable ({reason}): check the "
                "bucket, its credentials and that its endpoint answers, then clear the task; nothing was written",
            ) from exc

    def clean_stale(self, older_than: float = STALE_AFTER_SECONDS, under: str = "", deep: bool = True) -> list[str]:
        """Remove ``.tmp-*`` prefixes and ``.*.tmp`` objects below key ``under`` older than ``older_than`` seconds.

        With ``deep`` False only temporaries directly below ``under`` count (not inside its folders).
        """
        cutoff = time.time() - older_than
        removed = []
        top = self._path(under) if under else self.base
        if not self.fs.exists(top):
            return []
        for path, info in sorted(self.fs.find(top, detail=True).items()):
            rel = path[len(self.base) + 1 :]
            parts = path[len(top) + 1 :].split("/")
            if not any(
                part.startswith(".tmp-") or (part.startswith(".") and part.endswith(".tmp"))
                for part in (parts if deep else parts[:1])
            ):
                continue
            stamp = _mtime(info)
            if stamp is not None and stamp < cutoff:
                self.fs.rm(path)
                removed.append(self.location(rel))
        return removed
