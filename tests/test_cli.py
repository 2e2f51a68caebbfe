"""The ``sluice`` command line: lint, plan, schema."""

from __future__ import annotations

import json
import re
from pathlib import Path

import jsonschema
import pytest
import yaml

from sluice.cli import main

PROJECT_DIR = Path(__file__).resolve().parents[1]
DEMO_SPEC = PROJECT_DIR / "dags" / "flights_delay.pipeline.yaml"


@pytest.fixture(autouse=True)
def _project_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLUICE_PROJECT_DIR", str(PROJECT_DIR))


@pytest.fixture
def bad_spec(tmp_path: Path) -> tuple[Path, int]:
    """A copy of the demo with a misspelt key; returns the file and the line of the typo."""
    text = DEMO_SPEC.read_text().replace('  pattern: "*.parquet"', '  patern: "*.parquet"')
    line = next(i for i, row in enumerate(text.splitlines(), start=1) if "patern:" in row)
    path = tmp_path / "bad.pipeline.yaml"
    path.write_text(text)
    return path, line


def test_lint_good_spec_returns_0(capsys):
    assert main(["lint", str(DEMO_SPEC)]) == 0

    out, err = capsys.readouterr()
    assert "ok" in out
    assert "flights_delay" in out
    assert err == ""


def test_lint_a_folder_lints_every_spec_in_it(capsys):
    assert main(["lint", str(DEMO_SPEC.parent)]) == 0
    assert str(DEMO_SPEC.name) in capsys.readouterr().out


def test_lint_bad_spec_returns_1_and_prints_file_and_line(capsys, bad_spec):
    path, line = bad_spec

    assert main(["lint", str(path)]) == 1

    _, err = capsys.readouterr()
    assert f"{path}:{line}:" in err
    assert "did you mean 'pattern'" in err


def test_lint_reports_bad_spec_without_hiding_the_good_one(capsys, bad_spec):
    path, _ = bad_spec

    assert main(["lint", str(DEMO_SPEC), str(path)]) == 1

    out, err = capsys.readouterr()
    assert "flights_delay" in out
    assert str(path) in err


def test_lint_rejects_duplicate_pipeline_names(capsys, tmp_path):
    copy = tmp_path / "copy.pipeline.yaml"
    copy.write_text(DEMO_SPEC.read_text())

    assert main(["lint", str(DEMO_SPEC), str(copy)]) == 1

    assert "flights_delay" in capsys.readouterr().err


def test_lint_on_a_folder_without_specs_fails(capsys, tmp_path):
    assert main(["lint", str(tmp_path)]) == 1
    assert "no *.pipeline.yaml" in capsys.readouterr().err


def test_plan_prints_dag_ids_and_task_ids(capsys):
    assert main(["plan", str(DEMO_SPEC)]) == 0

    out = capsys.readouterr().out
    for dag_id in ("flights_delay__ingest", "flights_delay__train"):
        assert dag_id in out
    for task_id in (
        "wait_for_files",
        "land",
        "validate",
        "publish",
        "confirm_published",
        "check_batches",
        "build_features",
        "train",
        "evaluate",
        "gate",
        "promote",
        "deploy",
    ):
        assert f"- {task_id} " in out
    assert "publishes sluice://flights_delay/batches" in out
    assert "asset sluice://flights_delay/batches" in out


def test_plan_json_is_parseable(capsys):
    assert main(["plan", str(DEMO_SPEC), "--json"]) == 0

    plan = json.loads(capsys.readouterr().out)
    assert [d["dag_id"] for d in plan["dags"]] == [
        "flights_delay__ingest",
        "flights_delay__train",
        "flights_delay__monitor",
    ]


def test_plan_of_a_bad_spec_returns_1(capsys, bad_spec):
    path, line = bad_spec

    assert main(["plan", str(path)]) == 1
    assert f"{path}:{line}:" in capsys.readouterr().err


def test_schema_output_file_is_valid_json_schema(tmp_path, capsys):
    target = tmp_path / "nested" / "pipeline.schema.json"

    assert main(["schema", "-o", str(target)]) == 0

    schema = json.loads(target.read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    assert jsonschema.Draft202012Validator(schema).is_valid(yaml.safe_load(DEMO_SPEC.read_text()))
    assert capsys.readouterr().out == ""


def test_schema_without_output_prints_json(capsys):
    assert main(["schema"]) == 0
    assert json.loads(capsys.readouterr().out)["title"] == "sluice pipeline spec"


# --------------------------------------------------------------------------- every command that reads a spec


@pytest.mark.parametrize(
    "argv",
    [["status"], ["stop"], ["plan"], ["plan", "--manifests"], ["plan", "--json"]],
    ids=["status", "stop", "plan", "manifests", "json"],
)
def test_commands_report_a_broken_spec_as_file_line_hint(argv, capsys, bad_spec):
    path, line = bad_spec

    assert main([*argv, str(path)]) == 1

    out, err = capsys.readouterr()
    assert f"{path}:{line}:" in err
    assert "did you mean 'pattern'" in err
    assert "Traceback" not in out + err


@pytest.mark.parametrize("command", ["status", "stop", "plan", "lint"])
def test_commands_report_a_missing_spec_without_a_traceback(command, capsys, tmp_path):
    missing = tmp_path / "absent.pipeline.yaml"

    assert main([command, str(missing)]) == 1

    out, err = capsys.readouterr()
    assert f"{missing}: cannot read file" in err
    assert "Traceback" not in out + err


def test_plan_fails_on_a_cron_airflow_would_reject(capsys, tmp_path):
    text = DEMO_SPEC.read_text().replace("detect: {poll_seconds: 5,", "detect: {schedule: '@hourlyy', poll_seconds: 5,")
    path = tmp_path / "cron.pipeline.yaml"
    path.write_text(text)

    assert main(["plan", str(path)]) == 1

    err = capsys.readouterr().err
    assert f"{path}:11:" in err
    assert "source.detect.schedule" in err
    assert "hint:" in err


def test_plan_and_lint_import_the_model_class_but_lint_no_import_does_not(capsys, tmp_path):
    text = DEMO_SPEC.read_text().replace("HistGradientBoostingClassifier", "HistGradientBoostingClasifier")
    path = tmp_path / "model.pipeline.yaml"
    path.write_text(text)

    assert main(["plan", str(path)]) == 1
    assert "did you mean 'HistGradientBoostingClassifier'" in capsys.readouterr().err
    assert main(["lint", str(path)]) == 1
    assert "did you mean 'HistGradientBoostingClassifier'" in capsys.readouterr().err
    assert main(["lint", "--no-import", str(path)]) == 0
    assert "ok" in capsys.readouterr().out


def test_manifests_of_a_local_target_name_the_key(capsys):
    assert main(["plan", "--manifests", str(DEMO_SPEC)]) == 1
    err = capsys.readouterr().err
    assert "deployment.target is 'local': there are no manifests" in err
    assert re.search(r"flights_delay\.pipeline\.yaml:\d+:\d+: ", err)


@pytest.mark.parametrize("value", ["1; rm -rf /", "x", "-1", "0", "1.5", " 1", "$(id)"])
def test_model_versions_are_digits_only(value, capsys):
    with pytest.raises(SystemExit) as info:
        main(["plan", str(DEMO_SPEC), "--manifests", "--model-version", value])
    assert info.value.code == 2
    assert "is not a model version" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["plan", str(DEMO_SPEC), "--manifests", "--previous-version", value])


@pytest.mark.parametrize("value", ["../../x", "Flights", "a b", "", "x" * 64, "1abc", "a-b"])
def test_trigger_retrain_refuses_a_pipeline_that_is_not_a_name(value, capsys):
    with pytest.raises(SystemExit) as info:
        main(["trigger-retrain", "--api-url", "http://127.0.0.1:9", "--token", "t", "--pipeline", value])
    assert info.value.code == 2
    assert "is not a pipeline name" in capsys.readouterr().err


def test_deployer_refuses_a_version_that_is_not_digits(capsys):
    with pytest.raises(SystemExit):
        main(["deployer", "--pipeline", "p", "--version", "1;x", "--run-id", "r", "--settings", "{}"])
    assert "is not a model version" in capsys.readouterr().err


def test_model_problems_name_the_spec_as_given(capsys, tmp_path, monkeypatch):
    (tmp_path / "m.pipeline.yaml").write_text(DEMO_SPEC.read_text().replace("ensemble.Hist", "ensembel.Hist"))
    monkeypatch.chdir(tmp_path)

    assert main(["lint", "m.pipeline.yaml"]) == 1
    assert capsys.readouterr().err.startswith("m.pipeline.yaml:")
    assert main(["plan", "m.pipeline.yaml"]) == 1
    assert capsys.readouterr().err.startswith("m.pipeline.yaml:")
