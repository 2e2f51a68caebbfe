"""Fixtures of the step tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from sluice.services.storage import PipelineStore


@pytest.fixture(scope="module")
def spark_module() -> Iterator[None]:
    """Stop the module's Spark session afterwards, so later modules start their own (with their jars)."""
    yield
    from pyspark import SparkContext

    active = SparkContext._active_spark_context
    if active is not None:
        active.stop()


@pytest.fixture
def landing(tmp_path: Path) -> Path:
    """An empty local landing folder."""
    folder = tmp_path / "landing"
    folder.mkdir()
    return folder


@pytest.fixture
def store(tmp_path: Path) -> PipelineStore:
    """Local storage of a pipeline named ``p``."""
    return PipelineStore(tmp_path / "storage", "p")
