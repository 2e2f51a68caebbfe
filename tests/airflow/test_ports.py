"""Every port sluice uses locally is one documented setting, and a taken port is a clear error."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from sluice.airflow.runtime.home import PORTS, PortError, check_ports_free, port_setting
from sluice.cli import main
from tests.airflow.test_links import TRAIN, SyntheticTI, outcome
from tests.conftest import REPO, Project, free_port

MOVED = {
    "SLUICE_AIRFLOW_PORT": "18080",
    "SLUICE_MLFLOW_UI_PORT": "15000",
    "SLUICE_WORKER_LOG_PORT": "18793",
    "SLUICE_TRIGGER_LOG_PORT": "18794",
    "SLUICE_SMTP_PORT": "18025",
}
AIRFLOWS_OWN = [p.airflow for p in PORTS.values() if p.airflow]


@pytest.fixture()
def clean_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    """No port, URL or API setting inherited from the caller's shell."""
    for name in [*PORTS, *AIRFLOWS_OWN, "SLUICE_PORT_OFFSET", "AIRFLOW__API__BASE_URL", "SLUICE_MLFLOW_UI_URL"]:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("AIRFLOW__CORE__EXECUTION_API_SERVER_URL", raising=False)
    yield monkeypatch


def _exports(capsys: pytest.CaptureFixture[str]) -> dict[str, str]:
    assert main(["env", "--all"]) == 0
    return dict(re.findall(r"^export (\w+)=(\S*)$", capsys.readouterr().out, re.M))


def test_sluice_env_prints_the_defaults(clean_env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    exports = _exports(capsys)
    assert {name: exports[name] for name in PORTS} == {name: str(p.default) for name, p in PORTS.items()}
    assert exports["AIRFLOW__API__PORT"] == "8080"
    assert exports["AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT"] == "8793"


def test_one_offset_moves_every_port_of_an_instance_and_airflow_follows(
    clean_env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A second instance beside the first: one setting, and Airflow's own variables agree."""
    clean_env.setenv("SLUICE_PORT_OFFSET", "100")
    exports = _exports(capsys)
    assert {name: exports[name] for name in PORTS} == {name: str(p.default + 100) for name, p in PORTS.items()}
    assert exports["AIRFLOW__API__PORT"] == "8180"
    assert exports["AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT"] == "8893"
    assert exports["AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT"] == "8894"
    assert exports["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] == "http://localhost:8180/execution/"
    # A port set on its own keeps its value; the offset moves only defaults.
    clean_env.setenv("SLUICE_MLFLOW_UI_PORT", "15000")
    assert _exports(capsys)["SLUICE_MLFLOW_UI_PORT"] == "15000"


def test_two_settings_on_one_port_are_refused_naming_both(
    clean_env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    clean_env.setenv("SLUICE_SMTP_PORT", "8080")
    assert main(["env"]) == 2
    err = capsys.readouterr().err
    assert "SLUICE_SMTP_PORT and SLUICE_AIRFLOW_PORT are both port 8080" in err
    assert "SLUICE_PORT_OFFSET" in err


def test_the_smtp_connection_follows_the_smtp_port_setting(clean_env: pytest.MonkeyPatch) -> None:
    """``airflow_settings.yaml`` names ``${SLUICE_SMTP_PORT}``: bootstrap writes the number."""
    import yaml

    from sluice.airflow.runtime.home import settings_payloads

    settings = yaml.safe_load((REPO / "airflow_settings.yaml").read_text())
    assert settings_payloads(settings)["connections"]["smtp_default"]["port"] == 8025
    clean_env.setenv("SLUICE_PORT_OFFSET", "100")
    assert settings_payloads(settings)["connections"]["smtp_default"]["port"] == 8125
    # Only the port family is expanded: any other ${...} stays as written.
    literal = {"airflow": {"variables": [{"variable_name": "x", "variable_value": "${HOME}"}]}}
    assert settings_payloads(literal)["variables"] == {"x": "${HOME}"}


def test_a_spec_serving_on_a_port_sluice_uses_is_a_spec_error(
    clean_env: pytest.MonkeyPatch, project: Project, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = project.write_spec(deployment={"target": "local", "local": {"port": 8080}})
    assert main(["lint", "--no-import", str(spec)]) == 1
    err = capsys.readouterr()
    text = err.out + err.err
    assert "deployment.local.port" in text
    assert "port 8080 is SLUICE_AIRFLOW_PORT, a port sluice's own servers use on this machine" in text
    assert "choose another deployment.local.port" in text
    # Moved out of the way, the same spec is fine.
    clean_env.setenv("SLUICE_PORT_OFFSET", "1")
    assert main(["lint", "--no-import", str(spec)]) == 0


def test_settings_move_sluice_env_and_the_links_in_the_ui(
    clean_env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], project: Project
) -> None:
    from sluice.airflow.links import MlflowRunLink, ValidationReportLink

    for name, value in MOVED.items():
        clean_env.setenv(name, value)
    exports = _exports(capsys)
    assert {name: exports[name] for name in MOVED} == MOVED
    assert exports["AIRFLOW__API__PORT"] == "18080"
    assert exports["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] == "http://localhost:18080/execution/"
    assert "8080" not in exports["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"].replace("18080", "")

    # A task process runs with what `sluice env` exported: its links follow the ports.
    for name, value in exports.items():
        clean_env.setenv(name, value.strip("'"))
    spec = str(project.write_spec())
    batch = project.root / "data" / "sluice" / "flights_delay" / "batches" / "x" / "validation.json"
    ti = SyntheticTI(
        {"train": TRAIN | {"mlflow_run_id": "cand"}, "validate": {"outcomes": [outcome("x", "rejected", batch)]}}
    )
    assert MlflowRunLink(spec_path=spec).get_link(None, ti_key=ti) == "http://localhost:15000/#/runs/cand"
    assert ValidationReportLink(spec_path=spec).get_link(None, ti_key=ti) == (
        "http://localhost:18080/sluice/reports/flights_delay/batches/x/validation.json"
    )


def test_airflows_own_api_port_wins_and_a_base_url_wins_for_links(clean_env: pytest.MonkeyPatch) -> None:
    from sluice.airflow import urls

    clean_env.setenv("SLUICE_AIRFLOW_PORT", "18080")
    clean_env.setenv("AIRFLOW__API__PORT", "19090")
    assert port_setting("SLUICE_AIRFLOW_PORT") == 19090
    clean_env.setenv("AIRFLOW__API__BASE_URL", "https://airflow.example.com/")
    assert urls.airflow_base_url() == "https://airflow.example.com"
    clean_env.setenv("SLUICE_MLFLOW_UI_URL", "https://mlflow.example.com")
    assert urls.mlflow_run_url("r") == "https://mlflow.example.com/#/runs/r"


def test_a_setting_that_is_not_a_port_is_named(
    clean_env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    clean_env.setenv("SLUICE_MLFLOW_UI_PORT", "50OO")
    assert main(["env"]) == 2
    assert "SLUICE_MLFLOW_UI_PORT='50OO' is not a TCP port" in capsys.readouterr().err


@pytest.fixture()
def taken_port() -> Iterator[int]:
    """A port another process (here: this one) listens on."""
    port = free_port()
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))
        s.listen()
        yield port


def test_a_taken_port_is_a_clear_error_naming_the_setting(clean_env: pytest.MonkeyPatch, taken_port: int) -> None:
    clean_env.setenv("SLUICE_MLFLOW_UI_PORT", str(taken_port))
    with pytest.raises(PortError, match=rf"port {taken_port} \(SLUICE_MLFLOW_UI_PORT\) is already in use"):
        check_ports_free(["SLUICE_MLFLOW_UI_PORT"])
    clean_env.setenv("SLUICE_MLFLOW_UI_PORT", str(free_port()))
    check_ports_free(["SLUICE_MLFLOW_UI_PORT"])


def _run(cmd: list[str], port_env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLUICE_", "AIRFLOW__API__"))} | port_env
    return subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=120)


def test_make_mlflow_ui_stops_at_once_when_its_port_is_taken(taken_port: int) -> None:
    out = _run(["make", "--no-print-directory", "mlflow-ui"], {"SLUICE_MLFLOW_UI_PORT": str(taken_port)})
    assert out.returncode != 0
    assert f"port {taken_port} (SLUICE_MLFLOW_UI_PORT) is already in use" in out.stderr
    assert "SLUICE_MLFLOW_UI_PORT=" in out.stderr  # how to pick another one


def test_sluice_airflow_refuses_to_start_on_a_taken_port(taken_port: int, tmp_path: Path) -> None:
    out = _run([sys.executable, "-m", "sluice.cli", "airflow"], {"SLUICE_AIRFLOW_PORT": str(taken_port)})
    assert out.returncode == 2, out.stdout + out.stderr
    assert f"cannot start Airflow: port {taken_port} (SLUICE_AIRFLOW_PORT) is already in use" in out.stderr
    assert "sluice: airflow (pid" not in out.stdout
