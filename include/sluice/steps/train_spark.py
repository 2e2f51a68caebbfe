"""``training.engine: spark``: fit XGBoost on the pipeline's Spark, serve its booster without Spark.

The feature table is read by Spark from the pipeline's storage (the tables the feature step
wrote), split and sampled there, and ``xgboost.spark.SparkXGBClassifier`` /
``SparkXGBRegressor`` trains on the executors (``params.num_workers`` Spark tasks). The task
itself holds only:

- the holdout rows (every column: the gate scores a champion on it too), written as the local
  engine writes it;
- a seeded sample of at most :data:`~sluice.steps.train.TRAIN_METRIC_ROWS` training rows, for
  the ``train_<metric>`` metric, the input example and the parity check below;
- each string column's categories (what Spark saw in the training rows).

The served model is a scikit-learn pipeline, logged as every sluice model: the encoding the
local engine uses (strings as their position among the sorted categories, unknown or missing
-1; numbers as they are: the booster treats NaN as missing), then the booster in XGBoost's own
scikit-learn class. Loading and predicting needs ``xgboost`` and scikit-learn, no JVM. Before
it is logged, the pipeline predicts the sampled rows and must give what the Spark model gives.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sluice.services.storage import PipelineStore
from sluice.spec.loader import LoadedSpec
from sluice.spec.models import CLASSIFICATION_METRICS, SPARK_MODELS
from sluice.steps.records import FeatureResult, FittedRows
from sluice.steps.training_data import SplitRows, check_label_and_split_columns, feature_columns

if TYPE_CHECKING:
    import numpy.typing as npt
    import pandas as pd
    from pyspark.sql import Column, DataFrame, SparkSession

log = logging.getLogger(__name__)

#: Column of the batch (part) a row came from, while the table is read.
PART = "__sluice_part"
#: Column saying whether a row is held out.
HELD = "__sluice_holdout"
#: Prefix of the encoded feature columns the booster trains on.
ENCODED = "__sluice_x_"
#: Largest difference between the Spark model's and the served pipeline's outputs on the sample.
PARITY_TOLERANCE = 1e-5


class SparkTrainingError(RuntimeError):
    """The feature table cannot be trained on with ``training.engine: spark`` (the message names the fix)."""


@dataclass(frozen=True)
class SparkFit:
    """What a fit on Spark leaves in the task.

    Attributes:
        estimator: The served model: a fitted scikit-learn pipeline around the booster.
        train_rows: Rows the booster was fitted on.
        X_check: A seeded sample of the fitted rows as the model takes them (``prepare``d).
        y_check: Their labels.
        rows: The split: ``holdout`` is a pandas frame of every held-out row, ``train`` is empty.
        max_difference: Largest difference between the Spark model's and the pipeline's outputs
            on ``X_check``.
        where: Where it was fitted: ``spark.master`` (the cluster's ``spark://...`` URL, or
            ``local[*]``) and ``spark.application_id`` (the application in the master's UI).
    """

    estimator: Any
    train_rows: int
    X_check: pd.DataFrame
    y_check: npt.NDArray[Any]
    rows: SplitRows
    max_difference: float
    where: dict[str, str]


def fit_on_spark(loaded: LoadedSpec, store: PipelineStore, features: FeatureResult) -> SparkFit:
    """Read, split and sample the feature table on Spark, fit the booster there, build the served pipeline.

    Raises:
        KeyError: The target or ``split.by`` is not a column of the feature table.
        SparkTrainingError: A column type or label the spark engine cannot take, a holdout
            that leaves no row on one side, or a pipeline that does not reproduce the Spark model.
    """
    from sluice.steps.features import pipeline_spark
    from sluice.steps.train import TRAIN_METRIC_ROWS, prepare

    spec = loaded.spec
    training = spec.training
    spark = pipeline_spark(loaded, store, "train")
    # toPandas of the holdout and the sample through Arrow, a batch at a time.
    spark.conf.set("spark.sql.execution.arrow.pyspark.enabled", "true")
    table = _read_table(spark, store, features)
    names = [c for c in table.columns if c != PART]
    check_label_and_split_columns(loaded, names)
    import pandas as pd

    columns = feature_columns(pd.DataFrame(columns=names), loaded)
    categorical, numeric = _column_kinds(table, columns)
    classify = spec.evaluation.metric in CLASSIFICATION_METRICS
    labelled = table.filter(table[training.target].isNotNull())
    marked, split_text = _mark_holdout(labelled, loaded)
    train_all = marked.filter(~marked[HELD])
    fit_rows, fitted = _sample(train_all, loaded, classify)
    if classify:
        _check_labels(fit_rows, training.target)

    encoded, categories = _encode(fit_rows, categorical, numeric)
    inputs = [f"{ENCODED}{c}" for c in [*categorical, *numeric]]
    cls = _estimator_class(training.model)
    params = dict(training.params)
    params.setdefault("random_state", training.split.seed)
    model = cls(features_col=inputs, label_col=training.target, **params).fit(encoded)

    check = _check_rows(encoded, fitted.fitted, TRAIN_METRIC_ROWS)
    sample = model.transform(check).select(*columns, training.target, *_output_columns(classify)).toPandas()
    X_check, y_check = prepare(sample, columns), sample[training.target].to_numpy()
    estimator = served_pipeline(_sklearn_booster(model, classify), categorical, numeric, categories, X_check)
    difference = _parity(estimator, X_check, sample, classify)

    holdout = marked.filter(marked[HELD]).select(*names).toPandas()
    trained_on, held_out = _batches(features, fit_rows, marked.filter(marked[HELD]))
    rows = SplitRows(
        train=holdout.iloc[:0],
        holdout=holdout,
        split=split_text,
        columns=columns,
        trained_on=trained_on,
        held_out=held_out,
        fitted=fitted,
        memory=None,
    )
    context = spark.sparkContext
    where = {"spark.master": str(context.master), "spark.application_id": str(context.applicationId)}
    return SparkFit(estimator, fitted.fitted, X_check, y_check, rows, difference, where)


def _read_table(spark: SparkSession, store: PipelineStore, features: FeatureResult) -> DataFrame:
    """The feature table's parts, each row with the position of its part (its batch) in :data:`PART`."""
    from functools import reduce

    from pyspark.sql import functions as F

    from sluice.services.spark import spark_location

    parts = [spark.read.parquet(spark_location(loc)) for loc in (features.parts or [features.path])]
    tagged = [part.withColumn(PART, F.lit(i)) for i, part in enumerate(parts)]
    table: DataFrame = reduce(lambda a, b: a.unionByName(b, allowMissingColumns=True), tagged)
    return table


def _column_kinds(table: DataFrame, columns: list[str]) -> tuple[list[str], list[str]]:
    """The model's columns the encoder takes (strings, booleans) and those passed as numbers."""
    from pyspark.sql import types as T

    kinds = {f.name: f.dataType for f in table.schema.fields}
    categorical, numeric, other = [], [], []
    for name in columns:
        kind = kinds[name]
        if isinstance(kind, T.StringType | T.BooleanType):
            categorical.append(name)
        elif isinstance(kind, T.NumericType):
            numeric.append(name)
        else:
            other.append(f"{name} ({kind.simpleString()})")
    if other:
        raise SparkTrainingError(
            "training.engine spark takes number, string and boolean columns; the feature table has "
            f"{', '.join(other)}: cast them in the feature job (features.job), or leave them out with training.drop"
        )
    return categorical, numeric


def _mark_holdout(labelled: DataFrame, loaded: LoadedSpec) -> tuple[DataFrame, str]:
    """The labelled rows with :data:`HELD` set as ``training.split`` says, and the split in words.

    ``holdout: latest`` holds out the rows with the latest value of ``by``, as the local engine
    does (with one value only, the random share below). A random holdout is chosen by a seeded
    hash of each row's values, so it does not depend on how Spark partitions the table
    (the local engine's draw is by position: the rows differ, the share is the same).
    """
    from pyspark.sql import functions as F

    split = loaded.spec.training.split
    reason = ""
    if split.holdout == "latest" and split.by:
        latest = labelled.agg(F.max(split.by)).first()[0]  # type: ignore[index]
        marked = labelled.withColumn(HELD, F.coalesce(F.col(split.by) == F.lit(latest), F.lit(False)))
        held, total = _counts(marked)
        if 0 < held < total:
            return marked, f"holdout = rows with {split.by} == {latest}"
        reason = f"only one value of {split.by}; "
    values = [F.col(c) for c in labelled.columns if c != PART]
    share = (F.abs(F.xxhash64(F.lit(split.seed), *values)) % 1_000_000) / 1_000_000
    marked = labelled.withColumn(HELD, share < F.lit(split.fraction))
    held, total = _counts(marked)
    if not 0 < held < total:
        raise SparkTrainingError(
            f"a random {split.fraction:.0%} holdout of {total} labelled rows leaves no row on one side: "
            "train on more batches, or set training.split.fraction"
        )
    return marked, f"{reason}random {split.fraction:.0%} holdout (seed {split.seed}, by a hash of each row)"


def _counts(marked: DataFrame) -> tuple[int, int]:
    """Held-out rows and all rows of ``marked``."""
    from pyspark.sql import functions as F

    row = marked.agg(F.sum(F.col(HELD).cast("long")), F.count(F.lit(1))).first()
    return int(row[0] or 0), int(row[1])  # type: ignore[index]


def _sample(train: DataFrame, loaded: LoadedSpec, classify: bool) -> tuple[DataFrame, FittedRows]:
    """The training rows to fit on (``training.sample``: Spark's seeded Bernoulli sample) and the record.

    Spark samples each row with the share, so a sample of N rows fits on about N rows; the
    record gives the count fitted. For classification each class is sampled with the same share
    (its share of the rows is kept).
    """
    from sluice.steps.training_data import sample_seed

    training = loaded.spec.training
    available = train.count()
    setting = training.sample
    # An int is a number of rows (sample: 1 is one row), a float a share (sample: 1.0 is every row).
    if setting is None or (setting >= available if isinstance(setting, int) else setting >= 1):
        return train, FittedRows(available=available, fitted=available, fraction=1.0, setting=_written(setting))
    share = setting / available if isinstance(setting, int) else float(setting)
    seed = sample_seed(training)
    if classify:
        classes = [r[0] for r in train.select(training.target).distinct().collect()]
        picked = train.sampleBy(training.target, dict.fromkeys(classes, share), seed)
    else:
        picked = train.sample(withReplacement=False, fraction=share, seed=seed)
    fitted = picked.count()
    record = FittedRows(
        available=available,
        fitted=fitted,
        fraction=fitted / max(1, available),
        setting=_written(setting),
        stratified=classify,
        seed=seed,
    )
    return picked, record


def _written(setting: int | float | None) -> str | None:
    return None if setting is None else str(setting)


def _check_labels(rows: DataFrame, target: str) -> None:
    """XGBoost's classifiers take labels 0 .. n-1 (numbers); say so before the fit fails obscurely."""
    from pyspark.sql import functions as F
    from pyspark.sql import types as T

    kind = rows.schema[target].dataType
    if not isinstance(kind, T.NumericType):
        raise SparkTrainingError(
            f"training.target '{target}' holds {kind.simpleString()} values; XGBoost's classifier takes the "
            "classes as numbers 0, 1, ...: map them to numbers in the feature job"
        )
    values = [r[0] for r in rows.select(F.col(target).cast("double")).distinct().collect()]
    if any(v != int(v) or v < 0 or v >= len(values) for v in values):
        raise SparkTrainingError(
            f"training.target '{target}' has the classes {sorted(values)[:10]}; XGBoost's classifier takes them "
            "as 0, 1, ..., n-1: map them so in the feature job"
        )


def _encode(rows: DataFrame, categorical: list[str], numeric: list[str]) -> tuple[DataFrame, list[list[Any]]]:
    """``rows`` with the booster's inputs added (:data:`ENCODED` columns), and each categorical column's categories.

    A string's input is its position among the column's values in the fitted rows, sorted
    (what scikit-learn's ``OrdinalEncoder`` gives, and the local engine uses), missing -1;
    a boolean's is 0 or 1 (categories False, True), missing -1; a number is a double, missing
    NaN (the booster's missing value).
    """
    from pyspark.ml.feature import StringIndexer
    from pyspark.sql import functions as F
    from pyspark.sql import types as T

    kinds = {f.name: f.dataType for f in rows.schema.fields}
    strings = [c for c in categorical if isinstance(kinds[c], T.StringType)]
    labels: dict[str, list[Any]] = {c: [False, True] for c in categorical if c not in strings}
    indexed = rows
    if strings:
        # Spark's alphabetAsc compares UTF-8 bytes: the order of Python's sorted() on the strings.
        indexer = StringIndexer(
            inputCols=strings,
            outputCols=[f"{ENCODED}index_{c}" for c in strings],
            stringOrderType="alphabetAsc",
            handleInvalid="keep",
        ).fit(rows)
        labels |= {c: list(found) for c, found in zip(strings, indexer.labelsArray, strict=True)}
        indexed = indexer.transform(rows)
    encoded: dict[str, Column] = {}
    for c in categorical:
        value = F.col(f"{ENCODED}index_{c}") if c in strings else F.col(c).cast("double")
        encoded[f"{ENCODED}{c}"] = F.when(F.col(c).isNull(), F.lit(-1.0)).otherwise(value)
    for c in numeric:
        encoded[f"{ENCODED}{c}"] = F.coalesce(F.col(c).cast("double"), F.lit(float("nan")))
    return indexed.withColumns(encoded), [labels[c] for c in categorical]


def _estimator_class(model_path: str) -> Any:
    """``xgboost.spark.SparkXGBClassifier`` or ``SparkXGBRegressor``."""
    import xgboost.spark

    if model_path not in SPARK_MODELS:
        raise SparkTrainingError(f"training.engine spark cannot fit '{model_path}'")
    return getattr(xgboost.spark, model_path.rsplit(".", 1)[1])


def _check_rows(encoded: DataFrame, fitted: int, at_most: int) -> DataFrame:
    """A seeded sample of at most ``at_most`` of the ``fitted`` rows (a small frame to take into the task)."""
    if fitted <= at_most:
        return encoded
    share = min(1.0, 1.1 * at_most / fitted)
    return encoded.sample(withReplacement=False, fraction=share, seed=0).limit(at_most)


def _output_columns(classify: bool) -> list[Column]:
    """The Spark model's outputs the parity check compares: probabilities, or predictions."""
    from pyspark.ml.functions import vector_to_array
    from pyspark.sql import functions as F

    if classify:
        return [vector_to_array(F.col("probability")).alias("__sluice_spark_output")]
    return [F.col("prediction").alias("__sluice_spark_output")]


def _sklearn_booster(model: Any, classify: bool) -> Any:
    """The Spark model's booster in XGBoost's scikit-learn class (``get_booster``, saved and loaded as JSON)."""
    import xgboost

    booster = model.get_booster()
    # The booster knows its inputs by the encoded columns' names; the pipeline hands it an array.
    booster.feature_names = None
    booster.feature_types = None
    estimator = xgboost.XGBClassifier() if classify else xgboost.XGBRegressor()
    estimator.load_model(bytearray(booster.save_raw(raw_format="json")))
    return estimator


def served_pipeline(
    booster: Any, categorical: list[str], numeric: list[str], categories: list[list[Any]], sample: pd.DataFrame
) -> Any:
    """The served model: the encoding :func:`_encode` did on Spark, then ``booster`` (a fitted XGBoost estimator).

    Args:
        booster: XGBoost's ``XGBClassifier`` / ``XGBRegressor`` holding the trained booster.
        categorical: String and boolean columns, in the booster's input order.
        numeric: Number columns, after them.
        categories: Each categorical column's categories, fixed (what Spark saw).
        sample: Prepared rows of the model's columns; the encoder learns the column names from them.
    """
    import numpy as np
    from sklearn.compose import ColumnTransformer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OrdinalEncoder

    encode = OrdinalEncoder(
        categories=categories or "auto",
        handle_unknown="use_encoded_value",
        unknown_value=-1,
        encoded_missing_value=-1,
        dtype=np.float64,
    )
    prepare = ColumnTransformer([("categorical", encode, categorical), ("numeric", "passthrough", numeric)])
    # Fitting only records the columns: the categories are given, and nothing else is learnt.
    prepare.fit(sample[[*categorical, *numeric]])
    return Pipeline([("prepare", prepare), ("model", booster)])


def _parity(estimator: Any, X: pd.DataFrame, sample: pd.DataFrame, classify: bool) -> float:
    """The largest difference between the pipeline's and the Spark model's outputs on the sampled rows.

    Raises:
        SparkTrainingError: Over :data:`PARITY_TOLERANCE`: the served model would not be the one trained.
    """
    import numpy as np

    spark_out = np.array(sample["__sluice_spark_output"].tolist(), dtype=np.float64)
    ours = estimator.predict_proba(X) if classify else estimator.predict(X)
    difference = float(np.max(np.abs(np.asarray(ours, dtype=np.float64) - spark_out))) if len(X) else 0.0
    if not difference <= PARITY_TOLERANCE:
        raise SparkTrainingError(
            f"the served pipeline's outputs differ from the Spark model's by up to {difference:.3g} on "
            f"{len(X)} training rows (tolerance {PARITY_TOLERANCE:g}): the model would not be served as trained"
        )
    log.info("served pipeline = Spark model on %d sampled rows (max difference %.2g)", len(X), difference)
    return difference


def _batches(features: FeatureResult, fitted: DataFrame, holdout: DataFrame) -> tuple[list[str], list[str]]:
    """The window's batches with rows fitted on, and with rows held out (every batch when rows cannot be traced)."""
    window = list(features.batches)
    if not features.parts or len(features.parts) != len(window):
        return window, window
    fit_parts = {r[0] for r in fitted.select(PART).distinct().collect()}
    held_parts = {r[0] for r in holdout.select(PART).distinct().collect()}
    return [b for i, b in enumerate(window) if i in fit_parts], [b for i, b in enumerate(window) if i in held_parts]
