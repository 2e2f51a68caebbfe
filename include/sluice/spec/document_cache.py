"""Spec readings cached beside each spec, as Python caches a module's bytecode beside it.

The DAG processor parses the DAG file again every ``min_file_process_interval``, in a fresh
process, and reading 100 unchanged specs' YAML was most of what sluice added to that parse
(``bench/parse.py``); a hand-written DAG file gets the same from its ``.pyc``. An entry holds
what :func:`sluice.spec.yaml_reader.read_document` made of the spec's exact bytes (the data and
each key's line and column), in ``__pycache__/<spec file name>.sluice`` beside the spec, keyed
by a hash of those bytes and of the reader's own source: an edited spec or an upgraded reader
misses. A missing, stale, torn or unreadable entry is a miss, never an error. A write goes to
a temporary file renamed over the entry, so a reader sees the old entry or the new one; it is
skipped where Python would not write bytecode either (``sys.dont_write_bytecode``, i.e.
``PYTHONDONTWRITEBYTECODE``) and, silently, where the folder is read-only.

Only the reading is cached: the data is validated against the models on every load.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import marshal
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

#: What an entry starts with; a new layout changes it (and so misses every old entry).
MAGIC = b"sluice-spec-document-1\n"
_DIGEST = 32
#: Largest entry read (a spec is at most 1 MiB of YAML; its data is about as big).
MAX_ENTRY_BYTES = 8 * 1024 * 1024

#: A spec's data, and ``(line, column)`` (1-based) of every key by dotted location.
Document = tuple[Any, dict[str, tuple[int, int]]]


def entry_path(spec: Path) -> Path:
    """Where the cached reading of ``spec`` lives."""
    return spec.parent / "__pycache__" / f"{spec.name}.sluice"


@functools.cache
def _reader_digest() -> bytes:
    """Hash of the reader's source: a reader that reads differently misses every entry."""
    from sluice.spec import yaml_reader

    source = Path(yaml_reader.__file__).read_bytes()
    return hashlib.sha256(source + MAGIC + str(marshal.version).encode()).digest()


def _key(raw: bytes) -> bytes:
    return hashlib.sha256(_reader_digest() + raw).digest()


def get(spec: Path, raw: bytes) -> Document | None:
    """The cached reading of ``spec`` whose bytes are ``raw``, or None (a miss)."""
    try:
        with entry_path(spec).open("rb") as fh:
            blob = fh.read(MAX_ENTRY_BYTES + 1)
    except OSError:
        return None
    head = len(MAGIC) + 2 * _DIGEST
    if len(blob) > MAX_ENTRY_BYTES or len(blob) < head or not blob.startswith(MAGIC):
        return None
    key, digest, payload = blob[len(MAGIC) : head - _DIGEST], blob[head - _DIGEST : head], blob[head:]
    # The payload's own hash: a torn or altered entry is never handed to marshal.
    if key != _key(raw) or hashlib.sha256(payload).digest() != digest:
        return None
    try:
        data, positions = marshal.loads(payload)  # noqa: S302 - checked above; written by put()
    except (ValueError, EOFError, TypeError):
        return None
    return data, positions


def put(spec: Path, raw: bytes, document: Document) -> None:
    """Cache the reading of ``spec`` whose bytes are ``raw`` (never raises)."""
    if sys.dont_write_bytecode:
        return
    try:
        payload = marshal.dumps(document)
    except ValueError:
        return  # a value marshal cannot hold: read it each time
    target = entry_path(spec)
    blob = MAGIC + _key(raw) + hashlib.sha256(payload).digest() + payload
    tmp: str | None = None
    try:
        target.parent.mkdir(exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
        with os.fdopen(fd, "wb") as fh:
            fh.write(blob)
        os.replace(tmp, target)
        tmp = None
    except OSError:
        return  # a read-only folder: the spec is read each time, as a module without bytecode
    finally:
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
