"""The declared batch schema: inferred from a file, written into a spec, enforced per batch."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import yaml
from tests.storage import local

from sluice.cli import main
from sluice.services.storage import PipelineStore, read_json
from sluice.spec.models import Validation
from sluice.steps.ingest import land_new_files
from sluice.steps.schema import conform, infer_columns, to_arrow, write_columns
from sluice.steps.validate import validate_batch

REPO = Path(__file__).resolve().parents[2]
COLUMNS = {"carrier": "string", "distance": "int", "arr_delay": "float"}


def flights(rows: int = 6) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "carrier": ["UA", "AA", "DL"] * (rows // 3),
            "distance": np.arange(rows) * 100 + 100,
            "arr_delay": np.linspace(-5, 30, rows),
        }
    )


def test_ints_with_nulls_stored_as_float_pass_as_int_and_are_written_as_int64() -> None:
    df = flights()
    df["distance"] = df["distance"].astype(float)
    df.loc[2, "distance"] = np.nan
    out = conform(df, COLUMNS, "parquet")
    assert (out.missing, out.mismatched, out.bad_rows) == ([], {}, {})
    table = to_arrow(out.frame, COLUMNS)
    assert str(table.schema.field("distance").type) == "int64"
    assert table.column("distance").null_count == 1
    # Inference keeps the file's own type: old and new batches of a store stay alike.
    assert infer_columns(df)["distance"] == "float"


def test_numbers_arriving_as_strings_in_parquet_are_a_mismatch() -> None:
    df = flights()
    df["distance"] = df["distance"].astype(str)
    out = conform(df, COLUMNS, "parquet")
    assert "declared int, arrives as string" in out.mismatched["distance"]
    assert "'100'" in out.mismatched["distance"]


def test_csv_cells_that_do_not_parse_fail_their_rows_only() -> None:
    df = flights().astype({"distance": object})
    df.loc[[1, 4], "distance"] = "n/a km"
    df.loc[3, "distance"] = 250.5
    out = conform(df, COLUMNS, "csv")
    assert out.mismatched == {}
    assert sorted(out.bad_rows["distance"]) == [1, 3, 4]


def test_extra_columns_are_dropped_and_missing_ones_named() -> None:
    df = flights().drop(columns=["arr_delay"]).assign(surprise=1)
    out = conform(df, COLUMNS, "parquet")
    assert out.missing == ["arr_delay"] and out.extra == ["surprise"]
    assert list(out.frame.columns) == ["carrier", "distance"]


def test_an_all_null_column_has_its_declared_type_in_clean_parquet(tmp_path: Path) -> None:
    df = flights().assign(carrier=None)
    table = to_arrow(conform(df, COLUMNS, "parquet").frame, COLUMNS)
    pq.write_table(table, tmp_path / "c.parquet")
    assert str(pq.read_schema(tmp_path / "c.parquet").field("carrier").type) == "string"


def _landed(tmp_path: Path, df: pd.DataFrame | None, name: str = "b.parquet", raw: bytes | None = None) -> tuple:
    landing = tmp_path / "in"
    landing.mkdir(exist_ok=True)
    if raw is not None:
        (landing / name).write_bytes(raw)
    elif name.endswith(".csv"):
        assert df is not None
        df.to_csv(landing / name, index=False)
    else:
        assert df is not None
        df.to_parquet(landing / name, index=False)
    store = PipelineStore(tmp_path / "store", "p")
    (batch,) = land_new_files(str(landing / name), store, "run").new
    return store, batch


def test_missing_declared_column_rejects_with_the_column_named(tmp_path: Path) -> None:
    store, batch = _landed(tmp_path, flights().rename(columns={"carrier": "airline"}))
    out = validate_batch(store, batch, Validation(), "parquet", columns=COLUMNS)
    assert out.status == "rejected"
    assert "declared column 'carrier' is missing" in out.reason
    report = read_json(local(store, store.keys.batch(batch)) / "validation.json")
    assert report["schema"]["missing"] == ["carrier"] and report["schema"]["extra_dropped"] == ["airline"]


def test_a_check_on_a_column_missing_from_the_batch_rejects_it(tmp_path: Path) -> None:
    # No declared schema: the check itself must notice the renamed column.
    store, batch = _landed(tmp_path, flights().rename(columns={"carrier": "airline"}))
    validation = Validation.model_validate({"expectations": [{"type": "not_null", "column": "carrier"}]})
    out = validate_batch(store, batch, validation, "parquet")
    assert out.status == "rejected"
    assert "check not_null on column 'carrier'" in out.reason
    assert store.batches.get(batch).status == "rejected"


@pytest.mark.parametrize("kind", ["header-only csv", "0-row parquet", "0-byte csv"])
def test_an_empty_batch_is_rejected_with_a_reason(tmp_path: Path, kind: str) -> None:
    if kind == "header-only csv":
        store, batch = _landed(tmp_path, None, "e.csv", raw=b"carrier,distance,arr_delay\n")
    elif kind == "0-byte csv":
        store, batch = _landed(tmp_path, None, "e.csv", raw=b"")
    else:
        store, batch = _landed(tmp_path, flights().iloc[:0])
    fmt = "csv" if kind.endswith("csv") else "parquet"
    out = validate_batch(store, batch, Validation(), fmt, columns=COLUMNS)
    assert out.status == "rejected" and "empty" in out.reason
    assert not (local(store, store.keys.batch(batch)) / "clean.parquet").exists()


def test_infer_schema_prints_columns_yaml(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    df = flights().assign(when=pd.Timestamp("2013-01-01"), ok=True)
    df.loc[0, "distance"] = None
    df.to_parquet(tmp_path / "s.parquet", index=False)
    assert main(["infer-schema", str(tmp_path / "s.parquet")]) == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed == {
        "columns": {
            "carrier": "string",
            "distance": "float",
            "arr_delay": "float",
            "when": "timestamp",
            "ok": "bool",
        }
    }


def test_infer_schema_writes_into_the_spec_keeping_comments(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from demo.producer import month_frame

    project = tmp_path / "proj"
    (project / "dags").mkdir(parents=True)
    shutil.copytree(REPO / "include" / "features", project / "include" / "features")
    spec = project / "dags" / "flights_delay.pipeline.yaml"
    shipped = (REPO / "dags" / "flights_delay.pipeline.yaml").read_text()
    declared = re.compile(
        r"^\s+columns:$|^\s{4}\w+: (string|int|float|bool|timestamp|date)$|^\s+# Declared batch schema"
    )
    # The demo spec without its declared schema, as a user has it before running the command.
    before = "\n".join(line for line in shipped.splitlines() if not declared.match(line)) + "\n"
    spec.write_text(before)
    monkeypatch.setenv("SLUICE_PROJECT_DIR", str(project))
    # The demo's own month files: its columns are what the shipped spec declares.
    month_frame(1, sample=60).to_parquet(tmp_path / "s.parquet", index=False)

    assert main(["infer-schema", str(tmp_path / "s.parquet"), "--spec", str(spec), "--write"]) == 0
    after = spec.read_text()
    assert yaml.safe_load(after)["source"]["columns"] == yaml.safe_load(shipped)["source"]["columns"]
    kept = [line for line in before.splitlines() if line.strip()]
    assert all(line in after.splitlines() for line in kept), "every other line, comments included, is kept"
    # Writing again replaces the block instead of adding a second one.
    assert main(["infer-schema", str(tmp_path / "s.parquet"), "--spec", str(spec), "--write"]) == 0
    assert spec.read_text() == after


def test_write_columns_into_a_flow_style_source() -> None:
    text = "pipeline: p\nsource: {uri: in, pattern: '*.csv'}\n"
    out = yaml.safe_load(write_columns(text, {"a": "int"}))
    assert out["source"] == {"uri": "in", "pattern": "*.csv", "columns": {"a": "int"}}
