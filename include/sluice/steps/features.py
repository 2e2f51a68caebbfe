"""Run the spec's PySpark feature job over every accepted batch."""

from __future__ import annotations

import hashlib
import importlib.util
import json
from pathlib import Path
from typing import Any

from sluice.services import faults
from sluice.services.storage import FEATURES_META, PipelineStore, encode_json, sha256_file
from sluice.spec.loader import LoadedSpec
from sluice.steps.records import FeatureResult

__all__ = ["FeatureResult", "NoDataError", "build_features", "load_job"]

#: The feature table inside its folder.
TABLE = "features.parquet"


class NoDataError(RuntimeError):
    """Raised when there is nothing to train on yet."""


def _fingerprint(path: Path) -> str:
    if path.is_file():
        return sha256_file(path)[:16]
    entries = sorted((str(p.relative_to(path)), p.stat().st_size) for p in path.rglob("*") if p.is_file())
    return hashlib.sha256(json.dumps(entries).encode()).hexdigest()[:16]


def load_job(job: str, loaded: LoadedSpec) -> Any:
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
    return func


def build_features(loaded: LoadedSpec, store: PipelineStore) -> FeatureResult:
    """Build (or reuse) the feature table for the current accepted batches.

    Args:
        loaded: The spec.
        store: The pipeline's storage.

    Returns:
        Where the table is and its lineage.

    Raises:
        NoDataError: No batch has been accepted yet.
    """
    spec = loaded.spec.features
    records = store.accepted_batches()
    if not records:
        raise NoDataError(f"pipeline {loaded.spec.pipeline} has no accepted batch yet; run the ingest DAG first")
    batches = {r.batch_id: r.sha256 for r in records}
    job_file = loaded.resolve(spec.job.split(":", 1)[0])
    job_hash = sha256_file(job_file)[:16]
    inputs = {name: loaded.resolve(i.uri) for name, i in spec.inputs.items()}
    missing = [f"{n} ({p})" for n, p in inputs.items() if not p.exists()]
    if missing:
        raise FileNotFoundError(f"feature inputs not found: {', '.join(missing)}")
    key_material = {
        "batches": list(batches),
        "job": job_hash,
        "function": spec.job.split(":", 1)[1],
        "inputs": {n: _fingerprint(p) for n, p in inputs.items()},
    }
    key = hashlib.sha256(json.dumps(key_material, sort_keys=True).encode()).hexdigest()[:16]
    table_location = store.location(store.features_key(key, TABLE))
    meta = store.read_json_or_none(store.features_key(key, FEATURES_META))
    if meta is not None:
        return FeatureResult(
            path=table_location,
            key=key,
            batches=batches,
            job_hash=job_hash,
            rows=int(meta["rows"]),
            cached=True,
        )

    rows = _build_table(loaded, store, list(batches), inputs, key, key_material)
    return FeatureResult(path=table_location, key=key, batches=batches, job_hash=job_hash, rows=rows)


def _build_table(
    loaded: LoadedSpec,
    store: PipelineStore,
    batch_ids: list[str],
    inputs: dict[str, Path],
    key: str,
    key_material: dict[str, Any],
) -> int:
    """Run the feature job with Spark; commit the table and its ``meta.json`` as feature table ``key``.

    Returns:
        The table's rows.
    """
    from sluice.services.spark import spark_location, spark_session, store_spark_conf
    from sluice.services.spark_jars import default_jars_dir

    spec = loaded.spec.features
    master = spec.master if spec.engine == "cluster" else None
    conf = store_spark_conf(store, default_jars_dir(loaded.project_dir), dict(spec.conf))
    spark = spark_session(f"sluice-{loaded.spec.pipeline}-features", master=master, conf=conf)
    # Spark opens every location itself: s3:// ones through Hadoop's S3A (s3a://).
    clean = [spark_location(store.location(store.batch_key(b, "clean.parquet"))) for b in batch_ids]
    frames = {"batches": spark.read.option("mergeSchema", "true").parquet(*clean)}
    for name, path in inputs.items():
        fmt = spec.inputs[name].format
        reader = spark.read.option("header", "true").option("inferSchema", "true")
        frames[name] = reader.parquet(str(path)) if fmt == "parquet" else reader.csv(str(path))
    func = load_job(spec.job, loaded)
    table = func(spark, frames)
    # The table and its meta.json are staged and committed together (meta.json last): a
    # reader (and the cache check above) sees a whole table or none. On S3 there is no
    # rename: Spark writes under the store's hidden staging prefix, and the store copies the
    # table to its key before meta.json, which readers and the cache go by.
    with store.stage(store.features_key(key), FEATURES_META) as staging:
        staged_table = spark_location(f"{staging.location}/{TABLE}")
        table.write.parquet(staged_table)
        faults.point("features.table_written")
        rows: int = spark.read.parquet(staged_table).count()
        staging.write_bytes(FEATURES_META, encode_json(key_material | {"rows": rows, "columns": table.columns}))
        faults.point("features.meta_written")
    return rows
