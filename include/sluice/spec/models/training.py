"""The ``training`` section: model, columns, split, window, sample, engine."""

from __future__ import annotations

import math
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field, field_validator, model_validator

from sluice.spec.base import StrictModel, rule
from sluice.spec.models.rules import MAX_SEED, _did_you_mean, _not_a_bool


class Split(StrictModel):
    """How the holdout is chosen."""

    by: str | None = Field(None, description="Column whose latest value is the holdout (time-based split).")
    holdout: Literal["latest", "random"] = Field(
        "latest", description="'latest': the latest value of 'by' is held out; 'random': a seeded random share."
    )
    fraction: float = Field(
        0.2,
        gt=0,
        lt=1,
        description="Holdout share for a random split, and the fallback while only one value of 'by' exists.",
    )
    seed: int = Field(42, ge=0, le=MAX_SEED, description="Seed of the random split.")


class Window(StrictModel):
    """Which accepted batches the model trains on: the last N, or those landed within a time span."""

    batches: int | None = Field(None, ge=1, le=100_000, description="The last N accepted batches (by landing time).")
    days: float | None = Field(
        None,
        gt=0,
        le=100_000,
        description="Batches landed within this many days of the newest accepted batch (its landing time).",
    )

    @model_validator(mode="after")
    def _one_bound(self) -> Window:
        if (self.batches is None) == (self.days is None):
            raise rule(
                "window needs exactly one of batches or days",
                "write e.g. window: {batches: 12} or window: {days: 90}; leave window out to train on all history",
            )
        return self


#: ``training.model`` with ``training.engine: spark``: XGBoost's PySpark estimators (issue 27).
SPARK_MODELS = {
    "xgboost.spark.SparkXGBClassifier": "classifier",
    "xgboost.spark.SparkXGBRegressor": "regressor",
}


#: ``training.params`` with ``training.engine: spark``: the booster's own settings and how many
#: Spark tasks train it. Column names, devices and callbacks are sluice's to set.
SPARK_PARAMS = frozenset(
    {
        "n_estimators",
        "max_depth",
        "max_leaves",
        "max_bin",
        "grow_policy",
        "learning_rate",
        "min_child_weight",
        "max_delta_step",
        "subsample",
        "colsample_bytree",
        "colsample_bylevel",
        "colsample_bynode",
        "reg_alpha",
        "reg_lambda",
        "gamma",
        "scale_pos_weight",
        "tree_method",
        "random_state",
        "num_workers",
    }
)


class Training(StrictModel):
    """Model class, parameters and columns."""

    target: str = Field(description="Label column produced by the feature job.")
    engine: Literal["local", "spark"] = Field(
        "local",
        description=(
            "'local': the train task reads the feature table and fits training.model in its own process. "
            "'spark': the fit runs on the pipeline's Spark (features.engine / master / conf, as the feature "
            "step) with XGBoost's PySpark estimator (model xgboost.spark.SparkXGBClassifier or "
            "SparkXGBRegressor); the task holds only the holdout and a sample, and logs the booster in a "
            "scikit-learn pipeline, served like any other model (no JVM, no Spark)."
        ),
    )
    model: str = Field(
        pattern=r"^[A-Za-z_][\w.]*\.[A-Za-z_]\w*$",
        description=(
            "Import path of a scikit-learn compatible estimator class; with engine 'spark', "
            "xgboost.spark.SparkXGBClassifier or xgboost.spark.SparkXGBRegressor."
        ),
    )
    params: dict[str, Any] = Field(
        default_factory=dict,
        description=(
            "Keyword arguments of the model class; with engine 'spark', the booster's: "
            + ", ".join(sorted(SPARK_PARAMS))
            + " (num_workers: Spark tasks that train it, default 1)."
        ),
    )
    features: list[str] | None = Field(
        None, description="Columns to train on; default: every column but target and drop."
    )
    drop: list[str] = Field(default_factory=list, description="Columns never used as features.")
    split: Split = Field(default_factory=Split, description="How the holdout is chosen.")  # type: ignore[arg-type]
    window: Window | None = Field(
        None, description="Which accepted batches to train on (last N or a time span); default: all of them."
    )
    refit: Literal["none", "after_gate"] = Field(
        "none",
        description=(
            "'none': the evaluated candidate is promoted as it is (fitted without the holdout). "
            "'after_gate': once it passes the gate (and approval), it is fitted again on train + holdout "
            "and that model is promoted, so the served model has seen the latest batch."
        ),
    )
    refit_tolerance: float = Field(
        0.02,
        ge=0,
        le=1,
        description=(
            "With refit 'after_gate': how much worse than the evaluated model the refit may score on the "
            "evaluated model's training rows, as a share of the evaluated score (0.02 = 2%); worse blocks "
            "promotion."
        ),
    )
    sample: Annotated[int | float | None, BeforeValidator(_not_a_bool)] = Field(
        None,
        description=(
            "Fit on a seeded sample of the training rows (the holdout is never sampled): an integer is a "
            "number of rows (1000000), a number above 0 and at most 1 a share of them (0.25); stratified by "
            "the target for classification metrics. Default: every training row."
        ),
    )
    seed: int | None = Field(
        None,
        ge=0,
        le=MAX_SEED,
        description="Seed of the training sample; default: params.random_state when it is an integer, else split.seed.",
    )
    max_memory_gb: float | None = Field(
        None,
        gt=0,
        le=1_000_000,
        description=(
            "Memory (GiB) the train step may use; it refuses to start a fit its estimate says needs more, "
            "naming the numbers (set sample, or give the worker more memory). Default: what the step uses "
            "when it starts plus 60% of the memory available then (the machine's, or the container's limit)."
        ),
    )

    @field_validator("params")
    @classmethod
    def _finite_params(cls, value: dict[str, Any]) -> dict[str, Any]:
        def bad(v: Any) -> bool:
            if isinstance(v, float):
                return not math.isfinite(v)
            if isinstance(v, dict):
                return any(bad(x) for x in v.values())
            if isinstance(v, list):
                return any(bad(x) for x in v)
            return False

        for key, v in value.items():
            if bad(v):
                raise rule(f"params.{key} is not a finite number", "write a finite number (not .nan or .inf)", key)
        return value

    @field_validator("sample")
    @classmethod
    def _sample_size(cls, value: int | float | None) -> int | float | None:
        if isinstance(value, int) and value < 1:
            raise rule(
                f"sample {value} is not a number of rows",
                "write a number of rows (sample: 1000000) or a share above 0 and at most 1 (sample: 0.25)",
            )
        if isinstance(value, float) and not 0 < value <= 1:
            rows = f"sample: {int(value)}" if value.is_integer() and value > 1 else "sample: 1000000"
            raise rule(
                f"sample {value} is neither a share (above 0, at most 1) nor a whole number of rows",
                f"write a share such as sample: 0.25, or a number of rows without a decimal point ({rows})",
            )
        return value

    @model_validator(mode="after")
    def _engine_fits_model(self) -> Training:
        spark_model = self.model in SPARK_MODELS
        if self.engine == "local":
            if spark_model:
                raise rule(
                    f"model '{self.model}' trains on Spark but training.engine is 'local'",
                    "add engine: spark to training, or name a scikit-learn model such as "
                    "sklearn.ensemble.HistGradientBoostingClassifier",
                    "model",
                )
            return self
        if not spark_model:
            raise rule(
                f"training.engine 'spark' cannot fit '{self.model}': only XGBoost's PySpark estimators train "
                "on the cluster",
                f"use model: {' or '.join(SPARK_MODELS)}, or engine: local for a scikit-learn model",
                "model",
            )
        for key, value in self.params.items():
            if key not in SPARK_PARAMS:
                close = _did_you_mean(key, sorted(SPARK_PARAMS))
                raise rule(
                    f"params.{key} is not a setting sluice passes to {self.model.rsplit('.', 1)[1]}",
                    close or f"use only: {', '.join(sorted(SPARK_PARAMS))}",
                    f"params.{key}",
                )
            if key == "num_workers" and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise rule(
                    f"params.num_workers {value!r} is not a number of Spark tasks",
                    "write a whole number of at least 1, at most the cluster's cores",
                    "params.num_workers",
                )
        for key, hint, set_ in (
            (
                "max_memory_gb",
                "size the executors with features.conf (spark.executor.memory) instead",
                self.max_memory_gb is not None,
            ),
            ("refit", "leave refit out (a refit after the gate is not done on Spark yet)", self.refit != "none"),
        ):
            if set_:
                raise rule(
                    f"training.{key} does not apply with training.engine 'spark': the fit runs on Spark's "
                    "executors, not in the train task",
                    f"remove {key}; {hint}",
                    key,
                )
        return self

    @model_validator(mode="after")
    def _target_is_not_a_feature(self) -> Training:
        if self.target in self.drop:
            raise rule("training.drop must not contain the target", f"remove '{self.target}' from drop", "drop")
        if self.features is not None and self.target in self.features:
            raise rule(
                f"training.features must not contain the target '{self.target}' (it would leak the label)",
                f"remove '{self.target}' from features",
                "features",
            )
        return self
