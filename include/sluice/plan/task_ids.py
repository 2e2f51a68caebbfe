"""The task ids of the generated DAGs whose results other tasks read (one place for the wiring).

The task callables in :mod:`sluice.airflow.tasks` pull the XCom of these tasks by these
names; the plan gives its steps the same ids.
"""

from __future__ import annotations

from enum import StrEnum


class TaskId(StrEnum):
    """Task ids whose XCom return value another task (or an extra link) reads."""

    VALIDATE = "validate"
    PUBLISH = "publish"
    BUILD_FEATURES = "build_features"
    TRAIN = "train"
    EVALUATE = "evaluate"
    REFIT = "refit"
    PROMOTE = "promote"
    COMPUTE_DRIFT = "compute_drift"
