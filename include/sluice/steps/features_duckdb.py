"""``features.engine: duckdb``: the user's unchanged PySpark job on sqlframe over in-process DuckDB.

The job runs in a child process (``python -m sluice.steps.feature_engine build``), not in the
task's own: ``sqlframe.activate`` rebinds ``pyspark.sql`` to sqlframe for the whole process
that calls it, and a process that later (or earlier) runs real PySpark, such as a test run or
``dag.test()`` running the train step's Spark after this one, would get sqlframe's classes
or a half-replaced module. A child costs about a second to start; a Spark JVM costs far more.

This side stays with the store: it hands the child local files (an object store's batches are
first copied to a local scratch folder through the store) and commits the child's parquet file
through the store, so the child knows nothing of storage and DuckDB needs no S3 credentials.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sluice.steps.feature_engine import ENGINE

if TYPE_CHECKING:
    from sluice.services.storage import PipelineStore
    from sluice.spec.loader import LoadedSpec

#: The store's local working folder for the batches an object store holds, and the tables built.
SCRATCH = "duckdb-features"
#: The one part file of a feature table built on DuckDB (Spark writes ``part-<n>-<uuid>.parquet`` files).
PART = "part-00000.parquet"


class DuckDBEngineError(RuntimeError):
    """The feature job failed on sqlframe over DuckDB (or the engine did not start)."""


@dataclass(frozen=True)
class Run:
    """One feature table to build: the batches it reads and its local output file."""

    batch_ids: list[str]
    out: Path


def _local_batches(store: PipelineStore, batch_ids: list[str], scratch: Path) -> dict[str, list[str]]:
    """Local parquet files of each batch's ``clean.parquet``: the files themselves on a local
    store, copies in ``scratch`` (read through the store) on an object store."""
    found: dict[str, list[str]] = {}
    for batch_id in batch_ids:
        files = []
        for number, key in enumerate(store.parquet.parts(store.keys.batch(batch_id, "clean.parquet"))):
            path = store.local_path(key)
            if path is not None:
                files.append(str(path))
                continue
            local = scratch / f"{batch_id}-{number}.parquet"
            with store.open_read(key) as src, local.open("wb") as dst:
                shutil.copyfileobj(src, dst, 1 << 20)
            files.append(str(local))
        found[batch_id] = files
    return found


def _request(loaded: LoadedSpec, runs: list[Run], batch_files: dict[str, list[str]]) -> dict[str, Any]:
    spec = loaded.spec.features
    job_file, _, function = spec.job.partition(":")
    return {
        "job": str(loaded.resolve(job_file)),
        "function": function,
        "inputs": {n: {"path": str(loaded.resolve(i.uri)), "format": i.format} for n, i in spec.inputs.items()},
        "runs": [{"batches": [f for b in r.batch_ids for f in batch_files[b]], "out": str(r.out)} for r in runs],
    }


def _child_env() -> dict[str, str]:
    """The task's environment, with sluice's own folder first on the path (a task may have found it otherwise)."""
    import sluice

    here = str(Path(sluice.__file__).resolve().parents[1])
    return dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [here, os.environ.get("PYTHONPATH")])))


def run_tables(
    loaded: LoadedSpec, store: PipelineStore, batch_runs: list[list[str]]
) -> list[tuple[Path, int, list[str]]]:
    """Build one feature table per entry of ``batch_runs`` (the batches each reads) in one child process.

    Returns:
        For each run, in order: the local parquet file (to commit, then gone with the
        scratch folder at the next build), its rows and columns.

    Raises:
        DuckDBEngineError: The job failed (the message names its line) or the engine did not start.
    """
    store.clear_scratch(SCRATCH)  # a killed build's leftovers: only this step uses the folder
    scratch = store.scratch(SCRATCH)
    runs = [Run(ids, scratch / f"table-{n}.parquet") for n, ids in enumerate(batch_runs)]
    files = _local_batches(store, sorted({b for ids in batch_runs for b in ids}), scratch)
    request = _request(loaded, runs, files)
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        # Files, not pipes: what the job prints can be long, and nobody reads a pipe meanwhile.
        done = subprocess.run(
            [sys.executable, "-m", "sluice.steps.feature_engine", "build"],
            input=json.dumps(request).encode(),
            stdout=out,
            stderr=err,
            env=_child_env(),
            check=False,
        )
        out.seek(0)
        err.seek(0)
        answers = _answers(out.read())
        tail = err.read().decode(errors="replace").strip().splitlines()[-20:]
    if done.returncode != 0 or answers is None:
        raise DuckDBEngineError(f"{ENGINE} failed (exit {done.returncode}): " + "\n".join(tail))
    if len(answers) < len(runs) or "error" in answers[-1]:
        failure = answers[-1] if answers else {"error": "no answer"}
        at = f" at {request['job']}:{failure['line']}: {failure['code']}" if failure.get("line") else ""
        raise DuckDBEngineError(f"feature job {loaded.spec.features.job} failed on {ENGINE}{at}: {failure['error']}")
    return [(r.out, int(a["rows"]), list(a["columns"])) for r, a in zip(runs, answers, strict=True)]


def _answers(data: bytes) -> list[dict[str, Any]] | None:
    try:
        found = json.loads(data or b"null")
    except ValueError:
        return None
    return found if isinstance(found, list) else None
