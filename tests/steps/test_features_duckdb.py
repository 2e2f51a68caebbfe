"""``features.engine: duckdb``: the demo's unchanged PySpark job on sqlframe over DuckDB, no JVM.

Parity: on the same demo batches both engines give the same feature table (integers and
strings exact, floats within a relative 1e-9), in the same layout, so train and evaluate
read it unchanged. The job runs in a child process: this process's pyspark stays pyspark.
"""

from __future__ import annotations

import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.conftest import Project, demo_spec_dict
from tests.object_store import ObjectStore, s3_server_process

from demo.batches import accept_month
from sluice.services.storage import FEATURES_META, PipelineStore, backend_for, open_store
from sluice.spec.loader import LoadedSpec, load_spec

pytestmark = pytest.mark.integration

SAMPLE = 300
#: Relative tolerance of float columns between the engines (the demo's floats come out bit-equal).
FLOAT_RTOL = 1e-9


@pytest.fixture()
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, spark_module: None) -> Project:
    from demo.producer import write_reference

    project = Project(tmp_path / "project", tmp_path / "project" / "dags")
    write_reference(project.root / "data" / "reference")
    monkeypatch.setenv("SLUICE_PROJECT_DIR", str(project.root))
    write(project, "local")
    return project


def write(project: Project, engine: str, **features: Any) -> LoadedSpec:
    """The demo spec on ``engine`` (2 shuffle partitions: tiny batches), loaded."""
    base = demo_spec_dict()["features"]
    path = project.write_spec(
        features=base | {"engine": engine, "conf": {"spark.sql.shuffle.partitions": "2"}} | features
    )
    return load_spec(path)


def same_tables(spark: Any, duck: Any) -> None:
    """Integers and strings exact, floats within :data:`FLOAT_RTOL`; rows in any order."""
    import pandas as pd

    assert list(spark.columns) == list(duck.columns)
    for column in spark.columns:
        assert spark[column].dtype.kind == duck[column].dtype.kind, column  # DuckDB may use a wider integer
    spark, duck = (t.sort_values(list(t.columns)).reset_index(drop=True) for t in (spark, duck))
    pd.testing.assert_frame_equal(spark, duck, check_dtype=False, check_exact=False, rtol=FLOAT_RTOL, atol=0)
    for column in spark.select_dtypes(exclude="float").columns:
        assert spark[column].astype(object).equals(duck[column].astype(object)), column


@pytest.mark.parametrize("scope", ["batch", "history"])
def test_both_engines_build_the_same_feature_table_in_the_same_layout(project: Project, scope: str) -> None:
    from sluice.steps.features import build_features, read_features

    loaded = write(project, "local", scope=scope)
    store = open_store(loaded)
    (b1, rows1), (b2, rows2) = accept_month(store, 1, SAMPLE), accept_month(store, 2, SAMPLE)

    spark = build_features(loaded, store)
    spark_table = read_features(store, spark)
    store.remove("features")
    store.remove("feature_cache")  # the engine is not in the cache key: make the second engine compute
    duck = build_features(write(project, "duckdb", scope=scope), store)

    assert duck.computed == [b1, b2] and not duck.cached
    assert (duck.key, duck.batches, duck.rows) == (spark.key, spark.batches, spark.rows)
    assert duck.rows == rows1 + rows2 > 0
    assert [store.key_of(p) for p in duck.parts] == [store.key_of(p) for p in spark.parts]
    same_tables(spark_table, read_features(store, duck))
    meta = store.json.read(store.keys.features(duck.key, FEATURES_META))
    assert meta["rows"] == duck.rows and "day_of_week" in meta["columns"]
    assert not list(store.scratch("duckdb-features").iterdir()), "no working file is left"
    assert "sqlframe" not in sys.modules, "sqlframe was activated in the child, never here"


def test_a_failing_job_names_its_line_and_commits_nothing(project: Project) -> None:
    from sluice.steps.features import build_features
    from sluice.steps.features_duckdb import DuckDBEngineError

    job = project.root / "include" / "features" / "broken.py"
    job.write_text(
        "# RDDs are Spark's alone\n\n"
        "def build_features(spark, inputs):\n"
        "    return inputs['batches'].rdd.map(lambda row: row).toDF()\n"
    )
    loaded = write(project, "duckdb", job="include/features/broken.py:build_features")
    store = open_store(loaded)
    accept_month(store, 1, SAMPLE)

    with pytest.raises(DuckDBEngineError, match=r"broken\.py:4: return inputs\['batches'\]\.rdd"):
        build_features(loaded, store)

    assert not store.exists("features"), "no run table"
    assert not store.exists("feature_cache"), "no cached batch table"


@pytest.fixture(scope="module")
def s3() -> Iterator[ObjectStore]:
    with s3_server_process() as server:
        yield server


def test_on_s3_storage_the_batches_are_read_and_the_table_written_through_the_store(
    project: Project, s3: ObjectStore, tmp_path: Path
) -> None:
    import pandas as pd

    from sluice.steps.features import build_features

    loaded = write(project, "duckdb")
    bucket = f"sluice-{uuid.uuid4().hex[:10]}"
    s3.create_bucket(bucket)
    store = PipelineStore(
        None, "flights_delay", backend_for(f"s3://{bucket}/p", "flights_delay", options=s3.fsspec_options)
    )
    (b1, rows1), (b2, rows2) = accept_month(store, 1, SAMPLE), accept_month(store, 2, SAMPLE)

    result = build_features(loaded, store)

    assert result.computed == [b1, b2] and all(p.startswith(f"s3://{bucket}/") for p in result.parts)
    table = pd.concat([pd.read_parquet(p, storage_options=s3.fsspec_options) for p in result.parts])
    assert len(table) == result.rows == rows1 + rows2 and "is_delayed" in table.columns
    (entry,) = store.ls(store.keys.feature_cache(b1))
    assert set(store.ls(store.keys.feature_cache(b1, entry.rstrip("/")))) == {"features.parquet/", FEATURES_META}
    assert not list(store.scratch("duckdb-features").iterdir()), "the local copies of the batches are gone"
    assert build_features(loaded, store).cached
