"""The S3 inbox against a real S3 API (moto server): list, copy, archive, retry after a partial move."""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.conftest import S3Server
from tests.storage import local

from sluice.services.landing import S3Inbox
from sluice.services.storage import PipelineStore
from sluice.steps.ingest import land_new_files

pytestmark = pytest.mark.integration


def _put(s3: S3Server, key: str, body: bytes) -> None:
    s3.client.put_object(Bucket=s3.bucket, Key=key, Body=body)


def test_lists_only_matching_files_directly_under_the_prefix(s3: S3Server) -> None:
    for key in ("in/a.parquet", "in/b.csv", "in/_processed/old.parquet", "in/sub/c.parquet", "other/d.parquet"):
        _put(s3, key, b"x")
    inbox = S3Inbox(s3.client, s3.bucket, "in", "*.parquet")
    assert [(f.name, f.location, f.size) for f in inbox.waiting()] == [("a.parquet", "s3://landing/in/a.parquet", 1)]


def test_lands_archives_and_drops_repeated_content(s3: S3Server, tmp_path: Path) -> None:
    store = PipelineStore(tmp_path / "sluice", "p")
    inbox = S3Inbox(s3.client, s3.bucket, "in/", "*.csv")
    _put(s3, "in/jan.csv", b"a,b\n1,2\n")

    first = land_new_files(inbox, store, "run1")
    (batch,) = first.new
    assert (local(store, store.keys.batch(batch)) / "source.csv").read_bytes() == b"a,b\n1,2\n"
    record = store.batches.get(batch).model_dump(mode="json")
    assert record["source_uri"] == "s3://landing/in/jan.csv" and record["size_bytes"] == 8
    assert s3.keys("in/") == ["in/_processed/jan.csv"]
    assert not list((local(store) / ".incoming").iterdir()), "downloads are removed"

    # Same content under another name: no new batch, archived all the same.
    _put(s3, "in/jan-again.csv", b"a,b\n1,2\n")
    second = land_new_files(inbox, store, "run2")
    assert second.new == [] and second.duplicates == {"jan-again.csv": batch}
    assert s3.keys("in/") == ["in/_processed/jan-again.csv", "in/_processed/jan.csv"]
    assert store.batches.ids() == [batch]

    # Same name, other content: a new batch, archived under a content-derived name.
    _put(s3, "in/jan.csv", b"a,b\n3,4\n")
    (other,) = land_new_files(inbox, store, "run3").new
    assert f"in/_processed/jan.{other}.csv" in s3.keys("in/")
    assert s3.client.get_object(Bucket=s3.bucket, Key="in/_processed/jan.csv")["Body"].read() == b"a,b\n1,2\n"


def test_retry_after_copy_without_delete_is_safe(s3: S3Server, tmp_path: Path) -> None:
    store = PipelineStore(tmp_path / "sluice", "p")
    inbox = S3Inbox(s3.client, s3.bucket, "in", "*.csv")
    _put(s3, "in/feb.csv", b"a\n1\n")
    # A crash after landing and copying to _processed/, before the delete.
    (batch,) = land_new_files(inbox, store, "run1").new
    _put(s3, "in/feb.csv", b"a\n1\n")
    assert s3.keys("in/") == ["in/_processed/feb.csv", "in/feb.csv"]

    retry = land_new_files(inbox, store, "run1-retry")
    assert retry.new == [] and retry.duplicates == {"feb.csv": batch}
    assert s3.keys("in/") == ["in/_processed/feb.csv"], "no second archive copy, the original is gone"


def test_temporary_names_and_markers_on_s3(s3: S3Server, tmp_path: Path) -> None:
    import re

    from sluice.services.landing import key_regex

    for key in ("in/.a.csv", "in/b.csv.part", "in/_SUCCESS", "in/c.csv", "in/d.csv"):
        _put(s3, key, key.encode())
    _put(s3, "in/c.csv.done", b"")
    inbox = S3Inbox(s3.client, s3.bucket, "in", "*", marker="{name}.done")
    scan = inbox.scan()
    assert [f.name for f in scan.ready] == ["c.csv"]
    assert scan.waiting_for_marker == ["d.csv"] and scan.ignored == [".a.csv", "_SUCCESS", "b.csv.part"]
    # The sensor's regex never matches what the lister ignores.
    assert [k for k in s3.keys("in/") if re.match(key_regex("in", "*"), k)] == ["in/c.csv", "in/c.csv.done", "in/d.csv"]
    store = PipelineStore(tmp_path / "sluice", "p")
    assert land_new_files(inbox, store, "run").archived == ["c.csv"]
    assert "in/_processed/c.csv" in s3.keys("in/")
    assert "in/c.csv.done" not in s3.keys("in/"), "the marker goes with its file"


def test_an_object_overwritten_after_listing_is_not_archived(s3: S3Server, tmp_path: Path) -> None:
    _put(s3, "in/a.csv", b"x,y\n1,2\n")
    inbox = S3Inbox(s3.client, s3.bucket, "in", "*.csv")
    (item,) = inbox.waiting()
    _put(s3, "in/a.csv", b"x,y\n1,2\n3,4\n")  # the producer overwrites it
    assert inbox.archive(item, "0123456789abcdef") is None
    assert s3.keys("in/") == ["in/a.csv"], "left for the next run, not archived unread"
    assert not inbox.unchanged(item)
