"""Validate landed batches with Great Expectations; quarantine or reject per the spec."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

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


def read_batch(path: Path, fmt: str) -> Any:
    """Read a batch file with pandas."""
    import pandas as pd

    return pd.read_parquet(path) if fmt == "parquet" else pd.read_csv(path)


def validate_batch(store: PipelineStore, batch_id: str, validation: Validation, fmt: str) -> BatchOutcome:
    """Validate one landed batch and write its outcome beside it.

    Idempotent: a batch that already has an outcome returns it unchanged.

    Args:
        store: The pipeline's storage.
        batch_id: A batch in the raw zone.
        validation: The spec's validation section.
        fmt: ``parquet`` or ``csv``.

    Returns:
        The outcome; ``batch.json`` carries the same status.
    """
    folder = store.batch_dir(batch_id)
    report_path = folder / "validation.json"
    if report_path.exists():
        return BatchOutcome(**{k: v for k, v in _read(report_path).items() if k in BatchOutcome.__dataclass_fields__})
    record = store.batch_record(batch_id)
    source = folder / f"source{record.get('source_suffix', '.' + fmt)}"
    try:
        df = read_batch(source, fmt)
    except Exception as exc:  # any reader error means the file is unusable as a whole
        outcome = BatchOutcome(batch_id, "rejected", f"unreadable {fmt} file: {type(exc).__name__}: {exc}")
        return _finish(store, outcome, report_path, {})

    from sluice.services.gx import run_expectations

    checks, gx_result = run_expectations(df, list(validation.expectations))
    write_json_atomic(folder / "gx_result.json", gx_result)
    rows = len(df)
    failed = [c for c in checks if not c.success]
    failed_text = [_describe(c) for c in failed]
    outcome = BatchOutcome(batch_id, "accepted", "all checks passed", rows=rows, failed_checks=failed_text)
    clean = df
    if failed:
        mode = validation.on_failure
        batch_level = [c for c in failed if not c.row_level]
        if mode == "warn":
            outcome.reason = f"{len(failed)} check(s) failed; on_failure=warn keeps every row"
        elif mode == "fail":
            outcome.status, outcome.reason = "rejected", f"{len(failed)} check(s) failed and on_failure=fail"
        elif batch_level:
            outcome.status = "rejected"
            outcome.reason = "batch-level check failed: " + "; ".join(_describe(c) for c in batch_level)
        else:
            clean, quarantine = _split_rows(df, failed)
            outcome.quarantined = len(quarantine)
            outcome.quarantine_rate = round(len(quarantine) / rows, 6) if rows else 0.0
            quarantine.to_parquet(folder / "quarantine.parquet", index=False)
            if outcome.quarantine_rate > validation.max_quarantine_rate:
                outcome.status = "rejected"
                outcome.reason = (
                    f"quarantine rate {outcome.quarantine_rate:.2%} exceeds "
                    f"max_quarantine_rate {validation.max_quarantine_rate:.2%}"
                )
            else:
                outcome.reason = (
                    f"{outcome.quarantined} of {rows} rows quarantined "
                    f"({outcome.quarantine_rate:.2%} <= {validation.max_quarantine_rate:.2%})"
                )
    if outcome.status == "accepted":
        clean.to_parquet(folder / "clean.parquet", index=False)
    return _finish(
        store,
        outcome,
        report_path,
        {"checks": [asdict(c) | {"unexpected_index": len(c.unexpected_index)} for c in checks]},
    )


def _describe(check: Any) -> str:
    name = f"{check.check} {check.column or ''}".strip()
    return f"{name}: {check.unexpected_count} rows" if check.row_level else f"{name}: observed {check.observed}"


def _split_rows(df: Any, failed: list[Any]) -> tuple[Any, Any]:
    """Split ``df`` into passing rows and failing rows tagged with the checks they failed."""
    reasons: dict[Any, list[str]] = {}
    for check in failed:
        for idx in check.unexpected_index:
            reasons.setdefault(idx, []).append(f"{check.check}:{check.column}")
    bad = df.index.isin(list(reasons))
    quarantine = df[bad].copy()
    quarantine["_sluice_failed_checks"] = [",".join(reasons[i]) for i in quarantine.index]
    return df[~bad], quarantine


def _finish(store: PipelineStore, outcome: BatchOutcome, report_path: Path, extra: dict[str, Any]) -> BatchOutcome:
    outcome.report = str(report_path)
    write_json_atomic(report_path, outcome.to_dict() | extra | {"validated_at": time.time()})
    store.update_batch_record(
        outcome.batch_id,
        status=outcome.status,
        reason=outcome.reason,
        rows=outcome.rows,
        quarantined=outcome.quarantined,
    )
    return outcome


def _read(path: Path) -> dict[str, Any]:
    from sluice.services.storage import read_json

    return dict(read_json(path))
