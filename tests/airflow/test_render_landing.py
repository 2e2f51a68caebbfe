"""The wait for new files renders as a deferrable sensor for both kinds of landing zone."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from sluice.plan import build_plan
from sluice.spec.loader import load_spec

REPO = Path(__file__).resolve().parents[2]
DEMO = yaml.safe_load((REPO / "dags" / "flights_delay.pipeline.yaml").read_text())


def _ingest(tmp_path: Path, source: dict[str, object]):  # type: ignore[no-untyped-def]
    from sluice.airflow.render import render_pipeline

    path = tmp_path / "p.pipeline.yaml"
    path.write_text(yaml.safe_dump(DEMO | {"source": source}))
    ingest = next(d for d in render_pipeline(build_plan(load_spec(path))) if d.dag_id.endswith("__ingest"))
    return ingest


@pytest.fixture(autouse=True)
def _project(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLUICE_PROJECT_DIR", str(REPO))


def test_s3_source_renders_a_deferrable_s3_key_sensor_and_passes_the_inbox_to_land(tmp_path: Path) -> None:
    source = {
        "uri": "s3://landing/flights/in",
        "pattern": "*.parquet",
        "conn_id": "minio",
        "detect": {"poll_seconds": 7},
    }
    ingest = _ingest(tmp_path, source)
    sensor = ingest.get_task("wait_for_files")
    assert type(sensor).__name__ == "S3KeySensor"
    assert sensor.deferrable and sensor.use_regex and not sensor.wildcard_match
    assert (sensor.bucket_name, sensor.aws_conn_id, sensor.poke_interval) == ("landing", "minio", 7)
    assert re.match(sensor.bucket_key, "flights/in/jan.parquet")
    assert not re.match(sensor.bucket_key, "flights/in/_processed/jan.parquet")
    land = ingest.get_task("land")
    assert land.op_kwargs["landing"] == {
        "source": "s3",
        "bucket": "landing",
        "prefix": "flights/in",
        "pattern": "*.parquet",
        "conn_id": "minio",
    }


def test_local_source_renders_a_deferrable_file_sensor(tmp_path: Path) -> None:
    ingest = _ingest(tmp_path, {"uri": str(tmp_path / "in"), "pattern": "*.csv", "format": "csv"})
    sensor = ingest.get_task("wait_for_files")
    assert type(sensor).__name__ == "InboxFileSensor" and sensor.deferrable
    assert sensor.filepath == f"{tmp_path}/in/*.csv"
    assert sensor.settle_seconds == 3  # the spec's detect.settle_seconds (default): the trigger's second look
    assert ingest.get_task("land").op_kwargs["landing"] == {"source": "local", "glob": f"{tmp_path}/in/*.csv"}
    assert sensor.csv, "a CSV landing folder: the sensor holds a file whose last line is cut, as land does"


def test_land_sends_the_landing_alert_on_success_when_the_spec_has_recipients(tmp_path: Path) -> None:
    ingest = _ingest(tmp_path, {"uri": str(tmp_path / "in"), "pattern": "*.parquet"})
    (notifier,) = ingest.get_task("land").on_success_callback
    assert type(notifier).__name__ == "AlertNotifier" and notifier.alert == "landing"
    assert notifier.to == DEMO["alerts"]["email"]
