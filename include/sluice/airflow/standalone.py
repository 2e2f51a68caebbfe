"""``airflow standalone`` for one sluice project, with its own home and free ports.

Used by the end-to-end tests and the latency bench, which need the real scheduler,
triggerer, DAG processor and API server: starts them in their own process group (so
everything stops together), waits for the API, and hands out API tokens.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType
from typing import Any

from sluice.airflow.home import embedded_env
from sluice.services import processes

# Variables of the caller that must not leak into a scratch project's Airflow.
PRIVATE_PREFIXES = ("AIRFLOW", "SLUICE_", "MLFLOW_TRACKING")


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def isolated_env(project: Path, extra: dict[str, str] | None = None) -> dict[str, str]:
    """Environment for a project's own Airflow: its home, its DAGs, free API and log ports.

    Args:
        project: The project root (``dags/``, ``airflow_settings.yaml``...).
        extra: Settings that win over the defaults (connections, intervals...).
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith(PRIVATE_PREFIXES)}
    env.update(
        SLUICE_PROJECT_DIR=str(project),
        AIRFLOW__API__PORT=str(free_port()),
        AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT=str(free_port()),
        AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT=str(free_port()),
    )
    env.update(extra or {})
    return embedded_env(project, env)


class Standalone:
    """A running ``airflow standalone`` (scheduler, triggerer, DAG processor, API server).

    Use as a context manager: bootstraps the home, starts Airflow, waits for the API;
    on exit stops the whole process group.
    """

    def __init__(self, project: Path, env: dict[str, str]) -> None:
        """Prepare (but do not start) Airflow for ``project`` with ``env`` (see :func:`isolated_env`)."""
        self.project = project
        self.env = env
        self.home = Path(env["AIRFLOW_HOME"])
        self.api_url = f"http://localhost:{env['AIRFLOW__API__PORT']}"
        self.log_file = self.home / "standalone.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Standalone:
        """Bootstrap, start and wait until the API answers."""
        subprocess.run(
            [sys.executable, "-m", "sluice.cli", "bootstrap"],
            cwd=self.project,
            env=self.env,
            check=True,
            capture_output=True,
            timeout=300,
        )
        self.proc = processes.start(
            [sys.executable, "-m", "airflow", "standalone"], self.log_file, env=self.env, cwd=self.project
        )
        try:
            self.wait_for(self._healthy, 300, "the API server")
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        """Stop every Airflow process."""
        self.stop()

    def stop(self) -> None:
        """SIGTERM the process group, SIGKILL what is left after a grace period."""
        if self.proc is not None:
            processes.stop_group(self.proc.pid, grace_seconds=20)
            self.proc = None

    def _healthy(self) -> bool:
        import requests

        try:
            return requests.get(f"{self.api_url}/api/v2/monitor/health", timeout=5).status_code == 200
        except requests.RequestException:
            return False

    def wait_for(self, predicate: Any, timeout: float, what: str, every: float = 1.0) -> Any:
        """Poll ``predicate`` until it returns something truthy; fail fast if Airflow died."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"airflow standalone exited ({self.proc.returncode}); see {self.log_file}")
            value = predicate()
            if value:
                return value
            time.sleep(every)
        raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}; see {self.log_file}")

    def admin_password(self) -> str:
        """The generated password of ``admin`` (SimpleAuthManager writes it on first start)."""
        path = self.home / "simple_auth_manager_passwords.json.generated"
        self.wait_for(path.exists, 60, str(path))
        return str(json.loads(path.read_text())["admin"])

    def token(self) -> str:
        """A JWT for the API: ``POST /auth/token`` with the admin's user name and password."""
        import requests

        resp = requests.post(
            f"{self.api_url}/auth/token",
            json={"username": "admin", "password": self.admin_password()},
            timeout=30,
        )
        resp.raise_for_status()
        return str(resp.json()["access_token"])

    def client(self) -> Any:
        """An ``airflow_client.client.ApiClient`` logged in as admin."""
        import airflow_client.client as af

        return af.ApiClient(af.Configuration(host=self.api_url, access_token=self.token()))
