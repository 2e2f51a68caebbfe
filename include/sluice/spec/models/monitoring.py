"""The ``monitoring`` section: drift methods, thresholds and samples."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from sluice.spec.base import StrictModel
from sluice.spec.models.rules import MAX_SEED

DriftMethod = Literal[
    "wasserstein",
    "jensenshannon",
    "ks",
    "chisquare",
    "z",
    "psi",
    "kl_div",
    "hellinger",
    "anderson",
    "cramer_von_mises",
    "mannw",
    "ed",
    "es",
    "t_test",
    "TVD",
    "g_test",
    "fisher_exact",
    "empirical_mmd",
]


class Drift(StrictModel):
    """How <pipeline>__monitor compares a new batch with the champion's training data (Evidently)."""

    drift_share: float = Field(
        0.5,
        gt=0,
        le=1,
        description=(
            "Share of the compared columns that must drift for the batch to count as drifted "
            "(Evidently's dataset drift: drifted columns / columns >= drift_share)."
        ),
    )
    sample_size: int = Field(
        5000,
        ge=100,
        le=10_000_000,
        description=(
            "Rows drawn (seeded, without replacement) from the reference and from the new data "
            "before comparing; a side with fewer rows is used whole."
        ),
    )
    seed: int = Field(42, ge=0, le=MAX_SEED, description="Seed of the sampling, so a re-run gives the same numbers.")
    columns: list[str] | None = Field(
        None,
        min_length=1,
        description=(
            "Batch columns to compare. Default: the batch columns the champion reads (its features "
            "that are raw batch columns), or every shared column when it reads none directly."
        ),
    )
    methods: dict[str, DriftMethod] = Field(
        default_factory=dict,
        description=(
            "Drift method per column (Evidently stattest names), e.g. {distance: ks}. Default, whatever "
            "the sample size: Wasserstein distance (normed) for numbers with more than 5 distinct "
            "values, Jensen-Shannon distance for categories and numbers with at most 5, both drifting "
            "at 0.1 (Evidently's choice above 1,000 rows; below that Evidently would pick p-value "
            "tests, which flag calm small batches)."
        ),
    )
    threshold: float | None = Field(
        None,
        gt=0,
        le=100,
        description=(
            "Per-column threshold for every column. Default: the method's own (0.1 for the "
            "distances, 0.05 for the p-value tests). Distances drift at or above it, p-values below it."
        ),
    )
    min_rows: int = Field(
        1000,
        ge=1,
        le=10_000_000,
        description=(
            "Fewest rows each side (the champion's training data, the new batches) must have to be "
            "compared. Below it the verdict is 'not enough data': no alert, no drift event, and the "
            "new batches are compared again together with the next ones."
        ),
    )


class Monitoring(StrictModel):
    """The <pipeline>__monitor DAG: drift of every new batch against the champion's data."""

    enabled: bool = Field(True, description="Build <pipeline>__monitor (runs on every new validated batch).")
    drift: Drift = Field(default_factory=Drift, description="Drift settings.")  # type: ignore[arg-type]
