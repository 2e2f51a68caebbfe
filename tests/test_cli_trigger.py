"""`sluice trigger-retrain` without credentials says what it needs (the API path is in tests/e2e)."""

from __future__ import annotations

import pytest

from sluice.cli import main


def test_trigger_retrain_without_credentials_says_what_to_give(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("AIRFLOW_API_TOKEN", raising=False)
    monkeypatch.delenv("AIRFLOW_API_PASSWORD", raising=False)
    assert main(["trigger-retrain", "--api-url", "http://127.0.0.1:9", "--pipeline", "flights_delay"]) == 2
    assert "--token" in capsys.readouterr().err


def test_trigger_retrain_reports_an_unreachable_login(capsys: pytest.CaptureFixture[str]) -> None:
    from tests.conftest import free_port

    url = f"http://127.0.0.1:{free_port()}"
    assert main(["trigger-retrain", "--api-url", url, "--pipeline", "flights_delay", "--password", "x"]) == 1
    assert f"cannot reach the Airflow API at {url}" in capsys.readouterr().err
