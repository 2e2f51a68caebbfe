"""The Evidently 0.7 adapter: run a data-drift report and read its per-column results.

Evidently is imported inside the functions: the DAG file is parsed every few seconds and
must stay light.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict

from sluice.spec.models import Drift

if TYPE_CHECKING:
    import pandas as pd


class ColumnDrift(BaseModel):
    """Drift of one column: Evidently's numbers and verdict.

    Part of the monitor's :class:`~sluice.steps.records.DriftResult` record (re-exported by
    :mod:`sluice.steps.records`): it lives here, below the steps, because this adapter is
    what reads it out of Evidently's report. Frozen, and unknown fields are refused, like
    every step record.

    Attributes:
        column: Batch column.
        method: Evidently's display name of the method (e.g. 'Wasserstein distance (normed)', 'K-S p_value').
        score: Distance, or p-value for the statistical tests.
        threshold: Distances drift at or above it; p-values below it.
        drifted: Evidently's verdict for the column.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", defer_build=True)

    column: str
    method: str
    score: float
    threshold: float
    drifted: bool


def _typed_sides(
    reference: pd.DataFrame, current: pd.DataFrame, columns: list[str]
) -> tuple[pd.DataFrame, pd.DataFrame, list[str], list[str]]:
    """Both sides with one representation per column: numbers as float64, everything else as strings.

    Returns:
        Reference, current, numerical columns, categorical columns.
    """
    import pandas as pd

    numerical = [
        c
        for c in columns
        if pd.api.types.is_numeric_dtype(reference[c])
        and pd.api.types.is_numeric_dtype(current[c])
        and not pd.api.types.is_bool_dtype(reference[c])
    ]
    categorical = [c for c in columns if c not in numerical]
    ref, cur = reference[columns].copy(), current[columns].copy()
    for col in categorical:  # one representation on both sides (e.g. int codes vs strings)
        ref[col] = ref[col].astype("string")
        cur[col] = cur[col].astype("string")
    for col in numerical:
        ref[col] = ref[col].astype("float64")
        cur[col] = cur[col].astype("float64")
    return ref, cur, numerical, categorical


#: A numerical column with at most this many distinct values is compared as categories
#: (Evidently's own rule for its large-sample defaults).
FEW_VALUES = 5


def default_methods(
    reference: pd.DataFrame, current: pd.DataFrame, numerical: list[str], categorical: list[str]
) -> dict[str, str]:
    """The method of each column the spec does not name: a distance, whatever the sample size.

    Wasserstein distance (normed by the reference's spread) for numbers with more than
    :data:`FEW_VALUES` distinct values, Jensen-Shannon distance for categories and for numbers
    with few values; both drift at 0.1 by default. These are Evidently's defaults above 1,000
    reference rows; below that Evidently switches to K-S and chi-square p-values, and its
    chi-square gives p = 0 as soon as the new data holds a category the reference lacks, so a
    calm pipeline of small batches would drift every month. A distance measures how far the
    data moved, not how sure a test is that it moved at all.
    """
    import pandas as pd

    methods = {c: "jensenshannon" for c in categorical}
    for col in numerical:
        distinct = pd.concat([reference[col], current[col]]).nunique()
        methods[col] = "wasserstein" if distinct > FEW_VALUES else "jensenshannon"
    return methods


def drift_report(
    reference: pd.DataFrame, current: pd.DataFrame, columns: list[str], drift: Drift
) -> tuple[list[ColumnDrift], Any]:
    """Run Evidently's ``DataDriftPreset`` on the given columns.

    Numbers (not booleans) are numerical columns, everything else categorical. A column that
    is empty on either side cannot be compared and is left out (and so counts for nothing).
    Columns without a method in ``drift.methods`` get :func:`default_methods`.

    Returns:
        Per-column results and the Evidently snapshot (for ``save_html``).
    """
    import warnings

    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    usable = [c for c in columns if reference[c].notna().any() and current[c].notna().any()]
    if not usable:
        raise ValueError(f"none of the columns {columns} has values on both sides: nothing to compare")
    ref, cur, numerical, categorical = _typed_sides(reference, current, usable)
    definition = DataDefinition(numerical_columns=numerical, categorical_columns=categorical)
    methods = default_methods(ref, cur, numerical, categorical) | {
        c: m for c, m in drift.methods.items() if c in usable
    }
    preset = DataDriftPreset(
        columns=usable,
        drift_share=drift.drift_share,
        per_column_method=methods,
        threshold=drift.threshold,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # scipy/pandas chatter about tiny categories
        snapshot = Report([preset], include_tests=True).run(
            Dataset.from_pandas(cur, data_definition=definition),
            Dataset.from_pandas(ref, data_definition=definition),
        )
    return column_scores(snapshot.dict()), snapshot


def column_scores(data: dict[str, Any]) -> list[ColumnDrift]:
    """The per-column results of a snapshot's ``dict()``: metric values, and verdicts from its tests."""
    verdicts = {
        t["metric_config"]["params"].get("column"): t["status"] == "FAIL"
        for t in data["tests"]
        if t["metric_config"]["params"].get("type", "").endswith("ValueDrift")
    }
    results = []
    for metric in data["metrics"]:
        config = metric["config"]
        if not config.get("type", "").endswith("ValueDrift"):
            continue
        column = config["column"]
        results.append(
            ColumnDrift(
                column=column,
                method=_display_name(str(config["method"])),
                score=float(metric["value"]),
                threshold=float(config["threshold"]),
                drifted=bool(verdicts[column]),
            )
        )
    return results


def _display_name(method: str) -> str:
    """Evidently's display name for a method given by name ('ks' -> 'K-S p_value')."""
    from evidently.legacy.calculations.stattests import registry

    by_type = registry._registered_stat_tests.get(method)
    return next(iter(by_type.values())).display_name if by_type else method
