"""What Spark is told to reach the pipeline's S3 storage: the same bucket and keys as the store."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from sluice.services.spark import s3a_conf, spark_location, store_spark_conf
from sluice.services.spark_jars import (
    POM,
    S3AJarsError,
    S3AJarsMissing,
    expected_checksums,
    fetch_s3a_jars,
    s3a_jars,
    verify_jars,
)
from sluice.services.storage import PipelineStore, backend_for


def test_store_locations_become_s3a_uris_for_spark() -> None:
    assert spark_location("s3://bucket/p/batches/b1/clean.parquet") == "s3a://bucket/p/batches/b1/clean.parquet"
    assert spark_location("/data/sluice/p/batches/b1/clean.parquet") == "/data/sluice/p/batches/b1/clean.parquet"


def test_a_loopback_s3_server_gets_path_style_plain_http_and_static_keys() -> None:
    conf = s3a_conf(
        {
            "key": "k",
            "secret": "s",
            "client_kwargs": {"endpoint_url": "http://127.0.0.1:9000", "region_name": "us-east-1"},
        }
    )
    assert conf == {
        "spark.hadoop.fs.s3a.access.key": "k",
        "spark.hadoop.fs.s3a.secret.key": "s",
        "spark.hadoop.fs.s3a.aws.credentials.provider": "org.apache.hadoop.fs.s3a.SimpleAWSCredentialsProvider",
        "spark.hadoop.fs.s3a.endpoint.region": "us-east-1",
        "spark.hadoop.fs.s3a.endpoint": "http://127.0.0.1:9000",
        "spark.hadoop.fs.s3a.path.style.access": "true",
        "spark.hadoop.fs.s3a.connection.ssl.enabled": "false",
    }


def test_session_tokens_use_the_temporary_credentials_provider_and_no_keys_leave_the_default_chain() -> None:
    conf = s3a_conf({"key": "k", "secret": "s", "token": "t"})
    assert conf["spark.hadoop.fs.s3a.aws.credentials.provider"].endswith("TemporaryAWSCredentialsProvider")
    assert conf["spark.hadoop.fs.s3a.session.token"] == "t"
    assert s3a_conf({"client_kwargs": {"region_name": "eu-west-1"}}) == {
        "spark.hadoop.fs.s3a.endpoint.region": "eu-west-1"
    }


def _fetched(folder: Path) -> Path:
    """A folder that looks fetched (every pinned jar name, and the stamp) without Maven."""
    from sluice.services.spark_jars import CHECKSUMS, STAMP, expected_checksums

    folder.mkdir(parents=True)
    for name in expected_checksums():
        (folder / name).write_bytes(b"")
    (folder / STAMP).write_text(CHECKSUMS.read_text())
    return folder


def test_an_s3_store_gets_the_s3a_jars_and_its_own_endpoint_and_keys(tmp_path: Path) -> None:
    options = {"key": "k", "secret": "s", "client_kwargs": {"endpoint_url": "http://127.0.0.1:9000"}}
    store = PipelineStore(None, "p", backend=backend_for("s3://bucket/prefix", "p", options=options))
    assert store.location().startswith("s3://bucket/prefix/p")
    jars = _fetched(tmp_path / "jars")

    conf = store_spark_conf(store, jars, {"spark.jars": "/opt/extra.jar", "spark.executor.memory": "8g"})

    listed = conf["spark.jars"].split(",")
    assert listed[:-1] == [str(jars / name) for name in sorted(expected_checksums())]
    assert listed[-1] == "/opt/extra.jar", "the spec's own jars are added, not replacing S3A's"
    assert any(name.startswith("hadoop-aws-3.5.0") for name in expected_checksums())
    assert conf["spark.hadoop.fs.s3a.endpoint"] == "http://127.0.0.1:9000"
    assert conf["spark.hadoop.fs.s3a.access.key"] == "k" and conf["spark.executor.memory"] == "8g"


def test_a_local_store_needs_no_jars_and_keeps_the_spec_settings(tmp_path: Path) -> None:
    store = PipelineStore(tmp_path / "storage", "p")
    assert store_spark_conf(store, tmp_path / "never-fetched", {"spark.executor.memory": "8g"}) == {
        "spark.executor.memory": "8g"
    }


def test_missing_jars_name_the_make_target(tmp_path: Path) -> None:
    with pytest.raises(S3AJarsMissing, match=r"never fetched.*`make s3a-jars`"):
        s3a_jars(tmp_path / "empty")
    folder = _fetched(tmp_path / "partial")
    next(folder.glob("hadoop-aws-*.jar")).unlink()
    with pytest.raises(S3AJarsMissing, match=r"1 of \d+ missing.*make s3a-jars"):
        s3a_jars(folder)


def test_the_checksum_check_names_each_corrupted_missing_or_unexpected_jar(tmp_path: Path) -> None:
    folder = tmp_path / "jars"
    folder.mkdir()
    (folder / "a.jar").write_bytes(b"a")
    (folder / "b.jar").write_bytes(b"b")
    pinned = {"a.jar": hashlib.sha256(b"a").hexdigest(), "b.jar": hashlib.sha256(b"b").hexdigest()}
    assert verify_jars(folder, pinned) == [folder / "a.jar", folder / "b.jar"]

    (folder / "a.jar").write_bytes(b"tampered")
    (folder / "b.jar").unlink()
    (folder / "c.jar").write_bytes(b"c")
    with pytest.raises(S3AJarsError) as err:
        verify_jars(folder, pinned)
    message = str(err.value)
    assert f"a.jar: sha256 {hashlib.sha256(b'tampered').hexdigest()}, expected {pinned['a.jar']}" in message
    assert "missing b.jar" in message and "unexpected c.jar" in message and "make s3a-jars" in message


def test_without_maven_the_fetch_says_how_to_install_it(tmp_path: Path) -> None:
    with pytest.raises(S3AJarsError, match="apt-get install maven"):
        fetch_s3a_jars(tmp_path / "jars", mvn="no-such-mvn")
    assert not (tmp_path / "jars").exists()


def test_the_pom_pins_hadoop_aws_at_the_hadoop_version_pyspark_bundles() -> None:
    import pyspark

    bundled = sorted((Path(pyspark.__file__).parent / "jars").glob("hadoop-client-api-*.jar"))
    assert len(bundled) == 1
    version = bundled[0].name.removeprefix("hadoop-client-api-").removesuffix(".jar")
    assert f"hadoop-aws-{version}.jar" in expected_checksums()
    assert f"<hadoop.version>{version}</hadoop.version>" in POM.read_text()
    assert not any(name.startswith("bundle-") for name in expected_checksums()), "not the 686 MB SDK bundle"
