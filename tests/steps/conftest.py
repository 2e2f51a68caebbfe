"""Fixtures of the step tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest


@pytest.fixture(scope="module")
def spark_module() -> Iterator[None]:
    """Stop the module's Spark session afterwards, so later modules start their own (with their jars)."""
    yield
    from pyspark import SparkContext

    active = SparkContext._active_spark_context
    if active is not None:
        active.stop()
