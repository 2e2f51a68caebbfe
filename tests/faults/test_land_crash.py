"""``land`` killed (SIGKILL) between its durable writes: the retry lands each file exactly once.

``land`` copies a landing file to a private scratch file and hashes it, builds the batch
folder under a temporary name, renames it into place, then archives the landing file. A
kill between any two of these must leave no half batch a reader trusts, and the retry must
end with one batch per content, the landing file archived, and nothing stranded.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from sluice.services.storage import PipelineStore
from tests.conftest import Project
from tests.faults.kill import kill_script
from tests.integration.conftest import build_dags, run_dag
from tests.storage import local

pytestmark = [pytest.mark.integration, pytest.mark.faults]

# The land task's work, in a process of its own.
LAND = """
    import sys
    from sluice.services.storage import PipelineStore
    from sluice.spec.loader import load_spec
    from sluice.steps.ingest import land_new_files
    loaded = load_spec(sys.argv[1])
    store = PipelineStore(loaded.resolve(loaded.spec.storage.root), loaded.spec.pipeline)
    land_new_files(sys.argv[2], store, "killed-run")
    """


def _leftovers(store: PipelineStore) -> list[Path]:
    """Temporaries under the pipeline folder (what a killed writer can leave)."""
    return sorted(p for p in local(store).rglob(".*") if p.name.startswith((".copy-", ".tmp-")))


def test_a_land_killed_between_its_writes_lands_each_file_once_on_retry(flights_project: Project) -> None:
    from demo.producer import drop_month
    from sluice.services.storage import clean_stale_temporaries
    from sluice.steps.ingest import land_new_files

    project = flights_project
    spec = project.dags / "flights_delay.pipeline.yaml"
    store = PipelineStore(project.root / "data" / "sluice", "flights_delay")
    glob = str(project.landing / "*.parquet")
    landed: list[str] = []

    for month, point in enumerate(["land.copied", "land.batch_built", "land.batch_committed"], start=1):
        dropped = drop_month(project.landing, month, sample=1000)
        kill_script(point, project.root, LAND, str(spec), glob)
        assert dropped.exists(), f"{point}: the landing file is never archived before its batch is committed"
        if point == "land.batch_committed":
            # The batch is whole and visible; only the archive is missing.
            (batch,) = set(store.batches.ids()) - set(landed)
            assert store.batches.get(batch).status == "landed"
        else:
            assert store.batches.ids() == landed, f"{point}: a half-built batch is invisible"
            assert _leftovers(store), f"{point}: the killed writer's temporary is left for its retry"

        retry = land_new_files(glob, store, "retry-run")
        # Before: the temporaries stayed for a day (the sweep of temporaries older than 24 h).
        assert _leftovers(store) == [], f"{point}: the retry removed what its killed predecessor left"
        assert retry.archived == [dropped.name] and not dropped.exists()
        if point == "land.batch_committed":
            assert retry.new == [] and retry.duplicates == {dropped.name: batch}
        else:
            (batch,) = retry.new
        landed.append(batch)
        assert store.batches.ids() == landed, f"{point}: exactly one batch per landed file"

    assert clean_stale_temporaries(local(store), older_than=0) == [], "nothing left for the day-old sweep"

    # The next ingest run validates and announces every batch: none lost, doubled or stranded.
    state, tasks = run_dag(build_dags(project)["flights_delay__ingest"])
    assert state == "success", tasks
    records = [store.batches.get(b).model_dump(mode="json") for b in store.batches.ids()]
    outcomes = [(r["batch_id"], r["status"], r.get("published")) for r in records]
    assert outcomes == [(b, "accepted", True) for b in landed]
    assert sorted(r["source_file"] for r in records) == [f"flights_2013-0{m}.parquet" for m in (1, 2, 3)]
    assert sorted(p.name for p in project.landing.glob("*.parquet")) == []


def test_a_land_killed_after_archiving_never_takes_its_stale_marker_for_a_new_upload(
    flights_project: Project,
) -> None:
    """Killed between archiving a file and deleting its per-file marker (``land.archived``).

    Before: the marker stayed beside the landing folder's next file of the same name, so an
    upload still being written counted as complete and was landed half-written.
    """
    import os

    from demo.producer import drop_month
    from sluice.services.landing import LocalInbox
    from sluice.steps.ingest import land_new_files

    project = flights_project
    spec = project.dags / "flights_delay.pipeline.yaml"
    store = PipelineStore(project.root / "data" / "sluice", "flights_delay")
    dropped = drop_month(project.landing, 1, sample=1000)
    marker = dropped.with_name(dropped.name + ".done")
    marker.touch()
    script = LAND.replace(
        "land_new_files(sys.argv[2], store",
        "from sluice.services.landing import LocalInbox\n"
        "    from pathlib import Path\n"
        "    land_new_files(LocalInbox(Path(sys.argv[2]), '*.parquet', marker='{name}.done'), store",
    )
    kill_script("land.archived", project.root, script, str(spec), str(project.landing))
    assert not dropped.exists() and marker.exists(), "killed between the archive and the marker's removal"
    (first,) = store.batches.ids()

    # The producer starts the next upload under the same name; its marker is not there yet.
    content = dropped.parent / "_processed" / dropped.name
    dropped.write_bytes(content.read_bytes()[: content.stat().st_size // 2])
    os.utime(marker, (dropped.stat().st_mtime - 60, dropped.stat().st_mtime - 60))
    inbox = LocalInbox(project.landing, "*.parquet", marker="{name}.done")
    waiting = land_new_files(inbox, store, "retry-run")
    assert waiting.new == [] and waiting.waiting_for_marker == [dropped.name], "a stale marker marks nothing"
    assert store.batches.ids() == [first]

    # Upload finished, marker written: it lands (as the same content, once).
    dropped.write_bytes(content.read_bytes())
    marker.touch()
    done = land_new_files(inbox, store, "next-run")
    assert done.archived == [dropped.name] and not marker.exists()
    assert store.batches.ids() == [first]
