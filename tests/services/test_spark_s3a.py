"""What Spark is told to reach the pipeline's S3 storage: the same bucket and keys as the store."""

from __future__ import annotations

import contextlib
import hashlib
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
import tenacity

from sluice.services.spark import (
    ASSUMED_ROLE_OPTION,
    AWS_DEFAULT_CHAIN,
    S3A_SIMPLE,
    S3ACredentialsUnsupported,
    s3a_conf,
    spark_location,
    store_spark_conf,
)
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


def test_session_tokens_use_the_temporary_credentials_provider_and_no_keys_use_the_aws_default_chain() -> None:
    conf = s3a_conf({"key": "k", "secret": "s", "token": "t"})
    assert conf["spark.hadoop.fs.s3a.aws.credentials.provider"].endswith("TemporaryAWSCredentialsProvider")
    assert conf["spark.hadoop.fs.s3a.session.token"] == "t"
    # No keys: the SDK's whole default chain (IRSA's web identity token and the shared config
    # files included, which S3A's own default list lacks), not a failure.
    assert s3a_conf({"client_kwargs": {"region_name": "eu-west-1"}}) == {
        "spark.hadoop.fs.s3a.aws.credentials.provider": AWS_DEFAULT_CHAIN,
        "spark.hadoop.fs.s3a.endpoint.region": "eu-west-1",
    }
    assert AWS_DEFAULT_CHAIN == "software.amazon.awssdk.auth.credentials.DefaultCredentialsProvider"


ROLE = "arn:aws:iam::123456789012:role/sluice-storage"


def test_a_role_with_keys_is_assumed_by_s3a_which_authenticates_with_those_keys() -> None:
    role = {
        "role_arn": ROLE,
        "method": "assume_role",
        "session_name": "airflow_sluice_storage",
        "external_id": "ext-1",
        "duration_seconds": 900,
        "key": "k",
        "secret": "s",
    }
    conf = s3a_conf({ASSUMED_ROLE_OPTION: role, "client_kwargs": {"region_name": "eu-west-1"}})
    assert S3A_SIMPLE == "org.apache.hadoop.fs.s3a.SimpleAWSCredentialsProvider"
    assert conf == {
        "spark.hadoop.fs.s3a.aws.credentials.provider": "org.apache.hadoop.fs.s3a.auth.AssumedRoleCredentialProvider",
        "spark.hadoop.fs.s3a.assumed.role.arn": ROLE,
        "spark.hadoop.fs.s3a.assumed.role.credentials.provider": S3A_SIMPLE,
        "spark.hadoop.fs.s3a.assumed.role.session.name": "airflow_sluice_storage",
        "spark.hadoop.fs.s3a.assumed.role.external.id": "ext-1",
        "spark.hadoop.fs.s3a.assumed.role.session.duration": "900s",
        "spark.hadoop.fs.s3a.access.key": "k",
        "spark.hadoop.fs.s3a.secret.key": "s",
        "spark.hadoop.fs.s3a.endpoint.region": "eu-west-1",
    }


def test_a_role_without_keys_is_assumed_with_the_default_chain_and_the_sts_endpoint_the_connection_names() -> None:
    role = {"role_arn": ROLE, "session_name": "s", "sts_endpoint": "https://sts.eu-west-1.amazonaws.com"}
    conf = s3a_conf({ASSUMED_ROLE_OPTION: role, "client_kwargs": {"region_name": "eu-west-1"}})
    assert conf["spark.hadoop.fs.s3a.aws.credentials.provider"].endswith("AssumedRoleCredentialProvider")
    assert conf["spark.hadoop.fs.s3a.assumed.role.credentials.provider"] == AWS_DEFAULT_CHAIN
    assert "spark.hadoop.fs.s3a.access.key" not in conf
    # hadoop-aws refuses an STS endpoint without its signing region
    assert conf["spark.hadoop.fs.s3a.assumed.role.sts.endpoint"] == "sts.eu-west-1.amazonaws.com", (
        "a host: S3A adds https"
    )
    assert conf["spark.hadoop.fs.s3a.assumed.role.sts.endpoint.region"] == "eu-west-1"
    temporary = s3a_conf({ASSUMED_ROLE_OPTION: {"role_arn": ROLE, "key": "k", "secret": "s", "token": "t"}})
    assert temporary["spark.hadoop.fs.s3a.assumed.role.credentials.provider"].endswith(
        "TemporaryAWSCredentialsProvider"
    )
    assert temporary["spark.hadoop.fs.s3a.session.token"] == "t"
    assert "spark.hadoop.fs.s3a.assumed.role.sts.endpoint" not in temporary, "AWS's own STS unless one is named"


def test_a_role_s3a_cannot_assume_names_the_fix_unless_the_spec_chose_sparks_credentials(tmp_path: Path) -> None:
    role = {"conn_id": "sluice_storage", "role_arn": ROLE, "method": "assume_role_with_saml"}
    with pytest.raises(
        S3ACredentialsUnsupported, match=r"'sluice_storage' assumes its role with assume_role_with_saml"
    ):
        s3a_conf({ASSUMED_ROLE_OPTION: role})
    for endpoint in ("http://127.0.0.1", "https://127.0.0.1:5000"):
        plain = {"conn_id": "sluice_storage", "role_arn": ROLE, "sts_endpoint": endpoint}
        with pytest.raises(S3ACredentialsUnsupported, match=r"calls STS only at https://<host> on port 443"):
            s3a_conf({ASSUMED_ROLE_OPTION: plain})
    store = PipelineStore(
        None, "p", backend=backend_for("s3://bucket/prefix", "p", options={ASSUMED_ROLE_OPTION: role, "anon": True})
    )
    chosen = {"spark.hadoop.fs.s3a.aws.credentials.provider": "com.example.Provider"}
    conf = store_spark_conf(store, _fetched(tmp_path / "jars"), chosen)
    assert conf["spark.hadoop.fs.s3a.aws.credentials.provider"] == "com.example.Provider"
    assert not any(".assumed.role." in key for key in conf)


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


@contextlib.contextmanager
def _https_sts_server(folder: Path) -> Iterator[tuple[str, Path]]:
    """A moto server at https://127.0.0.1 (S3A calls STS at https://<host>, port 443 only): its endpoint and
    a Java trust store of its certificate. Skips unless this process may listen on port 443 (root, port free)."""
    import socket

    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", 443))
        except OSError as err:
            pytest.skip(f"S3A reaches STS on port 443 only, and 127.0.0.1:443 is not ours: {err}")
    folder.mkdir()
    cert, key, trust = folder / "cert.pem", folder / "key.pem", folder / "trust.p12"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    subprocess.run(
        ["keytool", "-importcert", "-noprompt", "-alias", "sts", "-file", str(cert), "-keystore", str(trust),
         "-storetype", "PKCS12", "-storepass", "changeit"],
        check=True, capture_output=True,
    )  # fmt: skip
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", "443", "-c", str(cert), "-k", str(key)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    endpoint = "https://127.0.0.1"
    try:
        for attempt in tenacity.Retrying(
            stop=tenacity.stop_after_delay(60), wait=tenacity.wait_fixed(0.2), reraise=True
        ):
            with attempt:
                assert proc.poll() is None, f"moto exited with {proc.returncode}"
                requests.get(f"{endpoint}/moto-api/", timeout=2, verify=str(cert)).raise_for_status()
        yield endpoint, trust
    finally:
        proc.terminate()
        proc.wait(timeout=30)


@pytest.mark.integration
def test_spark_reads_the_bucket_as_the_role_s3a_assumed_through_sts(tmp_path: Path) -> None:
    """A real Spark read through S3A's assumed-role provider: STS AssumeRole on a test server, then S3."""
    from pyspark import SparkContext
    from tests.object_store import s3_server_process

    from sluice.services.spark import spark_session
    from sluice.services.spark_jars import default_jars_dir, fetch_s3a_jars

    jars = default_jars_dir(Path(__file__).resolve().parents[2])
    fetch_s3a_jars(jars)
    with s3_server_process() as s3, _https_sts_server(tmp_path / "tls") as (sts, trust):
        s3.create_bucket("assumed")
        s3.client().put_object(Bucket="assumed", Key="t/rows.csv", Body=b"n\n1\n2\n3\n")
        role = {
            "role_arn": ROLE,
            "method": "assume_role",
            "session_name": "sluice-spark-probe",
            "external_id": "ext-7",
            "sts_endpoint": sts,
            "key": s3.key,
            "secret": s3.secret,
        }
        options = {ASSUMED_ROLE_OPTION: role, "client_kwargs": {"endpoint_url": s3.endpoint, "region_name": s3.region}}
        conf = {
            "spark.jars": ",".join(str(j) for j in s3a_jars(jars)),
            "spark.driver.extraJavaOptions": (
                f"-Djavax.net.ssl.trustStore={trust} -Djavax.net.ssl.trustStorePassword=changeit"
            ),
            **s3a_conf(options),
        }
        try:
            spark = spark_session("sluice-test-assumed-role", conf=conf)
            rows = spark.read.csv("s3a://assumed/t/rows.csv", header=True).collect()
        finally:
            if SparkContext._active_spark_context is not None:
                SparkContext._active_spark_context.stop()
        assert sorted(int(r["n"]) for r in rows) == [1, 2, 3]
        data = requests.get(f"{sts}/moto-api/data.json", timeout=10, verify=str(tmp_path / "tls" / "cert.pem")).json()
        assumed = data["sts"]["AssumedRole"]
        assert [(r["role_arn"], r["session_name"], r["external_id"]) for r in assumed] == [
            (ROLE, "sluice-spark-probe", "ext-7")
        ], "S3A asked STS for the role (as the connection describes it) before reading"
