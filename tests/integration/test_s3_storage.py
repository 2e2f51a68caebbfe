"""A pipeline whose ``storage.root`` is an S3 bucket: every reader and writer reaches the bucket
through the spec's Airflow connection, and nothing of the pipeline lands on the local disk."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient

from sluice.airflow.runtime.connections import open_pipeline_store
from sluice.services.landing import LocalInbox
from sluice.spec.loader import load_spec
from sluice.steps.ingest import land_new_files
from sluice.steps.validate import validate_batch
from tests.conftest import REPO, Project, S3Server

pytestmark = pytest.mark.integration
BUCKET = "sluice-state"


def _month(seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = 300
    return pd.DataFrame(
        {
            "year": 2013,
            "month": 1 + seed,
            "day": rng.integers(1, 28, rows),
            "dep_time": rng.integers(500, 2300, rows).astype(float),
            "sched_dep_time": rng.integers(500, 2300, rows),
            "dep_delay": rng.normal(5, 20, rows).round(0),
            "arr_delay": rng.normal(5, 25, rows).round(0),
            "carrier": rng.choice(["UA", "AA", "DL"], rows),
            "origin": rng.choice(["EWR", "JFK", "LGA"], rows),
            "dest": rng.choice(["ATL", "ORD", "LAX"], rows),
            "distance": rng.integers(200, 2500, rows),
            "hour": rng.integers(5, 23, rows),
        }
    )


def _s3_project(project: Project, s3: S3Server, conn_id: str | None = "sluice_state") -> Path:
    s3.client.create_bucket(Bucket=BUCKET)
    storage = {"root": f"s3://{BUCKET}/team-a"} | ({"conn_id": conn_id} if conn_id else {})
    spec = project.write_spec(storage=storage, source={"uri": "data/landing/flights", "pattern": "*.parquet"})
    project.landing.mkdir(parents=True)
    for seed in (0, 1):
        _month(seed).to_parquet(project.landing / f"flights_2013-0{seed + 1}.parquet", index=False)
    return spec


def test_batches_reports_and_status_live_in_the_bucket_only(
    project: Project, s3: S3Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_SLUICE_STATE", json.dumps(s3.connection))
    spec_path = _s3_project(project, s3)
    loaded = load_spec(spec_path)
    store = open_pipeline_store(loaded)

    landed = land_new_files(LocalInbox(project.landing, "*.parquet"), store, "manual__1")
    assert len(landed.new) == 2
    first = landed.new[0]
    outcome = validate_batch(store, first, loaded.spec.validation, "parquet")
    assert outcome.status == "accepted"

    keys = [key for key in _bucket_keys(s3, BUCKET) if key.startswith("team-a/flights_delay/batches/")]
    for batch_id in landed.new:
        # Each batch once, committed by its record (written last).
        assert sum(key == f"team-a/flights_delay/batches/{batch_id}/batch.json" for key in keys) == 1
    assert f"team-a/flights_delay/batches/{first}/clean.parquet" in keys
    assert not any(".tmp-" in key for key in keys)
    # No source.columns: the first accepted batch's schema is pinned in the bucket too.
    assert "team-a/flights_delay/schema/pinned.json" in _bucket_keys(s3, BUCKET)
    # Nothing of the pipeline on the local disk: no default storage folder was made.
    assert not (project.root / "data" / "sluice").exists()

    # The reports page reads the validation report from the bucket.
    from sluice.airflow.views.reports import create_app

    client = TestClient(create_app(project.dags, authenticate=False))
    got = client.get(f"/reports/flights_delay/batches/{first}/validation.json")
    assert got.status_code == 200 and got.json()["status"] == "accepted"

    # `sluice status` (a fresh process, the connection from the environment) lists both batches.
    shown = _sluice(project, "status", spec_path)
    assert shown.returncode == 0, shown.stderr
    assert first in shown.stdout and "accepted" in shown.stdout
    assert landed.new[1] in shown.stdout
    assert f"schema: pinned from batch {first}" in shown.stdout


def test_lint_names_the_missing_storage_connection_with_file_and_line(
    project: Project, s3: S3Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("AIRFLOW_CONN_SLUICE_STATE", raising=False)
    spec_path = _s3_project(project, s3, conn_id="sluice_state")
    linted = _sluice(project, "lint", spec_path)
    assert linted.returncode == 1
    line = next(n for n, text in enumerate(spec_path.read_text().splitlines(), 1) if "conn_id: sluice_state" in text)
    assert f"{spec_path}:{line}:" in linted.stderr
    assert "storage: Airflow connection 'sluice_state' does not exist" in linted.stderr
    assert "airflow connections add sluice_state" in linted.stderr

    # With the connection defined, the same spec lints clean.
    monkeypatch.setenv("AIRFLOW_CONN_SLUICE_STATE", json.dumps(s3.connection))
    again = _sluice(project, "lint", spec_path)
    assert again.returncode == 0, again.stderr


def _sluice(project: Project, command: str, spec_path: Path) -> subprocess.CompletedProcess[str]:
    """``sluice <command> <spec>`` in a fresh process in the project, the connections from the environment."""
    return subprocess.run(
        [sys.executable, "-m", "sluice.cli", command, str(spec_path)],
        capture_output=True,
        text=True,
        cwd=project.root,
        env={**os.environ, "PYTHONPATH": str(REPO / "include")},
        timeout=120,
    )


def _bucket_keys(s3: S3Server, bucket: str) -> list[str]:
    pages = s3.client.get_paginator("list_objects_v2").paginate(Bucket=bucket)
    return sorted(obj["Key"] for page in pages for obj in page.get("Contents", []))
