"""The storage interface's promises, on every backend: the local folder, an fsspec object
store in memory, and S3 through s3fs against a real S3 server process."""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import fsspec
import pytest
from tests.object_store import ObjectStore, s3_server_process

from sluice.services.storage import PipelineStore, StorageBackend, backend_for, iter_keys
from sluice.services.storage_fsspec import FsspecBackend
from sluice.services.storage_local import LocalBackend


@pytest.fixture(scope="module")
def s3_server() -> Iterator[ObjectStore]:
    with s3_server_process() as server:
        server.create_bucket("sluice")
        yield server


@pytest.fixture(params=["local", "memory", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[PipelineStore]:
    if request.param == "local":
        yield PipelineStore(tmp_path / "storage", "p")
        return
    if request.param == "s3":
        server = request.getfixturevalue("s3_server")
        backend = backend_for(f"s3://sluice/{uuid.uuid4().hex[:8]}", "p", options=server.fsspec_options)
        yield PipelineStore(None, "p", backend=backend)
        return
    root = f"memory://sluice-test-{uuid.uuid4().hex[:8]}"
    yield PipelineStore(root, "p")
    memory = fsspec.filesystem("memory")
    if memory.exists(root):
        memory.rm(root, recursive=True)
    assert not memory.find(root)


def land(store: PipelineStore, batch_id: str, landed_at: float, content: bytes = b"rows") -> None:
    with store.stage(store.keys.batch(batch_id), "batch.json") as staging:
        staging.write_bytes("source.csv", content)
        staging.write_bytes("batch.json", b'{"batch_id": "%s", "landed_at": %f}' % (batch_id.encode(), landed_at))


def test_backends_satisfy_the_interface(store: PipelineStore) -> None:
    assert isinstance(store.backend, StorageBackend)


def test_json_round_trip_and_replace(store: PipelineStore) -> None:
    key = store.keys.run("manual__2026-01-01T00:00:00+00:00", "decision.json")
    assert key == "runs/manual__2026-01-01T00_00_00_00_00/decision.json"
    assert store.json.read_or_none(key) is None
    store.json.write(key, {"verdict": "pass"})
    store.json.write(key, {"verdict": "fail"})
    assert store.json.read(key) == {"verdict": "fail"}
    assert store.ls(store.keys.run("manual__2026-01-01T00:00:00+00:00")) == ["decision.json"]


def test_staged_folder_appears_whole_and_batches_list_in_landing_order(store: PipelineStore) -> None:
    land(store, "b2", 2.0)
    land(store, "b1", 1.0)
    assert store.batches.ids() == ["b1", "b2"]
    assert store.read_bytes(store.keys.batch("b1", "source.csv")) == b"rows"
    assert sorted(iter_keys(store, "batches")) == [
        "batches/b1/batch.json",
        "batches/b1/source.csv",
        "batches/b2/batch.json",
        "batches/b2/source.csv",
    ]


def test_a_writer_that_fails_mid_folder_leaves_nothing_a_reader_sees(store: PipelineStore) -> None:
    with pytest.raises(RuntimeError), store.stage(store.keys.batch("b1"), "batch.json") as staging:
        staging.write_bytes("source.csv", b"half")
        raise RuntimeError("killed")
    assert store.batches.ids() == []
    assert store.ls("batches") == []  # the temporary is hidden and was removed


def test_a_second_writer_of_a_committed_folder_changes_nothing(store: PipelineStore) -> None:
    land(store, "b1", 1.0, b"first")
    land(store, "b1", 5.0, b"second")
    assert store.read_bytes(store.keys.batch("b1", "source.csv")) == b"first"
    assert store.batches.get("b1").landed_at == 1.0


def test_keys_cannot_escape_the_pipeline(store: PipelineStore) -> None:
    with pytest.raises(ValueError, match="not a key"):
        store.read_bytes("../other/batches/b1/batch.json")


def test_put_file_moves_a_local_file_in(store: PipelineStore, tmp_path: Path) -> None:
    local = tmp_path / "holdout.parquet"
    local.write_bytes(b"PAR1")
    store.put_file(local, store.keys.run("r", "holdout.parquet"))
    assert not local.exists()
    assert store.read_bytes("runs/r/holdout.parquet") == b"PAR1"
    assert store.modified("runs/r/holdout.parquet") is not None
    store.remove("runs/r")
    assert not store.exists("runs/r/holdout.parquet")


def test_stale_temporaries_of_dead_writers_are_cleaned_and_fresh_ones_kept(store: PipelineStore) -> None:
    store.write_bytes("batches/.tmp-b1-dead/source.csv", b"x")
    assert store.clean_stale(older_than=3600) == []
    time.sleep(0.05)
    removed = store.clean_stale(older_than=0.01)
    assert len(removed) == 1 and "tmp-b1-dead" in removed[0]
    store.check_writable()


def test_a_step_removes_its_killed_predecessors_temporaries_at_once_and_only_in_its_own_area(
    store: PipelineStore,
) -> None:
    """The retry of a killed step cleans what it left, without waiting a day and without touching others' work."""
    store.write_bytes("batches/.tmp-b1-dead/source.csv", b"x")  # a land killed mid-batch
    store.write_bytes("batches/b0/.batch.json.0f0f.tmp", b"x")  # another step's write, inside a batch
    store.write_bytes("batches/b0/batch.json", b"{}")
    store.write_bytes("features/.tmp-k1-dead/meta.json", b"x")  # a feature build killed mid-table

    removed = store.clean_own_temporaries("batches", deep=False)

    assert len(removed) == 1 and "tmp-b1-dead" in removed[0]
    assert store.exists("batches/b0/.batch.json.0f0f.tmp") and store.exists("batches/b0/batch.json")
    assert store.exists("features/.tmp-k1-dead/meta.json"), "another step's area is left alone"
    assert len(store.clean_own_temporaries("features")) == 1 and not store.exists("features/.tmp-k1-dead/meta.json")
    assert store.clean_own_temporaries("monitor") == [], "an area that does not exist yet has nothing to clean"


def test_a_scratch_folder_is_emptied_for_the_step_that_owns_it(store: PipelineStore) -> None:
    folder = store.scratch(".incoming")
    (folder / ".copy-dead").write_bytes(b"x" * 100)
    (folder / "tmpdir").mkdir()
    (folder / "tmpdir" / "report.html").write_text("<html/>")
    assert sorted(Path(p).name for p in store.clear_scratch(".incoming")) == [".copy-dead", "tmpdir"]
    assert list(folder.iterdir()) == [] and store.clear_scratch(".incoming") == []


@pytest.mark.parametrize("store", ["memory", "s3"], indirect=True)
def test_object_store_commits_the_marker_last(store: PipelineStore) -> None:
    """Killed after the data objects but before the marker: readers see no batch."""
    backend = store.backend
    assert isinstance(backend, FsspecBackend)
    copied: list[str] = []
    real_copy = backend.fs.copy

    def copy_then_die(source: str, target: str) -> None:
        if target.endswith("batch.json"):
            raise KeyboardInterrupt("killed before the marker")
        copied.append(target)
        real_copy(source, target)

    backend.fs.copy = copy_then_die
    with pytest.raises(KeyboardInterrupt):
        land(store, "b1", 1.0)
    assert copied and copied[0].endswith("batches/b1/source.csv")
    assert store.exists(store.keys.batch("b1", "source.csv"))
    assert store.batches.ids() == []  # the data object exists, the batch does not
    backend.fs.copy = real_copy
    land(store, "b1", 1.0)  # the retry finishes the job
    assert store.batches.ids() == ["b1"]


def test_the_root_picks_the_backend(tmp_path: Path) -> None:
    assert backend_for("storage", "p", project_dir=tmp_path) == LocalBackend(tmp_path / "storage" / "p")
    assert isinstance(backend_for("memory://bucket/prefix", "p"), FsspecBackend)
    with pytest.raises(ValueError, match="no storage backend for gopher://"):
        backend_for("gopher://x", "p")
    local = LocalBackend(tmp_path / "s" / "p")
    local.write_bytes("runs/r/a.json", b"{}")
    assert [n for n in os.listdir(tmp_path / "s" / "p" / "runs" / "r")] == ["a.json"]


def test_open_write_replaces_whole_or_not_at_all(store: PipelineStore) -> None:
    key = store.keys.batch("b1", "clean.parquet")
    with store.open_write(key) as fh:
        fh.write(b"PAR1 whole")
    with pytest.raises(RuntimeError), store.open_write(key) as fh:
        fh.write(b"PAR1 torn")
        raise RuntimeError("killed mid-write")
    with store.open_read(key) as fh:
        assert fh.read() == b"PAR1 whole"
    assert store.size(key) == len(b"PAR1 whole")
    assert store.ls(store.keys.batch("b1")) == ["clean.parquet"]


def test_pandas_reads_and_writes_through_the_store(store: PipelineStore) -> None:
    import pandas as pd

    frame = pd.DataFrame({"dep_delay": [1.0, None, 3.0], "carrier": ["UA", "AA", None]})
    key = store.keys.batch("b1", "clean.parquet")
    with store.open_write(key) as fh:
        frame.to_parquet(fh, index=False)
    with store.open_read(key) as fh:
        assert pd.read_parquet(fh).equals(frame)
    assert store.parquet.read(key).equals(frame)
    # A folder of part files, as Spark writes a table.
    for i, part in enumerate((frame.head(1), frame.tail(2))):
        with store.open_write(store.keys.features("k", f"features.parquet/part-{i}.parquet")) as fh:
            part.to_parquet(fh, index=False)
    table = store.parquet.read(store.key_of(store.location(store.keys.features("k", "features.parquet"))))
    assert sorted(table["dep_delay"].dropna()) == [1.0, 3.0] and len(table) == 3


def test_parquet_is_read_a_chunk_at_a_time_with_only_the_columns_and_rows_asked_for(store: PipelineStore) -> None:
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(0)
    frame = pd.DataFrame(
        {"dest": rng.choice(["BOS", "LAX", None], 1000), "distance": rng.integers(1, 3000, 1000), "x": 1.5}
    )
    key = store.keys.batch("b1", "clean.parquet")
    with store.open_write(key) as fh:
        frame.to_parquet(fh, index=False, row_group_size=300)
    assert store.parquet.shape(key) == (["dest", "distance", "x"], 1000)

    chunks = list(store.parquet.chunks(key, ["distance", "dest"], chunk_rows=128))
    assert max(len(c) for c in chunks) == 128 and list(chunks[0].columns) == ["distance", "dest"]
    pd.testing.assert_frame_equal(pd.concat(chunks), store.parquet.read(key)[["distance", "dest"]])

    # Only some rows: the others never become pandas objects; the index says where each was.
    rows = np.array([0, 5, 299, 300, 301, 999])
    picked = pd.concat(store.parquet.chunks(key, ["dest"], rows=rows))
    assert list(picked.index) == list(rows)
    assert picked["dest"].equals(frame["dest"].iloc[rows])

    # A folder of part files reads as one table, positions running on across the parts.
    for i, part in enumerate((frame.head(400), frame.tail(600))):
        with store.open_write(store.keys.features("k", f"features.parquet/part-{i}.parquet")) as fh:
            part.to_parquet(fh, index=False, row_group_size=250)
    folder = store.keys.features("k", "features.parquet")
    assert store.parquet.shape(folder) == (["dest", "distance", "x"], 1000)
    again = pd.concat(store.parquet.chunks(folder, ["distance"], rows=rows))
    assert list(again.index) == list(rows) and again["distance"].equals(frame["distance"].iloc[rows])


def test_an_object_store_that_does_not_answer_is_named_with_the_fix() -> None:
    from sluice.services.storage_local import StorageUnavailable

    with s3_server_process() as server:
        server.create_bucket("sluice")
        options = server.fsspec_options
        options["config_kwargs"] = {"retries": {"max_attempts": 1}, "connect_timeout": 2}
        store = PipelineStore(None, "p", backend=backend_for("s3://sluice/down", "p", options=options))
        store.check_writable()
    with pytest.raises(StorageUnavailable) as failed:  # the server is gone: connections refused
        store.check_writable()
    message = str(failed.value)
    assert "the pipeline's storage s3://sluice/down/p" in message
    assert "EndpointConnectionError" in message and server.endpoint in message
    assert "its endpoint answers, then clear the task; nothing was written" in message


def test_spark_opens_an_s3_store_with_the_credentials_the_store_was_opened_with(s3_server: ObjectStore) -> None:
    from sluice.services.spark import s3a_conf

    backend = backend_for("s3://sluice/creds", "p", options=dict(s3_server.fsspec_options))
    conf = s3a_conf(PipelineStore(None, "p", backend=backend).filesystem_options())
    endpoint = s3_server.fsspec_options["client_kwargs"]["endpoint_url"]
    assert conf["spark.hadoop.fs.s3a.endpoint"] == endpoint
    assert conf["spark.hadoop.fs.s3a.access.key"] == s3_server.fsspec_options["key"]
    assert PipelineStore(Path("/nonexistent-root"), "p").filesystem_options() == {}


def test_the_backend_moves_bytes_and_formats_are_read_over_it(store: PipelineStore) -> None:
    import pandas as pd

    members = {name for name in dir(StorageBackend) if not name.startswith("_")}
    assert not {"read_parquet", "parquet_files", "scratch", "options", "describe"} & members
    frame = pd.DataFrame({"a": [1, 2, 3]})
    with store.open_write("t.parquet") as fh:
        frame.to_parquet(fh)
    assert store.parquet.read("t.parquet")["a"].tolist() == [1, 2, 3]
    assert store.parquet.shape("t.parquet") == (["a"], 3)
    assert (
        store.keys.batch("b1", "batch.json") == PipelineStore.keys.batch("b1", "batch.json") == "batches/b1/batch.json"
    )
