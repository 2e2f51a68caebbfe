"""The feature step's per-batch cache: a train run computes only the batches it has not seen.

One Spark session (local[*], started once) serves the module. Batches are committed straight
into the pipeline's storage from the demo producer's months; each test asserts on which
batches the step *computed* (``FeatureResult.computed``), never on time.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from tests.conftest import Project, demo_spec_dict
from tests.storage import local

from demo.batches import accept_month
from sluice.services.storage import PipelineStore, open_store
from sluice.spec.loader import LoadedSpec, load_spec

pytestmark = pytest.mark.integration

SAMPLE = 300


@pytest.fixture()
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, spark_module: None) -> Project:
    from demo.producer import write_reference

    project = Project(tmp_path / "project", tmp_path / "project" / "dags")
    write_reference(project.root / "data" / "reference")
    monkeypatch.setenv("SLUICE_PROJECT_DIR", str(project.root))
    write(project)
    return project


def write(project: Project, features: dict[str, Any] | None = None, training: dict[str, Any] | None = None) -> None:
    """The demo spec with ``features`` / ``training`` keys changed (2 shuffle partitions: tiny batches)."""
    base = demo_spec_dict()
    project.write_spec(
        features=base["features"] | {"conf": {"spark.sql.shuffle.partitions": "2"}} | (features or {}),
        training=base["training"] | (training or {}),
    )


def spec_of(project: Project) -> tuple[LoadedSpec, PipelineStore]:
    loaded = load_spec(project.dags / "flights_delay.pipeline.yaml")
    return loaded, open_store(loaded)


def test_a_train_run_computes_only_the_batches_it_has_not_seen(project: Project) -> None:
    from sluice.steps.features import build_features, read_features

    loaded, store = spec_of(project)
    (b1, rows1), (b2, rows2) = accept_month(store, 1, SAMPLE), accept_month(store, 2, SAMPLE)

    first = build_features(loaded, store)
    assert first.computed == [b1, b2] and not first.cached and list(first.batches) == [b1, b2]

    b3, rows3 = accept_month(store, 3, SAMPLE)
    second = build_features(loaded, store)
    assert second.computed == [b3], "the two older batches come from the cache"
    assert list(second.batches) == [b1, b2, b3] and second.key != first.key
    table = read_features(store, second)
    assert len(table) == second.rows == rows1 + rows2 + rows3 > 0
    assert sorted(table["month"].unique()) == [1, 2, 3] and "is_delayed" in table.columns

    again = build_features(loaded, store)
    assert again.cached and again.computed == [] and again.key == second.key, "nothing new: nothing computed"
    # One committed entry per batch, and one run table per set of batches trained on.
    assert all(len(store.ls(store.keys.feature_cache(b))) == 1 for b in (b1, b2, b3))
    assert store.ls("features") == sorted([f"{first.key}/", f"{second.key}/"])

    store.remove("feature_cache")  # a user reclaiming the space
    rebuilt = build_features(loaded, store)
    assert rebuilt.computed == [b1, b2, b3] and not rebuilt.cached, "a run table without its entries is not trusted"
    assert len(read_features(store, rebuilt)) == rebuilt.rows == second.rows


def test_a_changed_job_reference_table_or_setting_computes_every_batch_again(project: Project) -> None:
    import pandas as pd

    from sluice.steps.features import build_features

    loaded, store = spec_of(project)
    b1, _ = accept_month(store, 1, SAMPLE)
    b2, _ = accept_month(store, 2, SAMPLE)
    assert build_features(loaded, store).computed == [b1, b2]

    job = project.root / "include" / "features" / "flights.py"
    job.write_text(job.read_text() + "\n# a changed job\n")
    assert build_features(*spec_of(project)).computed == [b1, b2], "a changed job's source"

    weather = project.root / "data" / "reference" / "weather.parquet"
    pd.read_parquet(weather).iloc[:-1].to_parquet(weather, index=False)
    assert build_features(*spec_of(project)).computed == [b1, b2], "a changed reference table"

    write(project, features={"conf": {"spark.sql.shuffle.partitions": "2", "spark.sql.session.timeZone": "EST"}})
    assert build_features(*spec_of(project)).computed == [b1, b2], "a changed features setting"

    write(project)
    assert build_features(*spec_of(project)).computed == [], "back to a setting seen before: all cached"
    # Where the job runs is not what it computes: no cluster is reached, the cache answers.
    write(project, features={"engine": "cluster", "master": "spark://127.0.0.1:1"})
    assert build_features(*spec_of(project)).cached
    assert all(len(store.ls(store.keys.feature_cache(b))) == 4 for b in (b1, b2)), "one entry per key"


def test_a_window_trains_on_the_newest_batches_and_computes_only_those(
    project: Project, monkeypatch: pytest.MonkeyPatch, mlflow_store_template: Path
) -> None:
    from tests.conftest import fresh_mlflow_store

    from sluice.services import tracking
    from sluice.steps.features import DAY, build_features
    from sluice.steps.train import train_candidate

    write(project, training={"window": {"batches": 2}})
    loaded, store = spec_of(project)
    ids = [accept_month(store, month, SAMPLE, landed_at=month * 30 * DAY)[0] for month in (1, 2, 3)]

    result = build_features(loaded, store)
    assert list(result.batches) == ids[1:] and result.computed == ids[1:], "the oldest batch is left out"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", fresh_mlflow_store(mlflow_store_template, project.root / "mlflow"))
    trained = train_candidate(loaded, store, result, "flights_delay__train", "window-run")
    run = tracking.configure(loaded.project_dir).get_run(trained.mlflow_run_id)
    assert run.data.tags["sluice.batches"] == ",".join(ids[1:]), "the window lists exactly the batches the run read"
    assert int(run.data.params["train_rows"]) + trained.holdout_rows == result.rows
    train_rows = int(run.data.params["train_rows"])
    assert int(run.data.params["train_metric_rows"]) == min(20_000, train_rows)
    assert 0.5 <= run.data.metrics["train_roc_auc"] <= 1.0, "the train metric is logged beside the holdout's"

    write(project, training={"window": {"days": 45}})
    recent = build_features(*spec_of(project))
    assert list(recent.batches) == ids[1:] and recent.computed == [], "landed within 45 days of the newest"
    write(project, training={"window": {"days": 61}})
    assert build_features(*spec_of(project)).computed == ids[:1], "a wider window computes only the batch it adds"


def test_scope_history_runs_the_job_over_every_batch_at_each_run(project: Project) -> None:
    import pandas as pd

    from sluice.steps.features import build_features

    write(project, features={"scope": "history"})
    loaded, store = spec_of(project)
    b1, rows1 = accept_month(store, 1, SAMPLE)
    b2, rows2 = accept_month(store, 2, SAMPLE)
    first = build_features(loaded, store)
    assert first.computed == [b1, b2] and first.parts == []
    assert first.path == store.location(store.keys.features(first.key, "features.parquet"))
    assert len(pd.read_parquet(first.path)) == first.rows == rows1 + rows2

    b3, rows3 = accept_month(store, 3, SAMPLE)
    second = build_features(loaded, store)
    assert second.computed == [b1, b2, b3], "the whole history again, in one job"
    assert len(pd.read_parquet(second.path)) == second.rows == rows1 + rows2 + rows3
    assert build_features(loaded, store).cached, "the same batches again: the table is reused"
    assert not local(store, "feature_cache").exists(), "no per-batch cache with scope history"


def test_the_demo_job_gives_the_same_rows_per_batch_as_over_the_whole_history(project: Project) -> None:
    from sluice.steps.features import build_features, read_features

    loaded, store = spec_of(project)
    for month in (1, 2):
        accept_month(store, month, SAMPLE)
    per_batch = read_features(store, build_features(loaded, store))
    write(project, features={"scope": "history"})
    whole = read_features(store, build_features(*spec_of(project)))
    columns = list(whole.columns)
    assert list(per_batch.columns) == columns
    order = ["month", "day", "sched_dep_time", "carrier", "dest", "distance"]
    left = per_batch.sort_values(order).reset_index(drop=True)
    right = whole.sort_values(order).reset_index(drop=True)
    assert left.equals(right), "the demo job is row-wise: scope batch is exact for it"
