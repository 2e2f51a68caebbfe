"""A feature job that needs no reference table: the bad-spec corpus's feature-column cases.

``sluice lint`` runs it on generated rows of the demo's declared schema to learn its output
(``is_delayed``, ``month``, ``day``, ``carrier``, ``origin``, ``dest``, ``distance``).
"""

from __future__ import annotations

from typing import Any


def build_features(spark: Any, inputs: dict[str, Any]) -> Any:
    """Label flights arriving 15+ minutes late; keep the schedule and the route."""
    from pyspark.sql import functions as F

    flights = inputs["batches"].where(F.col("arr_delay").isNotNull())
    return flights.select(
        (F.col("arr_delay") >= 15).cast("int").alias("is_delayed"),
        "month",
        "day",
        "carrier",
        "origin",
        "dest",
        "distance",
    )
