"""Spark settings (``features.conf``) are checked the way Spark parses them, with no JVM."""

from __future__ import annotations

import pytest

from sluice.spec.models import Features
from sluice.spec.spark_conf import conf_problem, kind_of

JOB = "include/features/flights.py:build_features"


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("spark.driver.memory", "2g"),
        ("spark.driver.memory", "512M"),
        ("spark.executor.memory", "2gb"),
        ("spark.executor.memory", "4096"),  # MiB, as Spark reads a bare executor memory
        ("spark.sql.autoBroadcastJoinThreshold", "-1"),
        ("spark.network.timeout", "120s"),
        ("spark.network.timeout", "300"),
        ("spark.sql.shuffle.partitions", " 8 "),
        ("spark.sql.adaptive.enabled", "TRUE"),
        ("spark.memory.fraction", "0.6"),
        ("spark.some.future.setting", "anything"),
        ("spark.hadoop.fs.s3a.connection.ssl.enabled", "whatever"),
    ],
)
def test_values_spark_parses_pass(key: str, value: str) -> None:
    assert conf_problem(key, value) is None


@pytest.mark.parametrize(
    ("key", "value", "problem", "fix"),
    [
        ("spark.driver.memory", "lots", "is not a whole number with a unit k, m, g or t", "spark.driver.memory: 2g"),
        ("spark.driver.memory", "2gb", "the driver JVM's -Xmx", "2g"),
        ("spark.driver.memory", "2048", "has no unit: the driver JVM would read it as 2048 bytes", "2g"),
        ("spark.executor.memory", "1.5g", "Spark takes no fractions of a size", "512m"),
        ("spark.executor.memory", "2 gigs", "optional unit (b, k, m, g, t, p)", "512m"),
        ("spark.network.timeout", "soon", "(us, ms, s, m, min, h, d)", "spark.network.timeout: 120s"),
        ("spark.executor.cores", "2.5", "is not a whole number", "spark.executor.cores: 4"),
        ("spark.dynamicAllocation.enabled", "yes", "is not true or false", "true"),
        ("spark.memory.fraction", "most", "is not a number", "0.6"),
    ],
)
def test_values_spark_cannot_parse_are_refused_with_the_format(key: str, value: str, problem: str, fix: str) -> None:
    found = conf_problem(key, value)

    assert found is not None
    assert problem in found[0] and f"'{value}'" in found[0]
    assert fix in found[1]


def test_every_spark_enabled_setting_is_a_boolean_but_free_form_families() -> None:
    assert kind_of("spark.sql.execution.arrow.pyspark.enabled") == "boolean"
    assert kind_of("spark.executorEnv.FEATURE.enabled") is None
    assert kind_of("spark.kubernetes.driver.label.x.enabled") is None


def test_yaml_numbers_and_booleans_reach_spark_as_it_writes_them() -> None:
    features = Features.model_validate(
        {"job": JOB, "conf": {"spark.sql.shuffle.partitions": 8, "spark.sql.adaptive.enabled": False}}
    )

    assert features.conf == {"spark.sql.shuffle.partitions": "8", "spark.sql.adaptive.enabled": "false"}


def test_a_bad_value_is_refused_at_its_own_key(write_spec, demo_text, project_env) -> None:
    from tests.spec.test_loader import load_error

    text = demo_text.replace(
        "  engine: local",
        "  engine: local\n  conf:\n    spark.sql.shuffle.partitions: 8\n    spark.executor.cores: two",
    )
    path = write_spec(text)

    (issue,) = load_error(path).issues

    assert issue.where == "features.conf.spark.executor.cores"
    assert issue.line == next(i for i, row in enumerate(text.splitlines(), 1) if "spark.executor.cores" in row)
    assert issue.hint == "write e.g. spark.executor.cores: 4"
