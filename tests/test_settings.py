"""The one settings object: the docs' configuration table is its fields, and bad values name the variable."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from sluice.cli import main
from sluice.settings import Settings, SettingsError, markdown_table, ports_markdown_table, settings, variable

PAGE = Path(__file__).resolve().parents[1] / "docs" / "operations.md"
DEMO_SPEC = Path(__file__).resolve().parents[1] / "dags" / "flights_delay.pipeline.yaml"


def _readme_block() -> str:
    text = PAGE.read_text()
    match = re.search(r"<!-- settings:start -->\n(.*?)<!-- settings:end -->", text, re.S)
    assert match, "docs/operations.md has no settings block"
    return match.group(1)


def test_readme_configuration_table_is_the_settings_model():
    block = _readme_block()

    assert block == markdown_table()
    listed = re.findall(r"^\| `([A-Z0-9_]+)` \|", block, re.M)
    assert listed == [variable(name) for name in Settings.model_fields]


def test_readme_port_table_is_the_port_family():
    match = re.search(r"<!-- ports:start -->\n(.*?)<!-- ports:end -->", PAGE.read_text(), re.S)
    assert match, "docs/operations.md has no ports block"
    assert match.group(1) == ports_markdown_table()


def test_defaults_are_what_the_readme_says(monkeypatch):
    for name in Settings.model_fields:
        monkeypatch.delenv(variable(name), raising=False)

    env = settings()

    assert env.alert_repeat_minutes == 60
    assert env.api_start_timeout == 300
    assert env.mlflow_http_request_max_retries == 2
    assert not any(name.startswith("fault") for name in Settings.model_fields), "fault hooks are test machinery"


def test_each_call_reads_the_environment_now(monkeypatch):
    monkeypatch.setenv("SLUICE_ALERT_REPEAT_MINUTES", "5")
    assert settings().alert_repeat_minutes == 5
    monkeypatch.setenv("SLUICE_ALERT_REPEAT_MINUTES", "7.5")
    assert settings().alert_repeat_minutes == 7.5


def test_an_empty_variable_counts_as_unset(monkeypatch):
    monkeypatch.setenv("SLUICE_API_START_TIMEOUT", "")

    assert settings().api_start_timeout == 300


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("SLUICE_API_START_TIMEOUT", "soon"),
        ("SLUICE_ALERT_REPEAT_MINUTES", "-1"),
        ("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "two"),
    ],
)
def test_a_bad_value_names_the_variable(monkeypatch, name, value):
    monkeypatch.setenv(name, value)

    with pytest.raises(SettingsError) as caught:
        settings()

    assert f"{name}={value!r}" in str(caught.value)


def test_the_tracking_check_names_a_bad_limit(monkeypatch):
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "slow")
    from sluice.services.tracking import check_server

    with pytest.raises(SettingsError, match="MLFLOW_HTTP_REQUEST_TIMEOUT='slow'"):
        check_server("http://127.0.0.1:9")


def test_a_command_reports_a_bad_setting_without_a_traceback(monkeypatch, capsys):
    monkeypatch.setenv("SLUICE_API_START_TIMEOUT", "soon")

    code = main(["status", str(DEMO_SPEC)])

    out, err = capsys.readouterr()
    assert code == 2
    assert "SLUICE_API_START_TIMEOUT='soon'" in err
    assert "Traceback" not in out + err
