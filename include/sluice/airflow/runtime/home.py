"""The embedded Airflow home: environment, database and ``airflow_settings.yaml``."""

from __future__ import annotations

import hashlib
import json
import os
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

from sluice.settings import PORTS, PortError, port_setting, ports

__all__ = ["PORTS", "PRIVATE_PREFIXES", "PortError", "check_ports_free", "embedded_env", "port_in_use", "port_setting"]


#: Variables of the caller that must not leak into another Airflow's environment (a scratch
#: project's, or the production kit's parts).
PRIVATE_PREFIXES = ("AIRFLOW", "SLUICE_", "MLFLOW_TRACKING", "MLFLOW_REGISTRY")


def port_in_use(port: int) -> bool:
    """Whether binding ``port`` on all interfaces fails because something else holds it."""
    with socket.socket() as s:
        # Lingering TIME_WAIT connections of a stopped server must not count as in use.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("0.0.0.0", port))  # noqa: S104 - servers here listen on all interfaces
        except OSError:
            return True
    return False


def check_ports_free(names: Iterable[str], env: Mapping[str, str] | None = None) -> None:
    """Fail before starting a server when one of its ports is taken, naming the setting to change.

    Raises:
        PortError: A port is in use (or a setting is not a port).
    """
    for name in names:
        port = port_setting(name, env)
        if port_in_use(port):
            raise PortError(
                f"port {port} ({name}) is already in use by another process: stop that process "
                f"(`ss -ltnp 'sport = :{port}'` shows it) or choose another port by setting {name}, "
                f"e.g. `{name}={port + 1}` in front of the command (or move every sluice port at once: "
                f"`SLUICE_PORT_OFFSET=100`)"
            )


def embedded_env(project_dir: Path, base: dict[str, str] | None = None) -> dict[str, str]:
    """Environment for Airflow and sluice on one machine (SQLite, LocalExecutor).

    Values already present in ``base`` (default: ``os.environ``) win, so the same code runs
    the production shape when those are set (PostgreSQL, Celery, an MLflow server).

    Raises:
        PortError: A port setting of :data:`PORTS` is not a port, or two of them are the same.
    """
    env = dict(os.environ if base is None else base)
    resolved = {name: str(port) for name, port in ports(env).items()}
    # Airflow reads its own variables: they follow the sluice ones (or were what set them).
    airflow_ports = {str(PORTS[name].airflow): port for name, port in resolved.items() if PORTS[name].airflow}
    defaults = {
        "AIRFLOW_HOME": str(project_dir / ".airflow"),
        "AIRFLOW__CORE__DAGS_FOLDER": str(project_dir / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(project_dir / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        # Two cores: a few task processes at once, not Airflow's default of 32.
        "AIRFLOW__CORE__PARALLELISM": "4",
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "True",
        "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "30",
        "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "15",
        "AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK": "False",
        # After a crash of the whole machine or Airflow, a task that was running is found dead
        # (no heartbeat) and retried in 2 minutes, not Airflow's 5; orphans of a dead
        # scheduler are reset every minute. Task heartbeats come every few seconds.
        "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": "120",
        "AIRFLOW__SCHEDULER__ORPHANED_TASKS_CHECK_INTERVAL": "60",
        # Task processes are forked from a forkserver that imported MLflow, scikit-learn, GX and
        # Evidently once (sluice.airflow.runtime.preload): seconds less per task.
        "AIRFLOW__SCHEDULER__MP_START_METHOD": "forkserver",
        "AIRFLOW__SCHEDULER__MP_FORKSERVER_PRELOAD": "sluice.airflow.runtime.preload",
        # The same for Celery workers (used only with the CeleryExecutor): see celery_config.
        "AIRFLOW__CELERY__CELERY_CONFIG_OPTIONS": "sluice.airflow.runtime.celery_config.CELERY_CONFIG",
        "SLUICE_PROJECT_DIR": str(project_dir),
        "MLFLOW_TRACKING_URI": f"sqlite:///{project_dir / '.sluice' / 'mlflow.db'}",
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "GX_ANALYTICS_ENABLED": "false",
        "DO_NOT_TRACK": "true",
        "SCARF_ANALYTICS": "false",
    }
    for key, value in defaults.items():
        env.setdefault(key, value)
    env.update(resolved)  # normalised: each SLUICE_*_PORT agrees with Airflow's own variable
    env.update(airflow_ports)
    # Task processes reach the API server here; it must follow the API port.
    env.setdefault(
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL", f"http://localhost:{env['AIRFLOW__API__PORT']}/execution/"
    )
    # `airflow standalone` starts its components as `airflow ...`: the venv must be on PATH.
    bin_dir = str(Path(sys.executable).parent)
    if bin_dir not in env.get("PATH", "").split(os.pathsep):
        env["PATH"] = bin_dir + os.pathsep + env.get("PATH", "")
    return env


def airflow(args: list[str], env: dict[str, str], check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run the ``airflow`` CLI of this environment."""
    return subprocess.run(
        [sys.executable, "-m", "airflow", *args], env=env, check=check, capture_output=True, text=True, timeout=600
    )


def _expand_ports(value: Any, env: Mapping[str, str] | None) -> Any:
    """``${SLUICE_*_PORT}`` in a settings value, replaced by that port as ``env`` sets it.

    Only the port family is expanded (not any variable: a password in the file stays literal).
    A value that is only the placeholder becomes a number, as ``conn_port`` expects.
    """
    if isinstance(value, dict):
        return {k: _expand_ports(v, env) for k, v in value.items()}
    if isinstance(value, list):
        return [_expand_ports(v, env) for v in value]
    if not isinstance(value, str) or "${" not in value:
        return value
    for name in PORTS:
        placeholder = "${" + name + "}"
        if value == placeholder:
            return port_setting(name, env)
        value = value.replace(placeholder, str(port_setting(name, env)))
    return value


def settings_payloads(settings: dict[str, Any], env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Turn astro-format settings into the files ``airflow * import`` reads.

    Args:
        settings: The parsed ``airflow_settings.yaml``.
        env: Where ``${SLUICE_*_PORT}`` placeholders are read (default: ``os.environ``).
    """
    section = _expand_ports((settings or {}).get("airflow") or {}, env)
    connections = {}
    for c in section.get("connections") or []:
        extra = c.get("conn_extra")
        connections[c["conn_id"]] = {
            "conn_type": c.get("conn_type"),
            "host": c.get("conn_host"),
            "schema": c.get("conn_schema"),
            "login": c.get("conn_login"),
            "password": c.get("conn_password"),
            "port": c.get("conn_port"),
            "extra": json.dumps(extra) if isinstance(extra, dict) else extra,
        }
    pools = {
        p["pool_name"]: {
            "slots": int(p["pool_slot"]),
            "description": p.get("pool_description") or p["pool_name"],
            "include_deferred": False,
        }
        for p in section.get("pools") or []
    }
    variables = {v["variable_name"]: v["variable_value"] for v in section.get("variables") or []}
    return {"connections": connections, "pools": pools, "variables": variables}


def apply_settings(settings_file: Path, env: dict[str, str]) -> list[str]:
    """Import connections, pools and variables with Airflow's own commands.

    Returns:
        What was applied, for the log.
    """
    payloads = settings_payloads(yaml.safe_load(settings_file.read_text()), env)
    done = []
    with tempfile.TemporaryDirectory() as tmp:
        for kind, data in payloads.items():
            if not data:
                continue
            path = Path(tmp) / f"{kind}.json"
            path.write_text(json.dumps(data))
            args = [kind, "import", str(path)] + (["--overwrite"] if kind == "connections" else [])
            airflow(args, env)
            done.append(f"{len(data)} {kind}")
    return done


def bootstrap(project_dir: Path) -> list[str]:
    """Prepare the embedded Airflow home: migrate the database and apply the settings file.

    Settings are re-applied only when what they resolve to changed since the last run: the
    file, or a port it names through ``${SLUICE_*_PORT}``.
    """
    env = embedded_env(project_dir)
    home = Path(env["AIRFLOW_HOME"])
    home.mkdir(parents=True, exist_ok=True)
    log = [f"AIRFLOW_HOME={home}"]
    airflow(["db", "migrate"], env)
    log.append("airflow db migrate: ok")
    settings_file = project_dir / "airflow_settings.yaml"
    if settings_file.exists():
        resolved = settings_payloads(yaml.safe_load(settings_file.read_text()), env)
        digest = hashlib.sha256(json.dumps(resolved, sort_keys=True).encode()).hexdigest()
        stamp = home / ".settings.sha256"
        if not stamp.exists() or stamp.read_text() != digest:
            log += apply_settings(settings_file, env)
            stamp.write_text(digest)
        else:
            log.append("airflow_settings.yaml unchanged")
    return log
