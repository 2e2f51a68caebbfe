"""A writer that pauses longer than the settle time: nothing it writes may be lost.

Before: the first part landed (a green run), the file was archived, the writer finished it
inside ``_processed/`` and the rest (1,348 of 3,000 rows in one try) was never read.
"""

from __future__ import annotations

import io
import threading
from pathlib import Path

import pandas as pd
import pytest
from tests.storage import local

from sluice.services.landing import CUT_LINE, PROCESSED, LocalInbox, open_for_writing
from sluice.steps.ingest import land_new_files
from sluice.steps.records import BatchStatus


def csv_bytes(rows: int = 3000) -> bytes:
    frame = pd.DataFrame({"id": range(rows), "carrier": ["UA", "AA", "DL"] * (rows // 3), "distance": 1400})
    return frame.to_csv(index=False).encode()


def parquet_bytes(rows: int = 3000) -> bytes:
    buf = io.BytesIO()
    pd.DataFrame({"id": range(rows), "distance": 1400}).to_parquet(buf, index=False)
    return buf.getvalue()


class PausingWriter(threading.Thread):
    """Writes ``data[:cut]``, keeps the file open until released, then writes the rest and closes."""

    def __init__(self, path: Path, data: bytes, cut: int) -> None:
        super().__init__(daemon=True)
        self.path, self.data, self.cut = path, data, cut
        self.paused, self.release = threading.Event(), threading.Event()

    def run(self) -> None:
        with self.path.open("wb") as fh:
            fh.write(self.data[: self.cut])
            fh.flush()
            self.paused.set()
            self.release.wait(30)
            fh.write(self.data[self.cut :])

    def finish(self) -> None:
        self.release.set()
        self.join(30)


def inbox(landing: Path, pattern: str, csv: bool = False) -> LocalInbox:
    # The settle wait passes (nothing changes during it): the writer is paused far longer.
    return LocalInbox(landing, pattern, settle_seconds=1, sleep=lambda _: None, csv=csv)


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_a_file_held_open_by_a_paused_writer_is_not_landed_then_lands_whole(landing, store, fmt):
    data = csv_bytes() if fmt == "csv" else parquet_bytes()
    path = landing / f"jan.{fmt}"
    writer = PausingWriter(path, data, cut=len(data) * 55 // 100)
    writer.start()
    assert writer.paused.wait(30)

    paused = land_new_files(inbox(landing, f"*.{fmt}", csv=fmt == "csv"), store, "run1")

    assert paused.new == [] and store.batches.ids() == [], "a file open for writing is never landed"
    assert "open for writing by process" in paused.held[f"jan.{fmt}"]
    assert path.exists() and not (landing / PROCESSED / f"jan.{fmt}").exists()

    writer.finish()
    (batch,) = land_new_files(inbox(landing, f"*.{fmt}", csv=fmt == "csv"), store, "run2").new
    landed = local(store, store.keys.batch(batch)) / f"source.{fmt}"
    assert len(pd.read_csv(landed) if fmt == "csv" else pd.read_parquet(landed)) == 3000, "every row lands"


def test_a_csv_cut_mid_line_is_held_even_when_its_writer_is_not_visible(landing, store):
    data = csv_bytes()
    cut = data.index(b"\n", len(data) // 2) + 4  # a few characters into a line
    (landing / "jan.csv").write_bytes(data[:cut])  # written and closed: a writer no /proc scan sees

    first = land_new_files(inbox(landing, "*.csv", csv=True), store, "run1")

    assert first.new == [] and first.held == {"jan.csv": CUT_LINE}
    with (landing / "jan.csv").open("ab") as fh:
        fh.write(data[cut:])
    (batch,) = land_new_files(inbox(landing, "*.csv", csv=True), store, "run2").new
    assert len(pd.read_csv(local(store, store.keys.batch(batch)) / "source.csv")) == 3000


def test_a_landed_file_finished_after_archiving_lands_whole_and_supersedes_the_first_part(landing, store):
    data = csv_bytes()
    cut = data.index(b"\n", len(data) * 55 // 100) + 1  # the writer paused at a line end
    (landing / "jan.csv").write_bytes(data[:cut])
    (first,) = land_new_files(inbox(landing, "*.csv", csv=True), store, "run1").new
    store.batches.update(first, status=BatchStatus.ACCEPTED, reason="all checks passed")
    assert store.batches.get(first).archived_to == str(landing / PROCESSED / "jan.csv")

    # The writer (invisible to sluice: another host, another container) finishes the file in the archive.
    with (landing / PROCESSED / "jan.csv").open("ab") as fh:
        fh.write(data[cut:])
    result = land_new_files(inbox(landing, "*.csv", csv=True), store, "run2")

    (second,) = result.new
    assert result.changed_after_landing == {second: first} and result.news()
    whole = local(store, store.keys.batch(second)) / "source.csv"
    assert len(pd.read_csv(whole)) == 3000, "the rows written after landing are read"
    assert store.batches.get(second).replaces_name_of == [first]
    assert store.batches.get(second).source_file == "jan.csv"
    assert store.batches.get(first).superseded_by == second
    assert first not in {r.batch_id for r in store.batches.accepted()}, "training never reads the first part"
    again = land_new_files(inbox(landing, "*.csv", csv=True), store, "run3")
    assert again.new == [] and again.changed_after_landing == {}, "noticed once"


def test_open_for_writing_sees_writers_but_not_readers(tmp_path):
    path = tmp_path / "x.csv"
    path.write_bytes(b"a\n")
    with path.open("rb"):
        assert open_for_writing([str(path)]) == {}
    with path.open("ab"):
        assert str(path) in open_for_writing([str(path)])
