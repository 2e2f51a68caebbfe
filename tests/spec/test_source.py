"""Source URIs: a local folder or s3://bucket/prefix, with clear errors for anything else."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from sluice.spec.errors import SpecError
from sluice.spec.loader import load_spec


def _load_with_source(
    write_spec: Callable[..., Path], demo_data: dict[str, Any], **source: Any
) -> tuple[Any, str | None]:
    demo_data["source"] = {"pattern": "*.parquet"} | source
    path = write_spec(demo_data)
    try:
        return load_spec(path).spec.source, None
    except SpecError as exc:
        (issue,) = [i for i in exc.issues if i.where.startswith("source")]
        return None, f"{issue.where}: {issue.message}"


def test_s3_uri_gives_bucket_prefix_and_default_connection(project_env, write_spec, demo_data) -> None:
    source, error = _load_with_source(write_spec, demo_data, uri="s3://landing-zone/flights/in/")
    assert error is None
    assert source.is_s3
    assert source.s3_location() == ("landing-zone", "flights/in")
    assert source.aws_conn_id == "aws_default"


def test_s3_uri_with_bucket_only_and_own_connection(project_env, write_spec, demo_data) -> None:
    source, error = _load_with_source(write_spec, demo_data, uri="s3://landing-zone", conn_id="minio_landing")
    assert error is None
    assert source.s3_location() == ("landing-zone", "")
    assert source.aws_conn_id == "minio_landing"


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ({"uri": "gs://bucket/prefix"}, "uri scheme 'gs://' is not supported"),
        ({"uri": "s3://"}, "does not name a valid S3 bucket"),
        ({"uri": "s3://Upper_Case/x"}, "does not name a valid S3 bucket"),
        ({"uri": "s3://bucket/in/*"}, "the prefix must be a plain folder"),
        ({"uri": "data/landing", "conn_id": "aws_default"}, "conn_id applies only to an s3:// uri"),
    ],
)
def test_bad_source_names_the_problem(project_env, write_spec, demo_data, source, message) -> None:
    _, error = _load_with_source(write_spec, demo_data, **source)
    assert error is not None and message in error, error


def test_local_folder_is_not_s3(project_env, write_spec, demo_data) -> None:
    source, error = _load_with_source(write_spec, demo_data, uri="data/landing/flights")
    assert error is None and not source.is_s3
