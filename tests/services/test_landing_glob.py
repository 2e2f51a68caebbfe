"""The S3 key regex: a file-name glob that never reaches into sub-folders such as _processed/."""

from __future__ import annotations

import re

import pytest

from sluice.services.landing import key_regex


@pytest.mark.parametrize(
    ("prefix", "pattern", "key", "matches"),
    [
        ("flights", "*.parquet", "flights/2013-01.parquet", True),
        ("flights", "*.parquet", "flights/_processed/2013-01.parquet", False),
        ("flights", "*.parquet", "flights/sub/2013-01.parquet", False),
        ("flights", "*.parquet", "flights/2013-01.csv", False),
        ("flights", "*.parquet", "flightsX/2013-01.parquet", False),
        ("in/flights/", "month_??.csv", "in/flights/month_01.csv", True),
        ("in/flights", "month_??.csv", "in/flights/month_1.csv", False),
        ("", "*.parquet", "a.parquet", True),
        ("", "*.parquet", "_processed/a.parquet", False),
        ("x", "batch[0-9].parquet", "x/batch7.parquet", True),
        ("x", "batch[!0-9].parquet", "x/batch7.parquet", False),
        ("x.y", "a+b.parquet", "x.y/a+b.parquet", True),
        ("x.y", "a+b.parquet", "xzy/aab.parquet", False),
    ],
)
def test_key_regex_matches_files_directly_in_the_prefix(prefix, pattern, key, matches) -> None:
    assert bool(re.match(key_regex(prefix, pattern), key)) is matches
