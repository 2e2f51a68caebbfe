"""Great Expectations: build a suite from the spec and run it on pandas frames (a batch, or its chunks)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from sluice.spec.expectations import lookup

if TYPE_CHECKING:
    import pandas as pd

    from sluice.spec.expectations import Expectation


@dataclass
class CheckResult:
    """Outcome of one expectation on one batch."""

    check: str
    column: str | None
    success: bool
    row_level: bool
    unexpected_count: int = 0
    unexpected_index: list[Any] = field(default_factory=list)
    observed: Any = None


def _gx_expectation(exp: Expectation) -> Any:
    """The Great Expectations expectation the registry declares for ``exp`` (no fallback)."""
    import great_expectations as gx

    cls = getattr(gx.expectations, lookup(exp.type).gx_name)
    return cls(**exp.gx_kwargs())


#: GX argument naming the columns each kind of domain reads.
_DOMAIN_COLUMNS = {"column": ("column",), "column_pair": ("column_A", "column_B"), "multicolumn": ("column_list",)}
#: Table-level GX expectations that read only the named column's presence or the row count.
_NARROW_TABLE_CHECKS = frozenset(
    {"ExpectColumnToExist", "ExpectTableRowCountToBeBetween", "ExpectTableRowCountToEqual"}
)


def columns_read(expectations: list[Expectation]) -> list[str] | None:
    """The columns the expectations read, or None when one may read any column.

    From each GX expectation's domain: a column check reads its ``column``, a pair its
    ``column_A`` and ``column_B``, a multicolumn check its ``column_list``; a column-exists or
    row-count check reads at most the named column. Any other table-level check (the column
    set, the column count), or a ``row_condition`` (which can name any column), needs them all.
    """
    import great_expectations as gx

    read: dict[str, None] = {}
    for exp in expectations:
        kwargs = exp.gx_kwargs()
        name = lookup(exp.type).gx_name
        domain = str(getattr(getattr(gx.expectations, name), "domain_type", "")).rsplit(".", 1)[-1].lower()
        keys = ("column",) if name in _NARROW_TABLE_CHECKS else _DOMAIN_COLUMNS.get(domain)
        if keys is None or "row_condition" in kwargs:
            return None
        for value in (kwargs[k] for k in keys if kwargs.get(k) is not None):
            read.update(dict.fromkeys([value] if isinstance(value, str) else value))
    return list(read)


def _no_fingerprint() -> None:
    """Stop GX fingerprinting each in-memory batch.

    GX hashes every pandas batch under 1 GB (``pandas.util.hash_pandas_object``) for a batch
    marker sluice never reads, on each of its ``get_batch`` calls: 45% of a 1M-row
    validation (bench/validation.py). ``HASH_THRESHOLD`` is the only switch GX has;
    ``tests/services/test_gx.py`` fails if an upgrade renames it.
    """
    from great_expectations.execution_engine import pandas_execution_engine

    pandas_execution_engine.HASH_THRESHOLD = 0


#: Batch-level GX expectations that read only the batch's shape: its column names, or its row count.
_SHAPE_CHECKS = {
    "ExpectColumnToExist": "columns",
    "ExpectTableRowCountToBeBetween": "rows",
    "ExpectTableRowCountToEqual": "rows",
}


def chunkable(expectations: list[Expectation]) -> bool:
    """Whether the checks can run a chunk of rows at a time.

    Row-level checks can (their failures add up); a batch-level check can when it reads only
    the batch's shape (column names, row count), which :meth:`Checks.on_shape` gives it. Any
    other batch-level check (a mean, the ordered column list) needs the whole batch at once.
    """
    return all(lookup(e.type).row_level or lookup(e.type).gx_name in _SHAPE_CHECKS for e in expectations)


class Checks:
    """The spec's expectations in one ephemeral GX context, run on one frame after another.

    Args:
        expectations: The spec's checks, in spec order (results keep it).
    """

    def __init__(self, expectations: list[Expectation]) -> None:
        os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
        import great_expectations as gx
        from great_expectations.data_context.types.base import ProgressBarsConfig

        _no_fingerprint()
        self.expectations = expectations
        self._context = gx.get_context(mode="ephemeral")
        self._context.variables.progress_bars = ProgressBarsConfig(globally=False)
        source = self._context.data_sources.add_pandas("sluice")
        self._batches = source.add_dataframe_asset("batch").add_batch_definition_whole_dataframe("whole")
        self._suites: dict[tuple[int, ...], tuple[Any, dict[str, int]]] = {}

    @property
    def row_level(self) -> list[int]:
        """Positions of the row-level checks (run per chunk)."""
        return [i for i, e in enumerate(self.expectations) if lookup(e.type).row_level]

    @property
    def batch_level(self) -> list[int]:
        """Positions of the batch-level checks."""
        return [i for i, e in enumerate(self.expectations) if not lookup(e.type).row_level]

    def _suite(self, which: tuple[int, ...]) -> tuple[Any, dict[str, int]]:
        """A GX suite of the checks at ``which`` (made once), and expectation id -> position."""
        if which not in self._suites:
            import great_expectations as gx

            suite = self._context.suites.add(gx.ExpectationSuite(name=f"sluice-{len(self._suites)}"))
            # Suites added to the context give their expectations ids, which results refer to.
            ids = {suite.add_expectation(_gx_expectation(self.expectations[i])).id: i for i in which}
            self._suites[which] = (suite, ids)
        return self._suites[which]

    def _validate(
        self, frame: pd.DataFrame, which: tuple[int, ...], result_format: Literal["BOOLEAN_ONLY", "BASIC", "COMPLETE"]
    ) -> tuple[dict[int, Any], Any]:
        """Run the checks at ``which`` on ``frame``: GX's result per position, and GX's suite result."""
        suite, ids = self._suite(which)
        batch = self._batches.get_batch(batch_parameters={"dataframe": frame})
        outcome = batch.validate(suite, result_format=result_format)
        # GX does not keep suite order in its results: match them by expectation id.
        by_position = {ids[r.expectation_config.id]: r for r in outcome.results if r.expectation_config}
        return by_position, outcome

    def _narrowed(self, df: pd.DataFrame, which: tuple[int, ...]) -> pd.DataFrame:
        """``df`` with only the columns the checks at ``which`` read (same index)."""
        read = columns_read([self.expectations[i] for i in which])
        return df[[c for c in df.columns if c in set(read)]] if read else df

    def run(self, df: pd.DataFrame, which: list[int] | None = None) -> tuple[list[CheckResult], dict[str, Any]]:
        """Run the checks at ``which`` (default: all) on ``df``.

        A BOOLEAN_ONLY pass gives each check's verdict (a passing check has no unexpected
        rows: sluice's checks have no ``mostly``); a COMPLETE pass over the checks that failed
        gives their unexpected counts, observed values and failing rows (by ``df``'s labels).
        A clean batch pays for one cheap pass, not BASIC's sample of unexpected values
        (bench/validation.py). Each pass gets only the columns its checks read (same index):
        GX copies the frame it is given in its map-metric helpers.

        Returns:
            Per-check results in the order of ``which``, and GX's JSON result: the verdict
            pass with each failed check's COMPLETE result, less its full lists of failing
            values and rows (those rows are in ``quarantine.parquet``).
        """
        chosen = tuple(range(len(self.expectations)) if which is None else which)
        if not chosen:
            return [], {}
        results, outcome = self._validate(self._narrowed(df, chosen), chosen, "BOOLEAN_ONLY")
        failed = tuple(i for i in chosen if not results[i].success)
        rows: dict[int, list[Any]] = {}
        if failed:
            details, _ = self._validate(self._narrowed(df, failed), failed, "COMPLETE")
            for i in failed:
                # Serialising GX's full lists costs more than the pass: take the rows, drop the lists.
                full = {k: details[i].result.pop(k, None) for k in _FULL_LISTS}
                rows[i] = (
                    list(full["unexpected_index_list"] or []) if lookup(self.expectations[i].type).row_level else []
                )
                slot = next(n for n, r in enumerate(outcome.results) if r is results[i])
                outcome.results[slot] = results[i] = details[i]
        checks = [_check_result(self.expectations[i], results[i]) for i in chosen]
        for check, i in zip(checks, chosen, strict=True):
            check.unexpected_index = rows.get(i, [])
        return checks, outcome.to_json_dict()

    def on_shape(self, columns: list[str], rows: int) -> tuple[list[CheckResult], list[dict[str, Any]]]:
        """Run the batch-level checks on the batch's shape alone (all must be :func:`chunkable`).

        The column checks see an empty frame with the batch's columns, the row-count checks a
        frame of ``rows`` rows and no columns: neither holds the batch's data.

        Returns:
            Results in the order of :attr:`batch_level`, and GX's JSON results of each pass.
        """
        import pandas as pd

        shapes = {"columns": pd.DataFrame(columns=columns), "rows": pd.DataFrame(index=pd.RangeIndex(rows))}
        found: dict[int, CheckResult] = {}
        raw: list[dict[str, Any]] = []
        for shape, frame in shapes.items():
            which = tuple(
                i for i in self.batch_level if _SHAPE_CHECKS[lookup(self.expectations[i].type).gx_name] == shape
            )
            if which:
                results, outcome = self._validate(frame, which, "BASIC")
                found |= {i: _check_result(self.expectations[i], results[i]) for i in which}
                raw.append(outcome.to_json_dict())
        return [found[i] for i in self.batch_level], raw


#: COMPLETE's full lists of failing values and rows: kept out of the JSON report (the rows are quarantined).
_FULL_LISTS = ("unexpected_list", "unexpected_index_list", "unexpected_index_query")


def _check_result(exp: Expectation, res: Any) -> CheckResult:
    result = res.result or {}
    return CheckResult(
        check=exp.type,
        column=exp.target,
        success=bool(res.success),
        row_level=lookup(exp.type).row_level,
        unexpected_count=int(result.get("unexpected_count") or 0),
        observed=result.get("observed_value"),
    )


def run_expectations(df: pd.DataFrame, expectations: list[Expectation]) -> tuple[list[CheckResult], dict[str, Any]]:
    """Validate ``df`` against the spec's expectations with an ephemeral GX context.

    Returns:
        Per-check results in spec order (failing rows listed for the row-level checks that
        failed), and GX's own JSON result of the verdict pass.
    """
    return Checks(expectations).run(df)
