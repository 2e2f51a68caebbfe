"""The embedded Airflow home: environment, database and ``airflow_settings.yaml``."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import yaml


def embedded_env(project_dir: Path, base: dict[str, str] | None = None) -> dict[str, str]:
    """Environment for Airflow and sluice on one machine (SQLite, LocalExecutor).

    Values already present in ``base`` (default: ``os.environ``) win, so the same code runs
    the production shape when those are set (PostgreSQL, Celery, an MLflow server).
    """
    env = dict(os.environ if base is None else base)
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
        "AIRFLOW__API__PORT": "8080",
        "SLUICE_PROJECT_DIR": str(project_dir),
        "MLFLOW_TRACKING_URI": f"sqlite:///{project_dir / '.sluice' / 'mlflow.db'}",
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "GX_ANALYTICS_ENABLED": "false",
        "DO_NOT_TRACK": "true",
        "SCARF_ANALYTICS": "false",
    }
    for key, value in defaults.items():
        env.setdefault(key, value)
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


def settings_payloads(settings: dict[str, Any]) -> dict[str, Any]:
    """Turn astro-format settings into the files ``airflow * import`` reads."""
    section = (settings or {}).get("airflow") or {}
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
    payloads = settings_payloads(yaml.safe_load(settings_file.read_text()))
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

    Settings are re-applied only when ``airflow_settings.yaml`` changed since the last run.
    """
    env = embedded_env(project_dir)
    home = Path(env["AIRFLOW_HOME"])
    home.mkdir(parents=True, exist_ok=True)
    log = [f"AIRFLOW_HOME={home}"]
    airflow(["db", "migrate"], env)
    log.append("airflow db migrate: ok")
    settings_file = project_dir / "airflow_settings.yaml"
    if settings_file.exists():
        digest = hashlib.sha256(settings_file.read_bytes()).hexdigest()
        stamp = home / ".settings.sha256"
        if not stamp.exists() or stamp.read_text() != digest:
            log += apply_settings(settings_file, env)
            stamp.write_text(digest)
        else:
            log.append("airflow_settings.yaml unchanged")
    return log
