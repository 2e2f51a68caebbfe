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
import os
import re
import shutil
import stat
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Protocol

from sluice.services import faults

PROCESSED = "_processed"
#: Where folders and symlinks that match the pattern are moved, once, so nothing loops on them.
REJECTED = "_rejected"
#: Longest file name (bytes) on Linux filesystems (``NAME_MAX``); archive names stay within it.
NAME_MAX = 255
#: Name endings of files still being written by common tools (never landed, never wake the sensor).
TEMPORARY_SUFFIXES = (".tmp", ".temp", ".part", ".partial", ".crdownload", ".download", ".filepart", ".swp", "~")
#: Why a CSV whose last byte is not a line end is held (the writer may have paused mid-line).
CUT_LINE = "its last line has no line end (cut mid-write?): held until the writer finishes the line"
#: How long a dot-named file must be left untouched, with no writer, before it is reported as refused
#: (a producer writing ``.x.csv`` then renaming it to ``x.csv`` renames well within this).
HIDDEN_GRACE_SECONDS = 60.0
#: Why a dot-named file that matches the pattern is refused (it is never landed under that name).
HIDDEN = "a hidden name (starts with '.'): never landed; rename it without the leading dot to land it"


def is_temporary(name: str) -> bool:
    """Whether ``name`` is hidden or temporary, and so never a batch.

    Hidden names (``.x``), names starting with ``_`` (``_SUCCESS``, ``_processed``, Spark's
    ``_temporary``) and the endings in :data:`TEMPORARY_SUFFIXES` are what producers
    write to before renaming a finished file into place.
    """
    return name.startswith((".", "_")) or name.lower().endswith(TEMPORARY_SUFFIXES)


def printable(name: str) -> str:
    """``name`` with control characters escaped (``a\\nb``), safe for one log or status line."""
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in name)


@dataclass(frozen=True)
class InboxFile:
    """One file waiting in the inbox.

    Attributes:
        name: File name without folder (``flights_2013-01.parquet``).
        location: Where it is, for logs and lineage (a path or ``s3://bucket/key``).
        size: Size in bytes.
        version: What changes when the content changes: ``<size>:<mtime_ns>`` for a local
            file, the ETag for an S3 object. Compared again before landing and archiving.
        mtime: Modification time (seconds since the epoch).
    """

    name: str
    location: str
    size: int
    version: str = ""
    mtime: float = 0.0


@dataclass(frozen=True)
class Entry:
    """One name directly in the inbox, as listed (before any filtering)."""

    name: str
    kind: str  # "file", "dir", "link" (a symlink, never followed) or "other"
    size: int = 0
    mtime: float = 0.0
    version: str = ""


@dataclass
class Scan:
    """What one look at the inbox found.

    Attributes:
        ready: Complete files to land, by name.
        ignored: Hidden or temporary names (see :func:`is_temporary`), markers excluded.
        unsettled: Matching files whose size or mtime changed during the settle time.
        waiting_for_marker: Matching files whose completion marker is not there yet.
        refused: ``{name: why}`` for matching folders and symlinks (moved to ``_rejected/``).
        held: ``{name: why}`` for settled files that still look unfinished: open for writing
            by a process, or a CSV whose last line has no line end. Left for the next run.
        hidden: ``{name: version}`` of settled dot-named files that would match the pattern
            without their leading dot (never landed; reported so a producer that forgot to
            rename hears of it). Never moved: a producer may still rename it.
    """

    ready: list[InboxFile] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)
    unsettled: list[str] = field(default_factory=list)
    waiting_for_marker: list[str] = field(default_factory=list)
    refused: dict[str, str] = field(default_factory=dict)
    held: dict[str, str] = field(default_factory=dict)
    hidden: dict[str, str] = field(default_factory=dict)


def marker_for(marker: str, name: str) -> str:
    """The per-file marker name of ``name`` (``{name}.done`` -> ``x.parquet.done``)."""
    return marker.format(name=name, stem=PurePosixPath(name).stem)


def is_per_file_marker(marker: str) -> bool:
    """Whether ``marker`` names one marker per file (has ``{name}`` or ``{stem}``) or one per folder."""
    return "{" in marker


def select(entries: Iterable[Entry], pattern: str, marker: str | None) -> tuple[list[Entry], Scan]:
    """Split listed entries into candidates (complete as far as names and markers tell) and the rest.

    The sensor's trigger and the ``land`` task both use this, so they agree on what is
    waiting: only regular files whose names match ``pattern``, are not temporary, and
    (with a marker) are marked complete.

    Args:
        entries: Every name directly in the inbox.
        pattern: File-name glob of batch files.
        marker: ``detect.marker`` of the spec, or None.

    Returns:
        Candidate files, and a scan with ``ignored``, ``waiting_for_marker`` and ``refused``
        filled in (``refused`` lists matching folders and symlinks; nothing is moved here).
    """
    listed = list(entries)
    match = re.compile(glob_to_regex(pattern) + r"\Z", re.DOTALL)
    names = {e.name for e in listed}
    by_name = {e.name: e for e in listed}
    markers: set[str] = set()
    folder_marker: Entry | None = None
    if marker and is_per_file_marker(marker):
        markers = {marker_for(marker, e.name) for e in listed} & names
    elif marker:
        folder_marker = next((e for e in listed if e.name == marker and e.kind == "file"), None)
        markers = {marker}
    scan = Scan()
    candidates = []
    for e in sorted(listed, key=lambda e: e.name):
        if e.name in (PROCESSED, REJECTED) or e.name in markers:
            continue
        if is_temporary(e.name):
            scan.ignored.append(e.name)
            if e.kind == "file" and e.name.startswith(".") and match.match(e.name.lstrip(".")):
                scan.hidden[e.name] = e.version
            continue
        if not match.match(e.name):
            continue
        if e.kind == "link":
            scan.refused[e.name] = "a symbolic link (never followed: it could point outside the landing folder)"
        elif e.kind == "dir":
            scan.refused[e.name] = "a folder (e.g. a Spark output folder): land its part files as single files"
        elif e.kind != "file":
            scan.refused[e.name] = "not a regular file"
        elif marker and not _marked(e, marker, by_name, folder_marker):
            scan.waiting_for_marker.append(e.name)
        else:
            candidates.append(e)
    return candidates, scan


def _marked(entry: Entry, marker: str, by_name: dict[str, Entry], folder_marker: Entry | None) -> bool:
    """Whether ``entry`` is marked complete: its own marker, no older than it, exists; or it predates the folder marker.

    A per-file marker older than its file was left by an earlier upload under the same name
    (``land`` killed between archiving that file and deleting its marker): it does not mark
    this upload, which waits for its own marker as the producer contract says.
    """
    if is_per_file_marker(marker):
        own = by_name.get(marker_for(marker, entry.name))
        return own is not None and own.mtime >= entry.mtime
    return folder_marker is not None and entry.mtime <= folder_marker.mtime


def open_for_writing(paths: Iterable[str]) -> dict[str, int]:
    """``{path: pid}`` for each of ``paths`` some process holds open for writing (Linux ``/proc``).

    Reads ``/proc/<pid>/fd`` of every process this one may look into (all of them as root,
    else those of the same user), as ``lsof`` and ``fuser`` do: a few milliseconds for a
    couple of hundred processes. A writer it cannot see (another user's process without
    root, another PID namespace or container, another host over NFS) is not found; the
    settle time, the cut-line check and the watch on archived files cover those.
    """
    wanted = {os.path.realpath(p): p for p in paths}
    found: dict[str, int] = {}
    if not wanted:
        return found
    try:
        pids = [p for p in os.listdir("/proc") if p.isdigit()]
    except OSError:  # no /proc (not Linux): nothing to see
        return found
    for pid in pids:
        fd_dir = f"/proc/{pid}/fd"
        try:
            fds = os.listdir(fd_dir)
        except OSError:  # exited, or not ours to look into
            continue
        for fd in fds:
            try:
                target = os.readlink(f"{fd_dir}/{fd}")
            except OSError:
                continue
            if target in wanted and _writes(pid, fd):
                found[wanted[target]] = int(pid)
    return found


def _writes(pid: str, fd: str) -> bool:
    """Whether descriptor ``fd`` of ``pid`` was opened for writing (``flags:`` of its fdinfo)."""
    try:
        with open(f"/proc/{pid}/fdinfo/{fd}") as fh:
            for line in fh:
                if line.startswith("flags:"):
                    return int(line.split()[1], 8) & os.O_ACCMODE in (os.O_WRONLY, os.O_RDWR)
    except (OSError, ValueError, IndexError):
        pass
    return False


def last_line_cut(path: str) -> bool:
    """Whether a non-empty text file does not end with a line end (its writer may have paused mid-line)."""
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            if fh.tell() == 0:
                return False
            fh.seek(-1, os.SEEK_END)
            return fh.read(1) not in (b"\n", b"\r")
    except OSError:
        return False


def held_back(paths: Iterable[str], csv: bool) -> dict[str, str]:
    """``{path: why}`` for the files that still look unfinished: open for writing, or a CSV cut mid-line."""
    listed = list(paths)
    held = {
        p: f"open for writing by process {pid}: held until it closes the file"
        for p, pid in open_for_writing(listed).items()
    }
    if csv:
        held |= {p: CUT_LINE for p in listed if p not in held and last_line_cut(p)}
    return held


def local_entries(folder: Path) -> list[Entry]:
    """Every name directly in ``folder`` with its kind, size and mtime; symlinks are not followed."""
    found = []
    try:
        listing = list(os.scandir(folder))
    except FileNotFoundError:
        return []
    for d in listing:
        try:
            st = d.stat(follow_symlinks=False)
        except FileNotFoundError:  # renamed away between listing and stat
            continue
        if stat.S_ISLNK(st.st_mode):
            kind = "link"
        elif stat.S_ISDIR(st.st_mode):
            kind = "dir"
        elif stat.S_ISREG(st.st_mode):
            kind = "file"
        else:
            kind = "other"
        found.append(Entry(d.name, kind, st.st_size, st.st_mtime, f"{st.st_size}:{st.st_mtime_ns}"))
    return found


def _version(path: str) -> str | None:
    """``<size>:<mtime_ns>`` of a regular file (not followed through a symlink), or None if it is not one."""
    try:
        st = os.lstat(path)
    except OSError:
        return None
    return f"{st.st_size}:{st.st_mtime_ns}" if stat.S_ISREG(st.st_mode) else None


def ready_names(folder: Path, pattern: str, marker: str | None = None) -> list[str]:
    """Names of files the next ``land`` would consider (no settle wait): what the sensor waits for."""
    return [e.name for e in select(local_entries(folder), pattern, marker)[0]]


def wake_reasons(
    folder: Path,
    pattern: str,
    marker: str | None,
    *,
    csv: bool = False,
    watched: dict[str, str] | None = None,
    known_hidden: Iterable[str] = (),
    previous: dict[str, str] | None = None,
) -> tuple[list[str], dict[str, str]]:
    """One look at a local landing folder: what ``land`` would act on now, and what is there.

    The sensor wakes the ingest run for any of these: a candidate file (not open for
    writing, a CSV not cut mid-line), an input ``land`` refuses (a matching folder or
    symlink, or a dot-named file left alone for :data:`HIDDEN_GRACE_SECONDS` that is not
    in ``known_hidden``) so that it is reported within one poll, and an archived file
    that changed since it was landed (``watched``).

    Args:
        folder: The landing folder.
        pattern: File-name glob of batch files.
        marker: ``detect.marker`` of the spec, or None.
        csv: Batches are CSV (a cut last line holds a file).
        watched: ``{archived path: version when archived}``.
        known_hidden: ``"<name>/<version>"`` of dot-named files already reported.
        previous: The versions the previous look returned: a file or archive counts only
            if it has the same version now (it settled between the looks); None: one look.

    Returns:
        One reason per thing to act on (empty: keep waiting), and ``{name or path: version}``
        of the candidates and changed archives seen, for the next look's ``previous``.
    """
    listed = local_entries(folder)
    candidates, scan = select(listed, pattern, marker)
    versions = {e.name: e.version for e in candidates}
    paths = {e.name: str(folder / e.name) for e in candidates}
    for path, version in (watched or {}).items():
        now = _version(path)
        if now is not None and now != version:
            versions[path] = now
            paths[path] = path
    settled = [k for k, v in versions.items() if previous is None or previous.get(k) == v]
    held = held_back([paths[k] for k in settled], csv)
    reasons = [f"{printable(k)} is ready to land" for k in settled if paths[k] not in held]
    reasons += [f"{printable(n)} is refused: {why}" for n, why in scan.refused.items()]
    known = set(known_hidden)
    entries = {e.name: e for e in listed}
    for name, version in scan.hidden.items():
        entry = entries.get(name)
        aged = entry is not None and time.time() - entry.mtime >= HIDDEN_GRACE_SECONDS
        if (
            aged
            and f"{name}/{version}" not in known
            and str(folder / name) not in open_for_writing([str(folder / name)])
        ):
            reasons.append(f"{printable(name)} is refused: {HIDDEN}")
    return reasons, versions


class Inbox(Protocol):
    """A landing zone the ingest step reads from."""

    #: Whether archived files can change in place and are watched (:meth:`changed_archives`).
    watches_archives: bool

    def scan(self) -> Scan:
        """Look for complete files (waiting the settle time where the store needs it)."""
        ...

    def fetch(self, item: InboxFile, target: Path) -> None:
        """Write a private copy of ``item`` to the local file ``target``."""
        ...

    def unchanged(self, item: InboxFile) -> bool:
        """Whether ``item`` still has the content it had when listed."""
        ...

    def archive(self, item: InboxFile, batch_id: str) -> str | None:
        """Move ``item`` to ``_processed/`` (idempotent); return where it went.

        Returns None, leaving the file in place for the next run, when its content
        changed since it was listed.
        """
        ...

    def changed_archives(self, watched: dict[str, str]) -> tuple[list[InboxFile], dict[str, str]]:
        """Archived files changed since archived (``{path: version}``) and complete now; and those held."""
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
    """Anchored regex for S3 keys of ``pattern`` directly under ``prefix`` (no sub-folders, no temporary names)."""
    folder = f"{prefix.strip('/')}/" if prefix.strip("/") else ""
    # The same names the lister ignores (is_temporary) never match, so sensor and lister agree.
    temporary = "|".join(re.escape(s) for s in TEMPORARY_SUFFIXES)
    skip = rf"(?![._])(?!(?s:.*)(?i:{temporary})\Z)"
    return "^" + re.escape(folder) + skip + glob_to_regex(pattern) + r"\Z"


def _bounded(name: str, limit: int = NAME_MAX) -> str:
    """``name`` cut to at most ``limit`` UTF-8 bytes without splitting a character."""
    return name.encode()[:limit].decode("utf-8", "ignore")


def archive_name(name: str, batch_id: str) -> str:
    """Name used when ``_processed/<name>`` is already taken by other content.

    ``<stem>.<batch id><suffix>``, with the stem shortened so the name stays within
    NAME_MAX (255 bytes): a 248-byte name reused with new content must still archive.
    """
    p = PurePosixPath(name)
    tail = f".{batch_id}{p.suffix}"
    if len(tail.encode()) > NAME_MAX // 2:  # a "suffix" that long is not an extension
        tail, stem = f".{batch_id}", name
    else:
        stem = p.stem
    return _bounded(stem, NAME_MAX - len(tail.encode())) + tail


def _aside_name(name: str) -> str:
    return _bounded(name, NAME_MAX - 9) + "." + uuid.uuid4().hex[:8]


class LocalInbox:
    """A folder on the local filesystem."""

    #: Archived files can change in place (a writer that still holds one open): watch them.
    watches_archives = True

    def __init__(
        self,
        folder: Path,
        pattern: str,
        settle_seconds: float = 0.0,
        marker: str | None = None,
        sleep: Callable[[float], None] = time.sleep,
        csv: bool = False,
    ) -> None:
        """Files matching ``pattern`` in ``folder``.

        Args:
            folder: The landing folder.
            pattern: File-name glob of batch files.
            settle_seconds: Time between the two looks: a file is complete only when its
                size and mtime are the same in both (0: one look).
            marker: ``detect.marker`` (``{name}.done`` per file, or a folder marker like ``_SUCCESS``).
            sleep: How to wait the settle time (a seam for tests that write during it).
            csv: Batches are CSV: one whose last line has no line end is held (see :func:`held_back`).
        """
        self.folder = Path(folder)
        self.pattern = pattern
        self.settle_seconds = settle_seconds
        self.marker = marker
        self._sleep = sleep
        self.csv = csv

    def _look(self) -> tuple[list[Entry], Scan]:
        return select(local_entries(self.folder), self.pattern, self.marker)

    def scan(self) -> Scan:
        """Complete files: matched in two looks ``settle_seconds`` apart with the same size and mtime.

        Matching folders and symlinks are moved to ``_rejected/`` (the link itself, never
        its target), so they are reported once and never looked at again.
        """
        first, scan = self._look()
        now = time.time()
        hidden = {
            e.name: e
            for e in local_entries(self.folder)
            if e.name in scan.hidden and now - e.mtime >= HIDDEN_GRACE_SECONDS
        }
        if self.settle_seconds > 0 and (first or hidden):
            self._sleep(self.settle_seconds)
            again, later = self._look()
            second = {e.name: e for e in again}
            stable = [e for e in first if (s := second.get(e.name)) is not None and s.version == e.version]
            scan.unsettled = [e.name for e in first if e not in stable and e.name in second]
            first = stable
            hidden = {n: e for n, e in hidden.items() if later.hidden.get(n) == e.version}
        held = held_back([str(self.folder / n) for n in [*(e.name for e in first), *hidden]], self.csv)
        scan.held = {e.name: held[p] for e in first if (p := str(self.folder / e.name)) in held}
        scan.hidden = {
            n: e.version
            for n, e in hidden.items()
            if str(self.folder / n) not in held or held[str(self.folder / n)] == CUT_LINE
        }
        for name in scan.refused:
            self._move_aside(name)
        scan.ready = [
            InboxFile(e.name, str(self.folder / e.name), e.size, e.version, e.mtime)
            for e in first
            if e.name not in scan.held
        ]
        return scan

    def changed_archives(self, watched: dict[str, str]) -> tuple[list[InboxFile], dict[str, str]]:
        """Archived files whose content changed since they were archived, and complete now.

        A writer that paused longer than the settle time had its first part landed and
        the file archived; if it then finished the file inside ``_processed/``, the rest
        would never be read. Each such file is checked as a new one is (same size and mtime
        across the settle time, no open writer, no cut last line).

        Args:
            watched: ``{archived path: version when archived}``.

        Returns:
            The changed, complete files (``name`` is the archived file's name), and
            ``{path: why}`` for changed ones still held back.
        """
        changed = {p: v for p, v in ((p, _version(p)) for p in watched) if v is not None and v != watched[p]}
        if changed and self.settle_seconds > 0:
            self._sleep(self.settle_seconds)
            changed = {p: v for p, v in changed.items() if _version(p) == v}
        held = held_back(list(changed), self.csv)
        ready = []
        for path, version in changed.items():
            if path not in held:
                st = os.lstat(path)
                ready.append(InboxFile(Path(path).name, path, st.st_size, version, st.st_mtime))
        return ready, held

    def waiting(self) -> list[InboxFile]:
        """Complete files matching the pattern, by name (see :meth:`scan`)."""
        return self.scan().ready

    def _move_aside(self, name: str) -> None:
        aside = self.folder / REJECTED
        aside.mkdir(exist_ok=True)
        target = aside / name
        if target.exists() or target.is_symlink():
            target = aside / _aside_name(name)
        with contextlib.suppress(FileNotFoundError):
            os.rename(self.folder / name, target)

    def fetch(self, item: InboxFile, target: Path) -> None:
        """Copy the file's bytes (never through a symlink: the listing refused those)."""
        shutil.copyfile(item.location, target, follow_symlinks=False)

    def unchanged(self, item: InboxFile) -> bool:
        """Same size and mtime (nanoseconds) as when listed, and still a regular file."""
        try:
            st = os.lstat(item.location)
        except FileNotFoundError:
            return False
        return stat.S_ISREG(st.st_mode) and f"{st.st_size}:{st.st_mtime_ns}" == item.version

    def archive(self, item: InboxFile, batch_id: str) -> str | None:
        """Rename into ``_processed/`` (atomic on one filesystem); None if the file changed since listed."""
        path = Path(item.location)
        if item.version and not self.unchanged(item):
            return None
        target = path.parent / PROCESSED / path.name
        target.parent.mkdir(exist_ok=True)
        if target.exists():
            target = target.with_name(archive_name(path.name, batch_id))
        os.replace(path, target)
        faults.point("land.archived")
        if self.marker and is_per_file_marker(self.marker):
            (path.parent / marker_for(self.marker, path.name)).unlink(missing_ok=True)
        return str(target)


class S3Inbox:
    """A prefix in an S3 (or S3-compatible) bucket, read with a boto3 S3 client.

    No settle time: an S3 object becomes visible only once its upload is complete (a
    multipart upload too), so listed objects are whole. Temporary names and markers are
    handled as in a local folder; the ETag stands for the content.
    """

    #: An archived object never changes in place: nothing to watch.
    watches_archives = False

    def __init__(self, client: Any, bucket: str, prefix: str, pattern: str, marker: str | None = None) -> None:
        """Objects matching ``pattern`` directly under ``s3://bucket/prefix/``.

        Args:
            client: A boto3 S3 client (endpoint and credentials already set).
            bucket: Bucket name.
            prefix: Folder inside the bucket ("" for the bucket root).
            pattern: File-name glob.
            marker: ``detect.marker`` of the spec, or None.
        """
        self.client = client
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.pattern = pattern
        self.marker = marker

    def _key(self, name: str, *folders: str) -> str:
        return "/".join(p for p in (self.prefix, *folders, name) if p)

    def _uri(self, key: str) -> str:
        return f"s3://{self.bucket}/{key}"

    def scan(self) -> Scan:
        """Objects directly under the prefix that match, are not temporary and are marked (if asked)."""
        folder = f"{self.prefix}/" if self.prefix else ""
        entries = []
        # Delimiter '/' keeps _processed/ and other sub-folders out of the listing.
        pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=folder, Delimiter="/")
        for page in pages:
            for obj in page.get("Contents", []):
                name = obj["Key"][len(folder) :]
                if name:
                    mtime = obj["LastModified"].timestamp()
                    entries.append(Entry(name, "file", int(obj["Size"]), mtime, str(obj["ETag"])))
        candidates, scan = select(entries, self.pattern, self.marker)
        # Sub-folders are not listed as entries (the delimiter folds them), so nothing is refused.
        scan.ready = [InboxFile(e.name, self._uri(self._key(e.name)), e.size, e.version, e.mtime) for e in candidates]
        return scan

    def waiting(self) -> list[InboxFile]:
        """Objects matching the pattern directly under the prefix, by key (see :meth:`scan`)."""
        return self.scan().ready

    def changed_archives(self, watched: dict[str, str]) -> tuple[list[InboxFile], dict[str, str]]:
        """Nothing: an S3 object is never changed in place by a writer (an upload appears whole)."""
        return [], {}

    def fetch(self, item: InboxFile, target: Path) -> None:
        """Download the object, refusing any other content than the one listed (``IfMatch``)."""
        # get_object, not download_file: the transfer manager does not accept IfMatch.
        extra = {"IfMatch": item.version} if item.version else {}
        body = self.client.get_object(Bucket=self.bucket, Key=self._key(item.name), **extra)["Body"]
        with target.open("wb") as fh:
            shutil.copyfileobj(body, fh, 1 << 20)

    def _etag(self, key: str) -> str | None:
        from botocore.exceptions import ClientError

        try:
            return str(self.client.head_object(Bucket=self.bucket, Key=key)["ETag"])
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in {"404", "NoSuchKey", "NotFound"}:
                return None
            raise

    def unchanged(self, item: InboxFile) -> bool:
        """Same ETag as when listed."""
        return self._etag(self._key(item.name)) == item.version

    def archive(self, item: InboxFile, batch_id: str) -> str | None:
        """Copy to ``_processed/`` then delete the original (S3 has no rename).

        A crash between copy and delete leaves both; the next run lands nothing new
        (same content hash), finds the same object already archived and only deletes
        the original, so the retry is safe. An object overwritten since it was listed
        (other ETag) is left for the next run.
        """
        source = self._key(item.name)
        current = self._etag(source)
        if item.version and current != item.version:
            return None
        target = self._key(item.name, PROCESSED)
        archived = self._etag(target)
        if archived is not None and archived != current:
            # The name was used before for other content: keep both, this one under a content-derived name.
            target = self._key(archive_name(item.name, batch_id), PROCESSED)
            archived = self._etag(target)
        if archived is None:
            copy: dict[str, Any] = {"Bucket": self.bucket, "Key": target}
            copy["CopySource"] = {"Bucket": self.bucket, "Key": source}
            if current:
                copy["CopySourceIfMatch"] = current
            self.client.copy_object(**copy)
        self.client.delete_object(Bucket=self.bucket, Key=source)
        faults.point("land.archived")
        if self.marker and is_per_file_marker(self.marker):
            self.client.delete_object(Bucket=self.bucket, Key=self._key(marker_for(self.marker, item.name)))
        return self._uri(target)
