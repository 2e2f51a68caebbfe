"""The child process of :mod:`sluice.steps.feature_probe`: feature jobs run on sqlframe over DuckDB.

``python -m sluice.steps.feature_engine`` reads a JSON list of requests on stdin (the job's
file and function, the declared batch columns, the reference inputs) and writes one answer per
request on stdout: the job's output columns, or the error it raised and the job's line.
``sqlframe.activate`` makes ``pyspark.sql`` resolve to sqlframe in this process only; this
module imports nothing of sluice's (it starts in about a second, most of it DuckDB and sqlglot).
"""

from __future__ import annotations

import json
import os
import sys
import traceback
from pathlib import Path
from typing import Any

ENGINE = "sqlframe over in-process DuckDB"
#: Rows generated for the batch, and read at most from each reference input.
PROBE_ROWS = 3
INPUT_ROWS = 50
#: DuckDB type of each declared column type (``source.columns``).
DUCKDB_TYPES = {
    "string": "VARCHAR",
    "int": "BIGINT",
    "float": "DOUBLE",
    "bool": "BOOLEAN",
    "timestamp": "TIMESTAMP",
    "date": "DATE",
}


def _literal(kind: str, row: int) -> str:
    return {
        "string": f"'s{row}'",
        "int": str(row + 1),
        "float": f"{row + 1}.5",
        "bool": "true" if row % 2 == 0 else "false",
        "timestamp": f"TIMESTAMP '2024-01-0{row + 1} 0{row}:00:00'",
        "date": f"DATE '2024-01-0{row + 1}'",
    }[kind]


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _batch_table(conn: Any, table: str, columns: dict[str, str]) -> None:
    """A table of :data:`PROBE_ROWS` rows of the declared types (a column is never all NULL:
    DuckDB would type it NULL, which sqlframe cannot read)."""
    conn.execute(f"CREATE TABLE {table} ({', '.join(f'{_quote(c)} {DUCKDB_TYPES[t]}' for c, t in columns.items())})")
    if columns:
        rows = ", ".join("(" + ", ".join(_literal(t, r) for t in columns.values()) + ")" for r in range(PROBE_ROWS))
        conn.execute(f"INSERT INTO {table} VALUES {rows}")


def _input_table(conn: Any, table: str, spec_input: dict[str, Any]) -> None:
    """The first rows of a reference input (a file, or a folder of them)."""
    path = spec_input["path"]
    fmt = spec_input["format"]
    if Path(path).is_dir():
        path = f"{path}/**/*.{fmt}"
    reader = "read_parquet($1, union_by_name = true)" if fmt == "parquet" else "read_csv($1, header = true)"
    conn.execute(f"CREATE TABLE {table} AS SELECT * FROM {reader} LIMIT {INPUT_ROWS}", [path])


def _job(path: str, function: str) -> Any:
    import importlib.util

    spec = importlib.util.spec_from_file_location(f"sluice_lint_{Path(path).stem}", path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return getattr(module, function)


def _run(spark: Any, conn: Any, index: int, request: dict[str, Any]) -> dict[str, Any]:
    """One request's answer: ``{"columns": [...]}`` or ``{"error", "line", "code"}``."""
    try:
        _batch_table(conn, f"sluice_batches_{index}", request["columns"])
        frames = {"batches": spark.read.table(f"sluice_batches_{index}")}
        for number, (name, spec_input) in enumerate(request["inputs"].items()):
            _input_table(conn, f"sluice_input_{index}_{number}", spec_input)
            frames[name] = spark.read.table(f"sluice_input_{index}_{number}")
        table = _job(request["job"], request["function"])(spark, frames)
        if not hasattr(table, "columns") or not hasattr(table, "limit"):
            return {"error": f"{request['function']} returned a {type(table).__name__}, not a DataFrame"}
        columns = [str(c) for c in table.columns]
        table.limit(PROBE_ROWS).collect()  # run it, so what the engine cannot do shows here
        return {"columns": columns}
    except Exception as exc:  # user code on a foreign engine: any failure is a warning, never an error
        frames_in_job = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename == request["job"]]
        where = frames_in_job[-1] if frames_in_job else None
        message = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}"
        return {"error": message[:500], "line": where.lineno if where else None, "code": where.line if where else ""}


def _project_files() -> list[str]:
    """Files of every module loaded that is not installed (the job, what it imports, sluice): an
    answer holds only while none of them changes."""
    import sysconfig

    installed = tuple(p for p in {sysconfig.get_path(n) for n in ("stdlib", "platstdlib", "purelib", "platlib")} if p)
    files = {getattr(m, "__file__", None) for m in list(sys.modules.values())}
    return sorted(f for f in files if isinstance(f, str) and not f.startswith(installed) and os.path.isfile(f))


def serve() -> int:
    """Answer the requests on stdin with a JSON list on stdout (what the job prints goes to stderr)."""
    requests = json.load(sys.stdin)
    answers_fd = os.dup(1)
    os.dup2(2, 1)
    try:
        import duckdb
        import sqlframe

        conn = duckdb.connect()
        sqlframe.activate("duckdb", conn=conn)
        from pyspark.sql import SparkSession

        spark = SparkSession.builder.getOrCreate()
        answers = []
        for i, request in enumerate(requests):
            # The job's own module is not in sys.modules (it is loaded by path): named here.
            answers.append(_run(spark, conn, i, request) | {"files": sorted({request["job"], *_project_files()})})
    except Exception as exc:  # the engine itself failed to start
        answers = [{"error": f"{ENGINE} did not start: {type(exc).__name__}: {exc}"} for _ in requests]
    with os.fdopen(answers_fd, "w") as out:
        json.dump(answers, out)
    return 0


if __name__ == "__main__":
    sys.exit(serve())
