"""The child process where feature jobs run on sqlframe over DuckDB: for lint, and for ``engine: duckdb``.

``python -m sluice.steps.feature_engine`` (:mod:`sluice.steps.feature_probe`) reads a JSON list
of requests on stdin (the job's file and function, the declared batch columns, the reference
inputs) and writes one answer per request on stdout: the job's output columns, or the error it
raised and the job's line.

``python -m sluice.steps.feature_engine build`` (:mod:`sluice.steps.features_duckdb`) reads one
build on stdin (the job, the reference inputs, and runs: local batch files in, a local parquet
file out) and writes one answer per run: the table's rows and columns, or the error.
``sqlframe.activate`` makes ``pyspark.sql`` resolve to sqlframe in this process only; this
module imports nothing of sluice's (it starts in about a second, most of it DuckDB and sqlglot).
"""

from __future__ import annotations

import json
import os
import sys
import traceback
from pathlib import Path
from typing import Any, cast

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


def _input_table(conn: Any, table: str, spec_input: dict[str, Any], limit: int | None = INPUT_ROWS) -> None:
    """The first ``limit`` rows of a reference input (a file, or a folder of them); all of them, as a view, with
    ``limit=None``."""
    path = spec_input["path"]
    fmt = spec_input["format"]
    if Path(path).is_dir():
        path = f"{path}/**/*.{fmt}"
    reader = "read_parquet($1, union_by_name = true)" if fmt == "parquet" else "read_csv($1, header = true)"
    if limit is None:
        # A view cannot take a prepared parameter: the path goes in as a quoted literal.
        literal = "'" + str(path).replace("'", "''") + "'"
        conn.execute(f"CREATE OR REPLACE VIEW {table} AS SELECT * FROM {reader.replace('$1', literal)}")
        return
    conn.execute(f"CREATE TABLE {table} AS SELECT * FROM {reader} LIMIT {limit}", [path])


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
            return {"error": f"{request['function']} returned a {type(table).__name__}, not a DataFrame", "line": None}
        columns = [str(c) for c in table.columns]
        table.limit(PROBE_ROWS).collect()  # run it, so what the engine cannot do shows here
        return {"columns": columns}
    except Exception as exc:  # user code on a foreign engine: any failure is a warning, never an error
        return _failure(exc, request["job"])


def _project_files() -> list[str]:
    """Files of every module loaded that is not installed (the job, what it imports, sluice): an
    answer holds only while none of them changes."""
    import sysconfig

    installed = tuple(p for p in {sysconfig.get_path(n) for n in ("stdlib", "platstdlib", "purelib", "platlib")} if p)
    files = {getattr(m, "__file__", None) for m in list(sys.modules.values())}
    return sorted(f for f in files if isinstance(f, str) and not f.startswith(installed) and os.path.isfile(f))


def _session() -> tuple[Any, Any]:
    """A sqlframe session over a new in-process DuckDB, and the connection; ``pyspark.sql`` is sqlframe's from now."""
    import duckdb
    import sqlframe

    conn = duckdb.connect()
    sqlframe.activate("duckdb", conn=conn)
    from pyspark.sql import SparkSession

    return SparkSession.builder.getOrCreate(), conn


def _parquet_list(paths: list[str]) -> str:
    return "[" + ", ".join("'" + p.replace("'", "''") + "'" for p in paths) + "]"


def _build_run(spark: Any, conn: Any, job: Any, build: dict[str, Any], run: dict[str, Any]) -> dict[str, Any]:
    """One table of an ``engine: duckdb`` build: the batches of ``run`` through the job, written to ``run["out"]``.

    The batches are read as Spark's ``mergeSchema`` reads them (columns matched by name, a
    column missing from a file is null there); the table is one parquet file.
    """
    conn.execute(
        f"CREATE OR REPLACE VIEW sluice_batches AS SELECT * FROM read_parquet({_parquet_list(run['batches'])}, "
        "union_by_name = true)"
    )
    frames = {"batches": spark.read.table("sluice_batches")}
    for number, name in enumerate(build["inputs"]):
        frames[name] = spark.read.table(f"sluice_input_{number}")
    table = job(spark, frames)
    if not hasattr(table, "columns") or not hasattr(table, "sql"):
        raise TypeError(f"{build['function']} returned a {type(table).__name__}, not a DataFrame")
    out = str(run["out"]).replace("'", "''")
    conn.execute(f"COPY ({spark_casts(conn, table.sql(dialect='duckdb', pretty=False))}) TO '{out}' (FORMAT parquet)")
    (rows,) = conn.execute(f"SELECT count(*) FROM read_parquet('{out}')").fetchone()
    return {"rows": int(rows), "columns": [str(c) for c in table.columns]}


def spark_casts(conn: Any, sql: str) -> str:
    """``sql`` with each cast of a fractional number to an integer type truncating, as Spark's does.

    DuckDB rounds there (``CAST(5.59 AS INT)`` is 6, Spark's is 5) and sqlframe passes the cast
    through; the source's type is known only once the query is typed against the tables it reads.
    A query that cannot be typed is left as it is (said on stderr).
    """
    import sqlglot
    from sqlglot import exp
    from sqlglot.optimizer.annotate_types import annotate_types
    from sqlglot.optimizer.qualify import qualify
    from sqlglot.schema import MappingSchema

    tables: dict[str, dict[str, str]] = {}
    for table, column, kind in conn.execute(
        "SELECT table_name, column_name, data_type FROM information_schema.columns"
    ).fetchall():
        tables.setdefault(table, {})[column] = kind

    def truncating(node: exp.Expression) -> exp.Expression:
        if (
            isinstance(node, exp.Cast)
            and node.to.is_type(*exp.DataType.INTEGER_TYPES)
            and node.this.type is not None
            and node.this.type.is_type(*exp.DataType.REAL_TYPES)
        ):
            return exp.Cast(this=exp.func("trunc", node.this.copy()), to=node.to.copy())
        return node

    try:
        schema = MappingSchema(cast("dict[str, object]", tables), dialect="duckdb")
        tree = qualify(sqlglot.parse_one(sql, dialect="duckdb"), schema=schema, dialect="duckdb")
        typed = annotate_types(tree, schema=schema, dialect="duckdb")
    except Exception as exc:  # sqlglot's typing of a query it does not know: the query runs as DuckDB types it
        print(f"sluice: casts left as DuckDB does them: {type(exc).__name__}: {exc}", file=sys.stderr)
        return sql
    return str(typed.transform(truncating).sql(dialect="duckdb"))


def _exit_with_parent(every: float = 1.0) -> None:
    """Exit as soon as the task that started this build is gone (killed, as Spark's JVM dies with its driver)."""
    import threading
    import time

    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(every)
        os._exit(1)

    threading.Thread(target=watch, daemon=True).start()


def build() -> int:
    """Run the build on stdin (``engine: duckdb``); a JSON list of answers, one per run, on stdout.

    A failure stops the build: its answer (the error and the job's line) is the last one.
    """
    _exit_with_parent()
    request = json.load(sys.stdin)
    answers_fd = os.dup(1)
    os.dup2(2, 1)  # what the job prints goes to stderr, not into the answers
    answers: list[dict[str, Any]] = []
    try:
        spark, conn = _session()
        for number, spec_input in enumerate(request["inputs"].values()):
            _input_table(conn, f"sluice_input_{number}", spec_input, limit=None)
        job = _job(request["job"], request["function"])
        for run in request["runs"]:
            answers.append(_build_run(spark, conn, job, request, run))
    except Exception as exc:  # reported by the parent, with the job's line
        answers.append(_failure(exc, request["job"]))
    with os.fdopen(answers_fd, "w") as out:
        json.dump(answers, out)
    return 0


def _failure(exc: BaseException, job_file: str) -> dict[str, Any]:
    """``{"error", "line", "code"}`` of an exception, at the job's innermost line it passed through."""
    frames_in_job = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename == job_file]
    where = frames_in_job[-1] if frames_in_job else None
    message = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}"
    return {"error": message[:500], "line": where.lineno if where else None, "code": where.line if where else ""}


def serve() -> int:
    """Answer the requests on stdin with a JSON list on stdout (what the job prints goes to stderr)."""
    requests = json.load(sys.stdin)
    answers_fd = os.dup(1)
    os.dup2(2, 1)
    try:
        spark, conn = _session()
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
    sys.exit(build() if sys.argv[1:] == ["build"] else serve())
