"""Run the spec's PySpark feature job over the batches a train run uses.

With ``features.scope: batch`` (the default) the job runs on each batch alone and each batch's
table is cached in the pipeline's storage under ``feature_cache/<batch_id>/<entry key>/``,
keyed by the batch's content, the job's source and its inputs: a train run computes only the
batches it has not seen and reads the others. With ``scope: history`` the job runs once over
all the batches, as it needs them together. ``training.window`` picks the batches either way.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from sluice.services import faults
from sluice.services.batch_record import BatchRecord
from sluice.services.storage import FEATURES_META, PipelineStore, Staging, encode_json, sha256_file
from sluice.spec.loader import LoadedSpec
from sluice.spec.models import Window
from sluice.steps.records import FeatureResult

if TYPE_CHECKING:
    from collections.abc import Callable

    import numpy as np
    import numpy.typing as npt
    import pandas as pd
    from pyspark.sql import DataFrame, SparkSession

    #: A ``features.job`` function: the Spark session and the named input frames in, the feature table out.
    FeatureJob = Callable[[SparkSession, dict[str, DataFrame]], DataFrame]
    #: A committed table's rows and columns.
    Built = tuple[int, list[str]]

__all__ = [
    "FeatureResult",
    "NoDataError",
    "build_features",
    "load_job",
    "pipeline_spark",
    "read_features",
    "read_features_traced",
    "training_batches",
]

log = logging.getLogger(__name__)

#: The feature table inside its folder.
TABLE = "features.parquet"
#: Seconds in a day, for ``training.window.days``.
DAY = 86_400.0
#: Keys of the ``features`` section that say where the job runs, not what it computes.
PLACEMENT_KEYS = ("engine", "master")


class NoDataError(RuntimeError):
    """Raised when there is nothing to train on yet."""


def _fingerprint(path: Path) -> str:
    if path.is_file():
        return sha256_file(path)[:16]
    entries = sorted((str(p.relative_to(path)), p.stat().st_size) for p in path.rglob("*") if p.is_file())
    return hashlib.sha256(json.dumps(entries).encode()).hexdigest()[:16]


def _digest(material: Any) -> str:
    return hashlib.sha256(json.dumps(material, sort_keys=True).encode()).hexdigest()[:16]


def load_job(job: str, loaded: LoadedSpec) -> FeatureJob:
    """Import ``path/to/file.py:function`` from the project and return the function."""
    file_part, func_name = job.split(":", 1)
    path = loaded.resolve(file_part)
    module_name = f"sluice_user_{path.stem}_{sha256_file(path)[:8]}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot import feature job {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    func = getattr(module, func_name, None)
    if not callable(func):
        raise AttributeError(f"{path} has no function '{func_name}' (features.job)")
    return cast("FeatureJob", func)  # the user's function, taken at its documented signature


def training_batches(records: list[BatchRecord], window: Window | None) -> list[BatchRecord]:
    """The accepted batches a train run uses: all of them, or those in ``training.window``.

    Args:
        records: Accepted batches, oldest first (as ``store.batches.accepted()``).
        window: The spec's ``training.window``; ``None`` keeps every batch.

    Returns:
        ``window.batches``: the last N; ``window.days``: those landed at most that many days
        before the newest one (measured from the newest batch, not the clock, so a pipeline
        whose data paused still trains on its latest data, and a retry picks the same batches).
    """
    if window is None or not records:
        return list(records)
    if window.batches is not None:
        return list(records[-window.batches :])
    newest = max(r.landed_at for r in records)
    span = float(window.days or 0) * DAY
    return [r for r in records if r.landed_at >= newest - span]


def _clean_killed_build(store: PipelineStore) -> None:
    """Remove the half-written tables (``.tmp-*`` folders) a killed build left.

    Only ``build_features`` writes under ``features/`` and ``feature_cache/``, and the train
    DAG runs one run at a time: what is there when a build starts is a dead try's.
    """
    try:
        removed = store.clean_own_temporaries("features") + store.clean_own_temporaries("feature_cache")
    except OSError as exc:
        log.warning("cannot remove the temporaries of a killed feature build yet: %s", exc)
        return
    for path in removed:
        log.info("removed %s, left by a killed feature build", path)


def build_features(loaded: LoadedSpec, store: PipelineStore) -> FeatureResult:
    """Build (or reuse) the feature table of the batches this train run uses.

    Args:
        loaded: The spec.
        store: The pipeline's storage.

    Returns:
        Where the table is and its lineage (``batches``: exactly the batches in it).

    Raises:
        NoDataError: No batch has been accepted yet.
    """
    spec = loaded.spec.features
    _clean_killed_build(store)
    accepted = store.batches.accepted()
    if not accepted:
        raise NoDataError(f"pipeline {loaded.spec.pipeline} has no accepted batch yet; run the ingest DAG first")
    records = training_batches(accepted, loaded.spec.training.window)
    batches = {r.batch_id: r.sha256 for r in records}
    job_hash = sha256_file(loaded.resolve(spec.job.split(":", 1)[0]))[:16]
    inputs = {name: loaded.resolve(i.uri) for name, i in spec.inputs.items()}
    missing = [f"{n} ({p})" for n, p in inputs.items() if not p.exists()]
    if missing:
        raise FileNotFoundError(f"feature inputs not found: {', '.join(missing)}")
    key_material: dict[str, Any] = {
        "batches": list(batches),
        "job": job_hash,
        "function": spec.job.split(":", 1)[1],
        "inputs": {n: _fingerprint(p) for n, p in inputs.items()},
    }
    if spec.scope == "batch":
        return _build_per_batch(loaded, store, records, inputs, job_hash, key_material)
    key = _digest(key_material)
    table_location = store.location(store.keys.features(key, TABLE))
    meta = store.json.read_or_none(store.keys.features(key, FEATURES_META))
    if meta is not None:
        return FeatureResult(
            path=table_location, key=key, batches=batches, job_hash=job_hash, rows=int(meta["rows"]), cached=True
        )
    built = _build_tables(loaded, store, inputs, {store.keys.features(key): (list(batches), key_material)})
    rows = built[store.keys.features(key)][0]
    return FeatureResult(
        path=table_location, key=key, batches=batches, job_hash=job_hash, rows=rows, computed=list(batches)
    )


def _build_per_batch(
    loaded: LoadedSpec,
    store: PipelineStore,
    records: list[BatchRecord],
    inputs: dict[str, Path],
    job_hash: str,
    key_material: dict[str, Any],
) -> FeatureResult:
    """``scope: batch``: compute the batches missing from the cache, then name every batch's table.

    An entry's key is the batch (id and content hash), the job's source and its inputs (the
    reference tables' fingerprints and the ``features`` section but where it runs): a changed
    job, reference table or setting gives new keys, so stale entries are never read.
    The run's ``features/<key>/meta.json``, written last, names the entries it used.
    """
    section = loaded.spec.features.model_dump(mode="json", exclude=set(PLACEMENT_KEYS))
    inputs_hash = _digest({"inputs": key_material["inputs"], "features": section})
    material = key_material | {"scope": "batch", "inputs_hash": inputs_hash}
    key = _digest(material)
    batches = {r.batch_id: r.sha256 for r in records}
    folder = store.location(store.keys.features(key))
    entries = {
        r.batch_id: _digest({"batch": r.batch_id, "sha256": r.sha256, "job": job_hash, "inputs": inputs_hash})
        for r in records
    }

    def parts_of(keys: dict[str, str]) -> list[str]:
        return [store.location(store.keys.feature_cache(b, k, TABLE)) for b, k in keys.items()]

    metas = {b: store.json.read_or_none(store.keys.feature_cache(b, k, FEATURES_META)) for b, k in entries.items()}
    todo = [b for b, meta in metas.items() if meta is None]
    manifest = store.json.read_or_none(store.keys.features(key, FEATURES_META))
    if manifest is not None and not todo:  # entries are checked too: feature_cache/ may have been emptied
        return FeatureResult(
            path=folder,
            key=key,
            batches=batches,
            job_hash=job_hash,
            rows=int(manifest["rows"]),
            cached=True,
            parts=parts_of(entries),
        )
    if todo:
        metas |= _compute_entries(loaded, store, {b: entries[b] for b in todo}, batches, inputs, material)
    rows = sum(int(meta["rows"]) for meta in metas.values() if meta is not None)
    first = next(iter(metas.values()), None) or {}
    # Written last, once every entry is committed: the run's table is whole when this exists.
    store.json.write(
        store.keys.features(key, FEATURES_META),
        material | {"entries": entries, "rows": rows, "columns": first.get("columns", [])},
    )
    return FeatureResult(
        path=folder,
        key=key,
        batches=batches,
        job_hash=job_hash,
        rows=rows,
        parts=parts_of(entries),
        computed=todo,
    )


def _compute_entries(
    loaded: LoadedSpec,
    store: PipelineStore,
    todo: dict[str, str],
    batches: dict[str, str],
    inputs: dict[str, Path],
    material: dict[str, Any],
) -> dict[str, dict[str, Any]]:
    """Run the job on each batch of ``todo`` (``{batch_id: entry key}``) and commit its cache entry.

    Returns:
        ``{batch_id: {"rows", "columns"}}`` of the entries written.
    """
    tables = {
        store.keys.feature_cache(batch_id, entry): (
            [batch_id],
            material | {"batches": [batch_id], "sha256": batches[batch_id], "entry": entry},
        )
        for batch_id, entry in todo.items()
    }
    built = _build_tables(loaded, store, inputs, tables)
    return {
        batch_id: dict(zip(("rows", "columns"), built[store.keys.feature_cache(batch_id, entry)], strict=True))
        for batch_id, entry in todo.items()
    }


def _build_tables(
    loaded: LoadedSpec,
    store: PipelineStore,
    inputs: dict[str, Path],
    tables: dict[str, tuple[list[str], dict[str, Any]]],
) -> dict[str, Built]:
    """Run the job for each table and commit it: ``{folder key: (batch ids, meta.json material)}`` in,
    ``{folder key: (rows, columns)}`` out, on the spec's engine.

    Spark commits each table as it is built; on DuckDB one child process builds them all (one
    start for every batch of the run), then each is committed.
    """
    done: dict[str, Built] = {}
    if loaded.spec.features.engine == "duckdb":
        from sluice.steps.features_duckdb import PART, SCRATCH, run_tables

        try:
            built = run_tables(loaded, store, [batch_ids for batch_ids, _ in tables.values()])
            for (folder, (_, material)), (local, rows, columns) in zip(tables.items(), built, strict=True):

                def put(staging: Staging, local: Path = local, answer: Built = (rows, columns)) -> Built:
                    staging.put_file(local, f"{TABLE}/{PART}")
                    return answer

                done[folder] = _commit_table(store, folder, material, put)
        finally:
            store.clear_scratch(SCRATCH)  # copies of an object store's batches, tables not committed
        return done
    spark = _session(loaded, store)
    for folder, (batch_ids, material) in tables.items():
        table = _run_job(loaded, spark, batch_ids, inputs, store)
        done[folder] = _commit_table(store, folder, material, partial(_spark_write, spark, table))
    return done


def _session(loaded: LoadedSpec, store: PipelineStore) -> SparkSession:
    return pipeline_spark(loaded, store, "features")


def pipeline_spark(loaded: LoadedSpec, store: PipelineStore, role: str) -> SparkSession:
    """The pipeline's Spark session: ``features.engine`` / ``master`` / ``conf``, opening ``store``.

    The feature step and ``training.engine: spark`` share it (one Spark per pipeline).

    Args:
        loaded: The spec.
        store: The pipeline's storage (an ``s3://`` store adds the S3A jars and keys).
        role: Part of the application's name in the Spark UI (``features``, ``train``).
    """
    from sluice.services.spark import spark_session, store_spark_conf
    from sluice.services.spark_jars import default_jars_dir

    spec = loaded.spec.features
    master = spec.master if spec.engine == "cluster" else None
    conf = store_spark_conf(store, default_jars_dir(loaded.project_dir), dict(spec.conf))
    return spark_session(f"sluice-{loaded.spec.pipeline}-{role}", master=master, conf=conf)


def _run_job(
    loaded: LoadedSpec, spark: SparkSession, batch_ids: list[str], inputs: dict[str, Path], store: PipelineStore
) -> DataFrame:
    """The job's output DataFrame over ``batch_ids`` (lazy: nothing runs until it is written)."""
    from sluice.services.spark import spark_location

    spec = loaded.spec.features
    # Spark opens every location itself: s3:// ones through Hadoop's S3A (s3a://).
    clean = [spark_location(store.location(store.keys.batch(b, "clean.parquet"))) for b in batch_ids]
    frames = {"batches": spark.read.option("mergeSchema", "true").parquet(*clean)}
    for name, path in inputs.items():
        fmt = spec.inputs[name].format
        reader = spark.read.option("header", "true").option("inferSchema", "true")
        frames[name] = reader.parquet(str(path)) if fmt == "parquet" else reader.csv(str(path))
    table: DataFrame = load_job(spec.job, loaded)(spark, frames)
    return table


def _spark_write(spark: SparkSession, table: DataFrame, staging: Staging) -> tuple[int, list[str]]:
    """Write ``table`` into ``staging`` with Spark (a folder of part files); its rows and columns."""
    from sluice.services.spark import spark_location

    staged_table = spark_location(f"{staging.location}/{TABLE}")
    table.write.parquet(staged_table)
    rows: int = spark.read.parquet(staged_table).count()
    return rows, list(table.columns)


def _commit_table(
    store: PipelineStore,
    folder: str,
    material: dict[str, Any],
    write: Callable[[Staging], tuple[int, list[str]]],
) -> tuple[int, list[str]]:
    """Write the table (``write`` puts ``features.parquet/`` into the staging folder) and its
    ``meta.json`` as folder ``folder``, committed together.

    Returns:
        The table's rows and columns.
    """
    # The table and its meta.json are staged and committed together (meta.json last): a
    # reader (and the cache check) sees a whole table or none. On S3 there is no rename:
    # the engine writes under the store's hidden staging prefix, and the store copies the
    # table to its key before meta.json, which readers and the cache go by.
    with store.stage(folder, FEATURES_META) as staging:
        rows, columns = write(staging)
        faults.point("features.table_written")
        staging.write_bytes(FEATURES_META, encode_json(material | {"rows": rows, "columns": columns}))
        faults.point("features.meta_written")
    return rows, columns


def read_features(store: PipelineStore, result: FeatureResult) -> pd.DataFrame:
    """The feature table of ``result`` as one pandas DataFrame (its batches' rows, in order)."""
    return read_features_traced(store, result)[0]


def read_features_traced(
    store: PipelineStore, result: FeatureResult
) -> tuple[pd.DataFrame, npt.NDArray[np.object_] | None]:
    """The feature table and, for each of its rows, the batch it came from.

    With ``scope: batch`` each batch has its own table, so every row is traced to its batch.
    With ``scope: history`` the job ran over all batches at once (aggregates, windows): its
    rows cannot be traced, and the second value is None.

    Returns:
        The table, and a NumPy array of batch ids aligned with its rows (or None).
    """
    if not result.parts:
        return store.parquet.read(store.key_of(result.path)), None
    import numpy as np
    import pandas as pd

    frames = [store.parquet.read(store.key_of(part)) for part in result.parts]
    table = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
    if len(frames) != len(result.batches):
        return table, None
    return table, np.repeat(np.array(list(result.batches), dtype=object), [len(f) for f in frames])
