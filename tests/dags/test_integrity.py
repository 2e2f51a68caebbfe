"""DAG integrity: every spec in dags/ compiles, stays light at parse time, and fails alone."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REPO

PROBE = Path(__file__).with_name("parse_probe.py")


def parse(folder: Path, project_dir: Path = REPO) -> dict[str, Any]:
    """Parse ``folder`` in a fresh interpreter (clean sys.modules) and return the probe's report."""
    env = dict(os.environ, SLUICE_PROJECT_DIR=str(project_dir), AIRFLOW__CORE__LOAD_EXAMPLES="False")
    out = subprocess.run(
        [sys.executable, str(PROBE), str(folder)], env=env, capture_output=True, text=True, timeout=300, check=True
    ).stdout
    return dict(json.loads(out.strip().splitlines()[-1]))


@pytest.fixture(scope="module")
def report() -> dict[str, Any]:
    return parse(REPO / "dags")


def specs() -> list[str]:
    return sorted(p.name.removesuffix(".pipeline.yaml") for p in (REPO / "dags").glob("*.pipeline.yaml"))


def test_no_import_errors(report: dict[str, Any]) -> None:
    assert report["import_errors"] == {}


@pytest.mark.parametrize("pipeline", specs())
def test_every_pipeline_has_its_dags_tags_and_retries(report: dict[str, Any], pipeline: str) -> None:
    for role in ("ingest", "train", "monitor"):
        dag = report["dags"][f"{pipeline}__{role}"]
        assert {"sluice", f"pipeline:{pipeline}", role} <= set(dag["tags"])
        assert dag["max_active_runs"] == 1 and dag["catchup"] is False
    train = report["dags"][f"{pipeline}__train"]["retries"]
    assert train["gate"] == 0, "a gate verdict is not transient: never retried"
    assert all(train[t] >= 1 for t in ("build_features", "train", "evaluate", "promote", "deploy"))
    assert report["dags"][f"{pipeline}__ingest"]["retries"]["check_batches"] == 0
    monitor = report["dags"][f"{pipeline}__monitor"]["retries"]
    assert "check_drift" not in monitor, "drift is news, not a failed run"
    assert monitor["alert_drift"] >= 1, "an email lost to a passing SMTP hiccup is sent on the retry"


def test_parsing_imports_nothing_heavy_and_touches_no_network_or_database(report: dict[str, Any]) -> None:
    assert report["heavy_modules"] == []
    assert report["heavy_anywhere"] == []
    assert report["network_attempts"] == []
    assert report["dags"], "parsed with an unusable database and no network, and still built the DAGs"


def _project_with_broken_spec(tmp_path: Path) -> Path:
    dags = tmp_path / "dags"
    dags.mkdir()
    for f in (REPO / "dags").iterdir():
        if f.is_file():
            shutil.copy(f, dags / f.name)
    good = (REPO / "dags" / "flights_delay.pipeline.yaml").read_text()
    (dags / "broken.pipeline.yaml").write_text(
        good.replace("pipeline: flights_delay", "pipeline: broken_one").replace("  pattern:", "  patern:")
    )
    return dags


def test_broken_spec_is_a_placeholder_dag_with_file_line_and_hint_and_others_still_load(tmp_path: Path) -> None:
    dags = _project_with_broken_spec(tmp_path)
    report = parse(dags)
    assert report["import_errors"] == {}, "an import error would mark every DAG of the file stale"
    assert {"flights_delay__ingest", "flights_delay__train", "flights_delay__monitor"} <= set(report["dags"])
    assert not any(d.startswith("broken_one") for d in report["dags"])
    placeholder = report["dags"]["broken__spec_error"]
    assert "sluice:spec-error" in placeholder["tags"]
    line = next(i for i, t in enumerate((dags / "broken.pipeline.yaml").read_text().splitlines(), 1) if "patern" in t)
    assert f"broken.pipeline.yaml:{line}:" in placeholder["description"]
    assert "did you mean 'pattern'?" in placeholder["description"]
