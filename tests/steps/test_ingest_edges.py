"""Landing edge cases: files still being written, temporary names, markers, symlinks, folders, long names."""

from __future__ import annotations

import io
import logging
import os
import threading
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest
from tests.storage import local

from sluice.services.landing import NAME_MAX, PROCESSED, REJECTED, InboxFile, LocalInbox, ready_names
from sluice.services.storage import PipelineStore, read_json
from sluice.steps.ingest import land_new_files


def frame(rows: int, seed: int = 0) -> pd.DataFrame:
    return pd.DataFrame(
        {"id": range(seed, seed + rows), "carrier": ["UA", "AA", "DL"] * (rows // 3) + ["UA"] * (rows % 3)}
    )


class ControlledWriter(threading.Thread):
    """Writes ``data`` to ``path`` in three steps, each released by the test."""

    def __init__(self, path: Path, data: bytes) -> None:
        super().__init__(daemon=True)
        self.path, self.data = path, data
        self.step = [threading.Event() for _ in range(3)]
        self.done = [threading.Event() for _ in range(3)]

    def run(self) -> None:
        cuts = [0, len(self.data) // 2, len(self.data) * 3 // 4, len(self.data)]
        with self.path.open("wb") as fh:
            for i in range(3):
                self.step[i].wait(10)
                fh.write(self.data[cuts[i] : cuts[i + 1]])
                fh.flush()
                os.fsync(fh.fileno())
                self.done[i].set()

    def advance(self, i: int) -> None:
        self.step[i].set()
        assert self.done[i].wait(10), "writer stuck"


def writes_during_settle(writer: ControlledWriter, step: int) -> Callable[[float], None]:
    """A settle 'sleep' in which the producer writes its next chunk (the window a real sleep may or may not hit)."""

    def sleep(_: float) -> None:
        writer.advance(step)

    return sleep


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_a_file_still_being_written_is_left_alone_then_landed_whole(landing, store, fmt):
    df = frame(3000)
    buf = io.BytesIO()
    df.to_csv(buf, index=False) if fmt == "csv" else df.to_parquet(buf, index=False)
    path = landing / f"jan.{fmt}"
    writer = ControlledWriter(path, buf.getvalue())
    writer.start()
    writer.advance(0)  # half the file is there when land looks

    inbox = LocalInbox(landing, f"*.{fmt}", settle_seconds=2, sleep=writes_during_settle(writer, 1))
    first = land_new_files(inbox, store, "run1")

    assert first.new == [] and first.archived == []
    assert first.unsettled == [f"jan.{fmt}"]
    assert path.exists() and not (landing / PROCESSED).exists(), "a file being written is never archived"
    assert store.batches.ids() == []

    writer.advance(2)
    writer.join(10)
    done = land_new_files(LocalInbox(landing, f"*.{fmt}", settle_seconds=2, sleep=lambda _: None), store, "run2")
    (batch,) = done.new
    landed = local(store, store.keys.batch(batch)) / f"source.{fmt}"
    got = pd.read_csv(landed) if fmt == "csv" else pd.read_parquet(landed)
    assert len(got) == 3000, "every row of the finished file lands"
    assert (landing / PROCESSED / f"jan.{fmt}").read_bytes() == buf.getvalue()


class ChangesWhileFetched(LocalInbox):
    """The producer rewrites the file right after land copied it (before the hash is checked)."""

    def fetch(self, item: InboxFile, target: Path) -> None:
        super().fetch(item, target)
        frame(10, seed=99).to_parquet(item.location, index=False)


class ChangesBeforeArchive(LocalInbox):
    """The producer rewrites the file after it was landed, just before it is archived."""

    def archive(self, item: InboxFile, batch_id: str) -> str | None:
        frame(10, seed=77).to_parquet(item.location, index=False)
        return super().archive(item, batch_id)


def test_content_changed_during_the_copy_is_not_landed_nor_archived(landing, store):
    frame(30).to_parquet(landing / "a.parquet", index=False)

    result = land_new_files(ChangesWhileFetched(landing, "*.parquet"), store, "run")

    assert result.changed == ["a.parquet"] and result.new == [] and result.archived == []
    assert (landing / "a.parquet").exists() and store.batches.ids() == []


def test_content_changed_after_hashing_is_never_archived_unread(landing, store, caplog):
    frame(30).to_parquet(landing / "a.parquet", index=False)

    with caplog.at_level(logging.WARNING):
        first = land_new_files(ChangesBeforeArchive(landing, "*.parquet"), store, "run1")

    assert len(first.new) == 1 and first.archived == [] and first.changed == ["a.parquet"]
    assert "changed after it was hashed" in caplog.text
    # The new content is still there and lands on the next run, as a new batch.
    second = land_new_files(LocalInbox(landing, "*.parquet"), store, "run2")
    assert len(second.new) == 1 and second.archived == ["a.parquet"]
    assert len(pd.read_parquet(local(store, store.keys.batch(second.new[0])) / "source.parquet")) == 10


def test_temporary_and_hidden_names_are_ignored_and_counted(landing, store, caplog):
    for name in (".jan.parquet", "jan.parquet.tmp", "feb.parquet.part", "mar.crdownload", "_SUCCESS", "apr.PART"):
        frame(3).to_parquet(landing / name, index=False)
    frame(3).to_parquet(landing / "ok.parquet", index=False)

    with caplog.at_level(logging.INFO):
        result = land_new_files(LocalInbox(landing, "*"), store, "run")

    assert result.archived == ["ok.parquet"]
    assert len(result.ignored) == 6
    assert "ignored 6 hidden or temporary file(s)" in caplog.text
    assert ready_names(landing, "*") == [], "the sensor does not wake for what land ignores (_processed/ included)"


def test_per_file_marker_holds_a_file_until_its_marker_exists(landing, store):
    frame(3).to_parquet(landing / "jan.parquet", index=False)
    inbox = LocalInbox(landing, "*", marker="{name}.done")

    first = land_new_files(inbox, store, "run1")
    assert first.new == [] and first.waiting_for_marker == ["jan.parquet"]
    assert ready_names(landing, "*", "{name}.done") == []

    (landing / "jan.parquet.done").touch()
    assert ready_names(landing, "*", "{name}.done") == ["jan.parquet"], "the marker is not itself a batch"
    second = land_new_files(inbox, store, "run2")
    assert second.archived == ["jan.parquet"] and len(second.new) == 1
    assert not (landing / "jan.parquet.done").exists(), "the marker goes with its file"


def test_folder_marker_takes_files_written_before_it(landing, store):
    frame(3).to_parquet(landing / "old.parquet", index=False)
    frame(4).to_parquet(landing / "new.parquet", index=False)
    (landing / "_SUCCESS").touch()
    os.utime(landing / "_SUCCESS", (1_000_000, 1_000_000))
    os.utime(landing / "old.parquet", (999_000, 999_000))

    result = land_new_files(LocalInbox(landing, "*.parquet", marker="_SUCCESS"), store, "run")

    assert result.archived == ["old.parquet"] and result.waiting_for_marker == ["new.parquet"]
    assert (landing / "_SUCCESS").exists()


def test_a_symlink_is_never_followed_out_of_the_landing_folder(landing, store, tmp_path, caplog):
    secret = tmp_path / "outside" / "secret.parquet"
    secret.parent.mkdir()
    frame(5).to_parquet(secret, index=False)
    (landing / "link.parquet").symlink_to(secret)

    assert ready_names(landing, "*.parquet") == [], "a symlink is never a file to land"
    with caplog.at_level(logging.WARNING):
        result = land_new_files(LocalInbox(landing, "*.parquet"), store, "run")

    assert result.new == [] and store.batches.ids() == []
    assert "symbolic link" in result.refused["link.parquet"]
    assert "link.parquet is a symbolic link" in caplog.text
    assert (landing / REJECTED / "link.parquet").is_symlink(), "the link is moved aside, once"
    assert secret.exists() and len(pd.read_parquet(secret)) == 5, "its target is untouched"
    assert not (landing / "link.parquet").exists()


def test_a_spark_style_folder_is_moved_aside_once(landing, store):
    part = landing / "x.parquet" / "part-00000.parquet"
    part.parent.mkdir()
    frame(3).to_parquet(part, index=False)

    assert ready_names(landing, "*.parquet") == []
    result = land_new_files(LocalInbox(landing, "*.parquet"), store, "run")

    assert "folder" in result.refused["x.parquet"]
    assert (landing / REJECTED / "x.parquet" / "part-00000.parquet").exists()
    again = land_new_files(LocalInbox(landing, "*.parquet"), store, "run2")
    assert again.refused == {} and again.new == []


def test_a_248_byte_name_reused_with_new_content_still_archives(landing, store):
    name = "f" * 240 + ".parquet"
    assert len(name.encode()) == 248
    frame(3).to_parquet(landing / name, index=False)
    land_new_files(LocalInbox(landing, "*.parquet"), store, "run1")
    frame(4, seed=10).to_parquet(landing / name, index=False)

    second = land_new_files(LocalInbox(landing, "*.parquet"), store, "run2")

    assert second.archived == [name]
    archived = sorted(p.name for p in (landing / PROCESSED).iterdir())
    assert len(archived) == 2 and all(len(n.encode()) <= NAME_MAX for n in archived)
    assert not (landing / name).exists()


def test_same_name_with_new_content_lands_with_a_warning_and_a_record(landing, store, caplog):
    frame(3).to_parquet(landing / "daily.parquet", index=False)
    (first,) = land_new_files(LocalInbox(landing, "*.parquet"), store, "run1").new
    frame(4, seed=10).to_parquet(landing / "daily.parquet", index=False)

    with caplog.at_level(logging.WARNING):
        result = land_new_files(LocalInbox(landing, "*.parquet"), store, "run2")

    (second,) = result.new
    assert read_json(local(store, store.keys.batch(second)) / "batch.json")["replaces_name_of"] == [first]
    assert result.replaced_names == {second: [first]}
    assert f"daily.parquet was landed before with other content (batch {first})" in caplog.text
    assert store.batches.get(first).replaces_name_of == []


def test_status_prints_one_line_per_batch_even_with_a_newline_in_a_name(tmp_path, monkeypatch, capsys):
    import yaml

    from sluice.cli import main

    repo = Path(__file__).parents[2]
    root = tmp_path / "proj"
    (root / "dags").mkdir(parents=True)
    (root / "include" / "features").mkdir(parents=True)
    (root / "include" / "features" / "flights.py").write_text((repo / "include/features/flights.py").read_text())
    spec = yaml.safe_load((repo / "dags" / "flights_delay.pipeline.yaml").read_text())
    spec["source"] = {"uri": "in", "pattern": "*.parquet"}
    spec_path = root / "dags" / "flights_delay.pipeline.yaml"
    spec_path.write_text(yaml.safe_dump(spec))
    monkeypatch.setenv("SLUICE_PROJECT_DIR", str(root))
    (root / "in").mkdir()
    frame(3).to_parquet(root / "in" / "evil\nname.parquet", index=False)
    frame(3, seed=5).to_parquet(root / "in" / "daily.parquet", index=False)
    store = PipelineStore(root / "data" / "sluice", "flights_delay")
    land_new_files(LocalInbox(root / "in", "*"), store, "run1")
    frame(4, seed=9).to_parquet(root / "in" / "daily.parquet", index=False)
    land_new_files(LocalInbox(root / "in", "*"), store, "run2")

    assert main(["status", str(spec_path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    batches = [line for line in lines if line.startswith("  batch ")]
    assert len(batches) == 3
    assert any("evil\\nname.parquet" in line for line in batches)
    assert sum("reuses the name of" in line for line in batches) == 1


@pytest.mark.parametrize(
    ("marker", "message"),
    [("done/{name}", "without '/'"), ("{nme}.done", "placeholders"), ("{name}", "names the file itself")],
)
def test_a_bad_marker_is_a_spec_error(marker: str, message: str) -> None:
    from pydantic import ValidationError

    from sluice.spec.models import Detect

    with pytest.raises(ValidationError, match=message):
        Detect(marker=marker)


def status_project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, source: dict) -> Path:
    """A project with the demo spec reading ``source``; returns the spec path (``sluice status`` runs on it)."""
    import yaml

    repo = Path(__file__).parents[2]
    root = tmp_path / "proj"
    (root / "dags").mkdir(parents=True)
    (root / "include" / "features").mkdir(parents=True)
    (root / "include" / "features" / "flights.py").write_text((repo / "include/features/flights.py").read_text())
    spec = yaml.safe_load((repo / "dags" / "flights_delay.pipeline.yaml").read_text())
    spec["source"] = source
    spec_path = root / "dags" / "flights_delay.pipeline.yaml"
    spec_path.write_text(yaml.safe_dump(spec))
    monkeypatch.setenv("SLUICE_PROJECT_DIR", str(root))
    (root / source["uri"]).mkdir()
    return spec_path


def test_each_refused_input_is_recorded_once_and_shown_by_status(tmp_path, monkeypatch, capsys):
    """Before, a refusal was only a log line, and a dot-named file was not even that."""
    import time

    from sluice.cli import main
    from sluice.services.landing import HIDDEN, HIDDEN_GRACE_SECONDS

    spec_path = status_project(tmp_path, monkeypatch, {"uri": "in", "pattern": "*.parquet"})
    root = spec_path.parents[1]
    landing = root / "in"
    (landing / "x.parquet").mkdir()
    (landing / "link.parquet").symlink_to(tmp_path / "anywhere.parquet")
    frame(3).to_parquet(landing / ".jan.parquet", index=False)
    os.utime(landing / ".jan.parquet", (time.time() - HIDDEN_GRACE_SECONDS - 5,) * 2)
    store = PipelineStore(root / "data" / "sluice", "flights_delay")

    first = land_new_files(LocalInbox(landing, "*.parquet"), store, "run1")
    again = land_new_files(LocalInbox(landing, "*.parquet"), store, "run2")

    assert set(first.refused) == {"x.parquet", "link.parquet", ".jan.parquet"} and first.news()
    assert first.refused[".jan.parquet"] == HIDDEN
    assert again.refused == {} and not again.news(), "each input is reported once"
    assert (landing / ".jan.parquet").exists(), "a dot-named file is never moved: its producer may still rename it"
    assert main(["status", str(spec_path)]) == 0
    refused = [line for line in capsys.readouterr().out.splitlines() if line.startswith("  refused ")]
    assert len(refused) == 3
    assert any(".jan.parquet" in line and "rename it without the leading dot" in line for line in refused)
    assert any("link.parquet" in line and "symbolic link" in line and "_rejected/" in line for line in refused)


def test_status_shows_a_file_held_back_in_the_landing_folder(tmp_path, monkeypatch, capsys):
    from sluice.cli import main

    spec_path = status_project(tmp_path, monkeypatch, {"uri": "in", "pattern": "*.csv", "format": "csv"})
    (spec_path.parents[1] / "in" / "jan.csv").write_bytes(b"id,carrier\n1,UA\n2,A")

    assert main(["status", str(spec_path)]) == 0
    out = capsys.readouterr().out
    assert "  waiting jan.csv" in out and "its last line has no line end" in out


def test_re_dropping_rejected_content_says_it_was_rejected_why_and_how_to_resubmit(tmp_path, monkeypatch, capsys):
    """Before: 'already landed: nothing to do', as if the batch had been used."""
    from sluice.airflow.tasks import land
    from sluice.cli import main
    from sluice.steps.ingest import pending_batches, rejected_duplicate_message
    from sluice.steps.records import BatchStatus

    spec_path = status_project(tmp_path, monkeypatch, {"uri": "in", "pattern": "*.parquet"})
    landing = spec_path.parents[1] / "in"
    store = PipelineStore(spec_path.parents[1] / "data" / "sluice", "flights_delay")
    frame(30).to_parquet(landing / "jan.parquet", index=False)
    (batch,) = land_new_files(LocalInbox(landing, "*.parquet"), store, "run1").new
    reason = "schema drift: column 'id': declared string, arrives as int"
    store.batches.update(batch, status=BatchStatus.REJECTED, reason=reason)
    store.json.write(store.keys.batch(batch, "validation.json"), {"status": "rejected"})
    frame(30).to_parquet(landing / "jan-again.parquet", index=False)

    again = land_new_files(LocalInbox(landing, "*.parquet"), store, "run2")

    assert again.new == [] and again.rejected_again == {"jan-again.parquet": batch}
    message = rejected_duplicate_message("jan-again.parquet", store.batches.get(batch), str(spec_path))
    assert f"batch {batch}, which was rejected: {reason}" in message
    assert "drop the corrected file" in message and f"sluice revalidate {spec_path} {batch}" in message
    frame(30).to_parquet(landing / "jan-3.parquet", index=False)
    # The task log: read from the logger itself, whatever handlers Airflow's logging set up.
    lines: list[str] = []
    handler = logging.Handler(logging.INFO)
    handler.emit = lambda record: lines.append(record.getMessage())  # type: ignore[method-assign]
    logger = logging.getLogger("sluice.airflow.tasks")
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        land(str(spec_path), {"source": "local", "glob": f"{landing}/*.parquet"}, run_id="run3")
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
    logged = "\n".join(lines)
    assert f"jan-3.parquet has the content of batch {batch}, which was rejected: {reason}" in logged
    assert "already landed: nothing to do" not in logged

    assert main(["revalidate", str(spec_path), batch]) == 0
    assert "validates it" in capsys.readouterr().out
    assert store.batches.get(batch).status == BatchStatus.LANDED and pending_batches(store) == [batch]
    assert not store.exists(store.keys.batch(batch, "validation.json")), "the old verdict is gone"
    assert main(["revalidate", str(spec_path), batch]) == 1
    assert "is landed, not rejected" in capsys.readouterr().err
