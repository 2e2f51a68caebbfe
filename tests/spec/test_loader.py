"""Loading specs: the demo loads; every mistake names file, line and a fix."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from sluice.spec.errors import SpecError, SpecIssue
from sluice.spec.loader import LoadedSpec, load_folder, load_spec

DEMO_SPEC = Path(__file__).resolve().parents[2] / "dags" / "flights_delay.pipeline.yaml"


def line_of(text: str, needle: str, occurrence: int = 1) -> int:
    """1-based line of the ``occurrence``-th line containing ``needle``."""
    hits = [i for i, line in enumerate(text.splitlines(), start=1) if needle in line]
    assert len(hits) >= occurrence, f"{needle!r} not found {occurrence} time(s)"
    return hits[occurrence - 1]


def replace_once(text: str, old: str, new: str) -> str:
    assert text.count(old) == 1, f"{old!r} must occur exactly once in the demo spec"
    return text.replace(old, new)


def load_error(path: Path) -> SpecError:
    with pytest.raises(SpecError) as info:
        load_spec(path)
    return info.value


def only_issue(err: SpecError, where: str) -> SpecIssue:
    matching = [i for i in err.issues if i.where == where]
    assert len(matching) == 1, f"expected one issue at {where!r}, got {err.issues}"
    return matching[0]


# --------------------------------------------------------------------------- the demo


def test_demo_spec_loads(project_env):
    loaded = load_spec(DEMO_SPEC)

    assert isinstance(loaded, LoadedSpec)
    assert loaded.spec.pipeline == "flights_delay"
    assert loaded.spec.training.target == "is_delayed"
    assert loaded.spec.evaluation.metric == "roc_auc"
    assert [e.type for e in loaded.spec.validation.expectations][:2] == ["column_exists", "not_null"]
    assert loaded.path == DEMO_SPEC.resolve()
    assert loaded.project_dir == project_env
    assert loaded.resolve(loaded.spec.source.uri) == project_env / "data" / "landing" / "flights"


def test_resolve_keeps_absolute_paths(project_env, tmp_path):
    loaded = load_spec(DEMO_SPEC)
    assert loaded.resolve(str(tmp_path)) == tmp_path


# --------------------------------------------------------------------------- typos with hints


def test_misspelt_key_names_file_line_and_right_key(project_env, demo_text, write_spec):
    text = replace_once(demo_text, '  pattern: "*.parquet"', '  patern: "*.parquet"')
    path = write_spec(text)

    err = load_error(path)

    issue = only_issue(err, "source.patern")
    assert issue.file == str(path)
    assert issue.line == line_of(text, "patern:")
    assert "unknown key 'patern'" in issue.message
    assert "did you mean 'pattern'" in issue.hint
    # The rendered message is what a user reads in the terminal: file:line first.
    assert f"{path}:{issue.line}:" in str(err)
    assert "did you mean 'pattern'" in str(err)


def test_misspelt_nested_key_points_at_its_line(project_env, demo_text, write_spec):
    text = replace_once(demo_text, "local: {port: 5055}", "local: {prot: 5055}")
    path = write_spec(text)

    issue = only_issue(load_error(path), "deployment.local.prot")

    assert issue.line == line_of(text, "prot: 5055")
    assert "did you mean 'port'" in issue.hint


def test_misspelt_key_inside_an_expectation_hints_the_field_of_that_type(project_env, demo_text, write_spec):
    text = replace_once(demo_text, "min: 1, max: 5000", "min: 1, maxx: 5000")
    path = write_spec(text)

    issue = only_issue(load_error(path), "validation.expectations.3.maxx")

    assert issue.line == line_of(text, "maxx")
    assert "did you mean 'max'" in issue.hint


def test_enum_typo_hints_the_allowed_value(project_env, demo_text, write_spec):
    text = replace_once(demo_text, "on_failure: quarantine", "on_failure: quarantin")
    path = write_spec(text)

    issue = only_issue(load_error(path), "validation.on_failure")

    assert issue.line == line_of(text, "on_failure:")
    assert "did you mean 'quarantine'" in issue.hint


def test_unknown_expectation_type_hints_the_closest_type(project_env, demo_text, write_spec):
    text = replace_once(demo_text, "{type: not_null, column: carrier}", "{type: not_nul, column: carrier}")
    path = write_spec(text)

    issue = only_issue(load_error(path), "validation.expectations.1.type")

    assert issue.line == line_of(text, "not_nul,")
    assert "not_nul" in issue.message
    assert "did you mean 'not_null'" in issue.hint


def test_schedule_without_cron_is_an_error(project_env, demo_data, write_spec):
    demo_data["retrain_on"] = ["schedule"]
    err = load_error(write_spec(demo_data))
    assert "retrain_schedule" in str(err)


# --------------------------------------------------------------------------- YAML-level problems


def test_yaml_syntax_error_reports_its_line(project_env, demo_text, write_spec):
    text = replace_once(demo_text, "owner: data-eng", "owner: data: eng")
    path = write_spec(text)

    err = load_error(path)

    assert len(err.issues) == 1
    issue = err.issues[0]
    assert issue.file == str(path)
    assert issue.line == line_of(text, "owner: data: eng")
    assert "YAML syntax error" in issue.message


def test_duplicated_key_is_an_error_not_last_one_wins(project_env, demo_text, write_spec):
    text = replace_once(demo_text, "owner: data-eng\n", "owner: data-eng\nowner: someone-else\n")
    path = write_spec(text)
    # The trap being guarded against: plain PyYAML accepts this and keeps the last value.
    assert yaml.safe_load(text)["owner"] == "someone-else"

    err = load_error(path)

    issue = only_issue(err, "owner")
    assert issue.line == line_of(text, "owner: someone-else")
    assert "twice" in issue.message


def test_duplicated_nested_key_is_an_error(project_env, demo_text, write_spec):
    text = replace_once(demo_text, "  target: is_delayed\n", "  target: is_delayed\n  target: arr_delay\n")
    path = write_spec(text)

    issue = only_issue(load_error(path), "training.target")

    assert issue.line == line_of(text, "target: arr_delay")
    assert "twice" in issue.message


@pytest.mark.parametrize("text", ["", "- just\n- a list\n", "just a string\n"])
def test_a_spec_must_be_a_mapping(project_env, write_spec, text):
    err = load_error(write_spec(text))
    assert "mapping" in str(err)


def test_unreadable_file_is_a_spec_error(tmp_path):
    missing = tmp_path / "absent.pipeline.yaml"
    err = load_error(missing)
    assert str(missing) in str(err)
    assert "cannot read" in str(err)


def test_every_error_in_a_file_is_reported(project_env, demo_text, write_spec):
    text = demo_text
    text = replace_once(text, '  pattern: "*.parquet"', '  patern: "*.parquet"')
    text = replace_once(text, "on_failure: quarantine", "on_failure: quarantin")
    text = replace_once(text, "{type: not_null, column: carrier}", "{type: not_nul, column: carrier}")
    path = write_spec(text)

    err = load_error(path)

    by_where = {i.where: i for i in err.issues}
    assert set(by_where) >= {"source.patern", "validation.on_failure", "validation.expectations.1.type"}
    assert by_where["source.patern"].line == line_of(text, "patern:")
    assert by_where["validation.on_failure"].line == line_of(text, "on_failure:")
    assert by_where["validation.expectations.1.type"].line == line_of(text, "not_nul,")
    rendered = str(err).splitlines()
    assert len(rendered) == len(err.issues) >= 3


# --------------------------------------------------------------------------- files the spec points at


def test_missing_feature_job_file_is_an_error_naming_features_job(project_env, demo_text, write_spec):
    text = replace_once(demo_text, "include/features/flights.py", "include/features/nope.py")
    path = write_spec(text)

    issue = only_issue(load_error(path), "features.job")

    assert issue.line == line_of(text, "job: include/features/nope.py")
    assert "include/features/nope.py" in issue.message


def test_feature_job_resolves_against_sluice_project_dir(monkeypatch, tmp_path, demo_data, write_spec):
    project = tmp_path / "project"
    (project / "jobs").mkdir(parents=True)
    (project / "jobs" / "feat.py").write_text("def build(spark, inputs):\n    return inputs['batches']\n")
    monkeypatch.setenv("SLUICE_PROJECT_DIR", str(project))
    demo_data["features"]["job"] = "jobs/feat.py:build"

    loaded = load_spec(write_spec(demo_data, folder=tmp_path / "specs"))

    assert loaded.project_dir == project.resolve()
    assert loaded.spec.features.job == "jobs/feat.py:build"


# --------------------------------------------------------------------------- folders


def test_load_folder_keeps_good_specs_and_reports_bad_ones(project_env, demo_text, demo_data, tmp_path, write_spec):
    folder = tmp_path / "dags"
    good = write_spec(demo_data, name="good", folder=folder)
    bad_text = replace_once(demo_text, "pipeline: flights_delay", "pipeline: other_pipe")
    bad_text = replace_once(bad_text, "on_failure: quarantine", "on_failure: quarantin")
    bad = write_spec(bad_text, name="bad", folder=folder)
    (folder / "notes.yaml").write_text("not: a spec\n")  # not *.pipeline.yaml: ignored

    report = load_folder(folder)

    assert [s.path for s in report.specs] == [good.resolve()]
    assert list(report.errors) == [str(bad)]
    assert "did you mean 'quarantine'" in str(report.errors[str(bad)])


def test_two_specs_with_the_same_pipeline_name_are_both_rejected(project_env, demo_data, tmp_path, write_spec):
    folder = tmp_path / "dags"
    first = write_spec(demo_data, name="first", folder=folder)
    second = write_spec(demo_data, name="second", folder=folder)

    report = load_folder(folder)

    assert report.specs == []
    assert len(report.errors) == 2
    for path in (first, second):
        matching = [err for key, err in report.errors.items() if Path(key).name == path.name]
        assert len(matching) == 1
        message = str(matching[0])
        assert "flights_delay" in message
        assert "first.pipeline.yaml" in message
        assert "second.pipeline.yaml" in message


def test_load_folder_on_an_empty_folder_finds_nothing(tmp_path):
    report = load_folder(tmp_path)
    assert report.specs == []
    assert report.errors == {}


# --------------------------------------------------------------------------- spec_hash


def test_spec_hash_ignores_key_order_and_comments(project_env, demo_data, tmp_path, write_spec):
    original = load_spec(DEMO_SPEC)
    reordered = yaml.safe_dump(demo_data, sort_keys=True)  # different key order, no comments
    reordered = "# a comment that changes nothing\n" + reordered

    copy = load_spec(write_spec(reordered, name="reordered"))

    assert reordered != DEMO_SPEC.read_text()
    assert copy.spec_hash == original.spec_hash
    assert len(original.spec_hash) == 16


def test_spec_hash_changes_when_a_value_changes(project_env, demo_data, write_spec):
    original = load_spec(DEMO_SPEC)
    demo_data["training"]["params"]["max_iter"] = 201

    changed = load_spec(write_spec(demo_data, name="changed"))

    assert changed.spec_hash != original.spec_hash


def test_target_listed_as_a_feature_is_rejected_at_its_line(project_env, demo_data, write_spec):
    demo_data["training"]["features"] = ["distance", "is_delayed"]
    path = write_spec(demo_data)
    with pytest.raises(SpecError) as info:
        load_spec(path)
    (issue,) = info.value.issues
    assert "leak the label" in issue.message
    lines = path.read_text().splitlines()
    assert lines[issue.line - 1].strip().startswith(("features:", "training:"))


def test_rule_over_several_keys_points_at_the_key_it_names(project_env, demo_data, write_spec):
    demo_data["retrain_on"] = ["new_data", "schedule"]
    path = write_spec(demo_data)
    with pytest.raises(SpecError) as info:
        load_spec(path)
    (issue,) = info.value.issues
    assert path.read_text().splitlines()[issue.line - 1].startswith("retrain_on:")


def test_duplicate_pipeline_names_point_at_the_pipeline_key(project_env, demo_text, tmp_path, write_spec):
    from sluice.spec.loader import load_folder

    commented = "# a comment first\n" + demo_text
    write_spec(commented, name="a")
    write_spec(commented, name="b")
    report = load_folder(tmp_path)
    assert len(report.errors) == 2
    for path, error in report.errors.items():
        # Copies clash on landing folder and serving port too; each clash points at its own key.
        by_where = {i.where: i for i in error.issues}
        assert set(by_where) == {"pipeline", "source.uri", "deployment.local.port"}
        lines = Path(path).read_text().splitlines()
        assert lines[by_where["pipeline"].line - 1].startswith("pipeline:")
        assert lines[by_where["source.uri"].line - 1].strip().startswith("uri:")
        assert lines[by_where["deployment.local.port"].line - 1].strip().startswith("local: {port")


# --------------------------------------------------------------------------- monitoring and retraining


def test_retrain_on_drift_needs_monitoring(project_env, demo_data, write_spec):
    demo_data["monitoring"] = {"enabled": False}
    demo_data["retrain_on"] = ["drift"]
    path = write_spec(demo_data)
    err = load_error(path)
    assert "monitoring.enabled is false" in str(err)
    (issue,) = err.issues
    assert path.read_text().splitlines()[issue.line - 1].startswith(("retrain_on:", "monitoring:"))


def test_repeated_retrain_trigger_is_an_error(project_env, demo_data, write_spec):
    demo_data["retrain_on"] = ["drift", "new_data", "drift"]
    assert "lists ['drift'] more than once" in str(load_error(write_spec(demo_data)))


def test_unknown_drift_method_and_bad_share_are_reported_with_lines(project_env, demo_text, write_spec):
    text = replace_once(demo_text, "drift_share: 0.15", "drift_share: 1.5\n    methods: {dest: jensen}")
    path = write_spec(text)
    err = load_error(path)
    share = only_issue(err, "monitoring.drift.drift_share")
    assert share.line == line_of(text, "drift_share: 1.5")
    method = only_issue(err, "monitoring.drift.methods.dest")
    assert "jensenshannon" in method.message + (method.hint or "")


def test_negative_cooldown_is_an_error(project_env, demo_data, write_spec):
    demo_data["retrain_cooldown_minutes"] = -5
    assert "retrain_cooldown_minutes" in str(load_error(write_spec(demo_data)))


# --------------------------------------------------------------------------- dates and hosts (issue 25)


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("owner: 2024-01-01", "2024-01-01 is unquoted: YAML reads it as a date, not as text"),
        ("owner: 2024-01-01T10:00:00Z", "YAML reads it as a date and time"),
        ("owner: 2024-01-01 10:00", "YAML reads it as text only because its time has no seconds"),
        ("owner: 10:30", "YAML reads it as the base-60 number 630, not as text"),
    ],
)
def test_an_unquoted_date_where_text_is_expected_is_refused_once(write_spec, demo_text, project_env, line, message):
    text = replace_once(demo_text, "owner: data-eng", line)

    issue = only_issue(load_error(write_spec(text)), "owner")

    assert message in issue.message
    assert issue.line == line_of(text, line)
    assert issue.hint == f"quote it: owner: '{line.removeprefix('owner: ')}'"


def test_a_quoted_date_is_text_and_a_date_in_a_number_is_a_type_error(write_spec, demo_text, project_env):
    loaded = load_spec(write_spec(replace_once(demo_text, "owner: data-eng", "owner: '2024-01-01'")))
    assert loaded.spec.owner == "2024-01-01"

    text = replace_once(demo_text, "threshold: 0.085", "threshold: 2024-01-01")
    issue = only_issue(load_error(write_spec(text)), "monitoring.drift.threshold")
    assert "quote" not in issue.hint, "a number is expected there: quoting would not help"


@pytest.mark.parametrize("host", ["127.0.0.1", "0.0.0.0", "::1", "localhost", "model-server.internal", "my-host."])
def test_a_local_host_may_be_a_name_or_an_address(write_spec, demo_text, project_env, host):
    text = replace_once(demo_text, "local: {port: 5055}", f"local: {{port: 5055, host: '{host}'}}")
    assert load_spec(write_spec(text)).spec.deployment.local.host == host


@pytest.mark.parametrize(
    ("host", "message", "hint"),
    [
        ("http://models.internal:5055", "is a URL, not a host name", "write the host alone: host: models.internal"),
        ("not a host!", "is not a host name or an IP address", "e.g. 127.0.0.1"),
        ("10.0.0.256", "is not an IP address", "e.g. 127.0.0.1"),
        ("localhost:5055", "has a port", "the port is deployment.local.port"),
        ("-bad-.example", "is not a host name or an IP address", "0.0.0.0 (every interface)"),
    ],
)
def test_a_local_host_that_is_not_one_is_refused(write_spec, demo_text, project_env, host, message, hint):
    text = replace_once(demo_text, "local: {port: 5055}", f"local: {{port: 5055, host: '{host}'}}")

    issue = only_issue(load_error(write_spec(text)), "deployment.local.host")

    assert message in issue.message
    assert hint in issue.hint
    assert issue.line == line_of(text, "host:")


def test_a_time_yaml_keeps_as_text_is_left_alone(write_spec, demo_text, project_env):
    text = replace_once(demo_text, "owner: data-eng", "owner: 0:30")
    assert load_spec(write_spec(text)).spec.owner == "0:30"
