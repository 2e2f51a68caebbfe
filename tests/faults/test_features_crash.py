"""``build_features`` killed (SIGKILL) between its durable writes: no half table is ever read.

The Spark job writes the table, counts it and writes ``meta.json`` (the record that names
the table complete and that the cache trusts), all under a temporary folder renamed into
place. A kill anywhere must leave no table a reader or the cache would take for whole, no
Spark JVM behind, and a retry that builds (or reuses) the same, complete table.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import yaml

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


def _entries(store: PipelineStore, batch: str) -> list[str]:
    """A batch's cached feature tables a train run would trust (committed, not temporaries)."""
    folder = local(store, store.keys.feature_cache(batch))
    return sorted(p.name for p in folder.iterdir() if not p.name.startswith(".")) if folder.is_dir() else []


def _temporaries(store: PipelineStore, batch: str) -> list[Path]:
    return sorted(local(store, store.keys.feature_cache(batch)).glob(".tmp-*"))


def test_a_build_features_killed_between_its_writes_leaves_no_half_table(flights_project: Project) -> None:
    from sluice.services.storage import clean_stale_temporaries
    from sluice.steps.features import build_features, read_features

    project = flights_project
    spec, loaded, store, batch = accepted_batch(project)

    # Killed after the batch's table was written, then (its retry) after meta.json was written
    # too: each attempt leaves its own temporary folder (the second removed the first's at its
    # start), and no reader or cache sees a table.
    left: list[Path] = []
    for point in ["features.table_written", "features.meta_written"]:
        tag = kill_script(point, project.root, FEATURES, str(spec))
        assert survivors(tag) == [], f"{point}: the killed driver's Spark JVM must die with it"
        assert _entries(store, batch) == [] and _tables(store) == [], f"{point}: a half-written table is invisible"
        now = _temporaries(store, batch)
        assert len(now) == 1 and now != left, f"{point}: only the last killed try's temporary is left"
        left = now
    # (A kill after the rename needs no point of its own: the batch's table is committed, and
    # the retry reuses it through the cache, as every later run does.)

    result = build_features(loaded, store)
    assert _temporaries(store, batch) == [], "the retry removed the half-written tables its killed predecessors left"
    assert not result.cached and result.computed == [batch], "nothing half-written is taken for a cached table"
    assert _tables(store) == [result.key] and result.batches == {batch: store.batches.get(batch).sha256}
    (entry,) = _entries(store, batch)
    table = read_features(store, result)
    meta = read_json(local(store, store.keys.feature_cache(batch, entry, "meta.json")))
    clean = pd.read_parquet(local(store, store.keys.batch(batch)) / "clean.parquet")
    # The whole table: every accepted flight with a known arrival delay, once.
    assert len(table) == result.rows == meta["rows"] == int(clean["arr_delay"].notna().sum()) > 0
    assert list(table.columns) == meta["columns"] and "is_delayed" in meta["columns"]
    again = build_features(loaded, store)
    assert again.cached and (again.key, again.rows, again.computed) == (result.key, result.rows, [])

    # Nothing is left for the day-old sweep of temporaries.
    folder = local(store, store.keys.feature_cache(batch))
    assert clean_stale_temporaries(local(store), older_than=0) == [] and list(folder.glob(".*")) == []


def test_a_run_killed_on_the_new_batch_keeps_the_cached_ones_and_its_retry_computes_only_the_new(
    flights_project: Project,
) -> None:
    from demo.producer import drop_month
    from sluice.steps.features import build_features
    from sluice.steps.ingest import land_new_files
    from sluice.steps.validate import validate_batch

    project = flights_project
    spec, loaded, store, first = accepted_batch(project)
    assert build_features(loaded, store).computed == [first]
    (cached_entry,) = _entries(store, first)
    drop_month(project.landing, 2, sample=2000)
    (second,) = land_new_files(str(project.landing / "*.parquet"), store, "ingest-2").new
    assert validate_batch(store, second, loaded.spec.validation, "parquet").status == "accepted"
    tables_before = _tables(store)

    tag = kill_script("features.meta_written", project.root, FEATURES, str(spec))

    assert survivors(tag) == []
    assert _entries(store, second) == [] and len(_temporaries(store, second)) == 1, "the new batch: nothing trusted"
    assert _entries(store, first) == [cached_entry], "the cached batch is untouched"
    assert _tables(store) == tables_before, "no run table names a batch that has no committed table"
    result = build_features(loaded, store)
    assert _temporaries(store, second) == [], "the retry cleaned up after the killed build"
    assert result.computed == [second] and list(result.batches) == [first, second]
    assert _entries(store, first) == [cached_entry] and len(_entries(store, second)) == 1


def test_with_scope_history_a_kill_leaves_no_half_table_and_the_retry_builds_it(flights_project: Project) -> None:
    from sluice.spec.loader import load_spec
    from sluice.steps.features import build_features

    project = flights_project
    spec, _, store, batch = accepted_batch(project)
    data = yaml.safe_load(spec.read_text())
    data["features"]["scope"] = "history"
    spec.write_text(yaml.safe_dump(data, sort_keys=False))
    loaded = load_spec(spec)
    assert loaded.spec.features.scope == "history"

    tag = kill_script("features.meta_written", project.root, FEATURES, str(spec))
    assert survivors(tag) == [] and _tables(store) == [], "a half-written table is invisible"
    assert len(list((local(store) / "features").glob(".tmp-*"))) == 1

    result = build_features(loaded, store)
    assert list((local(store) / "features").glob(".tmp-*")) == [], "the retry cleaned up after the killed build"
    assert not result.cached and result.computed == [batch] and result.parts == []
    assert _tables(store) == [result.key] and not (local(store) / "feature_cache").exists()
    table = pd.read_parquet(result.path)
    assert len(table) == result.rows == read_json(Path(result.path).parent / "meta.json")["rows"] > 0


def test_on_the_duckdb_engine_a_kill_between_its_writes_leaves_no_half_table(flights_project: Project) -> None:
    from sluice.spec.loader import load_spec
    from sluice.steps.features import build_features, read_features

    spec, _, store, batch = accepted_batch(flights_project)
    data = yaml.safe_load(spec.read_text())
    data["features"]["engine"] = "duckdb"
    spec.write_text(yaml.safe_dump(data, sort_keys=False))

    for point in ["features.table_written", "features.meta_written"]:
        tag = kill_script(point, flights_project.root, FEATURES, str(spec))
        assert survivors(tag) == [], f"{point}: no DuckDB child process is left"
        assert _entries(store, batch) == [] and _tables(store) == [], f"{point}: a half-written table is invisible"

    result = build_features(load_spec(spec), store)
    assert not result.cached and result.computed == [batch] and _temporaries(store, batch) == []
    assert len(read_features(store, result)) == result.rows > 0
