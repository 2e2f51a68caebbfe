"""Landing batch files into the raw zone: content-addressed, atomic, idempotent."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from tests.storage import local

from sluice.services.storage import PipelineStore, atomic_dir, read_json, sha256_file
from sluice.steps.ingest import PROCESSED, batch_id_for, land_new_files, pending_batches
from sluice.steps.records import encode


@pytest.fixture
def landing(tmp_path: Path) -> Path:
    folder = tmp_path / "landing"
    folder.mkdir()
    return folder


@pytest.fixture
def store(tmp_path: Path) -> PipelineStore:
    return PipelineStore(tmp_path / "storage", "flights_delay")


def write_batch(folder: Path, name: str, month: int, rows: int = 3) -> Path:
    df = pd.DataFrame(
        {
            "carrier": ["UA", "AA", "DL"][:rows],
            "origin": ["EWR", "JFK", "LGA"][:rows],
            "month": [month] * rows,
            "arr_delay": [5.0, 20.0, -3.0][:rows],
        }
    )
    path = folder / name
    df.to_parquet(path, index=False)
    return path


def test_land_copies_file_into_batch_folder_with_record(landing, store):
    src = write_batch(landing, "flights_2013_01.parquet", 1)
    digest = sha256_file(src)
    original = pd.read_parquet(src)

    result = land_new_files(str(landing / "*.parquet"), store, "manual__run1")

    batch_id = batch_id_for(digest)
    assert result.new == [batch_id]
    assert result.duplicates == {}
    assert result.archived == ["flights_2013_01.parquet"]
    folder = local(store, store.keys.batch(batch_id))
    assert folder == local(store).parent / "flights_delay" / "batches" / batch_id
    pd.testing.assert_frame_equal(pd.read_parquet(folder / "source.parquet"), original)
    record = read_json(folder / "batch.json")
    assert record["sha256"] == digest
    assert record["batch_id"] == batch_id == digest[:16]
    assert record["source_file"] == "flights_2013_01.parquet"
    assert record["status"] == "landed"
    assert record["landed_by_run"] == "manual__run1"
    assert record["size_bytes"] == (folder / "source.parquet").stat().st_size
    # The landing file is archived, not left to be landed again.
    assert not src.exists()
    assert (landing / PROCESSED / "flights_2013_01.parquet").is_file()
    assert store.batches.ids() == [batch_id]


def test_land_result_is_json_able(landing, store):
    write_batch(landing, "a.parquet", 1)
    result = land_new_files(str(landing / "*.parquet"), store, "run")
    as_dict = encode(result)
    assert {"new", "duplicates", "archived", "ignored", "unsettled", "changed", "refused"} <= set(as_dict)
    assert json.loads(json.dumps(as_dict))["new"] == result.new


def test_nothing_to_land_is_a_no_op(landing, store):
    result = land_new_files(str(landing / "*.parquet"), store, "run")
    assert (result.new, result.duplicates, result.archived) == ([], {}, [])
    assert store.batches.ids() == []


def test_same_content_under_another_name_lands_nothing(landing, store):
    first = write_batch(landing, "first.parquet", 1)
    content = first.read_bytes()
    landed = land_new_files(str(landing / "*.parquet"), store, "run1").new

    again = landing / "renamed_copy.parquet"
    again.write_bytes(content)
    result = land_new_files(str(landing / "*.parquet"), store, "run2")

    assert result.new == []
    assert result.duplicates == {"renamed_copy.parquet": landed[0]}
    assert result.archived == ["renamed_copy.parquet"]
    assert not again.exists()
    assert store.batches.ids() == landed
    # The original batch record is untouched by the duplicate.
    assert store.batches.get(landed[0]).source_file == "first.parquet"
    assert store.batches.get(landed[0]).landed_by_run == "run1"


def test_duplicates_within_one_pass_land_once(landing, store):
    a = write_batch(landing, "a.parquet", 1)
    (landing / "b.parquet").write_bytes(a.read_bytes())

    result = land_new_files(str(landing / "*.parquet"), store, "run")

    assert len(result.new) == 1
    assert result.duplicates == {"b.parquet": result.new[0]}
    assert sorted(result.archived) == ["a.parquet", "b.parquet"]


def test_same_name_new_content_lands_and_keeps_both_archives(landing, store):
    write_batch(landing, "daily.parquet", 1)
    first = land_new_files(str(landing / "*.parquet"), store, "run1").new
    write_batch(landing, "daily.parquet", 2)
    second = land_new_files(str(landing / "*.parquet"), store, "run2").new

    assert len(first) == len(second) == 1
    assert first != second
    assert set(store.batches.ids()) == {*first, *second}
    archived = sorted(p.name for p in (landing / PROCESSED).iterdir())
    assert len(archived) == 2
    assert "daily.parquet" in archived


def test_only_files_matching_the_glob_are_landed(landing, store):
    write_batch(landing, "a.parquet", 1)
    (landing / "readme.txt").write_text("not a batch")

    result = land_new_files(str(landing / "*.parquet"), store, "run")

    assert result.archived == ["a.parquet"]
    assert (landing / "readme.txt").exists()


def test_failure_inside_atomic_dir_leaves_no_batch_and_no_tmp(store):
    final = local(store, store.keys.batch("deadbeefdeadbeef"))

    with pytest.raises(RuntimeError, match="disk on fire"), atomic_dir(final) as tmp:
        (tmp / "source.parquet").write_bytes(b"half a file")
        raise RuntimeError("disk on fire")

    assert not final.exists()
    leftovers = list(final.parent.iterdir())
    assert leftovers == []
    assert store.batches.ids() == []


def test_atomic_dir_renames_into_place_on_success(store):
    final = local(store, store.keys.batch("cafebabecafebabe"))

    with atomic_dir(final) as tmp:
        assert tmp != final
        assert tmp.name.startswith(".tmp-")
        (tmp / "x.txt").write_text("done")
        assert not final.exists()  # readers never see a half-built folder

    assert (final / "x.txt").read_text() == "done"
    assert [p.name for p in final.parent.iterdir()] == ["cafebabecafebabe"]


def test_atomic_dir_discards_copy_when_final_appeared_meanwhile(store):
    final = local(store, store.keys.batch("0123456789abcdef"))

    with atomic_dir(final) as tmp:
        (tmp / "mine.txt").write_text("second writer")
        final.mkdir(parents=True)
        (final / "theirs.txt").write_text("first writer")

    assert [p.name for p in final.iterdir()] == ["theirs.txt"]
    assert [p.name for p in final.parent.iterdir()] == ["0123456789abcdef"]


def test_pending_batches_lists_landed_not_validated(landing, store):
    write_batch(landing, "jan.parquet", 1)
    write_batch(landing, "feb.parquet", 2)
    write_batch(landing, "mar.parquet", 3)
    landed = land_new_files(str(landing / "*.parquet"), store, "run").new
    assert len(landed) == 3
    assert sorted(pending_batches(store)) == sorted(landed)

    accepted, rejected, waiting = store.batches.ids()
    store.batches.update(accepted, status="accepted")
    store.batches.update(rejected, status="rejected", reason="too many bad rows")

    assert pending_batches(store) == [waiting]
    assert [r.batch_id for r in store.batches.accepted()] == [accepted]


def test_half_landed_batches_are_invisible(store):
    # A crash mid-copy leaves a .tmp-* folder and maybe a folder without batch.json.
    (local(store) / "batches" / ".tmp-abc-12345678").mkdir(parents=True)
    (local(store) / "batches" / "no_record").mkdir()

    assert store.batches.ids() == []
    assert pending_batches(store) == []


def test_temporaries_of_killed_writers_are_removed_once_stale_and_nothing_else(tmp_path: Path) -> None:
    import os
    import time

    from sluice.services.storage import STALE_AFTER_SECONDS, clean_stale_temporaries

    base = tmp_path / "flights_delay"
    batch = base / "batches" / "b1"
    batch.mkdir(parents=True)
    (batch / "batch.json").write_text("{}")
    (batch / "clean.parquet").write_bytes(b"PAR1")
    stale = [
        base / "batches" / ".tmp-b2-1234abcd",  # a land killed inside atomic_dir
        batch / ".batch.json.0f0f.tmp",  # a write_json_atomic killed before its rename
        base / ".incoming" / ".copy-5678",  # a land killed while copying
        base / "features" / ".tmp-key-9999",  # a feature build killed mid-write
    ]
    fresh = base / "batches" / ".tmp-b3-live"  # a writer at work right now
    for path in [*stale, fresh]:
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.name.startswith(".tmp-"):
            path.mkdir()
            (path / "source.parquet").write_bytes(b"x" * 1000)
        else:
            path.write_bytes(b"x" * 1000)
    old = time.time() - STALE_AFTER_SECONDS - 60
    for path in stale:
        os.utime(path, (old, old))

    removed = clean_stale_temporaries(base)
    assert sorted(removed) == sorted(stale)
    assert not any(p.exists() for p in stale)
    assert fresh.exists() and (batch / "batch.json").exists() and (batch / "clean.parquet").exists()
