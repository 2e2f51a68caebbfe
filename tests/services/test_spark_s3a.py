"""What Spark is told to reach the pipeline's S3 storage: the same bucket and keys as the store."""

from __future__ import annotations

from sluice.services.spark import s3a_conf, spark_location


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
