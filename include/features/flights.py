"""Feature job for the flights_delay demo pipeline (user code a spec points at).

Only what is known before departure is used: schedule, route, carrier, the weather at the
origin in the scheduled hour and the plane. ``dep_delay``, ``arr_time`` and the like would
leak the answer.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

WEATHER_COLUMNS = ["temp", "dewp", "humid", "wind_dir", "wind_speed", "wind_gust", "precip", "pressure", "visib"]


def build_features(spark: SparkSession, inputs: dict[str, DataFrame]) -> DataFrame:
    """Join flights with weather and planes; label flights arriving 15+ minutes late.

    Args:
        spark: The session sluice made for this run.
        inputs: ``batches`` (validated flight rows), ``weather`` and ``planes``.

    Returns:
        One row per flight with a label, ``is_delayed``; cancelled flights (no arrival
        delay) are dropped because their label is unknown.
    """
    from pyspark.sql import functions as F

    flights = inputs["batches"].where(F.col("arr_delay").isNotNull())
    weather = inputs["weather"].select("origin", "time_hour", *WEATHER_COLUMNS)
    planes = inputs["planes"].select(
        "tailnum",
        F.col("year").alias("plane_year"),
        "seats",
        "engines",
        F.col("type").alias("plane_type"),
    )
    joined = flights.join(weather, ["origin", "time_hour"], "left").join(planes, ["tailnum"], "left")
    day = F.make_date(F.col("year"), F.col("month"), F.col("day"))
    return joined.select(
        (F.col("arr_delay") >= 15).cast("int").alias("is_delayed"),
        "month",
        F.dayofweek(day).alias("day_of_week"),
        "day",
        (F.col("sched_dep_time") / 100).cast("int").alias("dep_hour"),
        "sched_dep_time",
        "sched_arr_time",
        "carrier",
        "origin",
        "dest",
        "distance",
        *WEATHER_COLUMNS,
        (F.col("year") - F.col("plane_year")).alias("plane_age"),
        "seats",
        "engines",
        "plane_type",
    )
