"""Spec -> graph of steps; pure Python, no Airflow import."""

from sluice.plan.build import SPARK_POOL, batches_asset, build_plan, drift_asset
from sluice.plan.model import DagPlan, PipelinePlan, Schedule, Step

__all__ = ["SPARK_POOL", "DagPlan", "PipelinePlan", "Schedule", "Step", "batches_asset", "build_plan", "drift_asset"]
