"""The declared batch schema (``source.columns``): infer it, read batches by it, enforce it.

Rules (the "Declared schema" section of docs/how-it-works.md says the same):

* a declared column missing from the batch rejects the batch;
* a column whose values are of another kind than declared (numbers arriving as strings in
  a parquet file, say) rejects the batch; in a CSV file, which has no types, each cell
  that does not parse as the declared type fails its row (check ``type:<column>``);
* ``int`` accepts integer columns and float columns whose values are all whole numbers
  (pandas stores an int column with nulls as float): ``1.0`` and NaN pass, ``1.5`` fails
  its row;
* ``float`` accepts ints and floats; ``string`` accepts text (CSV columns declared
  ``string`` are read as text, so ``007`` stays ``007``); ``bool`` accepts booleans (CSV:
  ``True``/``False``, any case); ``timestamp`` and ``date`` accept datetimes, and in CSV
  ISO 8601 text;
* a column that is entirely null passes whatever its declared type;
* extra columns are accepted and dropped from ``clean.parquet``;
* ``clean.parquet`` is written with exactly the declared columns, in declared order, with
  fixed Arrow types (string, int64, float64, bool, timestamp[us], date32), so every
  accepted batch has the same parquet schema and Spark never has to merge two.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, cast

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

NUMERIC = ("int", "float")


@dataclass
class Conformed:
    """A batch read against a declared schema.

    Attributes:
        frame: Declared columns only, cast to the declared types; cells that failed to
            parse are null (their rows are listed in ``bad_rows``).
        missing: Declared columns the batch does not have.
        extra: Columns the batch has but the schema does not declare (dropped).
        mismatched: ``{column: why}`` for columns of another kind than declared.
        bad_rows: ``{column: [row index, ...]}`` of cells that do not parse (CSV) or are not
            whole numbers in an ``int`` column.
    """

    frame: pd.DataFrame
    missing: list[str] = field(default_factory=list)
    extra: list[str] = field(default_factory=list)
    mismatched: dict[str, str] = field(default_factory=dict)
    bad_rows: dict[str, list[Any]] = field(default_factory=dict)


def arrow_type(kind: str) -> pa.DataType:
    """The Arrow type ``clean.parquet`` stores a declared column type as."""
    import pyarrow as pa

    types = {
        "string": pa.string(),
        "int": pa.int64(),
        "float": pa.float64(),
        "bool": pa.bool_(),
        "timestamp": pa.timestamp("us"),
        "date": pa.date32(),
    }
    return types[kind]


def read_frame(path: Path | BinaryIO, fmt: str, columns: Mapping[str, str] | None = None) -> pd.DataFrame:
    """Read a batch file (a local path or an open binary file) with pandas; CSV columns declared
    string, timestamp or date are read as text."""
    import pandas as pd

    if fmt == "parquet":
        return pd.read_parquet(path)
    text: Any = {c: "string" for c, kind in (columns or {}).items() if kind in ("string", "timestamp", "date")}
    return pd.read_csv(path, dtype=text or None)


def read_frames(
    fh: BinaryIO, fmt: str, columns: Mapping[str, str] | None, chunk_rows: int | None
) -> Iterator[pd.DataFrame]:
    """The batch as pandas frames of at most ``chunk_rows`` rows (None: the whole batch at once).

    Row labels run on across frames (0..n-1 over the batch), so a label names its row in the
    whole batch. A batch read whole, or a parquet file that fits one frame, is read exactly as
    :func:`read_frame` reads it.
    """
    if chunk_rows is None:
        yield read_frame(fh, fmt, columns)
        return
    if fmt != "parquet":
        text: Any = {c: "string" for c, kind in (columns or {}).items() if kind in ("string", "timestamp", "date")}
        import pandas as pd

        # pandas numbers the rows of each chunk on from the last one.
        yield from pd.read_csv(fh, dtype=text or None, chunksize=chunk_rows)
        return
    import pandas as pd
    import pyarrow.parquet as pq

    parquet = pq.ParquetFile(fh)
    if parquet.metadata.num_rows <= chunk_rows:
        fh.seek(0)
        yield read_frame(fh, fmt, columns)
        return
    # pandas' own index columns (stored as columns) are dropped: labels are row positions here.
    stored_index = [
        c for c in (parquet.schema_arrow.pandas_metadata or {}).get("index_columns", []) if isinstance(c, str)
    ]
    start = 0
    for batch in parquet.iter_batches(batch_size=chunk_rows):
        frame = batch.drop_columns(stored_index).to_pandas() if stored_index else batch.to_pandas()
        frame.index = pd.RangeIndex(start, start + len(frame))
        start += len(frame)
        yield frame


def _mismatch(raw: pd.Series, kind: str, have: str) -> str:
    """Why a column does not fit its declared kind, with its first few values."""
    # Only on the error path: listing a whole column's values cost more than the cast itself.
    shown = ", ".join(repr(v) for v in raw.dropna().head(3))
    return f"declared {kind}, arrives as {have} (e.g. {shown})"


def _kind_of(series: pd.Series) -> str:
    """A short name for what a column holds: int, float, bool, string, datetime, date, mixed, empty."""
    import pandas as pd

    if series.isna().all():
        return "empty"
    if pd.api.types.is_bool_dtype(series):
        return "bool"
    if pd.api.types.is_integer_dtype(series):
        return "int"
    if pd.api.types.is_float_dtype(series):
        return "float"
    if pd.api.types.is_datetime64_any_dtype(series):
        return "datetime"
    inferred = pd.api.types.infer_dtype(series, skipna=True)
    return {
        "string": "string",
        "integer": "int",
        "floating": "float",
        "mixed-integer-float": "float",
        "boolean": "bool",
        "datetime": "datetime",
        "datetime64": "datetime",
        "date": "date",
    }.get(inferred, "mixed")


def _with_none(series: pd.Series) -> pd.Series:
    """``series`` as Python objects with None for every null (what Arrow takes as null)."""
    # pandas takes None as the fill value; pandas-stubs' ``where`` does not list it.
    return series.astype("object").where(series.notna(), cast(Any, None))


def _whole(series: pd.Series) -> pd.Series:
    """True where a numeric value is a whole number (nulls count as whole)."""
    return series.isna() | (series == series.round())


def conform(frame: pd.DataFrame, columns: Mapping[str, str], fmt: str) -> Conformed:
    """Check ``frame`` against the declared ``columns`` and cast it to them.

    Args:
        frame: The batch as read by :func:`read_frame`.
        columns: ``source.columns`` of the spec.
        fmt: ``parquet`` (typed: a wrong kind rejects the batch) or ``csv`` (untyped:
            cells that do not parse fail their rows).

    Returns:
        The cast frame and everything that did not fit.
    """
    import pandas as pd

    missing = [c for c in columns if c not in frame.columns]
    extra = [str(c) for c in frame.columns if c not in columns]
    mismatched: dict[str, str] = {}
    bad_rows: dict[str, list[Any]] = {}
    typed: dict[str, pd.Series] = {}
    for name, kind in columns.items():
        if name in missing:
            continue
        raw = frame[name]
        cast = _cast(raw, kind, fmt)
        if isinstance(cast, str):
            mismatched[name] = cast
            continue
        value, bad = cast
        if bad.any():
            bad_rows[name] = list(raw.index[bad])
            value = value.where(~bad)
        typed[name] = value
    return Conformed(pd.DataFrame(typed, index=frame.index), missing, extra, mismatched, bad_rows)


def _cast(raw: pd.Series, kind: str, fmt: str) -> tuple[pd.Series, pd.Series] | str:
    """One column cast to its declared ``kind``.

    Returns:
        The cast values and the mask of cells that did not parse, or why the column does
        not fit at all (its kind differs, and a CSV string column cannot be parsed as it).
    """
    import pandas as pd

    have = _kind_of(raw)
    bad = pd.Series(False, index=raw.index)
    parse = fmt == "csv" and have in ("string", "mixed")
    if have == "empty":
        return pd.Series([None] * len(raw), index=raw.index, dtype="object"), bad
    if kind in NUMERIC:
        if have in ("int", "float"):
            value = pd.to_numeric(raw)
        elif parse:
            value = pd.to_numeric(raw, errors="coerce")
            bad = raw.notna() & value.isna()
        else:
            return _mismatch(raw, kind, have)
        if kind == "int":
            fraction = ~_whole(value)
            bad |= fraction
            value = value.where(~fraction)
        return value, bad
    if kind == "string":
        return (_with_none(raw), bad) if have == "string" else _mismatch(raw, kind, have)
    if kind == "bool":
        if have == "bool":
            return _with_none(raw), bad
        if not parse:
            return _mismatch(raw, kind, have)
        lowered = raw.astype("string").str.strip().str.lower()
        value = lowered.map({"true": True, "false": False}).astype("object")
        return value, raw.notna() & value.isna()
    # timestamp, date
    if have in ("datetime", "date"):
        return pd.to_datetime(raw, utc=True).dt.tz_convert(None), bad
    if not parse:
        return _mismatch(raw, kind, have)
    value = pd.to_datetime(raw, errors="coerce", utc=True, format="ISO8601").dt.tz_convert(None)
    return value, raw.notna() & value.isna()


def to_arrow(frame: pd.DataFrame, columns: Mapping[str, str]) -> pa.Table:
    """``frame`` as an Arrow table with exactly the declared columns and types (no pandas metadata).

    Without pandas metadata, readers see plain parquet types: pandas reads an int column
    with nulls back as float64, as it always did, and Spark sees the same schema in every
    batch.
    """
    import pandas as pd
    import pyarrow as pa

    arrays = []
    for name, kind in columns.items():
        s = frame[name]
        target = arrow_type(kind)
        if s.isna().all():
            arrays.append(pa.nulls(len(s), type=target))
        elif kind == "int":
            arrays.append(pa.array(pd.to_numeric(s).astype("Int64"), type=target, from_pandas=True))
        elif kind == "float":
            arrays.append(pa.array(pd.to_numeric(s).astype("float64"), type=target, from_pandas=True))
        elif kind in ("timestamp", "date"):
            stamps = pa.array(pd.to_datetime(s), from_pandas=True)
            arrays.append(stamps.cast(target, safe=False))
        else:
            arrays.append(pa.array(_with_none(s), type=target, from_pandas=True))
    return pa.Table.from_arrays(arrays, names=list(columns))


def infer_columns(frame: pd.DataFrame) -> dict[str, str]:
    """Declared column types for a sample batch (what ``sluice infer-schema`` prints).

    The file's own types are kept: a float column stays ``float`` even when its values
    are whole numbers with nulls (an int column as pandas stores it), so ``clean.parquet``
    keeps the types batches had before a schema was declared and old and new batches
    still read together. Declare such a column ``int`` by hand if that is what it is:
    whole floats and nulls pass as ``int``. A column with no non-null value is inferred
    as ``string`` (check it by hand).
    """
    out: dict[str, str] = {}
    for name in frame.columns:
        have = _kind_of(frame[name])
        out[str(name)] = {"datetime": "timestamp", "empty": "string", "mixed": "string"}.get(have, have)
    return out


def infer_file(path: Path) -> dict[str, str]:
    """:func:`infer_columns` of a parquet or CSV file (by its suffix; anything but ``.csv`` is parquet)."""
    fmt = "csv" if path.suffix.lower() in (".csv", ".txt") else "parquet"
    return infer_columns(read_frame(path, fmt))


def columns_yaml(columns: Mapping[str, str], indent: int = 0) -> str:
    """``columns:`` as a YAML block mapping, one column a line."""
    import yaml

    pad = " " * indent
    lines = [f"{pad}columns:"]
    for name, kind in columns.items():
        key = yaml.safe_dump(name, default_style=None).strip().removesuffix("...").strip()
        lines.append(f"{pad}  {key}: {kind}")
    return "\n".join(lines) + "\n"


_TOP_KEY = re.compile(r"^([A-Za-z_][\w-]*)\s*:")


def write_columns(spec_text: str, columns: Mapping[str, str]) -> str:
    """The spec text with ``source.columns`` set to ``columns``; every other line kept as written.

    Works on the text so comments and layout survive when ``source:`` is a block mapping;
    an existing ``columns:`` block under it is replaced. A flow-style ``source: {...}`` is
    rewritten as YAML data (content kept, comments inside it lost).
    """
    import yaml

    lines = spec_text.splitlines(keepends=True)
    start = next((i for i, line in enumerate(lines) if re.match(r"^source\s*:\s*(#.*)?$", line.rstrip("\n"))), None)
    if start is None:
        data = yaml.safe_load(spec_text) or {}
        if not isinstance(data, dict) or not isinstance(data.get("source"), dict):
            raise ValueError("the spec has no 'source' mapping to put columns under")
        data["source"] = dict(data["source"]) | {"columns": columns}
        return yaml.safe_dump(data, sort_keys=False)
    end = start + 1
    while end < len(lines) and (not lines[end].strip() or lines[end][0] in " \t#"):
        end += 1
    # Trailing blank and comment lines belong to what follows, not to source.
    while end > start + 1 and (not lines[end - 1].strip() or lines[end - 1].lstrip().startswith("#")):
        end -= 1
    body = lines[start + 1 : end]
    indent = next((len(b) - len(b.lstrip(" ")) for b in body if b.strip() and not b.lstrip().startswith("#")), 2)
    kept: list[str] = []
    skipping = False
    for line in body:
        stripped = line.strip()
        level = len(line) - len(line.lstrip(" "))
        if stripped and level == indent and re.match(r"^columns\s*:", stripped):
            skipping = True
            continue
        if skipping and (not stripped or level > indent or (stripped.startswith("#") and level > indent)):
            continue
        skipping = False
        kept.append(line)
    if kept and not kept[-1].endswith("\n"):
        kept[-1] += "\n"
    block = columns_yaml(columns, indent)
    return "".join(lines[: start + 1] + kept + [block] + lines[end:])
