"""The feature step on S3 storage: Spark reads the batches from the bucket and writes the
table back through S3A (hadoop-aws + the AWS SDK, fetched by ``make s3a-jars``), against a
real S3 server process; nothing of the pipeline touches the local disk.

One Spark session (one JVM with the S3A jars) serves the whole module: it starts in about
half a minute on this machine.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.conftest import Project
from tests.object_store import ObjectStore, s3_server_process

from demo.batches import accept_month
from sluice.services.spark_jars import S3AJarsError, default_jars_dir, fetch_s3a_jars
from sluice.services.storage import FEATURES_META, PipelineStore, backend_for

pytestmark = pytest.mark.integration

SAMPLE = 400
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def jars() -> Path:
    """The project's S3A jars (``make test`` fetched them; checksums only then)."""
    folder = default_jars_dir(REPO)
    fetch_s3a_jars(folder)
    return folder


@pytest.fixture(scope="module")
def s3() -> Iterator[ObjectStore]:
    with s3_server_process() as server:
        yield server


@pytest.fixture
def project(jars: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Project:
    """A scratch project with the demo spec and reference tables; the S3A jars and it in the environment."""
    from demo.producer import write_reference

    monkeypatch.setenv("SLUICE_S3A_JARS", str(jars))
    project = Project(tmp_path / "project", tmp_path / "project" / "dags")
    write_reference(project.root / "data" / "reference")
    project.write_spec()
    monkeypatch.setenv("SLUICE_PROJECT_DIR", str(project.root))
    return project


def _s3_store(s3: ObjectStore) -> PipelineStore:
    # A bucket per test: Hadoop caches one S3A filesystem per bucket in the JVM, with the
    # endpoint it was first opened with.
    bucket = f"sluice-{uuid.uuid4().hex[:10]}"
    s3.create_bucket(bucket)
    backend = backend_for(f"s3://{bucket}/pipelines", "flights_delay", options=s3.fsspec_options)
    return PipelineStore(None, "flights_delay", backend=backend)


def _accept(store: PipelineStore, month: int) -> tuple[str, int]:
    return accept_month(store, month, SAMPLE)


def _files(root: Path) -> set[Path]:
    return {p for p in root.rglob("*") if p.is_file()}


def test_the_feature_table_is_built_from_and_written_to_the_bucket_through_s3a(
    s3: ObjectStore, jars: Path, project: Project, spark_module: None, tmp_path: Path
) -> None:
    import pandas as pd
    from pyspark import SparkContext

    from sluice.services.spark import spark_session, store_spark_conf
    from sluice.spec.loader import load_spec
    from sluice.steps.features import build_features

    loaded = load_spec(project.dags / "flights_delay.pipeline.yaml")
    store = _s3_store(s3)
    (b1, rows1), (b2, rows2) = _accept(store, 1), _accept(store, 2)
    # A Spark JVM started without the jars (as an earlier step or test in this process would
    # leave it) cannot load S3A later: the step must start a JVM that has them.
    spark_session("sluice-test-no-jars").range(1).count()
    before = _files(tmp_path)

    result = build_features(loaded, store)
    gateway = SparkContext._gateway
    spark_session("sluice-test-same-jars", conf=store_spark_conf(store, jars))
    assert SparkContext._gateway is gateway, "a JVM that has the jars is kept"

    assert result.batches.keys() == {b1, b2} and not result.cached and result.computed == [b1, b2]
    assert len(result.parts) == 2 and all(p.startswith("s3://") for p in result.parts), "tables are in the bucket"
    # A user (or the train step) reads the per-batch tables back from the bucket with pandas and s3fs.
    table = pd.concat([pd.read_parquet(p, storage_options=s3.fsspec_options) for p in result.parts])
    assert len(table) == result.rows == rows1 + rows2 > 0
    assert "is_delayed" in table.columns
    meta = store.json.read(store.keys.features(result.key, FEATURES_META))
    assert meta["rows"] == len(table) and meta["batches"] == [b1, b2]
    # Committed whole: the staging prefixes are gone, each table and its marker are in place.
    assert store.ls("features") == [f"{result.key}/"]
    for batch in (b1, b2):
        assert store.ls(store.keys.feature_cache(batch)) == [f"{meta['entries'][batch]}/"]
        entry = store.keys.feature_cache(batch, meta["entries"][batch])
        assert {"features.parquet/", FEATURES_META} <= set(store.ls(entry))
    # Nothing of the pipeline was written under the project (its default storage root included).
    assert _files(tmp_path) == before
    assert not (project.root / "data" / "sluice").exists()

    again = build_features(loaded, store)
    assert again.cached and (again.key, again.rows) == (result.key, result.rows), "the next run reuses it"


# The build_features task's work on S3 storage, in a process of its own (killed mid-way).
FEATURES_ON_S3 = """
    import json, sys
    from sluice.services.storage import PipelineStore, backend_for
    from sluice.spec.loader import load_spec
    from sluice.steps.features import build_features
    loaded = load_spec(sys.argv[1])
    backend = backend_for(sys.argv[2], "flights_delay", options=json.loads(sys.argv[3]))
    build_features(loaded, PipelineStore(None, "flights_delay", backend=backend))
    """


@pytest.mark.faults
def test_a_feature_job_killed_before_its_commit_leaves_no_table_in_the_bucket_and_the_retry_builds_it(
    s3: ObjectStore, project: Project, spark_module: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import json

    from tests.faults.kill import kill_script, survivors

    from sluice.spec.loader import load_spec
    from sluice.steps.features import build_features

    spec = project.dags / "flights_delay.pipeline.yaml"
    store = _s3_store(s3)
    batch, rows = _accept(store, 1)
    root = store.location().removesuffix("/").removesuffix("/flights_delay")

    # The killed process imports this checkout's sluice, not whichever one is installed.
    monkeypatch.setenv(
        "PYTHONPATH", os.pathsep.join(filter(None, [str(REPO / "include"), os.environ.get("PYTHONPATH")]))
    )
    # Killed with the table and meta.json written under the staging prefix, before the commit.
    tag = kill_script("features.meta_written", tmp_path, FEATURES_ON_S3, str(spec), root, json.dumps(s3.fsspec_options))
    assert survivors(tag) == [], "the killed driver's Spark JVM dies with it"
    assert store.ls("features") == [], "no table a reader or the cache would trust"
    assert store.ls(store.keys.feature_cache(batch)) == [], "no cached batch table either"
    s3fs_paths = s3fs_find(s3, store.location("feature_cache"))
    assert any("/.tmp-" in p and p.endswith("/meta.json") for p in s3fs_paths), "it died after writing its staging"

    result = build_features(load_spec(spec), store)
    assert not result.cached and result.computed == [batch] and store.ls("features") == [f"{result.key}/"]
    assert result.rows == rows == store.json.read(store.keys.features(result.key, FEATURES_META))["rows"]


def s3fs_find(s3: ObjectStore, location: str) -> list[str]:
    """Every object under an ``s3://`` location, hidden ones included."""
    import s3fs

    return list(s3fs.S3FileSystem(**s3.fsspec_options).find(location))


def test_a_corrupted_jar_is_refused_before_spark_can_load_it(jars: Path, tmp_path: Path) -> None:
    copy = tmp_path / "s3a"
    shutil.copytree(jars, copy)
    target = copy / "hadoop-aws-3.5.0.jar"
    data = bytearray(target.read_bytes())
    data[len(data) // 2] ^= 0xFF
    target.write_bytes(bytes(data))

    with pytest.raises(S3AJarsError, match=r"hadoop-aws-3\.5\.0\.jar: sha256 .* expected .*make s3a-jars"):
        fetch_s3a_jars(copy)

    assert len(fetch_s3a_jars(jars)) == len(list(jars.glob("*.jar"))), "the fetched folder itself verifies"
