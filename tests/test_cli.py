"""The ``sluice`` command line: lint, plan, schema."""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import jsonschema
import pandas as pd
import pytest
import yaml

from sluice.cli import build_parser, main
from sluice.spec.errors import SpecError, SpecIssue
from tests.conftest import Project

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
    # Only warnings, if any (the demo's reference tables exist once the demo has run).
    assert all(": warning: " in row for row in err.splitlines()), err


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
        "flights_delay__serving",
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


# --------------------------------------------------------------------------- one way to show a broken spec

#: How each subcommand that takes a spec path is called with it ({spec} and {sample} filled in).
SPEC_COMMANDS = {
    "lint": ["lint", "{spec}"],
    "plan": ["plan", "{spec}"],
    "plan --json": ["plan", "--json", "{spec}"],
    "plan --manifests": ["plan", "--manifests", "{spec}"],
    "doctor": ["doctor", "{spec}"],
    "status": ["status", "{spec}"],
    "stop": ["stop", "{spec}"],
    "revalidate": ["revalidate", "{spec}", "0123456789abcdef"],
    "schema-pin": ["schema-pin", "{spec}", "--reset"],
    "infer-schema --write": ["infer-schema", "{sample}", "--write", "--spec", "{spec}"],
}


def _takes_a_spec(action: argparse.Action) -> bool:
    return action.dest in {"spec", "paths"}


def test_every_subcommand_that_takes_a_spec_is_checked_below():
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    taking = {name for name, parser in sub.choices.items() if any(_takes_a_spec(a) for a in parser._actions)}

    assert taking == {argv[0] for argv in SPEC_COMMANDS.values()}


def _argv(name: str, spec: Path, sample: Path) -> list[str]:
    return [part.format(spec=spec, sample=sample) for part in SPEC_COMMANDS[name]]


@pytest.fixture
def sample(tmp_path: Path) -> Path:
    path = tmp_path / "sample.parquet"
    pd.DataFrame({"carrier": ["AA", "UA"], "distance": [100.0, 200.0]}).to_parquet(path, index=False)
    return path


@pytest.mark.parametrize("name", list(SPEC_COMMANDS))
def test_every_spec_command_prints_a_broken_spec_as_file_line_and_exits_1(name, capsys, bad_spec, sample):
    path, line = bad_spec
    before = path.read_text()

    assert main(_argv(name, path, sample)) == 1

    out, err = capsys.readouterr()
    assert f"{path}:{line}:3: source.patern: unknown key 'patern' (hint: did you mean 'pattern'?)" in err
    assert "Traceback" not in out + err
    assert ".tmp" not in err, "named after the spec the user gave, not a temporary file"
    assert path.read_text() == before, "a broken spec is never rewritten"
    assert list(path.parent.glob(".*.tmp")) == []


@pytest.mark.parametrize("name", ["plan --manifests", "status", "infer-schema --write"])
def test_the_real_command_prints_a_broken_spec_without_a_traceback(name, bad_spec, sample):
    path, line = bad_spec
    env = dict(os.environ, PYTHONPATH=str(PROJECT_DIR / "include"), SLUICE_PROJECT_DIR=str(PROJECT_DIR))

    done = subprocess.run(
        [sys.executable, "-m", "sluice.cli", *_argv(name, path, sample)],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )

    assert done.returncode == 1
    assert f"{path}:{line}:3: source.patern: unknown key 'patern'" in done.stderr
    assert "Traceback" not in done.stdout + done.stderr


def test_a_spec_error_raised_deep_inside_a_command_is_printed_the_same_way(capsys, monkeypatch):
    issue = SpecIssue("x.pipeline.yaml", 7, 3, "training.params", "bad value", "use a number")

    def broken_plan(loaded: object) -> None:
        raise SpecError([issue])

    monkeypatch.setattr("sluice.plan.build_plan", broken_plan)

    assert main(["plan", str(DEMO_SPEC)]) == 1

    out, err = capsys.readouterr()
    assert err == "x.pipeline.yaml:7:3: training.params: bad value (hint: use a number)\n"
    assert out == ""


def test_status_shows_each_batch_drift_share_or_not_enough_data(
    project: Project, capsys: pytest.CaptureFixture[str]
) -> None:
    from sluice.services.batch_record import BatchRecord, BatchStatus
    from sluice.services.storage import PipelineStore

    spec = project.write_spec()
    store = PipelineStore(project.root / "data" / "sluice", "flights_delay")
    for n, (batch_id, changes) in enumerate(
        [
            ("a" * 16, {"drift_share": 0.17, "drift_status": "compared", "monitored_by": "run-1"}),
            ("b" * 16, {"drift_status": "not_enough_data"}),
        ]
    ):
        record = BatchRecord(
            batch_id=batch_id, source_file=f"m{n}.parquet", status=BatchStatus.ACCEPTED, landed_at=float(n)
        )
        store.batches.write(record.model_copy(update=changes))

    assert main(["status", str(spec)]) == 0

    out = capsys.readouterr().out
    first, second = (line for line in out.splitlines() if line.startswith("  batch "))
    assert "a" * 16 in first and "drift share 0.17" in first
    assert "b" * 16 in second and "drift: not enough data" in second


def test_help_lists_the_pipeline_commands_first_then_the_environment_then_the_entrypoints() -> None:
    text = build_parser().format_help()
    listed = [line.split()[0] for line in text.splitlines() if line.startswith("    ") and line.split()]
    assert listed.index("status") < listed.index("airflow") < listed.index("serve"), listed
    assert "pipelines: lint, schema, reference, plan" in text
    assert "container entrypoints: deployer, serve" in text
