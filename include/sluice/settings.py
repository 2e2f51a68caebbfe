"""Every setting sluice reads from the environment, in one typed object.

Code asks :func:`settings` rather than ``os.environ``: a bad value fails with the variable's
name, and the docs' configuration table (docs/operations.md) is checked against :class:`Settings`
(``tests/test_settings.py``). Code that *sets* variables for child processes (the embedded
Airflow environment, MLflow's own HTTP limits) still writes the environment directly.

This module is reachable when the DAG file is parsed: it imports only pydantic,
pydantic-settings and the standard library (an import-linter contract checks it).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from pydantic import Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict


class SettingsError(ValueError):
    """An environment variable sluice reads holds a value it cannot use."""


class PortError(SettingsError):
    """A port setting that is not a port, that another sluice setting already uses, or that is taken."""


@dataclass(frozen=True)
class PortSetting:
    """One port sluice opens (or connects to) on this machine.

    Attributes:
        default: The port before ``SLUICE_PORT_OFFSET`` is added.
        purpose: What listens there (the docs' port table).
        airflow: Airflow's own variable for the same port, which wins when it is set.
    """

    default: int
    purpose: str
    airflow: str | None = None


#: Every port of one sluice instance on one machine, in one family: ``SLUICE_PORT_OFFSET``
#: moves all the defaults at once, so a second instance beside the first needs one setting.
#: Model servers are not here: their port is the spec's ``deployment.local.port``.
PORTS: dict[str, PortSetting] = {
    "SLUICE_AIRFLOW_PORT": PortSetting(
        8080,
        "Airflow API server and UI, the execution API URL of task processes, and the links in the UI and in "
        "emails unless `AIRFLOW__API__BASE_URL` is set",
        "AIRFLOW__API__PORT",
    ),
    "SLUICE_MLFLOW_UI_PORT": PortSetting(
        5000, "`make mlflow-ui`, and the MLflow links in the UI and in emails unless `SLUICE_MLFLOW_UI_URL` is set"
    ),
    "SLUICE_WORKER_LOG_PORT": PortSetting(
        8793, "Airflow's log server of the task processes", "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT"
    ),
    "SLUICE_TRIGGER_LOG_PORT": PortSetting(
        8794, "Airflow's log server of the triggerer", "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT"
    ),
    "SLUICE_SMTP_PORT": PortSetting(
        8025,
        "the local SMTP server of the `smtp_default` connection (`${SLUICE_SMTP_PORT}` in `airflow_settings.yaml`)",
    ),
}
#: Added to every default of :data:`PORTS` (not to a port set explicitly).
PORT_OFFSET = "SLUICE_PORT_OFFSET"


def _port(name: str, raw: str) -> int:
    raw = raw.strip()
    if not raw.isdigit() or not 0 < int(raw) < 65536:
        raise PortError(f"{name}={raw!r} is not a TCP port (1-65535)")
    return int(raw)


def port_offset(env: Mapping[str, str] | None = None) -> int:
    """``SLUICE_PORT_OFFSET`` (default 0).

    Raises:
        PortError: It is not a whole number, or it moves a default port past 65535.
    """
    raw = ((os.environ if env is None else env).get(PORT_OFFSET) or "0").strip()
    if not raw.isdigit():
        raise PortError(f"{PORT_OFFSET}={raw!r} is not a whole number of ports (e.g. 100)")
    offset = int(raw)
    if max(p.default for p in PORTS.values()) + offset > 65535:
        raise PortError(f"{PORT_OFFSET}={raw!r} moves a default port past 65535")
    return offset


def port_setting(name: str, env: Mapping[str, str] | None = None) -> int:
    """The port a setting of :data:`PORTS` names.

    Airflow's own variable for it wins, then the ``SLUICE_*`` one, then the default moved by
    ``SLUICE_PORT_OFFSET``. ``env`` defaults to ``os.environ``.

    Raises:
        PortError: The value is not a number between 1 and 65535.
    """
    source = os.environ if env is None else env
    setting = PORTS[name]
    for variable_name in (setting.airflow, name):
        raw = source.get(variable_name) if variable_name else None
        if raw and raw.strip():
            return _port(variable_name or name, raw)
    return setting.default + port_offset(source)


def ports(env: Mapping[str, str] | None = None) -> dict[str, int]:
    """Every port of :data:`PORTS` as ``env`` sets it.

    Raises:
        PortError: A value is not a port, or two settings name the same port (both named).
    """
    resolved = {name: port_setting(name, env) for name in PORTS}
    seen: dict[int, str] = {}
    for name, port in resolved.items():
        if port in seen:
            raise PortError(
                f"{name} and {seen[port]} are both port {port}: two servers cannot share it; "
                f"set one of them to another port, or move all of them with {PORT_OFFSET}"
            )
        seen[port] = name
    return resolved


class Settings(BaseSettings):
    """Environment variables sluice reads (the docs' configuration table lists each).

    Each field's ``description`` is its meaning in the docs; the variable is its
    validation alias. Ports are in :data:`PORTS` (they are also read from the environment a
    child process gets, not only from this process's).
    """

    model_config = SettingsConfigDict(case_sensitive=True, extra="ignore", env_ignore_empty=True)

    project_dir: Path | None = Field(
        default=None,
        validation_alias="SLUICE_PROJECT_DIR",
        description="project root (holds `.airflow/`, `.sluice/`, `data/`); default: the nearest folder "
        "above the spec with `pyproject.toml` or `airflow_settings.yaml`",
    )
    s3a_jars: Path | None = Field(
        default=None,
        validation_alias="SLUICE_S3A_JARS",
        description="folder of the S3A jars Spark needs for an `s3://` storage root (`make s3a-jars` "
        "fetches them); default: `<project>/.jars/s3a`",
    )
    mlflow_tracking_uri: str | None = Field(
        default=None,
        validation_alias="MLFLOW_TRACKING_URI",
        description="MLflow store of the steps; default: `sqlite:///<project>/.sluice/mlflow.db`",
    )
    mlflow_ui_url: str | None = Field(
        default=None,
        validation_alias="SLUICE_MLFLOW_UI_URL",
        description="MLflow UI in the links of the Airflow UI and of emails; default: "
        "`http://localhost:$SLUICE_MLFLOW_UI_PORT`",
    )
    alert_repeat_minutes: float = Field(
        default=60.0,
        gt=0,
        validation_alias="SLUICE_ALERT_REPEAT_MINUTES",
        description="the same failure of the same task (a `failure` alert) is emailed once in this many minutes",
    )
    api_start_timeout: float = Field(
        default=300.0,
        gt=0,
        validation_alias="SLUICE_API_START_TIMEOUT",
        description="seconds the embedded launcher waits for the API server to answer before it gives up "
        "(and starts nothing that runs tasks)",
    )
    mlflow_http_request_timeout: float = Field(
        default=20.0,
        gt=0,
        validation_alias="MLFLOW_HTTP_REQUEST_TIMEOUT",
        description="seconds per try of MLflow's HTTP calls and of the tracking-server check before a step",
    )
    mlflow_http_request_max_retries: int = Field(
        default=2,
        ge=0,
        validation_alias="MLFLOW_HTTP_REQUEST_MAX_RETRIES",
        description="retries of MLflow's HTTP calls and of the tracking-server check",
    )
    mlflow_http_request_backoff_factor: float = Field(
        default=2.0,
        ge=0,
        validation_alias="MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR",
        description="backoff between those retries (seconds, doubled each try)",
    )
    prediction_log_flush_seconds: float = Field(
        default=10.0,
        gt=0,
        validation_alias="SLUICE_PREDICTION_LOG_FLUSH_SECONDS",
        description="the model server writes its prediction log at least this often (seconds)",
    )
    prediction_log_flush_rows: int = Field(
        default=1000,
        ge=1,
        validation_alias="SLUICE_PREDICTION_LOG_FLUSH_ROWS",
        description="the model server writes its prediction log once this many rows wait",
    )
    prediction_log_buffer_rows: int = Field(
        default=100_000,
        ge=1,
        validation_alias="SLUICE_PREDICTION_LOG_BUFFER_ROWS",
        description="rows of the prediction log a model server keeps while storage fails; older ones are "
        "dropped beyond it (counted in `/metrics`)",
    )
    kubeconfig: str | None = Field(
        default=None,
        validation_alias="KUBECONFIG",
        description="kubeconfig of `sluice status`/`stop` and the deployer outside a cluster; "
        "default: `~/.kube/config`",
    )
    kubernetes_service_host: str | None = Field(
        default=None,
        validation_alias="KUBERNETES_SERVICE_HOST",
        description="set by Kubernetes inside a pod: then the pod's service account is used, not `KUBECONFIG`",
    )
    airflow_api_token: str | None = Field(
        default=None,
        validation_alias="AIRFLOW_API_TOKEN",
        description="`sluice trigger-retrain`: Airflow API token (instead of `--token`)",
    )
    airflow_api_password: str | None = Field(
        default=None,
        validation_alias="AIRFLOW_API_PASSWORD",
        description="`sluice trigger-retrain`: Airflow password (instead of `--password`)",
    )


def variable(field: str) -> str:
    """The environment variable of a :class:`Settings` field."""
    return str(Settings.model_fields[field].validation_alias)


_VARIABLES = tuple(variable(field) for field in Settings.model_fields)


#: The last settings read, keyed by the values of the variables they come from.
_last: tuple[tuple[str | None, ...], Settings] | None = None


def settings() -> Settings:
    """The settings as the environment holds them now.

    Follows the environment on every call: tests and the fault-injection harness change it
    between calls in one process. Building the model costs about 1 ms (pydantic-settings
    inspects every field), so the last one is reused while the variables it reads are
    unchanged: the DAG file asks once per spec, 100 times for 100 pipelines.

    Raises:
        SettingsError: A variable holds a value of the wrong kind; the message names it.
    """
    global _last
    key = tuple(os.environ.get(name) for name in _VARIABLES)
    if _last is not None and _last[0] == key:
        return _last[1].model_copy()
    try:
        current = Settings()
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            name = str(err["loc"][0]) if err["loc"] else "?"
            problems.append(f"{name}={err.get('input')!r}: {err['msg']}")
        raise SettingsError("bad environment setting: " + "; ".join(problems)) from None
    _last = (key, current)
    return current.model_copy()


def ports_markdown_table() -> str:
    """The docs' port table: one row per :data:`PORTS` entry, defaults before any offset."""
    rows = ["| setting | default | Airflow's own (wins if set) | used for |", "| --- | --- | --- | --- |"]
    for name, p in PORTS.items():
        airflow = f"`{p.airflow}`" if p.airflow else "-"
        rows.append(f"| `{name}` | `{p.default}` | {airflow} | {p.purpose} |")
    return "\n".join(rows) + "\n"


def markdown_table() -> str:
    """The docs' configuration table: one row per :class:`Settings` field, in field order."""
    rows = ["| setting | default | meaning |", "| --- | --- | --- |"]
    for name, info in Settings.model_fields.items():
        default = (
            "unset"
            if info.default in (None, "")
            else f"`{info.default:g}`"
            if isinstance(info.default, float)
            else f"`{info.default}`"
        )
        rows.append(f"| `{variable(name)}` | {default} | {info.description} |")
    return "\n".join(rows) + "\n"
