"""Validate landed batches with Great Expectations; quarantine or reject per the spec."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Any, BinaryIO

from sluice.services import faults
from sluice.services.storage import PipelineStore
from sluice.spec.models import Validation
from sluice.steps.records import BatchOutcome, BatchStatus, decode, encode

#: sluice's summary of a batch's checks, beside the batch.
REPORT = "validation.json"

__all__ = ["BatchOutcome", "read_batch", "validate_batch"]


def read_batch(path: Path | BinaryIO, fmt: str, columns: Mapping[str, str] | None = None) -> Any:
    """Read a batch file with pandas (CSV columns declared as text are read as text)."""
    from sluice.steps.schema import read_frame

    return read_frame(path, fmt, columns)


def _unreadable(size: int, fmt: str, exc: Exception) -> str:
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

    Args:
        store: The pipeline's storage.
        batch_id: A batch in the raw zone.
        validation: The spec's validation section.
        fmt: ``parquet`` or ``csv``.
        columns: The declared schema (``source.columns``), or None for none.

    Returns:
        The outcome; ``batch.json`` carries the same status.
    """
    report_key = store.batch_key(batch_id, REPORT)
    recorded = store.read_json_or_none(report_key)
    if recorded is not None:
        return _recorded_outcome(store, batch_id, recorded)
    record = store.batch_record(batch_id)
    source = store.batch_key(batch_id, f"source{record.source_suffix or '.' + fmt}")
    try:
        with store.open_read(source) as fh:
            raw = read_batch(fh, fmt, columns)
    except Exception as exc:  # any reader error means the file is unusable as a whole
        return _finish(store, _rejected(batch_id, _unreadable(store.size(source), fmt, exc)), report_key, {})
    rows = len(raw)
    if rows == 0:
        reason = f"empty batch: the file has no rows (columns: {', '.join(map(str, raw.columns)) or 'none'})"
        return _finish(store, _rejected(batch_id, reason), report_key, {})
    df, bad_cells, schema, problem = _conform(raw, columns, fmt)
    if problem is None:
        problem = _absent_checked_columns(raw, df, validation)
    if problem is not None:
        return _finish(store, _rejected(batch_id, problem, rows), report_key, {"schema": schema})
    return _run_checks(store, batch_id, report_key, raw, df, bad_cells, schema, validation, columns)


def _rejected(batch_id: str, reason: str, rows: int = 0) -> BatchOutcome:
    return BatchOutcome(batch_id=batch_id, status=BatchStatus.REJECTED, reason=reason, rows=rows)


def _recorded_outcome(store: PipelineStore, batch_id: str, report: dict[str, Any]) -> BatchOutcome:
    """The outcome a run before this one wrote (``validation.json`` carries more than the outcome)."""
    done = decode(BatchOutcome, {k: v for k, v in report.items() if k in BatchOutcome.model_fields})
    if store.batch_record(batch_id).status == BatchStatus.LANDED:
        # Killed between the report and batch.json: finish the commit, or the batch
        # would look validated to this step and unvalidated to everyone else for ever.
        _commit_status(store, done)
    return done


def _conform(
    raw: Any, columns: Mapping[str, str] | None, fmt: str
) -> tuple[Any, dict[str, list[Any]], dict[str, Any], str | None]:
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


def _absent_checked_columns(raw: Any, df: Any, validation: Validation) -> str | None:
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


def _run_checks(
    store: PipelineStore,
    batch_id: str,
    report_key: str,
    raw: Any,
    df: Any,
    bad_cells: dict[str, list[Any]],
    schema: dict[str, Any],
    validation: Validation,
    columns: Mapping[str, str] | None,
) -> BatchOutcome:
    """Run the spec's checks with Great Expectations, judge, write the rows and the outcome."""
    from sluice.services.gx import run_expectations

    checks, gx_result = run_expectations(df, list(validation.expectations))
    store.write_json(store.batch_key(batch_id, "gx_result.json"), gx_result)
    failed = [c for c in checks if not c.success]
    type_failures = {f"type:{c}": idx for c, idx in bad_cells.items()}
    failed_text = [_describe(c) for c in failed] + [f"{k}: {len(v)} rows" for k, v in type_failures.items()]
    outcome = BatchOutcome(
        batch_id=batch_id,
        status=BatchStatus.ACCEPTED,
        reason="all checks passed",
        rows=len(raw),
        failed_checks=failed_text,
    )
    outcome, reasons = _judge(outcome, failed, type_failures, validation)
    _write_rows(store, outcome, raw, df, reasons, columns)
    extra = {"checks": [asdict(c) | {"unexpected_index": len(c.unexpected_index)} for c in checks]}
    return _finish(store, outcome, report_key, extra | ({"schema": schema} if schema else {}))


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


def _write_rows(
    store: PipelineStore,
    outcome: BatchOutcome,
    raw: Any,
    df: Any,
    reasons: dict[Any, list[str]],
    columns: Mapping[str, str] | None,
) -> None:
    """Write the quarantined rows (as read, with the checks they failed) and, if accepted, the clean ones."""
    clean = df
    if reasons:
        bad = df.index.isin(list(reasons))
        quarantine = raw[bad].copy()
        quarantine["_sluice_failed_checks"] = [",".join(reasons[i]) for i in quarantine.index]
        with store.open_write(store.batch_key(outcome.batch_id, "quarantine.parquet")) as fh:
            quarantine.astype({c: "string" for c in quarantine.columns if quarantine[c].dtype == object}).to_parquet(
                fh, index=False
            )
        clean = df[~bad]
    if outcome.status == BatchStatus.ACCEPTED:
        with store.open_write(store.batch_key(outcome.batch_id, "clean.parquet")) as fh:
            if columns:
                import pyarrow.parquet as pq

                from sluice.steps.schema import to_arrow

                pq.write_table(to_arrow(clean, columns), fh)
            else:
                clean.to_parquet(fh, index=False)


def _describe(check: Any) -> str:
    name = f"{check.check} {check.column or ''}".strip()
    return f"{name}: {check.unexpected_count} rows" if check.row_level else f"{name}: observed {check.observed}"


def _finish(store: PipelineStore, outcome: BatchOutcome, report_key: str, extra: dict[str, Any]) -> BatchOutcome:
    outcome = outcome.model_copy(update={"report": store.describe(report_key)})
    faults.point("validate.before_report")
    store.write_json(report_key, encode(outcome) | extra | {"validated_at": time.time()})
    faults.point("validate.report_written")
    _commit_status(store, outcome)
    return outcome


def _commit_status(store: PipelineStore, outcome: BatchOutcome) -> None:
    """``batch.json`` takes the outcome: the write that makes a batch usable (or not) for readers."""
    store.update_batch_record(
        outcome.batch_id,
        status=outcome.status,
        reason=outcome.reason,
        rows=outcome.rows,
        quarantined=outcome.quarantined,
    )
