"""Bad-data corpus through the real land and validate steps (real Great Expectations).

Every case ends accepted, quarantined with per-row reasons, or rejected with a reason;
no row is lost or counted twice; and a good batch after all of them goes through. The
cases share one store and one process, so Great Expectations is imported once.
"""

from __future__ import annotations

import io
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from sluice.services.landing import LocalInbox
from sluice.services.storage import PipelineStore, read_json
from sluice.spec.models import Validation
from sluice.steps.ingest import land_new_files
from sluice.steps.validate import validate_batch
from tests.storage import local

pytestmark = pytest.mark.integration
ROWS = 2000
COLUMNS = {"carrier": "string", "origin": "string", "month": "int", "distance": "int", "arr_delay": "float"}
VALIDATION = Validation.model_validate(
    {
        "expectations": [
            {"type": "not_null", "column": "carrier"},
            {"type": "between", "column": "distance", "min": 1, "max": 5000},
            {"type": "in_set", "column": "origin", "values": ["EWR", "JFK", "LGA"]},
        ],
        "on_failure": "quarantine",
        "max_quarantine_rate": 0.02,
    }
)


def good(seed: int = 0, rows: int = ROWS) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    delay = rng.normal(5, 20, rows).round(1)
    delay[rng.choice(rows, rows // 50, replace=False)] = np.nan
    return pd.DataFrame(
        {
            "carrier": rng.choice(["UA", "AA", "DL", "B6"], rows),
            "origin": rng.choice(["EWR", "JFK", "LGA"], rows),
            "month": np.full(rows, 1 + seed % 12),
            "distance": rng.integers(80, 4983, rows),
            "arr_delay": delay,
        }
    )


def parquet(df: pd.DataFrame) -> bytes:
    buf = io.BytesIO()
    df.to_parquet(buf, index=False)
    return buf.getvalue()


def csv(df: pd.DataFrame, **kwargs: Any) -> bytes:
    return df.to_csv(index=False, **kwargs).encode(kwargs.pop("encoding", "utf-8"))


def bad_rows(share: float) -> pd.DataFrame:
    df = good(3)
    df.loc[: int(ROWS * share) - 1, "distance"] = -1
    return df


def latin1() -> bytes:
    df = good(4).astype({"carrier": object})
    df.loc[7, "carrier"] = "Zürich Air"
    return df.to_csv(index=False).encode("latin-1")


def csv_with_unparseable_cells() -> bytes:
    df = good(5).astype({"distance": object})
    df.loc[:9, "distance"] = "far"  # 10 of 2,000 rows: 0.5%
    return csv(df)


def csv_with_a_10mb_cell() -> bytes:
    df = good(11).astype({"carrier": object})
    df.loc[42, "carrier"] = "x" * 10_000_000  # one 10 MB value (before: accepted and trained on)
    return csv(df)


def ints_with_nulls() -> bytes:
    df = good(6)
    df["distance"] = df["distance"].astype(float)
    df.loc[:4, "distance"] = np.nan
    return parquet(df)


@dataclass(frozen=True)
class Case:
    """One file of the corpus and the outcome it must get."""

    name: str
    fmt: str
    content: Callable[[], bytes]
    status: str  # accepted | rejected
    reason: str  # a fragment of the reason
    rows: int = ROWS
    quarantined: int = 0
    row_reasons: frozenset[str] = frozenset()


CASES = [
    Case("empty", "csv", lambda: b"", "rejected", "empty file (0 bytes)", rows=0),
    Case("header_only", "csv", lambda: b"carrier,origin,month,distance,arr_delay\n", "rejected", "empty batch", rows=0),
    Case("zero_rows", "parquet", lambda: parquet(good().iloc[:0]), "rejected", "empty batch", rows=0),
    Case("wrong_delimiter", "csv", lambda: csv(good(1), sep=";"), "rejected", "declared column 'carrier' is missing"),
    Case("wrong_encoding", "csv", latin1, "rejected", "not UTF-8 text", rows=0),
    Case(
        "missing_columns",
        "parquet",
        lambda: parquet(good(2).drop(columns=["arr_delay"])),
        "rejected",
        "'arr_delay' is missing",
    ),
    Case("extra_columns", "parquet", lambda: parquet(good(2).assign(surprise="x")), "accepted", "all checks passed"),
    Case(
        "numeric_as_string",
        "parquet",
        lambda: parquet(good(2).astype({"distance": str})),
        "rejected",
        "column 'distance': declared int, arrives as string",
    ),
    Case(
        "renamed_checked_column",
        "parquet",
        lambda: parquet(good(2).rename(columns={"origin": "from"})),
        "rejected",
        "'origin' is missing",
    ),
    Case(
        "bad_1pct",
        "parquet",
        lambda: parquet(bad_rows(0.01)),
        "accepted",
        "20 of 2000 rows quarantined",
        quarantined=20,
        row_reasons=frozenset({"between:distance"}),
    ),
    Case(
        "bad_30pct",
        "parquet",
        lambda: parquet(bad_rows(0.30)),
        "rejected",
        "quarantine rate 30.00% exceeds",
        quarantined=600,
        row_reasons=frozenset({"between:distance"}),
    ),
    Case(
        "bad_100pct",
        "parquet",
        lambda: parquet(bad_rows(1.0)),
        "rejected",
        "quarantine rate 100.00% exceeds",
        quarantined=ROWS,
        row_reasons=frozenset({"between:distance"}),
    ),
    Case(
        "csv_unparseable_cells",
        "csv",
        csv_with_unparseable_cells,
        "accepted",
        "10 of 2000 rows quarantined",
        quarantined=10,
        row_reasons=frozenset({"type:distance"}),
    ),
    Case(
        "csv_10mb_cell",
        "csv",
        csv_with_a_10mb_cell,
        "accepted",
        "1 of 2000 rows quarantined",
        quarantined=1,
        row_reasons=frozenset({"size:carrier,size:row"}),
    ),
    Case("ints_with_nulls_as_float", "parquet", ints_with_nulls, "accepted", "all checks passed"),
    # GX skips nulls in in_set, so an all-null checked column passes; it is still written as string.
    Case("all_null_column", "parquet", lambda: parquet(good(7).assign(origin=None)), "accepted", "all checks passed"),
    Case(
        "truncated_parquet", "parquet", lambda: parquet(good(8))[:-300], "rejected", "unreadable parquet file", rows=0
    ),
]


@dataclass
class Outcome:
    """What land and validate did with one case's file."""

    batch: str
    record: dict[str, Any]
    report: dict[str, Any]
    folder: Path


def _land_and_validate(landing: Path, store: PipelineStore, name: str, fmt: str) -> Outcome:
    result = land_new_files(LocalInbox(landing, f"*.{fmt}", settle_seconds=0), store, f"run-{name}")
    (batch,) = result.new
    validate_batch(store, batch, VALIDATION, fmt, columns=COLUMNS)
    folder = local(store, store.keys.batch(batch))
    return Outcome(
        batch, store.batches.get(batch).model_dump(mode="json"), read_json(folder / "validation.json"), folder
    )


class HalfWriter(threading.Thread):
    """Writes a file in two halves; the second only when released."""

    def __init__(self, path: Path, data: bytes) -> None:
        super().__init__(daemon=True)
        self.path, self.data = path, data
        self.half, self.release, self.finished = threading.Event(), threading.Event(), threading.Event()

    def run(self) -> None:
        with self.path.open("wb") as fh:
            fh.write(self.data[: len(self.data) // 2])
            fh.flush()
            self.half.set()
            self.release.wait(10)
            fh.write(self.data[len(self.data) // 2 :])
        self.finished.set()


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("bad-data")
    landing = root / "landing"
    landing.mkdir()
    store = PipelineStore(root / "store", "corpus")
    outcomes: dict[str, Any] = {}
    sizes: dict[str, int] = {}
    for case in CASES:
        content = case.content()
        (landing / f"{case.name}.{case.fmt}").write_bytes(content)
        sizes[case.name] = len(content)
        outcomes[case.name] = _land_and_validate(landing, store, case.name, case.fmt)

    # Half-written: land runs while the producer is mid-file; the settle look sees it grow.
    data = csv(good(9))
    writer = HalfWriter(landing / "half_written.csv", data)
    writer.start()
    assert writer.half.wait(10)

    def producer_writes_during_settle(_: float) -> None:
        writer.release.set()
        assert writer.finished.wait(10)

    mid = land_new_files(
        LocalInbox(landing, "*.csv", settle_seconds=1, sleep=producer_writes_during_settle), store, "run-mid"
    )
    outcomes["half_written_during_write"] = mid
    outcomes["half_written"] = _land_and_validate(landing, store, "half_written", "csv")
    # And the next good batch after all of that goes through.
    (landing / "next_good.parquet").write_bytes(parquet(good(10)))
    outcomes["next_good"] = _land_and_validate(landing, store, "next_good", "parquet")
    return {"outcomes": outcomes, "store": store, "landing": landing}


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_each_case_gets_its_outcome_and_no_row_is_lost_or_counted_twice(corpus: dict[str, Any], case: Case) -> None:
    out: Outcome = corpus["outcomes"][case.name]
    assert out.record["status"] == case.status, out.record["reason"]
    assert case.reason in out.record["reason"]
    assert out.report["rows"] == case.rows
    assert out.report["quarantined"] == case.quarantined
    clean = out.folder / "clean.parquet"
    quarantine = out.folder / "quarantine.parquet"
    q_rows = len(pd.read_parquet(quarantine)) if quarantine.exists() else 0
    assert q_rows == case.quarantined
    if case.status == "accepted":
        # Nothing lost, nothing counted twice: clean + quarantined == rows in the file.
        assert len(pd.read_parquet(clean)) + q_rows == case.rows
        assert pq.read_schema(clean).names == list(COLUMNS), "clean.parquet has exactly the declared columns"
    else:
        assert not clean.exists(), "a rejected batch gives training nothing"
    if case.row_reasons:
        reasons = set(pd.read_parquet(quarantine)["_sluice_failed_checks"])
        assert reasons == set(case.row_reasons)


def _rows(path: Path) -> pd.DataFrame | None:
    return pd.read_parquet(path) if path.exists() else None


def test_validated_in_chunks_each_case_gets_the_same_outcome_and_rows(corpus: dict[str, Any], tmp_path: Path) -> None:
    """A batch larger than memory is validated ``chunk_rows`` at a time: same verdict, same files.

    Here 2,000-row batches in chunks of 1,000 (two chunks, the failing rows split across them,
    a CSV's unparsed cells in the first); everything a reader sees must match the batch read whole.
    """
    landing, store = tmp_path / "landing", PipelineStore(tmp_path / "store", "chunked")
    landing.mkdir()
    chunked = VALIDATION.model_copy(update={"chunk_rows": 1_000})
    batches = {}
    for case in CASES:
        (landing / f"{case.name}.{case.fmt}").write_bytes(case.content())
        (batch,) = land_new_files(LocalInbox(landing, f"*.{case.fmt}", settle_seconds=0), store, case.name).new
        validate_batch(store, batch, chunked, case.fmt, columns=COLUMNS)
        batches[case.name] = batch
        folder, whole = local(store, store.keys.batch(batch)), corpus["outcomes"][case.name]
        report = read_json(folder / "validation.json")
        for field in ("status", "reason", "rows", "quarantined", "failed_checks"):
            assert report[field] == whole.report[field], (case.name, field)
        for name in ("clean.parquet", "quarantine.parquet"):
            mine, theirs = _rows(folder / name), _rows(whole.folder / name)
            assert (mine is None) == (theirs is None), (case.name, name)
            if mine is not None and theirs is not None:
                pd.testing.assert_frame_equal(mine, theirs, obj=f"{case.name} {name}")
    for name in ("bad_1pct", "csv_unparseable_cells"):
        passes = read_json(local(store, store.keys.batch(batches[name])) / "gx_result.json")["passes"]
        assert len(passes) == 2, f"{name}: one GX pass per chunk"


def test_against_a_pinned_schema_each_case_gets_the_declared_schemas_outcome_and_rows(
    corpus: dict[str, Any], tmp_path: Path
) -> None:
    """A spec without ``source.columns``: the first good batch pins its columns (here exactly the
    declared ones), and every case is then held to the pin as to a declared schema."""
    from sluice.steps.schema_pin import read_pin

    landing, store = tmp_path / "landing", PipelineStore(tmp_path / "store", "pinned")
    landing.mkdir()
    (landing / "first.parquet").write_bytes(parquet(good(0)))
    (first,) = land_new_files(LocalInbox(landing, "*.parquet", settle_seconds=0), store, "first").new
    assert validate_batch(store, first, VALIDATION, "parquet").status == "accepted"
    pin = read_pin(store)
    assert pin is not None and pin.types == COLUMNS and pin.batch_id == first
    for case in CASES:
        (landing / f"{case.name}.{case.fmt}").write_bytes(case.content())
        (batch,) = land_new_files(LocalInbox(landing, f"*.{case.fmt}", settle_seconds=0), store, case.name).new
        validate_batch(store, batch, VALIDATION, case.fmt)
        folder, declared = local(store, store.keys.batch(batch)), corpus["outcomes"][case.name]
        report = read_json(folder / "validation.json")
        for field in ("status", "rows", "quarantined", "failed_checks"):
            assert report[field] == declared.report[field], (case.name, field)
        assert report["reason"].startswith(declared.report["reason"]), case.name
        if "schema drift" in report["reason"]:
            assert f"the schema is pinned from batch {first}" in report["reason"]
        for name in ("clean.parquet", "quarantine.parquet"):
            mine, theirs = _rows(folder / name), _rows(declared.folder / name)
            assert (mine is None) == (theirs is None), (case.name, name)
            if mine is not None and theirs is not None:
                pd.testing.assert_frame_equal(mine, theirs, obj=f"{case.name} {name}")
    assert read_pin(store) == pin, "no later batch changed the pin"


def test_a_half_written_file_is_landed_only_once_finished(corpus: dict[str, Any]) -> None:
    mid = corpus["outcomes"]["half_written_during_write"]
    assert mid.new == [] and mid.unsettled == ["half_written.csv"] and mid.archived == []
    done: Outcome = corpus["outcomes"]["half_written"]
    assert done.record["status"] == "accepted" and done.report["rows"] == ROWS


def test_the_next_good_batch_goes_through_and_training_reads_only_accepted_batches(corpus: dict[str, Any]) -> None:
    store: PipelineStore = corpus["store"]
    outcomes = corpus["outcomes"]
    nxt: Outcome = outcomes["next_good"]
    assert nxt.record["status"] == "accepted" and nxt.report["rows"] == ROWS
    accepted = {r.batch_id for r in store.batches.accepted()}
    expected = {c.name for c in CASES if c.status == "accepted"} | {"half_written", "next_good"}
    assert accepted == {outcomes[n].batch for n in expected}
    # Every accepted batch has the same parquet schema: a reader never has to merge two.
    schemas = {str(pq.read_schema(local(store, store.keys.batch(b)) / "clean.parquet")) for b in accepted}
    assert len(schemas) == 1, schemas
    assert all(store.batches.get(b).status == "accepted" for b in accepted)
    rejected = [o.batch for n, o in outcomes.items() if isinstance(o, Outcome) and o.record["status"] == "rejected"]
    assert len(rejected) == sum(c.status == "rejected" for c in CASES)
    assert not any((local(store, store.keys.batch(b)) / "clean.parquet").exists() for b in rejected)


def test_spark_reads_every_accepted_batch_together(corpus: dict[str, Any]) -> None:
    """The read the feature step does (mergeSchema over clean.parquet) works across all of them."""
    from sluice.services.spark import spark_session

    store: PipelineStore = corpus["store"]
    files = [str(local(store, store.keys.batch(r.batch_id)) / "clean.parquet") for r in store.batches.accepted()]
    spark = spark_session("sluice-bad-data", conf={"spark.sql.shuffle.partitions": "2"})
    frame = spark.read.option("mergeSchema", "true").parquet(*files)
    expected = sum(len(pd.read_parquet(f)) for f in files)
    assert frame.count() == expected
    assert dict(frame.dtypes)["distance"] == "bigint" and dict(frame.dtypes)["origin"] == "string"


def test_corpus_size_is_what_the_readme_reports() -> None:
    readme = (Path(__file__).resolve().parents[2] / "docs" / "testing.md").read_text()
    assert f"{len(CASES) + 1} bad-data cases" in readme, "update the count in the test table of docs/testing.md"


def test_ingest_dag_rejects_drifted_batches_and_keeps_going(flights_project: Any) -> None:
    """The real ingest DAG (dag.test) with the demo's declared schema: drift is rejected, later months pass."""
    from demo.producer import drop_month, month_frame
    from tests.integration.conftest import build_dags, run_dag

    project = flights_project
    store = PipelineStore(project.root / "data" / "sluice", "flights_delay")
    dags = build_dags(project)
    drop_month(project.landing, 1, sample=1000)
    drifted = month_frame(2, sample=1000).astype({"distance": str})
    drifted.to_parquet(project.landing / "flights_2013-02.parquet", index=False)
    month_frame(3, sample=1000).iloc[:0].to_parquet(project.landing / "flights_2013-03.parquet", index=False)

    state, tasks = run_dag(dags["flights_delay__ingest"])

    assert state == "failed" and tasks["check_batches"] == "failed"
    assert tasks["publish"] == "success", "the good month is announced all the same"
    by_file = {store.batches.get(b).source_file: store.batches.get(b) for b in store.batches.ids()}
    assert by_file["flights_2013-01.parquet"].status == "accepted"
    assert "declared int, arrives as string" in by_file["flights_2013-02.parquet"].reason
    assert "empty batch" in by_file["flights_2013-03.parquet"].reason

    drop_month(project.landing, 4, sample=1000)
    state, tasks = run_dag(dags["flights_delay__ingest"])
    assert state == "success" and tasks["publish"] == "success"
    assert [r.source_file for r in store.batches.accepted()] == [
        "flights_2013-01.parquet",
        "flights_2013-04.parquet",
    ]
