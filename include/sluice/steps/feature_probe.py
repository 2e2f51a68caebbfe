"""Learn a feature job's output columns for ``sluice lint``, without Spark.

The job (``features.job``, a PySpark function of ``(spark, inputs)``) runs on a few rows
generated from the declared batch schema (``source.columns``) and on the first rows of each
reference input, on sqlframe over in-process DuckDB: the PySpark DataFrame API with no JVM.
It runs in one child process for all the specs of a lint run: ``sqlframe.activate`` makes
``pyspark.sql`` resolve to sqlframe in the process that calls it, which must never be one that
also runs real PySpark (the CLI's own process, a test run).

What it learns is only ever used to refuse a column the output surely lacks; whenever it
cannot learn (no declared schema, a reference input not there yet, a construct the engine
lacks, a job that fails on generated rows) lint says so in a warning and checks nothing.
Only ``sluice lint`` and ``sluice plan`` run it; the DAG file never does.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from sluice.spec.errors import SpecIssue
from sluice.steps.feature_engine import ENGINE

if TYPE_CHECKING:
    from sluice.spec.loader import LoadedSpec

#: A job that has not answered by then is stopped (one that loops, or waits on the network).
TIMEOUT_SECONDS = 120.0
#: A file's size and modification time (None: it is gone), by path.
Fingerprints = dict[str, list[int] | None]
#: What the engine answered, by request (its job's bytes and inputs' sizes and times included),
#: with the project files it had loaded: specs sharing a job and schema, and repeated lints in one
#: process, run it once.
_ANSWERS: dict[str, tuple[dict[str, Any], Fingerprints]] = {}
#: Where answers are kept between lint runs, under the project root (``.sluice/`` is not versioned).
CACHE_FOLDER = Path(".sluice") / "lint-cache"


@dataclass(frozen=True)
class Learned:
    """What lint learnt of one spec's feature job.

    Attributes:
        columns: The job's output columns, or None when they could not be learnt.
        warning: Why not (a warning at the spec's line; an error where ``features.engine: duckdb``
            chose the engine the job failed on), or None.
    """

    columns: tuple[str, ...] | None
    warning: SpecIssue | None = None


def _fingerprint(path: Path) -> list[Any]:
    if path.is_file():
        stat = path.stat()
        return [stat.st_size, stat.st_mtime_ns]
    return sorted([str(p.relative_to(path)), p.stat().st_size, p.stat().st_mtime_ns] for p in path.rglob("*"))


def _request(loaded: LoadedSpec) -> dict[str, Any] | SpecIssue | None:
    """The engine's request for ``loaded``, a warning saying why there is none, or None (no schema)."""
    columns = loaded.spec.source.columns
    if columns is None:
        return None  # the schema warning (sluice.spec.checks.schema_warnings) says what that leaves open
    features = loaded.spec.features
    inputs: dict[str, Any] = {}
    for name, spec_input in features.inputs.items():
        path = loaded.resolve(spec_input.uri)
        if not path.exists():
            return loaded.warning(
                f"features.inputs.{name}",
                f"training.target, split.by, features and drop are not checked against the feature job's "
                f"output: input '{name}' ({spec_input.uri}) does not exist yet, and the job cannot run without it",
                "create the input (the demo's producer writes data/reference) and lint again",
            )
        inputs[name] = {"path": str(path), "format": spec_input.format, "fingerprint": _fingerprint(path)}
    job_file, _, function = features.job.partition(":")
    path = loaded.resolve(job_file)
    return {
        "job": str(path),
        "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
        "function": function,
        "columns": columns,
        "inputs": inputs,
    }


def _key(request: dict[str, Any]) -> str:
    return json.dumps(request, sort_keys=True)


def _stat(path: str) -> list[int] | None:
    try:
        stat = Path(path).stat()
    except OSError:
        return None
    return [stat.st_size, stat.st_mtime_ns]


def _fresh(files: Fingerprints) -> bool:
    return all(_stat(f) == fingerprint for f, fingerprint in files.items())


def _known(key: str, entry: Path) -> dict[str, Any] | None:
    """The answer to request ``key`` from this process or an earlier lint run, or None.

    An answer lists every project file the child had loaded when it gave it (the job, the
    modules it imports, sluice's own engine) and is used only while none of them changed: an
    edited helper module makes the job run again, so a kept answer never refuses a column the
    job now outputs.
    """
    memo = _ANSWERS.get(key)
    if memo is not None and _fresh(memo[1]):
        return memo[0]
    try:
        kept = json.loads(entry.read_bytes())
        answer, files = dict(kept["answer"]), dict(kept["files"])
        if kept["key"] != key:
            return None
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None  # none kept, or a torn or foreign entry: a miss, never an error
    if not _fresh(files):
        return None
    _ANSWERS[key] = (answer, files)
    return answer


def _keep(entry: Path, key: str, answer: dict[str, Any]) -> None:
    """Note ``answer`` for this process and, in ``entry``, for the next lint run.

    Only an answer the job gave goes to ``entry`` (silently not, where the folder is
    read-only): one saying the engine did not start or did not finish names no files to check,
    and may not hold next time.
    """
    files = {f: _stat(f) for f in answer.pop("files", [])}
    _ANSWERS[key] = (answer, files)
    if not files:
        return
    with contextlib.suppress(OSError):
        entry.parent.mkdir(parents=True, exist_ok=True)
        staged = entry.with_name(f".{entry.name}.{os.getpid()}.tmp")
        staged.write_text(json.dumps({"key": key, "files": files, "answer": answer}))
        os.replace(staged, entry)


class FeatureProbe:
    """The feature jobs of some specs, run at once in one child process (started on creation).

    Create it before other slow checks and ask :meth:`learned` after them: the engine starts
    (about 2 s) while they run. Answers kept from an earlier lint run of the same job, schema
    and inputs, with no project file it loaded changed since, are used without running it.
    """

    def __init__(self, specs: Iterable[LoadedSpec], timeout: float = TIMEOUT_SECONDS) -> None:
        self._timeout = timeout
        self._requests: dict[Path, dict[str, Any] | SpecIssue | None] = {}
        self._entries: dict[str, Path] = {}
        self._todo: list[dict[str, Any]] = []
        for loaded in specs:
            try:
                request = self._requests[loaded.path] = _request(loaded)
            except OSError as exc:  # the job file vanished or cannot be read since it was loaded
                self._requests[loaded.path] = loaded.warning(
                    "features.job", f"feature job not run to learn its columns: {exc}", "check the file"
                )
                continue
            if isinstance(request, dict):
                key = _key(request)
                entry = loaded.project_dir / CACHE_FOLDER / f"{hashlib.sha256(key.encode()).hexdigest()[:32]}.json"
                if key not in self._entries and _known(key, entry) is None:
                    self._todo.append(request)
                self._entries[key] = entry
        self._process: subprocess.Popen[bytes] | None = None
        # Files, not pipes, for the child's output: it never waits on a parent busy elsewhere.
        # Both outlive this call (the child writes them); _collect closes them.
        self._files = contextlib.ExitStack()
        self._out: IO[bytes] = self._files.enter_context(tempfile.TemporaryFile())  # noqa: SIM115
        self._err: IO[bytes] = self._files.enter_context(tempfile.TemporaryFile())  # noqa: SIM115
        if self._todo:
            self._start()
        else:
            self._files.close()

    def _start(self) -> None:
        self._process = subprocess.Popen(
            [sys.executable, "-m", "sluice.steps.feature_engine"],
            stdin=subprocess.PIPE,
            stdout=self._out,
            stderr=self._err,
        )
        assert self._process.stdin is not None
        # The child reads all of it before anything else: this write never waits for long.
        self._process.stdin.write(json.dumps(self._todo).encode())
        self._process.stdin.close()

    def _collect(self) -> None:
        process = self._process
        if process is None:
            return
        self._process = None
        with self._files:
            try:
                process.wait(timeout=self._timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
                failure = f"it did not finish within {self._timeout:g} s"
            else:
                self._out.seek(0)
                try:
                    answers = json.loads(self._out.read() or b"null")
                except ValueError:
                    answers = None
                if isinstance(answers, list) and len(answers) == len(self._todo):
                    for request, answer in zip(self._todo, answers, strict=True):
                        _keep(self._entries[_key(request)], _key(request), answer)
                    return
                self._err.seek(0)
                last = self._err.read().decode(errors="replace").strip().splitlines()[-1:]
                failure = f"the engine process failed (exit {process.returncode}): {''.join(last) or 'no output'}"
        for request in self._todo:
            _keep(self._entries[_key(request)], _key(request), {"error": failure})

    def learned(self, loaded: LoadedSpec) -> Learned:
        """What was learnt of ``loaded``'s feature job (waits for the engine the first time)."""
        request = self._requests.get(loaded.path)
        if request is None:
            return Learned(None)
        if isinstance(request, SpecIssue):
            return Learned(None, request)
        self._collect()
        answer = _ANSWERS.get(_key(request), ({"error": "not run"}, {}))[0]
        if "columns" in answer:
            return Learned(tuple(answer["columns"]))
        job_file = loaded.spec.features.job.partition(":")[0]
        at = f" (at {job_file}:{answer['line']}: {answer['code']})" if answer.get("line") else ""
        if loaded.spec.features.engine == "duckdb" and "line" in answer:
            # The job itself failed on the engine the spec chose (not the engine's start, nor a
            # timeout on a busy machine): every feature build would fail the same way.
            return Learned(
                None,
                loaded.issue(
                    "features.engine",
                    f"engine 'duckdb' cannot run the feature job: it failed on {ENGINE} on generated rows: "
                    f"{answer['error']}{at}",
                    "use engine: local (Spark), or rewrite the construct (RDDs, Python UDFs) with DataFrame functions",
                ),
            )
        return Learned(
            None,
            loaded.warning(
                "features.job",
                f"training.target, split.by, features and drop are not checked against the feature job's output: "
                f"the job could not run on {ENGINE} on generated rows: {answer['error']}{at}",
                "if the job runs on Spark, nothing is wrong; a construct the engine lacks (RDDs, Python UDFs) "
                "is the usual cause",
            ),
        )
