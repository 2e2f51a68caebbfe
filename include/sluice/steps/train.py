"""Fit the candidate model and record it in MLflow with full lineage."""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import logging
import random
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

from sluice.services import faults
from sluice.services.storage import PipelineStore
from sluice.spec.loader import LoadedSpec
from sluice.steps.lineage import batch_tags, git_commit, run_batches
from sluice.steps.records import FeatureResult, FittedRows, encode
from sluice.steps.records import TrainResult as TrainResult
from sluice.steps.training_data import SplitRows as SplitRows
from sluice.steps.training_data import TrainingMemoryError as TrainingMemoryError
from sluice.steps.training_data import feature_columns as feature_columns
from sluice.steps.training_data import release_arrow_memory
from sluice.steps.training_data import split_holdout as split_holdout
from sluice.steps.training_data import split_rows as split_rows

if TYPE_CHECKING:
    import numpy.typing as npt
    import pandas as pd

log = logging.getLogger(__name__)

#: The candidate's holdout, in the train run's folder.
HOLDOUT = "holdout.parquet"
#: Rows per row group of the holdout file (see :func:`write_holdout`).
HOLDOUT_ROW_GROUP = 100_000
#: Rows of the holdout the gate prepares and scores at a time.
SCORE_CHUNK_ROWS = 100_000


def prepare(df: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """Numbers as float64 and the rest as strings, so MLflow signatures accept missing values.

    ``df`` may hold strings as objects or as categoricals (the train step reads them so);
    either way they come out as objects with None for a missing value.
    """
    import pandas as pd

    converted = {}
    for col in columns:
        values = df[col]
        if pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values):
            converted[col] = values.astype("float64")
        else:
            # pandas takes None as the fill value; pandas-stubs' ``where`` does not list it.
            converted[col] = values.astype("object").where(values.notna(), cast(Any, None))
    # Column by column, then one frame without a consolidating copy: a big frame is
    # converted with at most one column in two forms at a time.
    return pd.concat(converted, axis=1, copy=False) if converted else df[columns].copy()


def make_estimator(model_path: str, params: dict[str, Any], X: pd.DataFrame) -> Any:
    """Pipeline: encode strings, impute numbers, then the spec's model class."""
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OrdinalEncoder

    module_name, class_name = model_path.rsplit(".", 1)
    cls = getattr(importlib.import_module(module_name), class_name)
    kwargs = dict(params)
    if "random_state" in inspect.signature(cls).parameters:
        kwargs.setdefault("random_state", 42)
    categorical = [c for c in X.columns if X[c].dtype == object]
    numeric = [c for c in X.columns if c not in categorical]
    encode = OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=-1, encoded_missing_value=-1)
    pre = ColumnTransformer(
        [
            ("categorical", encode, categorical),
            ("numeric", SimpleImputer(strategy="median", keep_empty_features=True), numeric),
        ]
    )
    return Pipeline([("prepare", pre), ("model", cls(**kwargs))])


TRUSTED_MODULES = ("sklearn.", "numpy.", "scipy.", "xgboost.")
#: At most this many training rows (seeded sample) are scored for the ``train_<metric>`` metric.
TRAIN_METRIC_ROWS = 20_000


@contextmanager
def quiet_skops_module_scan() -> Iterator[None]:
    """Silence the Airflow deprecation warnings skops triggers when imported, saving or loading.

    To name the module of an object without ``__module__`` (SciPy ufuncs), skops calls
    ``getattr(module, name)`` on every loaded module; in a task process that includes Airflow's
    deprecated shim modules (``airflow.utils.trigger_rule``, ``airflow.utils.timezone``, ...),
    which warn on any attribute. On its first import skops does this for each of ~230 SciPy
    ufuncs: ~1,160 ``DeprecatedImportWarning`` lines per task log around the useful ones.
    Only those warnings, raised from skops' scan, are ignored; import skops inside this block.
    """
    with warnings.catch_warnings():
        # DeprecatedImportWarning subclasses FutureWarning; matching the category by its base
        # keeps Airflow out of the steps layer.
        warnings.filterwarnings("ignore", message=r"The `airflow\.", category=FutureWarning, module=r"skops\.io\.")
        yield


def library_types(estimator: Any) -> list[str]:
    """Types skops must be told to trust, limited to scikit-learn, NumPy, SciPy and XGBoost (``engine: spark``).

    The model was fitted by this very task, so its library types are known; a class from
    anywhere else is left untrusted and saving fails with MLflow's explicit error.
    """
    with quiet_skops_module_scan():
        import skops.io

        found = skops.io.get_untrusted_types(data=skops.io.dumps(estimator))
    return [t for t in found if t.startswith(TRUSTED_MODULES)]


def find_finished_run(client: Any, experiment_id: str, airflow_run_id: str) -> Any:
    """A finished candidate run of this Airflow run, so a retry reuses it."""
    runs = client.search_runs(
        [experiment_id],
        filter_string=f"tags.`sluice.airflow_run_id` = '{airflow_run_id}' and attributes.status = 'FINISHED'",
        max_results=1,
    )
    return runs[0] if runs else None


@dataclass(frozen=True)
class _Fitted:
    """A fitted candidate, what it was fitted and scored on (inside this module only).

    The model's input of every fitted row is not kept: only the rows ``train_<metric>`` is
    scored on (``X_check``, ``y_check``) and the logged input example.
    """

    estimator: Any
    train_rows: int
    X_check: pd.DataFrame
    y_check: npt.NDArray[Any]
    example: pd.DataFrame
    rows: SplitRows
    holdout_rows: int
    holdout_score: float
    #: ``training.engine: spark``: the master and application the fit ran on (logged as params).
    where: dict[str, str] = dataclasses.field(default_factory=dict)


def train_candidate(
    loaded: LoadedSpec, store: PipelineStore, features: FeatureResult, dag_id: str, airflow_run_id: str
) -> TrainResult:
    """Fit the candidate on the training rows (all, or ``training.sample``) and log it to MLflow.

    The run records params (the rows available and fitted: ``sample.*``; the memory estimate
    and budget: ``memory.*``), the holdout metric, signature, input example, pinned pip
    requirements, lineage tags (spec hash, git commit, the batches trained on and those held
    out, the sample, feature job hash, Airflow dag/run id) and each batch's validation report and Great
    Expectations result (artifacts ``validation/<batch>/``). A retry of the same Airflow run returns the
    finished run.

    Raises:
        TrainingMemoryError: The fit would need more than ``training.max_memory_gb``; refused
            before the feature columns are read.
    """
    from sluice.services import tracking

    spec = loaded.spec
    client = tracking.configure(loaded.project_dir)
    experiment_id = tracking.ensure_experiment(client, spec.pipeline, loaded.project_dir)
    holdout_key = store.keys.run(airflow_run_id, HOLDOUT)
    holdout_path = store.location(holdout_key)
    previous = find_finished_run(client, experiment_id, airflow_run_id)
    if previous is not None and store.exists(holdout_key):
        return _reused(previous, holdout_path)

    for closed in tracking.close_abandoned_runs(client, experiment_id, "candidate", airflow_run_id):
        log.warning("closed MLflow run %s as KILLED: a killed train task left it RUNNING", closed)
    on_spark = spec.training.engine == "spark"
    fitted = _fit_on_spark(loaded, store, features) if on_spark else _fit(loaded, store, features)
    write_holdout(store, holdout_key, fitted.rows.holdout)
    lineage = _lineage(loaded, features, fitted.rows, dag_id, airflow_run_id)
    run_id = _log_candidate(loaded, store, features, fitted, experiment_id, airflow_run_id, lineage)
    faults.point("train.run_finished")
    metric = spec.evaluation.metric
    store.json.write(
        store.keys.run(airflow_run_id, "train.json"),
        {"mlflow_run_id": run_id, "split": fitted.rows.split, f"holdout_{metric}": fitted.holdout_score},
    )
    return TrainResult(
        mlflow_run_id=run_id,
        holdout_path=holdout_path,
        split=fitted.rows.split,
        train_rows=fitted.train_rows,
        holdout_rows=fitted.holdout_rows,
        features=fitted.rows.columns,
        trained_on=fitted.rows.trained_on,
        held_out=fitted.rows.held_out,
        fitted=fitted.rows.fitted,
    )


def _lineage(
    loaded: LoadedSpec, features: FeatureResult, rows: SplitRows, dag_id: str, airflow_run_id: str
) -> dict[str, str]:
    """The candidate run's lineage tags."""
    return {
        "sluice.pipeline": loaded.spec.pipeline,
        "sluice.role": "candidate",
        "sluice.spec_hash": loaded.spec_hash,
        "sluice.spec_file": loaded.path.name,
        "sluice.git_commit": git_commit(loaded.project_dir),
        **batch_tags(rows.trained_on, rows.held_out, list(features.batches)),
        "sluice.feature_job_hash": features.job_hash,
        "sluice.features_key": features.key,
        "sluice.airflow_dag_id": dag_id,
        "sluice.airflow_run_id": airflow_run_id,
        "sluice.split": rows.split,
        "sluice.sample": rows.fitted.describe(),
        "sluice.features": ",".join(rows.columns),
    }


def _reused(previous: Any, holdout_path: str) -> TrainResult:
    """The result of a finished run of this Airflow run (a retry after it finished)."""
    meta, params = previous.data.tags, previous.data.params
    batches = run_batches(meta)
    return TrainResult(
        mlflow_run_id=previous.info.run_id,
        holdout_path=holdout_path,
        split=meta.get("sluice.split", ""),
        train_rows=int(params.get("train_rows", 0)),
        holdout_rows=int(params.get("holdout_rows", 0)),
        features=meta.get("sluice.features", "").split(","),
        trained_on=batches.trained_on,
        held_out=batches.held_out,
        fitted=fitted_rows_of(params),
    )


def sample_params(fitted: FittedRows) -> dict[str, Any]:
    """The MLflow params that record the rows fitted on (``training.sample``)."""
    return {
        "sample.rows_available": fitted.available,
        "sample.rows_fitted": fitted.fitted,
        "sample.fraction": round(fitted.fraction, 6),
        "sample.setting": fitted.setting if fitted.setting is not None else "none",
        "sample.stratified": fitted.stratified,
        "sample.seed": fitted.seed if fitted.seed is not None else "none",
    }


def fitted_rows_of(params: dict[str, str]) -> FittedRows | None:
    """The rows fitted on, from a run's params (:func:`sample_params`); None for runs from before them."""
    if "sample.rows_fitted" not in params:
        return None
    return FittedRows(
        available=int(params["sample.rows_available"]),
        fitted=int(params["sample.rows_fitted"]),
        fraction=float(params["sample.fraction"]),
        setting=None if params.get("sample.setting", "none") == "none" else params["sample.setting"],
        stratified=params.get("sample.stratified") == "True",
        seed=None if params.get("sample.seed", "none") == "none" else int(params["sample.seed"]),
    )


def _fit(loaded: LoadedSpec, store: PipelineStore, features: FeatureResult) -> _Fitted:
    """Read and split the feature table, fit the spec's model and score it on the holdout."""

    from sluice.steps.metrics import score

    spec = loaded.spec
    rows = split_rows(loaded, store, features)
    target = spec.training.target
    X_train, y_train = prepare(rows.train, rows.columns), rows.train[target].to_numpy()
    rows = dataclasses.replace(rows, train=rows.train.iloc[:0])  # its compact form is not read again
    release_arrow_memory()
    estimator = make_estimator(spec.training.model, spec.training.params, X_train)
    estimator.fit(X_train, y_train)
    picked = train_metric_sample(len(X_train))
    X_check, y_check, example = X_train.iloc[picked], y_train[picked], X_train.head(5).copy()
    train_rows = len(X_train)
    del X_train, y_train  # the fit's input is the biggest thing in memory: gone before the holdout's
    X_hold, y_hold = prepare(rows.holdout, rows.columns), rows.holdout[target].to_numpy()
    holdout_score = score(estimator, X_hold, y_hold, spec.evaluation.metric)
    return _Fitted(estimator, train_rows, X_check, y_check, example, rows, len(X_hold), holdout_score)


def _fit_on_spark(loaded: LoadedSpec, store: PipelineStore, features: FeatureResult) -> _Fitted:
    """``training.engine: spark``: fit on Spark (:mod:`sluice.steps.train_spark`), score the holdout here."""
    from sluice.steps.metrics import score
    from sluice.steps.train_spark import fit_on_spark

    spec = loaded.spec
    spark_fit = fit_on_spark(loaded, store, features)
    rows = spark_fit.rows
    X_hold, y_hold = prepare(rows.holdout, rows.columns), rows.holdout[spec.training.target].to_numpy()
    holdout_score = score(spark_fit.estimator, X_hold, y_hold, spec.evaluation.metric)
    example = spark_fit.X_check.head(5).copy()
    return _Fitted(
        spark_fit.estimator,
        spark_fit.train_rows,
        spark_fit.X_check,
        spark_fit.y_check,
        example,
        rows,
        len(X_hold),
        holdout_score,
        spark_fit.where,
    )


def train_metric_rows(fitted: _Fitted) -> int:
    """How many training rows the ``train_<metric>`` metric is scored on."""
    return len(fitted.X_check)


def train_metric_sample(n_rows: int) -> list[int]:
    """Positions of the seeded sample of training rows that ``train_<metric>`` is scored on."""
    return sorted(random.Random(0).sample(range(n_rows), min(TRAIN_METRIC_ROWS, n_rows)))  # noqa: S311


def _log_scores(loaded: LoadedSpec, fitted: _Fitted) -> None:
    """Log the candidate's params and its holdout and train metrics to the active MLflow run."""
    import mlflow

    from sluice.steps.metrics import score

    spec = loaded.spec
    metric = spec.evaluation.metric
    memory = fitted.rows.memory
    mlflow.log_params(
        {
            "model": spec.training.model,
            "engine": spec.training.engine,
            **{f"param.{k}": v for k, v in spec.training.params.items()},
            "train_rows": fitted.train_rows,
            "holdout_rows": fitted.holdout_rows,
            "n_features": len(fitted.rows.columns),
            "train_metric_rows": train_metric_rows(fitted),
            **sample_params(fitted.rows.fitted),
            **fitted.where,
            # A fit on Spark is bounded by its executors, not by a budget of the task's.
            **(
                {
                    "memory.estimated_gib": round(memory.need / 2**30, 3),
                    "memory.budget_gib": round(memory.budget / 2**30, 3),
                }
                if memory is not None
                else {}
            ),
        }
    )
    mlflow.log_metric(f"holdout_{metric}", fitted.holdout_score)
    # On a seeded sample: scoring every training row was half of MLflow's cost per run
    # (bench/tracking.py), for a figure only read next to the holdout's (overfitting).
    train_score = score(fitted.estimator, fitted.X_check, fitted.y_check, metric)
    mlflow.log_metric(f"train_{metric}", train_score)


def _log_candidate(
    loaded: LoadedSpec,
    store: PipelineStore,
    features: FeatureResult,
    fitted: _Fitted,
    experiment_id: str,
    airflow_run_id: str,
    lineage: dict[str, str],
) -> str:
    """Log the candidate's params, metrics, validation reports, lineage and model; return the run id."""
    import mlflow

    spec = loaded.spec
    estimator = fitted.estimator
    with mlflow.start_run(experiment_id=experiment_id, run_name=f"candidate {airflow_run_id}", tags=lineage) as run:
        faults.point("train.run_started")
        _log_scores(loaded, fitted)
        log_validation_reports(store, list(features.batches))
        mlflow.log_dict(
            {
                "batches": features.batches,
                "features": encode(features),
                "spec": spec.model_dump(mode="json"),
                "tags": lineage,
            },
            "lineage.json",
        )
        log_model(estimator, fitted.example)
        return str(run.info.run_id)


def log_validation_reports(store: PipelineStore, batch_ids: list[str]) -> None:
    """Attach each batch's validation report and GX result to the active MLflow run."""
    import mlflow

    for batch_id in batch_ids:
        # The data version of a model includes what validation said about each batch.
        for report in ("validation.json", "gx_result.json"):
            content = store.json.read_or_none(store.keys.batch(batch_id, report))
            if content is not None:
                mlflow.log_dict(content, f"validation/{batch_id}/{report}")


def log_model(estimator: Any, sample: pd.DataFrame) -> None:
    """Log a fitted pipeline as the active run's ``model`` (signature, example, pinned requirements)."""
    import mlflow.sklearn
    from mlflow.models import infer_signature

    trusted = library_types(estimator)
    requirements = mlflow.sklearn.get_default_pip_requirements()
    if any(t.startswith("xgboost.") for t in trusted):
        requirements.append(xgboost_requirement())
    with quiet_skops_module_scan():
        mlflow.sklearn.log_model(
            estimator,
            name="model",
            signature=infer_signature(sample, estimator.predict(sample)),
            input_example=sample,
            pip_requirements=requirements,
            skops_trusted_types=trusted,
        )


def xgboost_requirement() -> str:
    """The installed XGBoost as a pip requirement (``xgboost-cpu==3.2.0`` here, ``xgboost==...`` on macOS)."""
    from importlib.metadata import packages_distributions, version

    dist = next(iter(packages_distributions().get("xgboost", ["xgboost"])))
    return f"{dist}=={version(dist)}"


def write_holdout(store: PipelineStore, key: str, holdout: pd.DataFrame) -> None:
    """Write the candidate's holdout in row groups of :data:`HOLDOUT_ROW_GROUP` rows, strings plain.

    The gate reads it back a chunk at a time (:func:`read_holdout_chunks`), and pyarrow
    decodes a whole row group to give one: small groups keep that memory small whatever the
    holdout's size (pandas' default is about a million rows a group). Strings are written as
    plain strings (the train step reads them as categoricals), so ``evaluate`` and a champion
    with other columns read them back as objects, as a table read whole was before.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.Table.from_pandas(holdout, preserve_index=False)
    plain = pa.schema(
        [pa.field(f.name, f.type.value_type) if pa.types.is_dictionary(f.type) else f for f in table.schema]
    )
    with store.open_write(key) as fh:
        pq.write_table(table.cast(plain).replace_schema_metadata(None), fh, row_group_size=HOLDOUT_ROW_GROUP)


def read_holdout(store: PipelineStore, location: str) -> pd.DataFrame:
    """Load a holdout written by :func:`train_candidate` whole (``location`` from its :class:`TrainResult`).

    The gate reads it in chunks instead (:func:`read_holdout_chunks`).
    """
    return store.parquet.read(store.key_of(location))


def read_holdout_chunks(
    store: PipelineStore, location: str, columns: list[str] | None = None, chunk_rows: int = SCORE_CHUNK_ROWS
) -> Iterator[pd.DataFrame]:
    """The holdout at ``location`` as frames of at most ``chunk_rows`` rows, only ``columns``
    (default: all), with the same dtypes as :func:`read_holdout` gives."""
    return store.parquet.chunks(store.key_of(location), columns, chunk_rows)


def holdout_columns(store: PipelineStore, location: str) -> tuple[list[str], int]:
    """Column names and row count of the holdout at ``location`` (read from its footer)."""
    return store.parquet.shape(store.key_of(location))


def smoke_rows(store: PipelineStore, holdout_path: str, features: list[str], n: int = 5) -> list[dict[str, Any]]:
    """The first ``n`` holdout rows as JSON records, for a deploy's smoke prediction."""
    first = next(read_holdout_chunks(store, holdout_path, features, chunk_rows=n))
    rows = prepare(first.head(n), features).astype(object)
    records = rows.where(rows.notna(), cast(Any, None)).to_dict(orient="records")
    return cast("list[dict[str, Any]]", list(records))  # the columns are ``features``: strings
