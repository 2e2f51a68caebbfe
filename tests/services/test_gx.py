"""The Great Expectations adapter hands GX only the columns the checks read.

GX hashes and copies the frame it validates on every pass; at 1M flights rows that was most
of the validation time (bench/validation.py). Narrowing must not change a verdict: failing
rows keep their labels, and a check that may read any column still sees them all.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import pandas as pd
import pytest
from pydantic import Field

from sluice.services.gx import Checks, chunkable, columns_read, run_expectations
from sluice.spec.expectations import REGISTRY, ExpectationSpec, lookup


def _exp(kind: str, **fields: Any) -> Any:
    return lookup(kind).model_validate({"type": kind, **fields})


#: A batch with columns no check reads, and row labels that are not 0..n-1 (as after a filter).
FRAME = pd.DataFrame(
    {
        "origin": ["EWR", "lga", "JFK", "JFK"],
        "distance": [100, -1, 200, 6000],
        "carrier": ["UA", None, "B6", "DL"],
        "tailnum": ["N1", "N2", "N3", "N4"],
        "dep_delay": [1.0, 2.0, None, 4.0],
    },
    index=[10, 11, 12, 13],
)
DEMO_CHECKS = [
    _exp("column_exists", column="dep_delay"),
    _exp("not_null", column="carrier"),
    _exp("between", column="distance", min=1, max=5000),
    _exp("in_set", column="origin", values=["EWR", "JFK", "LGA"]),
    _exp("row_count_between", min=4),
]


def test_the_demo_checks_read_only_their_columns() -> None:
    assert columns_read(DEMO_CHECKS) == ["dep_delay", "carrier", "distance", "origin"]


def test_narrowed_validation_quarantines_the_same_rows_by_their_labels() -> None:
    checks, _ = run_expectations(FRAME, DEMO_CHECKS)
    by_type = {c.check: c for c in checks}
    assert by_type["column_exists"].success and by_type["row_count_between"].success
    assert sorted(int(i) for i in by_type["not_null"].unexpected_index) == [11]
    assert sorted(int(i) for i in by_type["between"].unexpected_index) == [11, 13]
    assert sorted(int(i) for i in by_type["in_set"].unexpected_index) == [11]


def test_a_missing_column_still_fails_its_exists_check() -> None:
    ((check,), _) = run_expectations(FRAME, [_exp("column_exists", column="arr_delay")])
    assert not check.success


@pytest.fixture
def table_check() -> Any:
    """A table-level type reading every column (the ordered column list), declared like a new type."""

    class ColumnsInOrder(ExpectationSpec):
        """The batch has exactly these columns, in this order (batch-level)."""

        gx_name: ClassVar[str] = "ExpectTableColumnsToMatchOrderedList"
        row_level: ClassVar[bool] = False
        type: Literal["columns_in_order"] = Field(description="Expectation type.")
        names: list[str]

        def gx_kwargs(self) -> dict[str, Any]:
            return {"column_list": self.names}

    try:
        yield ColumnsInOrder.model_validate({"type": "columns_in_order", "names": ["origin", "distance"]})
    finally:
        REGISTRY.pop("columns_in_order", None)


def test_a_check_on_the_whole_table_sees_every_column(table_check: Any) -> None:
    assert columns_read([*DEMO_CHECKS, table_check]) is None
    # Narrowed to the two columns the other checks read, the list would match and pass.
    checks, _ = run_expectations(
        FRAME, [_exp("not_null", column="origin"), _exp("not_null", column="distance"), table_check]
    )
    assert not checks[2].success  # FRAME has five columns, not the two listed


def test_gx_does_not_fingerprint_the_batch(monkeypatch: pytest.MonkeyPatch) -> None:
    """GX hashed each in-memory batch under 1 GB for a marker sluice never reads (45% of the time at 1M rows)."""
    from great_expectations.execution_engine import pandas_execution_engine

    assert hasattr(pandas_execution_engine, "HASH_THRESHOLD"), "GX renamed its fingerprint switch: see _no_fingerprint"

    def refuse(_: Any) -> str:
        raise AssertionError("GX fingerprinted the batch")

    monkeypatch.setattr(pandas_execution_engine, "hash_pandas_dataframe", refuse)
    checks, _ = run_expectations(FRAME, DEMO_CHECKS)
    assert [c.unexpected_count for c in checks] == [0, 1, 2, 1, 0]


def test_chunks_add_up_to_the_verdict_on_the_whole_batch() -> None:
    """Row checks per chunk, batch-level checks on the batch's shape: what a batch larger than memory gets."""
    checks = Checks(DEMO_CHECKS)
    assert chunkable(DEMO_CHECKS)
    failing: dict[str, list[int]] = {}
    for part in (slice(0, 2), slice(2, 4)):
        for check in checks.run(FRAME.iloc[part], checks.row_level)[0]:
            failing.setdefault(check.check, []).extend(int(i) for i in check.unexpected_index)
    assert failing == {"not_null": [11], "between": [11, 13], "in_set": [11]}
    shape, _ = checks.on_shape(list(FRAME.columns), rows=4)
    assert [c.check for c in shape] == ["column_exists", "row_count_between"] and all(c.success for c in shape)
    short, _ = checks.on_shape(list(FRAME.columns), rows=3)
    assert not short[1].success and short[1].observed == 3  # min is 4


def test_a_check_reading_the_whole_table_is_not_chunked(table_check: Any) -> None:
    assert not chunkable([*DEMO_CHECKS, table_check])


def test_the_report_details_failed_checks_without_listing_every_row() -> None:
    """gx_result.json: a verdict per check, counts and a sample for the failed ones, rows only in the quarantine."""
    checks, report = run_expectations(FRAME, [*DEMO_CHECKS, _exp("row_count_between", max=3)])
    entries = [r["result"] for r in report["results"]]
    assert report["success"] is False and report["statistics"]["unsuccessful_expectations"] == 4
    failed = [e for e in entries if e]
    assert sorted(e.get("unexpected_count", 0) for e in failed) == [0, 1, 1, 2]
    assert any(e.get("observed_value") == 4 for e in failed)  # the row count, for the batch-level check
    assert any(e.get("partial_unexpected_list") == [-1, 6000] for e in failed)
    assert not any({"unexpected_list", "unexpected_index_list"} & set(e) for e in entries)
    assert checks[-1].observed == 4 and not checks[-1].success and checks[-1].unexpected_index == []
