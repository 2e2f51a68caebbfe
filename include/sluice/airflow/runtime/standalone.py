"""Drive the real embedded Airflow (API server, then scheduler, DAG processor, triggerer).

Used by the demo, the scheduler and end-to-end tests and the latency bench. Each project
gets its own Airflow home and free ports (:func:`isolated_env`); everything starts in one
process group so it stops together. Airflow reads its configuration when first imported,
so every Airflow import here happens inside a function, after the caller has put the right
environment in ``os.environ``.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

from sluice.airflow.runtime.home import PRIVATE_PREFIXES, embedded_env
from sluice.services import processes

T = TypeVar("T")
TERMINAL = {"success", "failed"}


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def isolated_env(project: Path, extra: dict[str, str] | None = None, fast: bool = False) -> dict[str, str]:
    """Environment for a project's own Airflow: its home, its DAGs, free API and log ports.

    Args:
        project: The project root (``dags/``, ``airflow_settings.yaml``...).
        extra: Settings that win over the defaults (connections, intervals...).
        fast: Poll DAG files and the scheduler loop more often (tests).
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith(PRIVATE_PREFIXES)}
    env.update(
        SLUICE_PROJECT_DIR=str(project),
        AIRFLOW__API__PORT=str(free_port()),
        AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT=str(free_port()),
        AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT=str(free_port()),
    )
    if fast:
        env.update(
            AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL="5",
            AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL="5",
            AIRFLOW__SCHEDULER__SCHEDULER_IDLE_SLEEP_TIME="0.5",
        )
    env.update(extra or {})
    return embedded_env(project, env)


#: The embedded Airflow launcher (:mod:`sluice.airflow.runtime.embedded`): API server first.
EMBEDDED = ("-m", "sluice.airflow.runtime.embedded")


def start(env: dict[str, str], log_file: Path, cwd: Path) -> subprocess.Popen[bytes]:
    """Start the embedded Airflow in its own process group (stop it with :func:`stop`)."""
    return processes.start([sys.executable, *EMBEDDED], log_file, env=env, cwd=cwd)


def stop(server: subprocess.Popen[bytes]) -> None:
    """Stop the standalone and every component it started (scheduler, workers, API server)."""
    processes.stop_group(server.pid, grace_seconds=20)


def wait_for(
    predicate: Callable[[], T | None],
    timeout: float,
    what: str,
    server: subprocess.Popen[bytes] | None = None,
    interval: float = 3.0,
) -> T:
    """Poll ``predicate`` until it returns something truthy.

    Raises:
        RuntimeError: The standalone exited meanwhile.
        TimeoutError: Nothing truthy within ``timeout`` seconds, naming ``what``.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server is not None and server.poll() is not None:
            raise RuntimeError(f"the embedded Airflow exited (code {server.returncode}); see its log")
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")


def dag_runs(dag_id: str, since: float = 0.0) -> list[dict[str, Any]]:
    """Runs of ``dag_id`` queued after ``since`` (epoch seconds), oldest first.

    Each: run_id, state, run_type, queued_at (epoch), tasks ({task_id: state}) and
    consumed_events (number of asset events the run consumed).
    """
    from airflow.models import DagRun
    from airflow.utils.session import create_session

    with create_session() as session:
        runs = (
            session.query(DagRun)
            .filter(DagRun.dag_id == dag_id, DagRun.queued_at >= datetime.fromtimestamp(since, UTC))
            .all()
        )
        out = [
            {
                "run_id": r.run_id,
                "state": str(r.state),
                "run_type": str(r.run_type),
                "queued_at": r.queued_at.timestamp() if r.queued_at else 0.0,
                "tasks": {ti.task_id: str(ti.state) for ti in r.get_task_instances(session=session)},
                "consumed_events": len(r.consumed_asset_events),
            }
            for r in runs
        ]
    return sorted(out, key=lambda r: r["queued_at"])


def registered(dag_ids: Iterable[str]) -> bool:
    """Whether the DAG processor has put every one of ``dag_ids`` in the database."""
    from airflow.models import DagModel
    from airflow.utils.session import create_session

    wanted = set(dag_ids)
    with create_session() as session:
        found = {d.dag_id for d in session.query(DagModel).filter(DagModel.dag_id.in_(wanted))}
    return wanted <= found


def emit_asset_events(uri: str, extras: list[dict[str, Any]]) -> None:
    """Record asset events as the REST API does (``POST /assets/events``), in one transaction."""
    from airflow.assets.manager import asset_manager
    from airflow.models.asset import AssetModel
    from airflow.utils.session import create_session

    with create_session() as session:
        asset = session.query(AssetModel).filter(AssetModel.uri == uri).one()
        for extra in extras:
            asset_manager.register_asset_change(asset=asset, extra=extra, source_is_api=True, session=session)


class Standalone:
    """A running ``airflow standalone`` for one project, reached through its REST API.

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
        self.proc = start(self.env, self.log_file, self.project)
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
            stop(self.proc)
            self.proc = None

    def _healthy(self) -> bool:
        import requests

        try:
            return requests.get(f"{self.api_url}/api/v2/monitor/health", timeout=5).status_code == 200
        except requests.RequestException:
            return False

    def wait_for(self, predicate: Callable[[], T | None], timeout: float, what: str, every: float = 1.0) -> T:
        """Poll ``predicate`` until it returns something truthy; fail fast if Airflow died."""
        try:
            return wait_for(predicate, timeout, what, self.proc, interval=every)
        except (RuntimeError, TimeoutError) as exc:
            raise type(exc)(f"{exc}; see {self.log_file}") from None

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
