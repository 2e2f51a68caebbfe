"""Spec rules that need a closer look than the corpus gives: cron as Airflow parses it, the
feature function found without importing it, the model checks, locations on a valid spec."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from tests.spec.corpus import DEMO_SPEC, base_text

from sluice.spec.checks import lint_checks
from sluice.spec.errors import SpecError
from sluice.spec.loader import load_spec
from sluice.spec.models import CRON_PRESETS, cron_problem, parse_quantity

EXPRESSIONS = [
    "*/5 * * * *",
    "0 3 * * *",
    "0 0 * * 1-5",
    "@hourly",
    "@daily",
    "@weekly",
    "@monthly",
    "@quarterly",
    "@yearly",
    "every 5 minutes",
    "@hourlyy",
    "61 * * * *",
    "* * * *",
    "0 25 * * *",
    "0 0 * 13 *",
    "",
    "@continuous",
]


@pytest.mark.parametrize("expression", EXPRESSIONS)
def test_cron_rule_agrees_with_airflows_own_timetable(expression: str) -> None:
    from airflow.sdk import CronTriggerTimetable
    from airflow.sdk.exceptions import AirflowTimetableInvalid

    try:
        CronTriggerTimetable(expression, timezone="UTC").validate()
        airflow_ok = True
    except (AirflowTimetableInvalid, ValueError):
        airflow_ok = False
    assert (cron_problem(expression) is None) == airflow_ok


def test_cron_rule_also_refuses_a_date_that_never_comes() -> None:
    # Airflow's validate() accepts it; its scheduler then fails to find a next run.
    assert cron_problem("0 0 30 2 *") is not None


def test_cron_presets_are_airflows() -> None:
    from airflow.sdk.definitions.timetables._cron import CRON_PRESETS as AIRFLOW_PRESETS

    assert CRON_PRESETS == AIRFLOW_PRESETS


@pytest.mark.parametrize(
    ("quantity", "value"), [("250m", 0.25), ("1", 1.0), ("1.5", 1.5), ("512Mi", 512 * 2**20), ("2G", 2e9)]
)
def test_kubernetes_quantities(quantity: str, value: float) -> None:
    assert parse_quantity(quantity) == pytest.approx(value)


def write(tmp_path: Path, text: str, name: str = "spec") -> Path:
    path = tmp_path / f"{name}.pipeline.yaml"
    path.write_text(text)
    return path


def job_project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, source: str) -> Path:
    project = tmp_path / "project"
    (project / "jobs").mkdir(parents=True)
    (project / "jobs" / "feat.py").write_text(source)
    monkeypatch.setenv("SLUICE_PROJECT_DIR", str(project))
    text = base_text().replace("include/features/flights.py:build_features", "jobs/feat.py:build")
    return write(tmp_path, text)


@pytest.mark.parametrize(
    "source",
    [
        "def build(spark, inputs):\n    return inputs['batches']\n",
        "from features.common import build\n",
        "def _impl(spark, inputs, extra=1):\n    return 1\nbuild = _impl\n",
        "def build(*args):\n    return 1\n",
    ],
)
def test_feature_function_found_without_importing_the_file(tmp_path, monkeypatch, source) -> None:
    # The module would fail to import (features.common does not exist): it is only parsed.
    assert load_spec(job_project(tmp_path, monkeypatch, source)).spec.features.job == "jobs/feat.py:build"


@pytest.mark.parametrize(
    ("source", "fragment"),
    [
        ("def biuld(spark, inputs):\n    return 1\n", "did you mean 'biuld'"),
        ("def build(spark):\n    return 1\n", "takes 1 argument"),
        ("def build(spark, inputs)\n    return 1\n", "syntax error at line 1"),
    ],
)
def test_feature_function_problems_point_at_features_job(tmp_path, monkeypatch, source, fragment) -> None:
    path = job_project(tmp_path, monkeypatch, source)
    with pytest.raises(SpecError) as info:
        load_spec(path)
    (issue,) = info.value.issues
    assert issue.where == "features.job"
    assert fragment in issue.message + issue.hint
    assert path.read_text().splitlines()[issue.line - 1].strip().startswith("job:")


def test_the_demo_model_passes_the_import_checks(project_env) -> None:
    assert lint_checks(load_spec(DEMO_SPEC)) == []


def test_a_regressor_with_a_regression_metric_passes(project_env, tmp_path) -> None:
    text = base_text().replace("HistGradientBoostingClassifier", "HistGradientBoostingRegressor")
    text = text.replace("metric: roc_auc", "metric: rmse").replace("gate: {min: 0.65,", "gate: {max: 30,")
    assert lint_checks(load_spec(write(tmp_path, text))) == []


def test_columns_are_checked_only_against_a_declared_schema(project_env, tmp_path) -> None:
    # Without source.columns nothing is known about the batch: any column name loads.
    schema = re.compile(r"^\s+columns:$|^\s{4}\w+: (string|int|float|bool|timestamp|date)$|^\s+# Declared batch schema")
    undeclared = "\n".join(line for line in base_text().splitlines() if not schema.match(line)) + "\n"
    text = undeclared.replace("column: carrier}", "column: anything}")
    assert load_spec(write(tmp_path, text)).spec.source.columns is None
    # target and split.by name the feature job's output, not batch columns: never checked here.
    declared = text.replace(
        '  pattern: "*.parquet"',
        '  pattern: "*.parquet"\n  columns: {anything: string, arr_delay: float, origin: string, distance: float,'
        " month: int, sched_dep_time: int, sched_arr_time: int, carrier: string, dest: string}",
    )
    declared = declared.replace("target: is_delayed", "target: made_by_the_job")
    assert load_spec(write(tmp_path, declared, "declared")).spec.training.target == "made_by_the_job"


def test_issue_on_a_valid_spec_points_at_the_key_or_its_parent(project_env) -> None:
    loaded = load_spec(DEMO_SPEC)
    lines = DEMO_SPEC.read_text().splitlines()
    port = loaded.issue("deployment.local.port", "m", "h")
    assert "port: 5055" in lines[port.line - 1]
    unwritten = loaded.issue("evaluation.approval_timeout_hours", "m", "h")
    assert lines[unwritten.line - 1].startswith("evaluation:")
