"""The ``evaluation`` section: metric, gate thresholds, approval; the metrics and their ranges."""

from __future__ import annotations

import math
from typing import Literal

from pydantic import Field, model_validator

from sluice.spec.base import StrictModel, rule

HIGHER_IS_BETTER = {
    "roc_auc": True,
    "accuracy": True,
    "f1": True,
    "precision": True,
    "recall": True,
    "log_loss": False,
    "r2": True,
    "rmse": False,
    "mae": False,
}


#: Metrics of a classifier and of a regressor (``sluice lint`` checks the model class's kind).
CLASSIFICATION_METRICS = frozenset({"roc_auc", "accuracy", "f1", "precision", "recall", "log_loss"})


REGRESSION_METRICS = frozenset({"r2", "rmse", "mae"})


#: Range each metric can take; a gate outside it can never be met (or always is).
METRIC_RANGE: dict[str, tuple[float, float]] = {
    **{m: (0.0, 1.0) for m in ("roc_auc", "accuracy", "f1", "precision", "recall")},
    "log_loss": (0.0, math.inf),
    "r2": (-math.inf, 1.0),
    "rmse": (0.0, math.inf),
    "mae": (0.0, math.inf),
}


class Gate(StrictModel):
    """When a candidate may replace the champion."""

    min: float | None = Field(None, description="Floor for higher-is-better metrics.")
    max: float | None = Field(None, description="Ceiling for lower-is-better metrics.")
    max_regression_vs_champion: float = Field(
        0.0, ge=0, le=1e9, description="How much worse than the champion, on the same holdout, still passes."
    )


class Evaluation(StrictModel):
    """Scoring and the promotion gate."""

    metric: Literal["roc_auc", "accuracy", "f1", "precision", "recall", "log_loss", "r2", "rmse", "mae"] = Field(
        description="Scored on the holdout for candidate and champion alike."
    )
    gate: Gate = Field(default_factory=Gate, description="Thresholds a candidate must meet.")  # type: ignore[arg-type]
    approval: Literal["auto", "manual"] = Field(
        "auto",
        description=(
            "'auto' promotes on a passed gate; 'manual' waits for a person to approve in the Airflow UI "
            "(Required Actions) before promoting; reject or timeout keeps the champion."
        ),
    )
    approval_timeout_hours: float = Field(
        24,
        gt=0,
        le=24 * 30,
        description=(
            "With approval 'manual': hours to wait for a response (at most 720, 30 days); then the approve "
            "task fails, champion kept."
        ),
    )

    @model_validator(mode="after")
    def _gate_matches_metric(self) -> Evaluation:
        higher = HIGHER_IS_BETTER[self.metric]
        if higher and self.gate.max is not None:
            raise rule(
                f"{self.metric} is higher-is-better: use gate.min, not gate.max", "rename max to min", "gate.max"
            )
        if not higher and self.gate.min is not None:
            raise rule(f"{self.metric} is lower-is-better: use gate.max, not gate.min", "rename min to max", "gate.min")
        low, high = METRIC_RANGE[self.metric]
        span = f"[{low:g}, {high:g}]".replace("inf", "∞")
        for key, value in (("min", self.gate.min), ("max", self.gate.max)):
            if value is not None and not low <= value <= high:
                raise rule(
                    f"gate.{key} {value:g} is outside the range of {self.metric} {span}: "
                    + ("no model can meet it" if (key == "min") == (value > high) else "every model meets it"),
                    f"choose a threshold within {span}",
                    f"gate.{key}",
                )
        if high - low < math.inf and self.gate.max_regression_vs_champion > high - low:
            raise rule(
                f"gate.max_regression_vs_champion {self.gate.max_regression_vs_champion:g} is wider than "
                f"the whole range of {self.metric} {span}: every candidate passes",
                "allow a small regression such as 0.01",
                "gate.max_regression_vs_champion",
            )
        return self
