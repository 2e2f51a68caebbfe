"""The jars that let Spark open ``s3a://`` locations: fetched from Maven Central, pinned, checked.

pyspark's wheel ships Hadoop's client (``pyspark/jars/hadoop-client-api-3.5.0.jar``) but not
``hadoop-aws`` nor the AWS SDK v2 it links against. ``s3a/pom.xml`` beside this module pins
``hadoop-aws`` at that exact Hadoop version and the SDK modules it uses (not the SDK's 686 MB
``bundle``); ``s3a/checksums.sha256`` holds the sha256 of every jar Maven copies. A fetch
copies into a hidden folder, checks every jar against that list, and only then moves the
folder into place, so the jars folder is either absent or whole and verified.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import uuid
from dataclasses import dataclass
from pathlib import Path

from sluice.settings import settings

__all__ = [
    "CHECKSUMS",
    "MAKE_TARGET",
    "POM",
    "STAMP",
    "S3AJarsError",
    "S3AJarsMissing",
    "default_jars_dir",
    "expected_checksums",
    "fetch_s3a_jars",
    "s3a_jars",
    "verify_jars",
]

#: The Maven project that names the jars.
POM = Path(__file__).with_name("s3a") / "pom.xml"
#: ``<sha256>  <jar>`` per line, as ``sha256sum`` writes it.
CHECKSUMS = Path(__file__).with_name("s3a") / "checksums.sha256"
#: What a user runs to get the jars (the Makefile target calling :func:`fetch_s3a_jars`).
MAKE_TARGET = "make s3a-jars"
#: Written last by a fetch: the checksum list the folder was verified against.
STAMP = ".fetched"


class S3AJarsError(RuntimeError):
    """The S3A jars could not be fetched, or a jar is not the one the checksum list pins."""


class S3AJarsMissing(S3AJarsError):
    """Spark needs the S3A jars and they have not been fetched (the message names the fix)."""


@dataclass(frozen=True)
class _Mismatch:
    jar: str
    expected: str
    actual: str


def default_jars_dir(project_dir: Path | None = None) -> Path:
    """Where the jars live: ``$SLUICE_S3A_JARS``, else ``<project>/.jars/s3a``.

    Args:
        project_dir: The project root; default ``$SLUICE_PROJECT_DIR``, else the working folder.
    """
    env = settings()
    if env.s3a_jars is not None:
        return env.s3a_jars
    return (project_dir or env.project_dir or Path.cwd()) / ".jars" / "s3a"


def expected_checksums(checksums: Path = CHECKSUMS) -> dict[str, str]:
    """The pinned jars: file name -> sha256 (hex), from the committed checksum list."""
    pinned: dict[str, str] = {}
    for line in checksums.read_text().splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        digest, name = line.split(maxsplit=1)
        pinned[name.lstrip("*")] = digest.lower()
    return pinned


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def verify_jars(folder: Path, pinned: dict[str, str] | None = None) -> list[Path]:
    """Check that ``folder`` holds exactly the pinned jars, each with its pinned sha256.

    Args:
        folder: A folder of jars (a fetch's output).
        pinned: File name -> sha256; default the committed list.

    Returns:
        The jars, sorted by name.

    Raises:
        S3AJarsError: A jar is missing, unexpected, or has another checksum (each one named).
    """
    pinned = expected_checksums() if pinned is None else pinned
    present = {p.name for p in folder.glob("*.jar")}
    problems = [f"missing {name}" for name in sorted(set(pinned) - present)]
    problems += [f"unexpected {name} (not in {CHECKSUMS.name})" for name in sorted(present - set(pinned))]
    mismatches = [
        _Mismatch(name, pinned[name], actual)
        for name in sorted(present & set(pinned))
        if (actual := _sha256(folder / name)) != pinned[name]
    ]
    problems += [f"{m.jar}: sha256 {m.actual}, expected {m.expected}" for m in mismatches]
    if problems:
        raise S3AJarsError(
            f"S3A jars in {folder} do not match {CHECKSUMS}: " + "; ".join(problems) + ". A jar that differs "
            f"from the pinned one is never used: delete {folder} and run `{MAKE_TARGET}` to fetch it again "
            "(if the pom changed on purpose, regenerate the checksum list as its header says)"
        )
    return [folder / name for name in sorted(pinned)]


def s3a_jars(folder: Path) -> list[Path]:
    """The fetched jars, for ``spark.jars`` (cheap: presence only; a fetch verified them).

    Raises:
        S3AJarsMissing: The folder was never (completely) fetched; the message names the fix.
    """
    pinned = expected_checksums()
    stamp = folder / STAMP
    missing = [name for name in sorted(pinned) if not (folder / name).is_file()]
    if missing or not stamp.is_file():
        raise S3AJarsMissing(
            f"Spark needs the S3A jars (hadoop-aws and the AWS SDK) to open the pipeline's s3:// storage, "
            f"and {folder} has not got them ({len(missing) or 'no'} of {len(pinned)} missing"
            f"{'' if stamp.is_file() else ', never fetched'}): run `{MAKE_TARGET}` (or `sluice fetch-jars`) "
            "once on this machine, or point SLUICE_S3A_JARS at a folder that has them"
        )
    return [folder / name for name in sorted(pinned)]


def fetch_s3a_jars(folder: Path, mvn: str = "mvn", timeout: float = 900.0) -> list[Path]:
    """Fetch the pinned S3A jars into ``folder`` with Maven, verified; a no-op when already there.

    When ``folder`` was fetched against the current checksum list, only the checksums are
    checked again (well under a second). Otherwise Maven copies the jars into a hidden
    sibling folder, which replaces ``folder`` only once every jar matches its checksum.

    Args:
        folder: Destination (e.g. ``<project>/.jars/s3a``).
        mvn: The Maven executable.
        timeout: Seconds Maven may take.

    Returns:
        The jars, sorted by name.

    Raises:
        S3AJarsError: Maven is missing or failed, or a downloaded jar does not match its checksum.
    """
    pinned = expected_checksums()
    listing = CHECKSUMS.read_text()
    stamp = folder / STAMP
    if stamp.is_file() and stamp.read_text() == listing:
        return verify_jars(folder, pinned)
    executable = shutil.which(mvn)
    if executable is None:
        raise S3AJarsError(
            f"Maven ({mvn}) is not installed; it fetches the S3A jars from Maven Central: "
            "`apt-get install maven` (Debian), then run `" + MAKE_TARGET + "` again"
        )
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = folder.parent / f".{folder.name}.tmp-{uuid.uuid4().hex[:8]}"
    try:
        done = subprocess.run(
            [
                executable,
                "-B",
                "-q",
                "-f",
                str(POM),
                "dependency:copy-dependencies",
                f"-Ds3a.dest={staging}",
            ],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            env={**os.environ, "MAVEN_OPTS": os.environ.get("MAVEN_OPTS", "-Xmx512m")},
        )
        if done.returncode != 0:
            tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-15:])
            raise S3AJarsError(f"mvn could not fetch the S3A jars of {POM} (exit {done.returncode}):\n{tail}")
        jars = verify_jars(staging, pinned)
        (staging / STAMP).write_text(listing)
        if folder.exists():
            shutil.rmtree(folder)
        staging.rename(folder)
        return [folder / jar.name for jar in jars]
    finally:
        shutil.rmtree(staging, ignore_errors=True)
