"""Validate landed batches with Great Expectations; quarantine or reject per the spec."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator, Mapping
from contextlib import ExitStack
from dataclasses import asdict
from typing import TYPE_CHECKING, Any, cast

from sluice.services import faults
from sluice.services.gx import CheckResult
from sluice.services.storage import PipelineStore
from sluice.spec.models import Validation
from sluice.steps.records import BatchOutcome, BatchStatus, SchemaPin, decode, encode

if TYPE_CHECKING:
    import pandas as pd

#: sluice's summary of a batch's checks, beside the batch.
REPORT = "validation.json"

__all__ = ["BatchOutcome", "validate_batch"]


def _unreadable(size: int, fmt: str, exc: BaseException) -> str:
    if size == 0:
        return f"empty file (0 bytes): not a {fmt} batch"
    if isinstance(exc, UnicodeDecodeError):
        byte = exc.object[exc.start : exc.start + 1]
        return f"unreadable {fmt} file: not UTF-8 text (byte {byte!r} at offset {exc.start})"
    return f"unreadable {fmt} file: {type(exc).__name__}: {exc}"


def validate_batch(
    store: PipelineStore,
    batch_id: str,
    validation: Validation,
    fmt: str,
    columns: Mapping[str, str] | None = None,
) -> BatchOutcome:
    """Validate one landed batch and write its outcome beside it.

    Batch-level rejections, in order: unreadable file, no rows, a declared column
    missing or of another kind (see :mod:`sluice.steps.schema`), a check on a column the
    batch does not have. Then the spec's checks run with Great Expectations; cells that
    do not parse as their declared type fail their rows like a row-level check
    (``type:<column>``), and are quarantined even with ``on_failure: warn`` since they
    cannot be stored as declared. Idempotent: a batch that already has an outcome
    returns it unchanged.

    With declared columns, the batch is read, checked and written ``validation.chunk_rows``
    rows at a time, so its size is not bounded by memory: row-level checks run per chunk,
    batch-level ones on the batch's shape (see :func:`sluice.services.gx.chunkable`), and
    only the failing rows are held until the verdict.

    Without declared columns the batch is held to the pipeline's pinned schema (see
    :mod:`sluice.steps.schema_pin`) exactly as to a declared one; when there is no pin yet,
    the batch is read whole, its own inferred columns are its schema, and if it is accepted
    they are pinned before its outcome is written.

    Args:
        store: The pipeline's storage.
        batch_id: A batch in the raw zone.
        validation: The spec's validation section.
        fmt: ``parquet`` or ``csv``.
        columns: The declared schema (``source.columns``), or None for none (the pin holds).

    Returns:
        The outcome; ``batch.json`` carries the same status.
    """
    from sluice.services.gx import chunkable
    from sluice.steps.schema import read_frames
    from sluice.steps.schema_pin import active_schema

    report_key = store.keys.batch(batch_id, REPORT)
    recorded = store.json.read_or_none(report_key)
    if recorded is not None:
        return _recorded_outcome(store, batch_id, recorded)
    record = store.batches.get(batch_id)
    source = store.keys.batch(batch_id, f"source{record.source_suffix or '.' + fmt}")
    schema = active_schema(store, columns, fmt)
    columns = schema.columns
    # Chunks need fixed column types (a CSV chunk infers its own) and checks that add up.
    chunk_rows = validation.chunk_rows if columns and chunkable(list(validation.expectations)) else None
    run = _Run(store, batch_id, validation, fmt, columns, whole=chunk_rows is None, pin=schema.pin, pins=schema.pins)
    try:
        with store.open_read(source) as fh:
            return run.over(read_frames(fh, fmt, columns, chunk_rows), report_key)
    except _Unreadable as exc:
        reason = _unreadable(store.size(source), fmt, exc.__cause__ or exc)
        return _finish(store, _rejected(batch_id, reason), report_key, {})


def _rejected(batch_id: str, reason: str, rows: int = 0) -> BatchOutcome:
    return BatchOutcome(batch_id=batch_id, status=BatchStatus.REJECTED, reason=reason, rows=rows)


def _recorded_outcome(store: PipelineStore, batch_id: str, report: dict[str, Any]) -> BatchOutcome:
    """The outcome a run before this one wrote (``validation.json`` carries more than the outcome)."""
    done = decode(BatchOutcome, {k: v for k, v in report.items() if k in BatchOutcome.model_fields})
    if store.batches.get(batch_id).status == BatchStatus.LANDED:
        # Killed between the report and batch.json: finish the commit, or the batch
        # would look validated to this step and unvalidated to everyone else for ever.
        _commit_status(store, done)
    return done


def _conform(
    raw: pd.DataFrame, columns: Mapping[str, str] | None, fmt: str
) -> tuple[pd.DataFrame, dict[str, list[Any]], dict[str, Any], str | None]:
    """Conform the rows to the declared schema.

    Returns:
        The conformed rows, the unparsed cells by column, the schema report, and the
        schema-drift reason when the batch must be rejected (else None).
    """
    if not columns:
        return raw, {}, {}, None
    from sluice.steps.schema import conform

    conformed = conform(raw, columns, fmt)
    schema = {
        "declared": dict(columns),
        "missing": conformed.missing,
        "extra_dropped": conformed.extra,
        "mismatched": conformed.mismatched,
        "unparsed_cells": {c: len(i) for c, i in conformed.bad_rows.items()},
    }
    problems = [f"declared column '{c}' is missing" for c in conformed.missing]
    problems += [f"column '{c}': {why}" for c, why in conformed.mismatched.items()]
    if problems:
        have = ", ".join(map(str, raw.columns))
        return raw, {}, schema, "schema drift: " + "; ".join(problems) + f" (the batch has: {have})"
    return conformed.frame, conformed.bad_rows, schema, None


def _oversized(raw: pd.DataFrame, max_cell: int, max_row: int) -> dict[str, list[Any]]:
    """Rows (index labels) over the size bounds: ``size:<column>`` for a text cell, ``size:row`` for a row.

    A row is measured as its text cells' UTF-8 bytes plus 8 per other cell. Character counts
    are screened first (a cell of n characters has n to 4n bytes), so only long cells are encoded.
    """
    found: dict[str, list[Any]] = {}
    row_bytes = None
    for column in raw.columns:
        values = raw[column]
        if values.dtype != object and str(values.dtype) not in ("string", "str"):
            size = values.notna().astype("int64") * 8
        else:
            chars = values.str.len().fillna(0).astype("int64")
            size = chars.copy()
            long = chars[chars * 4 > min(max_cell, max_row)].index
            if len(long):
                encoded = [len(str(v).encode("utf-8", "surrogatepass")) for v in values.loc[long]]
                size.loc[long] = cast(Any, encoded)  # pandas takes a list here; pandas-stubs does not list it
            over = size[size > max_cell].index
            if len(over):
                found[f"size:{column}"] = list(over)
        row_bytes = size if row_bytes is None else row_bytes + size
    if row_bytes is not None:
        over = row_bytes[row_bytes > max_row].index
        if len(over):
            found["size:row"] = list(over)
    return found


def _absent_checked_columns(raw: pd.DataFrame, df: pd.DataFrame, validation: Validation) -> str | None:
    """The reason to reject a batch that lacks a column a check reads, or None."""
    checked = [(e.type, str(getattr(e, "column", ""))) for e in validation.expectations if hasattr(e, "column")]
    absent = [(kind, column) for kind, column in checked if column not in df]
    if not absent:
        return None
    named = "; ".join(
        f"check {kind} on column '{column}'" + (" (not in source.columns: dropped)" if column in raw else "")
        for kind, column in absent
    )
    return f"checked column missing from the batch: {named} (the batch has: {', '.join(map(str, df.columns))})"


class _Unreadable(Exception):
    """The batch file cannot be read (the reader's error is the cause)."""


class _Discard(Exception):
    """Raised into ``clean.parquet``'s writer so the store drops it (the batch was not accepted)."""


def _reading(frames: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
    """``frames``, with any reader error raised as :class:`_Unreadable`."""
    while True:
        try:
            frame = next(frames)
        except StopIteration:
            return
        except Exception as exc:  # any reader error means the file is unusable as a whole
            raise _Unreadable(str(exc)) from exc
        yield frame


class _CleanRows:
    """``clean.parquet`` written chunk by chunk, kept only if the batch is accepted."""

    def __init__(self, store: PipelineStore, batch_id: str, columns: Mapping[str, str] | None) -> None:
        self._key = store.keys.batch(batch_id, "clean.parquet")
        self._store = store
        #: The schema the rows are written with (set before the first write when the batch pins).
        self.columns = columns
        self._files = ExitStack()
        self._writer: Any = None

    def write(self, rows: pd.DataFrame) -> None:
        """Append the clean rows of one chunk."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        from sluice.steps.schema import to_arrow

        table = to_arrow(rows, self.columns) if self.columns else pa.Table.from_pandas(rows, preserve_index=False)
        if self._writer is None:
            fh = self._files.enter_context(self._store.open_write(self._key))
            self._writer = self._files.enter_context(pq.ParquetWriter(fh, table.schema))
        self._writer.write_table(table)

    def keep(self, empty: pd.DataFrame) -> None:
        """Commit the file (``empty``: a frame with no rows, written when every row was quarantined)."""
        if self._writer is None:
            self.write(empty)
        self._files.close()

    def discard(self) -> None:
        """Drop whatever was written: the store replaces nothing."""
        self._files.__exit__(_Discard, _Discard(), None)


class _Run:
    """One validation of one batch over its chunks.

    Read whole (``whole``), every check runs on the one frame, as GX would run it. In chunks,
    the row-level checks run per chunk and add up, the batch-level ones see the batch's shape
    at the end; rows are written to ``clean.parquet`` as they pass (it is dropped unless the
    batch is accepted) and only the failing rows are held for ``quarantine.parquet``.
    """

    def __init__(
        self,
        store: PipelineStore,
        batch_id: str,
        validation: Validation,
        fmt: str,
        columns: Mapping[str, str] | None,
        whole: bool,
        pin: SchemaPin | None = None,
        pins: bool = False,
    ) -> None:
        from sluice.services.gx import Checks

        self.store, self.batch_id, self.validation, self.fmt, self.columns = store, batch_id, validation, fmt, columns
        self.whole = whole
        self.checks = Checks(list(validation.expectations))
        self.rows = 0
        self.found: dict[int, CheckResult] = {}
        self.type_failures: dict[str, list[Any]] = {}
        self.candidates: list[pd.DataFrame] = []
        self.gx_results: list[dict[str, Any]] = []
        self.schema: dict[str, Any] = {}
        #: The pin the batch is held to (None: declared columns, or none yet).
        self.pin = pin
        #: No schema yet: the batch's own columns are its schema, pinned if it is accepted.
        self.pins = pins
        self.guessed: list[str] = []

    def over(self, frames: Iterator[pd.DataFrame], report_key: str) -> BatchOutcome:
        """Validate the chunks ``frames`` and write the rows and the outcome."""
        chunks = _reading(frames)
        clean = _CleanRows(self.store, self.batch_id, self.columns)
        header: pd.DataFrame | None = None  # the first chunk, for the column names
        first: pd.DataFrame | None = None  # the first conformed chunk with rows
        try:
            for raw in chunks:
                header = raw if header is None else header
                self.rows += len(raw)
                if len(raw) and self.pins and self.columns is None:
                    from sluice.steps.schema_pin import infer_frame

                    # Read whole (no columns, no chunks): the one frame is the whole batch.
                    self.columns, self.guessed = infer_frame(raw)
                    clean.columns = self.columns
                if len(raw):
                    df = self._chunk(raw)
                    first = df if first is None else first
                    clean.write(df[~df.index.isin(self._dropped())])
        except _Rejection as rejection:
            clean.discard()
            self.rows += sum(len(raw) for raw in chunks)  # the outcome counts every row of the batch
            outcome = _rejected(self.batch_id, str(rejection), self.rows)
            return _finish(self.store, outcome, report_key, self._extra([]))
        except BaseException:
            clean.discard()
            raise
        if first is None:
            clean.discard()
            names = ", ".join(map(str, header.columns)) if header is not None else ""
            reason = f"empty batch: the file has no rows (columns: {names or 'none'})"
            return _finish(self.store, _rejected(self.batch_id, reason), report_key, {})
        checks = self._verdicts(list(map(str, first.columns)))
        outcome, reasons = self._judged(checks)
        if outcome.status == BatchStatus.ACCEPTED:
            clean.keep(first.head(0))
            self._pin()
        else:
            clean.discard()
        self._quarantine(reasons)
        gx_result = self.gx_results[0] if len(self.gx_results) == 1 else {"passes": self.gx_results}
        self.store.json.write(self.store.keys.batch(self.batch_id, "gx_result.json"), gx_result)
        return _finish(self.store, outcome, report_key, self._extra(checks))

    def _pin(self) -> None:
        """Pin the schema this accepted batch brought (before its outcome: a retry then finds the pin)."""
        if not self.pins or self.columns is None:
            return
        from sluice.steps.schema_pin import FIRST_ACCEPTED, new_pin, write_pin

        source_file = self.store.batches.get(self.batch_id).source_file
        write_pin(self.store, new_pin(self.columns, self.guessed, FIRST_ACCEPTED, self.batch_id, source_file))
        faults.point("validate.pinned")

    def _origin(self) -> str:
        """Where the schema came from, for ``validation.json``."""
        if self.pin is not None:
            return f"pinned from batch {self.pin.batch_id}"
        return "inferred from this batch (pinned if accepted)" if self.pins else "source.columns"

    def _chunk(self, raw: pd.DataFrame) -> pd.DataFrame:
        """Conform and check one chunk; returns the conformed rows (failing ones included)."""
        df, bad_cells, schema, problem = _conform(raw, self.columns, self.fmt)
        if schema:
            unparsed = Counter(self.schema.get("unparsed_cells", {})) + Counter(schema["unparsed_cells"])
            self.schema = schema | {"unparsed_cells": dict(unparsed), "origin": self._origin()}
        if problem is not None and self.pin is not None:
            from sluice.steps.schema_pin import drift_note

            problem += drift_note(self.pin)
        if problem is None:
            problem = _absent_checked_columns(raw, df, self.validation)
        if problem is not None:
            raise _Rejection(problem)
        # A batch read whole runs every check on it; chunks run the row checks, the rest see the shape at the end.
        which = None if self.whole else self.checks.row_level
        results, gx_json = self.checks.run(df, which)
        self.gx_results.append(gx_json)
        for i, result in zip(range(len(self.checks.expectations)) if which is None else which, results, strict=True):
            self._add(i, result)
        for column, labels in bad_cells.items():
            self.type_failures.setdefault(f"type:{column}", []).extend(labels)
        oversized = _oversized(raw, self.validation.max_cell_bytes, self.validation.max_row_bytes)
        for name, labels in oversized.items():
            self.type_failures.setdefault(name, []).extend(labels)
        failing = {i for c in results for i in c.unexpected_index} | {i for ls in bad_cells.values() for i in ls}
        failing |= {i for ls in oversized.values() for i in ls}
        self.candidates.append(raw[raw.index.isin(list(failing))])
        return df

    def _add(self, position: int, result: CheckResult) -> None:
        seen = self.found.get(position)
        if seen is None:
            self.found[position] = result
            return
        seen.success = seen.success and result.success
        seen.unexpected_count += result.unexpected_count
        seen.unexpected_index.extend(result.unexpected_index)

    def _dropped(self) -> list[Any]:
        """Labels of the rows not written to ``clean.parquet`` so far (by the mode, as :func:`_judge` will)."""
        failed = [c for c in self.found.values() if not c.success and c.row_level]
        return list(_row_reasons(failed, self.type_failures, self.validation.on_failure))

    def _verdicts(self, columns: list[str]) -> list[CheckResult]:
        """Every check's result in spec order; the batch-level ones on the batch's shape if they have none yet."""
        missing = [i for i in self.checks.batch_level if i not in self.found]
        if missing:
            results, raw = self.checks.on_shape(columns, self.rows)
            self.gx_results.extend(raw)
            for i, result in zip(self.checks.batch_level, results, strict=True):
                self.found[i] = result
        return [self.found[i] for i in range(len(self.checks.expectations))]

    def _judged(self, checks: list[CheckResult]) -> tuple[BatchOutcome, dict[Any, list[str]]]:
        failed = [c for c in checks if not c.success]
        failed_text = [_describe(c) for c in failed] + [f"{k}: {len(v)} rows" for k, v in self.type_failures.items()]
        outcome = BatchOutcome(
            batch_id=self.batch_id,
            status=BatchStatus.ACCEPTED,
            reason="all checks passed",
            rows=self.rows,
            failed_checks=failed_text,
        )
        return _judge(outcome, failed, self.type_failures, self.validation)

    def _quarantine(self, reasons: dict[Any, list[str]]) -> None:
        """Write the quarantined rows (as read, with the checks they failed)."""
        if not reasons:
            return
        import pandas as pd

        held = pd.concat(self.candidates) if len(self.candidates) > 1 else self.candidates[0]
        quarantine = held[held.index.isin(list(reasons))].copy()
        quarantine["_sluice_failed_checks"] = [",".join(reasons[i]) for i in quarantine.index]
        text = {c: "string" for c in quarantine.columns if quarantine[c].dtype == object}
        with self.store.open_write(self.store.keys.batch(self.batch_id, "quarantine.parquet")) as fh:
            quarantine.astype(text).to_parquet(fh, index=False)

    def _extra(self, checks: list[CheckResult]) -> dict[str, Any]:
        extra: dict[str, Any] = {"schema": self.schema} if self.schema else {}
        if checks:
            extra["checks"] = [asdict(c) | {"unexpected_index": len(c.unexpected_index)} for c in checks]
        return extra


class _Rejection(Exception):
    """The batch is rejected before its checks finish (the message is the reason)."""


def _row_reasons(failed: list[Any], type_failures: dict[str, list[Any]], mode: str) -> dict[Any, list[str]]:
    """Index -> names of the checks each row failed: cells not of their type always, row checks on quarantine."""
    reasons: dict[Any, list[str]] = {}
    for name, idx in type_failures.items():
        for i in idx:
            reasons.setdefault(i, []).append(name)
    if mode == "quarantine":
        for check in failed:
            for i in check.unexpected_index:
                reasons.setdefault(i, []).append(f"{check.check}:{check.column}")
    return reasons


def _judge(
    outcome: BatchOutcome, failed: list[Any], type_failures: dict[str, list[Any]], validation: Validation
) -> tuple[BatchOutcome, dict[Any, list[str]]]:
    """The outcome's status, reason and quarantine numbers from the failed checks.

    Returns:
        The judged outcome, and the rows to quarantine (index -> names of the checks each failed).
    """
    rows = outcome.rows
    mode = validation.on_failure
    batch_level = [c for c in failed if not c.row_level]
    if not (failed or type_failures):
        return outcome, {}
    if mode == "fail":
        n_failed = len(failed) + len(type_failures)
        reason = f"{n_failed} check(s) failed and on_failure=fail"
        return outcome.model_copy(update={"status": BatchStatus.REJECTED, "reason": reason}), _row_reasons(
            [], type_failures, mode
        )
    if batch_level and mode == "quarantine":
        reason = "batch-level check failed: " + "; ".join(_describe(c) for c in batch_level)
        return outcome.model_copy(update={"status": BatchStatus.REJECTED, "reason": reason}), _row_reasons(
            [], type_failures, mode
        )
    reasons = _row_reasons(failed, type_failures, mode)
    rate = round(len(reasons) / rows, 6)
    status, why = outcome.status, outcome.reason
    if mode == "warn":
        why = f"{len(failed)} check(s) failed; on_failure=warn keeps every row"
        if reasons:
            why += f" but the {len(reasons)} with cells not of their declared type"
    if rate > validation.max_quarantine_rate:
        status = BatchStatus.REJECTED
        why = f"quarantine rate {rate:.2%} exceeds max_quarantine_rate {validation.max_quarantine_rate:.2%}"
    elif mode == "quarantine":
        why = f"{len(reasons)} of {rows} rows quarantined ({rate:.2%} <= {validation.max_quarantine_rate:.2%})"
    judged = {"status": status, "reason": why, "quarantined": len(reasons), "quarantine_rate": rate}
    return outcome.model_copy(update=judged), reasons


def _describe(check: Any) -> str:
    name = f"{check.check} {check.column or ''}".strip()
    return f"{name}: {check.unexpected_count} rows" if check.row_level else f"{name}: observed {check.observed}"


def _finish(store: PipelineStore, outcome: BatchOutcome, report_key: str, extra: dict[str, Any]) -> BatchOutcome:
    outcome = outcome.model_copy(update={"report": store.location(report_key)})
    faults.point("validate.before_report")
    store.json.write(report_key, encode(outcome) | extra | {"validated_at": time.time()})
    faults.point("validate.report_written")
    _commit_status(store, outcome)
    return outcome


def _commit_status(store: PipelineStore, outcome: BatchOutcome) -> None:
    """``batch.json`` takes the outcome: the write that makes a batch usable (or not) for readers."""
    store.batches.update(
        outcome.batch_id,
        status=outcome.status,
        reason=outcome.reason,
        rows=outcome.rows,
        quarantined=outcome.quarantined,
    )
