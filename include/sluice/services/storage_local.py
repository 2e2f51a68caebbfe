"""The local-filesystem storage backend, and the atomic-write helpers it rests on.

Keys map to paths under ``<storage.root>/<pipeline>/``. A file is replaced by writing a
hidden temporary beside it and renaming it over (``os.replace``); a folder is built under a
``.tmp-*`` name and renamed into place. Readers ignore hidden names, so a writer killed at
any point leaves nothing a reader trusts.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

if TYPE_CHECKING:
    from fsspec import AbstractFileSystem


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


def clean_stale_temporaries(base: Path, older_than: float = STALE_AFTER_SECONDS, deep: bool = True) -> list[Path]:
    """Remove temporaries under ``base`` that no live writer can own any more.

    A writer killed mid-way (``kill -9``, a lost worker) leaves its temporary behind: nothing
    reads it, but it holds disk (a land of a 1M-row file: ~17 MB). Only temporaries whose
    last change is older than ``older_than`` seconds go; committed files are never touched.

    Args:
        base: The folder to clean.
        older_than: Age in seconds a temporary must have to go (0: every one, for a step
            that is the only writer below ``base`` and cleans up after its killed predecessor).
        deep: Also look inside sub-folders (False: only ``base``'s own entries).

    Returns:
        What was removed.
    """
    import time

    if not base.is_dir():
        return []
    cutoff = time.time() - older_than
    removed = []
    for path in sorted(base.rglob(".*") if deep else base.glob(".*")):
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


class _LocalStaging:
    """A folder being built under a ``.tmp-*`` name (see :meth:`LocalBackend.stage`)."""

    def __init__(self, tmp: Path) -> None:
        self._tmp = tmp

    @property
    def location(self) -> str:
        """The temporary folder's path."""
        return str(self._tmp)

    def write_bytes(self, name: str, data: bytes) -> None:
        """Write one file of the folder."""
        target = self._tmp / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)

    def put_file(self, local: Path, name: str) -> None:
        """Move ``local`` into the folder."""
        target = self._tmp / name
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(local, target)


class LocalBackend:
    """A pipeline's keys as files under one local folder (``<storage.root>/<pipeline>``)."""

    def __init__(self, base: Path) -> None:
        self.base = Path(base)

    def __repr__(self) -> str:
        return f"LocalBackend({str(self.base)!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, LocalBackend) and other.base == self.base

    def __hash__(self) -> int:
        return hash(self.base)

    def _path(self, key: str) -> Path:
        if key.startswith("/") or ".." in key.split("/"):
            raise ValueError(f"not a key inside the pipeline's storage: {key!r}")
        return self.base / key if key else self.base

    def location(self, key: str) -> str:
        """The path of ``key`` (what messages show and pandas, pyarrow and Spark open)."""
        return str(self._path(key))

    def filesystem(self, key: str) -> tuple[AbstractFileSystem, str]:
        """fsspec's local filesystem and the path of ``key``."""
        from fsspec.implementations.local import LocalFileSystem

        return LocalFileSystem(), str(self._path(key))

    def exists(self, key: str) -> bool:
        """Whether ``key`` is a file or folder."""
        return self._path(key).exists()

    def is_folder(self, key: str) -> bool:
        """Whether ``key`` is a folder."""
        return self._path(key).is_dir()

    def ls(self, prefix: str) -> list[str]:
        """Names under ``prefix``; folders end with ``/``; hidden names left out."""
        folder = self._path(prefix)
        if not folder.is_dir():
            return []
        names = [p.name + ("/" if p.is_dir() else "") for p in folder.iterdir() if not p.name.startswith(".")]
        return sorted(names)

    def read_bytes(self, key: str) -> bytes:
        """The content of ``key``."""
        return self._path(key).read_bytes()

    def write_bytes(self, key: str, data: bytes) -> None:
        """Replace ``key`` atomically (temporary file, then ``os.replace``)."""
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
        tmp.write_bytes(data)
        os.replace(tmp, path)

    def open_read(self, key: str) -> BinaryIO:
        """The file of ``key``, open for reading."""
        return self._path(key).open("rb")

    @contextlib.contextmanager
    def open_write(self, key: str) -> Iterator[BinaryIO]:
        """A hidden temporary beside ``key``, renamed over it when the block ends cleanly."""
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
        try:
            with tmp.open("wb") as fh:
                yield fh
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)

    def size(self, key: str) -> int:
        """Size of the file in bytes."""
        return self._path(key).stat().st_size

    def put_file(self, local: Path, key: str) -> None:
        """Move a finished local file to ``key`` (a rename when on the same filesystem)."""
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.replace(local, path)
        except OSError:
            tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
            shutil.copyfile(local, tmp)
            os.replace(tmp, path)
            local.unlink()

    def modified(self, key: str) -> float | None:
        """mtime of ``key``, or ``None``."""
        try:
            return self._path(key).stat().st_mtime
        except FileNotFoundError:
            return None

    def remove(self, key: str) -> None:
        """Delete a file or a folder tree; absent is fine."""
        path = self._path(key)
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)

    @contextlib.contextmanager
    def stage(self, key: str, marker: str) -> Iterator[_LocalStaging]:
        """Build folder ``key`` under a temporary name and rename it into place on success.

        ``marker`` is not needed here (the rename is the commit) but is what an object store
        writes last.
        """
        with atomic_dir(self._path(key)) as tmp:
            yield _LocalStaging(tmp)

    def check_writable(self) -> None:
        """Create and remove a small file, so a step fails before its first write.

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

    def clean_stale(self, older_than: float = STALE_AFTER_SECONDS, under: str = "", deep: bool = True) -> list[str]:
        """Remove temporaries of dead writers below key ``under`` (see :func:`clean_stale_temporaries`)."""
        return [str(p) for p in clean_stale_temporaries(self._path(under) if under else self.base, older_than, deep)]
