"""Validate landed batches with Great Expectations; quarantine or reject per the spec."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from sluice.services import faults
from sluice.services.storage import PipelineStore, write_json_atomic
from sluice.spec.models import Validation


@dataclass
class BatchOutcome:
    """The verdict on one batch.

    Attributes:
        batch_id: The batch.
        status: ``accepted`` (rows go to training) or ``rejected`` (nothing does).
        reason: Why, in one sentence with the numbers.
        rows: Rows in the file (0 when unreadable).
        quarantined: Rows written to ``quarantine.parquet``.
        quarantine_rate: quarantined / rows.
        failed_checks: ``"<check> <column>: <n> rows"`` for each failed check.
        report: Path of ``validation.json``.
    """

    batch_id: str
    status: str
    reason: str
    rows: int = 0
    quarantined: int = 0
    quarantine_rate: float = 0.0
    failed_checks: list[str] = field(default_factory=list)
    report: str = ""

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form."""
        return asdict(self)


def read_batch(path: Path, fmt: str, columns: Mapping[str, str] | None = None) -> Any:
    """Read a batch file with pandas (CSV columns declared as text are read as text)."""
    from sluice.steps.schema import read_frame

    return read_frame(path, fmt, columns)


def _unreadable(path: Path, fmt: str, exc: Exception) -> str:
    if path.stat().st_size == 0:
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
    folder = store.batch_dir(batch_id)
    report_path = folder / "validation.json"
    if report_path.exists():
        done = BatchOutcome(**{k: v for k, v in _read(report_path).items() if k in BatchOutcome.__dataclass_fields__})
        if store.batch_record(batch_id).get("status") == "landed":
            # Killed between the report and batch.json: finish the commit, or the batch
            # would look validated to this step and unvalidated to everyone else for ever.
            _commit_status(store, done)
        return done
    record = store.batch_record(batch_id)
    source = folder / f"source{record.get('source_suffix', '.' + fmt)}"
    try:
        raw = read_batch(source, fmt, columns)
    except Exception as exc:  # any reader error means the file is unusable as a whole
        return _finish(store, BatchOutcome(batch_id, "rejected", _unreadable(source, fmt, exc)), report_path, {})
    rows = len(raw)
    if rows == 0:
        reason = f"empty batch: the file has no rows (columns: {', '.join(map(str, raw.columns)) or 'none'})"
        return _finish(store, BatchOutcome(batch_id, "rejected", reason), report_path, {})

    schema: dict[str, Any] = {}
    df = raw
    bad_cells: dict[str, list[Any]] = {}
    if columns:
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
            reason = "schema drift: " + "; ".join(problems) + f" (the batch has: {have})"
            return _finish(
                store, BatchOutcome(batch_id, "rejected", reason, rows=rows), report_path, {"schema": schema}
            )
        df, bad_cells = conformed.frame, conformed.bad_rows
    checked = [(e.type, str(getattr(e, "column", ""))) for e in validation.expectations if hasattr(e, "column")]
    absent = [(kind, column) for kind, column in checked if column not in df]
    if absent:
        named = "; ".join(
            f"check {kind} on column '{column}'" + (" (not in source.columns: dropped)" if column in raw else "")
            for kind, column in absent
        )
        reason = f"checked column missing from the batch: {named} (the batch has: {', '.join(map(str, df.columns))})"
        return _finish(store, BatchOutcome(batch_id, "rejected", reason, rows=rows), report_path, {"schema": schema})

    from sluice.services.gx import run_expectations

    checks, gx_result = run_expectations(df, list(validation.expectations))
    write_json_atomic(folder / "gx_result.json", gx_result)
    failed = [c for c in checks if not c.success]
    type_failures = {f"type:{c}": idx for c, idx in bad_cells.items()}
    failed_text = [_describe(c) for c in failed] + [f"{k}: {len(v)} rows" for k, v in type_failures.items()]
    outcome = BatchOutcome(batch_id, "accepted", "all checks passed", rows=rows, failed_checks=failed_text)
    reasons = _judge(outcome, failed, type_failures, validation)
    _write_rows(folder, outcome, raw, df, reasons, columns)
    extra = {"checks": [asdict(c) | {"unexpected_index": len(c.unexpected_index)} for c in checks]}
    return _finish(store, outcome, report_path, extra | ({"schema": schema} if schema else {}))


def _judge(
    outcome: BatchOutcome, failed: list[Any], type_failures: dict[str, list[Any]], validation: Validation
) -> dict[Any, list[str]]:
    """Set the outcome's status, reason and quarantine numbers from the failed checks.

    Returns:
        The rows to quarantine (index -> names of the checks each failed).
    """
    rows = outcome.rows
    mode = validation.on_failure
    batch_level = [c for c in failed if not c.row_level]
    reasons: dict[Any, list[str]] = {}
    for name, idx in type_failures.items():
        for i in idx:
            reasons.setdefault(i, []).append(name)
    if not (failed or type_failures):
        return reasons
    n_failed = len(failed) + len(type_failures)
    if mode == "fail":
        outcome.status, outcome.reason = "rejected", f"{n_failed} check(s) failed and on_failure=fail"
        return reasons
    if batch_level and mode == "quarantine":
        outcome.status = "rejected"
        outcome.reason = "batch-level check failed: " + "; ".join(_describe(c) for c in batch_level)
        return reasons
    if mode == "quarantine":
        for check in failed:
            for i in check.unexpected_index:
                reasons.setdefault(i, []).append(f"{check.check}:{check.column}")
    outcome.quarantined = len(reasons)
    outcome.quarantine_rate = round(len(reasons) / rows, 6)
    if mode == "warn":
        outcome.reason = f"{len(failed)} check(s) failed; on_failure=warn keeps every row"
        if reasons:
            outcome.reason += f" but the {len(reasons)} with cells not of their declared type"
    if outcome.quarantine_rate > validation.max_quarantine_rate:
        outcome.status = "rejected"
        outcome.reason = (
            f"quarantine rate {outcome.quarantine_rate:.2%} exceeds "
            f"max_quarantine_rate {validation.max_quarantine_rate:.2%}"
        )
    elif mode == "quarantine":
        outcome.reason = (
            f"{outcome.quarantined} of {rows} rows quarantined "
            f"({outcome.quarantine_rate:.2%} <= {validation.max_quarantine_rate:.2%})"
        )
    return reasons


def _write_rows(
    folder: Path,
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
        quarantine.astype({c: "string" for c in quarantine.columns if quarantine[c].dtype == object}).to_parquet(
            folder / "quarantine.parquet", index=False
        )
        clean = df[~bad]
    if outcome.status == "accepted":
        if columns:
            import pyarrow.parquet as pq

            from sluice.steps.schema import to_arrow

            pq.write_table(to_arrow(clean, columns), folder / "clean.parquet")
        else:
            clean.to_parquet(folder / "clean.parquet", index=False)


def _describe(check: Any) -> str:
    name = f"{check.check} {check.column or ''}".strip()
    return f"{name}: {check.unexpected_count} rows" if check.row_level else f"{name}: observed {check.observed}"


def _finish(store: PipelineStore, outcome: BatchOutcome, report_path: Path, extra: dict[str, Any]) -> BatchOutcome:
    outcome.report = str(report_path)
    faults.point("validate.before_report")
    write_json_atomic(report_path, outcome.to_dict() | extra | {"validated_at": time.time()})
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


def _read(path: Path) -> dict[str, Any]:
    from sluice.services.storage import read_json

    return dict(read_json(path))
