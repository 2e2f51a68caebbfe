"""``training.window``: which accepted batches a train run uses (no Spark needed)."""

from __future__ import annotations

import pytest

from sluice.services.batch_record import BatchRecord, BatchStatus
from sluice.spec.models import Window
from sluice.steps.features import DAY, training_batches


def _monthly(n: int) -> list[BatchRecord]:
    """``n`` accepted batches landed 30 days apart, oldest first."""
    return [
        BatchRecord(batch_id=f"b{i:02d}", landed_at=1_700_000_000 + i * 30 * DAY, status=BatchStatus.ACCEPTED)
        for i in range(n)
    ]


def _ids(records: list[BatchRecord]) -> list[str]:
    return [r.batch_id for r in records]


def test_without_a_window_every_batch_is_trained_on() -> None:
    assert _ids(training_batches(_monthly(24), None)) == _ids(_monthly(24))


def test_a_window_of_n_batches_keeps_the_newest_n() -> None:
    assert _ids(training_batches(_monthly(24), Window(batches=3))) == ["b21", "b22", "b23"]
    assert _ids(training_batches(_monthly(2), Window(batches=3))) == ["b00", "b01"], "fewer than N: all"


def test_a_window_of_days_counts_back_from_the_newest_batch_landing() -> None:
    # 90 days back from b23 reaches b20 (exactly 90 days older) and no further.
    assert _ids(training_batches(_monthly(24), Window(days=90))) == ["b20", "b21", "b22", "b23"]
    assert _ids(training_batches(_monthly(24), Window(days=89.9))) == ["b21", "b22", "b23"]
    assert _ids(training_batches(_monthly(1), Window(days=1))) == ["b00"], "the newest batch is always in"


def test_a_window_names_exactly_one_bound() -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="exactly one of batches or days"):
        Window(batches=3, days=90)
    with pytest.raises(ValidationError, match="exactly one of batches or days"):
        Window()
