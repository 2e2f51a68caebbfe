"""The landing zone ("inbox") new batch files arrive in: a local folder or an S3 prefix.

Both kinds offer the same three operations to the ingest step: list the files waiting,
give a local copy of one to hash and land, and archive it into ``_processed/`` beside
the inbox. Archiving is what empties the inbox; landing is keyed by content hash, so a
file seen twice (a retry after a crash between landing and archiving) lands once.

No Airflow here: the S3 inbox takes a ready boto3 S3 client, which the Airflow layer
makes from the pipeline's connection.
"""

from __future__ import annotations

import contextlib
import glob
import os
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Protocol

PROCESSED = "_processed"


@dataclass(frozen=True)
class InboxFile:
    """One file waiting in the inbox.

    Attributes:
        name: File name without folder (``flights_2013-01.parquet``).
        location: Where it is, for logs and lineage (a path or ``s3://bucket/key``).
        size: Size in bytes.
    """

    name: str
    location: str
    size: int


class Inbox(Protocol):
    """A landing zone the ingest step reads from."""

    def waiting(self) -> list[InboxFile]:
        """Files matching the pattern directly in the inbox, by name."""
        ...

    def local_copy(self, item: InboxFile, scratch: Path) -> contextlib.AbstractContextManager[Path]:
        """A readable local file with ``item``'s content, valid inside the ``with`` block."""
        ...

    def archive(self, item: InboxFile, batch_id: str) -> str:
        """Move ``item`` to ``_processed/`` (idempotent); return where it went."""
        ...


def glob_to_regex(pattern: str) -> str:
    """Regex for a file-name glob where wildcards never cross '/'.

    ``fnmatch`` lets ``*`` match '/', so ``prefix/*.parquet`` would also match
    ``prefix/_processed/x.parquet`` and wake the sensor for archived files forever.
    """
    out, i = [], 0
    while i < len(pattern):
        c = pattern[i]
        if c == "*":
            out.append("[^/]*")
        elif c == "?":
            out.append("[^/]")
        elif c == "[" and (end := pattern.find("]", i + 2 if pattern[i + 1 : i + 2] in ("!", "]") else i + 1)) > i:
            body = pattern[i + 1 : end]
            body = "^" + body[1:] if body.startswith("!") else body
            out.append("[" + body.replace("\\", "\\\\") + "]")
            i = end
        else:
            out.append(re.escape(c))
        i += 1
    return "".join(out)


def key_regex(prefix: str, pattern: str) -> str:
    """Anchored regex for S3 keys of ``pattern`` directly under ``prefix`` (no sub-folders)."""
    folder = f"{prefix.strip('/')}/" if prefix.strip("/") else ""
    return "^" + re.escape(folder) + glob_to_regex(pattern) + r"\Z"


def _archive_name(name: str, batch_id: str) -> str:
    """Name used when ``_processed/<name>`` is already taken by other content."""
    p = PurePosixPath(name)
    return f"{p.stem}.{batch_id}{p.suffix}"


class LocalInbox:
    """A folder on the local filesystem."""

    def __init__(self, folder: Path, pattern: str) -> None:
        """Files matching ``pattern`` in ``folder``."""
        self.folder = Path(folder)
        self.pattern = pattern

    def waiting(self) -> list[InboxFile]:
        """Regular files matching the pattern, by name."""
        found = [Path(p) for p in glob.glob(str(self.folder / self.pattern))]
        return [InboxFile(p.name, str(p), p.stat().st_size) for p in sorted(found) if p.is_file()]

    @contextlib.contextmanager
    def local_copy(self, item: InboxFile, scratch: Path) -> Iterator[Path]:
        """The file itself: it is already local."""
        yield Path(item.location)

    def archive(self, item: InboxFile, batch_id: str) -> str:
        """Rename into ``_processed/`` (atomic on one filesystem)."""
        path = Path(item.location)
        target = path.parent / PROCESSED / path.name
        target.parent.mkdir(exist_ok=True)
        if target.exists():
            target = target.with_name(_archive_name(path.name, batch_id))
        os.replace(path, target)
        return str(target)


class S3Inbox:
    """A prefix in an S3 (or S3-compatible) bucket, read with a boto3 S3 client."""

    def __init__(self, client: Any, bucket: str, prefix: str, pattern: str) -> None:
        """Objects matching ``pattern`` directly under ``s3://bucket/prefix/``.

        Args:
            client: A boto3 S3 client (endpoint and credentials already set).
            bucket: Bucket name.
            prefix: Folder inside the bucket ("" for the bucket root).
            pattern: File-name glob.
        """
        self.client = client
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.pattern = pattern
        self._match = re.compile(key_regex(self.prefix, pattern))

    def _key(self, name: str, *folders: str) -> str:
        return "/".join(p for p in (self.prefix, *folders, name) if p)

    def _uri(self, key: str) -> str:
        return f"s3://{self.bucket}/{key}"

    def waiting(self) -> list[InboxFile]:
        """Objects matching the pattern directly under the prefix, by key."""
        folder = f"{self.prefix}/" if self.prefix else ""
        found = []
        # Delimiter '/' keeps _processed/ and other sub-folders out of the listing.
        pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=folder, Delimiter="/")
        for page in pages:
            for obj in page.get("Contents", []):
                if self._match.match(obj["Key"]):
                    name = obj["Key"].rsplit("/", 1)[-1]
                    found.append(InboxFile(name, self._uri(obj["Key"]), int(obj["Size"])))
        return sorted(found, key=lambda f: f.name)

    @contextlib.contextmanager
    def local_copy(self, item: InboxFile, scratch: Path) -> Iterator[Path]:
        """Download to a temporary file under ``scratch``; removed afterwards."""
        scratch.mkdir(parents=True, exist_ok=True)
        tmp = scratch / f".download-{uuid.uuid4().hex}{PurePosixPath(item.name).suffix}"
        try:
            self.client.download_file(self.bucket, self._key(item.name), str(tmp))
            yield tmp
        finally:
            tmp.unlink(missing_ok=True)

    def _etag(self, key: str) -> str | None:
        from botocore.exceptions import ClientError

        try:
            return str(self.client.head_object(Bucket=self.bucket, Key=key)["ETag"])
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in {"404", "NoSuchKey", "NotFound"}:
                return None
            raise

    def archive(self, item: InboxFile, batch_id: str) -> str:
        """Copy to ``_processed/`` then delete the original (S3 has no rename).

        A crash between copy and delete leaves both; the next run lands nothing new
        (same content hash), finds the same object already archived and only deletes
        the original, so the retry is safe.
        """
        source = self._key(item.name)
        target = self._key(item.name, PROCESSED)
        archived = self._etag(target)
        if archived is not None and archived != self._etag(source):
            # The name was used before for other content: keep both, this one under a content-derived name.
            target = self._key(_archive_name(item.name, batch_id), PROCESSED)
            archived = self._etag(target)
        if archived is None:
            self.client.copy_object(Bucket=self.bucket, Key=target, CopySource={"Bucket": self.bucket, "Key": source})
        self.client.delete_object(Bucket=self.bucket, Key=source)
        return self._uri(target)
