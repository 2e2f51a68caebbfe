"""Train schedules from retrain_on: asset expressions and asset-or-time."""

from __future__ import annotations

from sluice.airflow.render import render_schedule
from sluice.plan.model import Schedule

BATCHES, DRIFT = "sluice://p/batches", "sluice://p/drift"


def test_two_assets_mean_either_of_them() -> None:
    from airflow.sdk import Asset, AssetAny

    rendered = render_schedule(Schedule(assets=(BATCHES, DRIFT)))
    assert isinstance(rendered, AssetAny), "a plain list would wait for both assets"
    assert rendered == Asset(BATCHES) | Asset(DRIFT)


def test_one_asset_is_the_asset_itself() -> None:
    from airflow.sdk import Asset

    assert render_schedule(Schedule(assets=(DRIFT,))) == Asset(DRIFT)


def test_cron_and_assets_give_asset_or_time() -> None:
    from airflow.sdk import AssetAny, AssetOrTimeSchedule

    rendered = render_schedule(Schedule(cron="0 3 * * *", assets=(BATCHES, DRIFT)))
    assert isinstance(rendered, AssetOrTimeSchedule)
    assert isinstance(rendered.asset_condition, AssetAny)


def test_cron_alone_and_nothing() -> None:
    assert render_schedule(Schedule(cron="0 3 * * *")) == "0 3 * * *"
    assert render_schedule(Schedule()) is None
