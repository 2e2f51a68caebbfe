"""Feature tables written the way a ``scope: batch`` feature build leaves them, for train tests."""

from __future__ import annotations

from typing import TYPE_CHECKING

from sluice.services.storage import PipelineStore
from sluice.steps.records import FeatureResult

if TYPE_CHECKING:
    import pandas as pd


def features_of(store: PipelineStore, months: dict[int, pd.DataFrame]) -> FeatureResult:
    """A ``scope: batch`` feature result: one table per batch, oldest first."""
    parts = []
    for m, frame in months.items():
        key = store.feature_cache_key(f"b{m}", "entry", "features.parquet")
        with store.open_write(key) as fh:
            frame.to_parquet(fh, index=False)
        parts.append(store.location(key))
    return FeatureResult(
        path=store.location(store.features_key("table")),
        key="-".join(f"b{m}" for m in months),
        batches={f"b{m}": f"sha-{m}" for m in months},
        job_hash="job",
        rows=sum(len(f) for f in months.values()),
        parts=parts,
    )
