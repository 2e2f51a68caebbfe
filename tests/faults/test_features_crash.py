"""``build_features`` killed (SIGKILL) between its durable writes: no half table is ever read.

The Spark job writes the table, counts it and writes ``meta.json`` (the record that names
the table complete and that the cache trusts), all under a temporary folder renamed into
place. A kill anywhere must leave no table a reader or the cache would take for whole, no
Spark JVM behind, and a retry that builds (or reuses) the same, complete table.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from sluice.services.storage import PipelineStore, read_json
from tests.conftest import Project
from tests.faults.conftest import accepted_batch
from tests.faults.kill import kill_script, survivors
from tests.storage import local

pytestmark = [pytest.mark.integration, pytest.mark.faults]

# The build_features task's work, in a process of its own.
FEATURES = """
    import sys
    from sluice.spec.loader import load_spec
    from sluice.services.storage import PipelineStore
    from sluice.steps.features import build_features
    loaded = load_spec(sys.argv[1])
    store = PipelineStore(loaded.resolve(loaded.spec.storage.root), loaded.spec.pipeline)
    build_features(loaded, store)
    """


def _tables(store: PipelineStore) -> list[str]:
    """Feature tables a reader can see (committed folders, not temporaries)."""
    folder = local(store) / "features"
    return sorted(p.name for p in folder.iterdir() if not p.name.startswith(".")) if folder.is_dir() else []


def test_a_build_features_killed_between_its_writes_leaves_no_half_table(flights_project: Project) -> None:
    import pandas as pd

    from sluice.services.storage import clean_stale_temporaries
    from sluice.steps.features import build_features

    project = flights_project
    spec, loaded, store, batch = accepted_batch(project)

    # Killed after the table was written, then (its retry) after meta.json was written too:
    # each attempt leaves its temporary folder, and no reader or cache sees a table.
    left: list[Path] = []
    for point in ["features.table_written", "features.meta_written"]:
        tag = kill_script(point, project.root, FEATURES, str(spec))
        assert survivors(tag) == [], f"{point}: the killed driver's Spark JVM must die with it"
        assert _tables(store) == [], f"{point}: a half-written table is invisible"
        assert len(list((local(store) / "features").glob(".tmp-*"))) == len(left) + 1, f"{point}: temporary left"
        left = list((local(store) / "features").glob(".tmp-*"))
    # (A kill after the rename needs no point of its own: the table is committed, and the
    # retry reuses it through the cache, as every second run does.)

    result = build_features(loaded, store)
    assert not result.cached, "nothing half-written is taken for a cached table"
    assert _tables(store) == [result.key] and result.batches == {batch: store.batch_record(batch).sha256}
    table = pd.read_parquet(result.path)
    meta = read_json(Path(result.path).parent / "meta.json")
    clean = pd.read_parquet(local(store, store.batch_key(batch)) / "clean.parquet")
    # The whole table: every accepted flight with a known arrival delay, once.
    assert len(table) == result.rows == meta["rows"] == int(clean["arr_delay"].notna().sum()) > 0
    assert list(table.columns) == meta["columns"] and "is_delayed" in meta["columns"]
    again = build_features(loaded, store)
    assert again.cached and (again.key, again.rows) == (result.key, result.rows), "and the next run reuses it"

    # The killed writers' temporaries are what the stale-temporary clean-up removes.
    assert sorted(clean_stale_temporaries(local(store) / "features", older_than=0)) == sorted(left)
    assert list((local(store) / "features").glob(".*")) == []
