"""`make airflow` (`sluice airflow`): Ctrl-C or SIGTERM stops every Airflow process, not just one.

Plain ``airflow standalone`` stopped that way leaves its scheduler, API server and triggerer
running. Each case starts a real standalone (about a minute) on free ports and the session's
Airflow database, then signals the supervisor as a terminal or a service manager would.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import psutil
import pytest
import requests

from sluice.airflow.runtime.home import port_in_use
from tests.standalone import session_env

pytestmark = pytest.mark.integration
#: The components `airflow standalone` starts. They retitle themselves (setproctitle), e.g.
#: `airflow api_server -- host:...`, which also overwrites their /proc environ: the family is
#: followed through the process tree and the process group instead.
COMPONENTS = ("api-server", "scheduler", "triggerer", "dag-processor")


def _up(api_url: str) -> bool:
    try:
        return requests.get(f"{api_url}/api/v2/monitor/health", timeout=5).status_code == 200
    except requests.RequestException:
        return False


def _wait(predicate: Callable[[], object], timeout: float, what: str, proc: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        assert proc.poll() is None, f"sluice airflow exited early ({proc.returncode}) waiting for {what}"
        time.sleep(1)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


def _family(pid: int) -> list[psutil.Process]:
    try:
        return list(psutil.Process(pid).children(recursive=True))
    except psutil.NoSuchProcess:
        return []


def _title(p: psutil.Process) -> str:
    try:
        return " ".join(p.cmdline()).replace("_", "-")
    except psutil.Error:
        return ""


def _has_components(pid: int) -> bool:
    titles = " | ".join(_title(p) for p in _family(pid))
    return all(f"airflow {c}" in titles for c in COMPONENTS)


def _left(family: list[psutil.Process], pgid: int) -> list[str]:
    """Processes of the family, or of the standalone's process group, still alive."""
    left = {p.pid: p for p in family if p.is_running() and p.status() != psutil.STATUS_ZOMBIE}
    for p in psutil.process_iter():
        with contextlib.suppress(psutil.Error, ProcessLookupError):
            if os.getpgid(p.pid) == pgid and p.status() != psutil.STATUS_ZOMBIE:
                left[p.pid] = p
    return [f"{pid}: {_title(p)[:100]}" for pid, p in left.items()]


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_signal_to_sluice_airflow_stops_every_component(
    signum: signal.Signals, tmp_path: Path, airflow_db: Path
) -> None:
    project = tmp_path / "project"
    project.mkdir()
    env = session_env(project)
    api_url = f"http://localhost:{env['AIRFLOW__API__PORT']}"
    ports = [int(env[k]) for k in ("AIRFLOW__API__PORT", "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT")]
    log_path = tmp_path / "supervisor.log"
    family: list[psutil.Process] = []
    pgid = -1
    with log_path.open("w") as log:
        # Its own session, as a terminal's foreground job: the signal goes to the supervisor alone.
        sup = subprocess.Popen(
            [sys.executable, "-m", "sluice.cli", "airflow", "--grace", "10"],
            cwd=project,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
    try:
        _wait(lambda: _up(api_url), 240, "the API server", sup)
        _wait(lambda: _has_components(sup.pid), 120, f"every component ({', '.join(COMPONENTS)})", sup)
        (standalone,) = psutil.Process(sup.pid).children()
        pgid = standalone.pid
        family = _family(sup.pid)
        assert len(family) > len(COMPONENTS)

        os.kill(sup.pid, signum)
        code = sup.wait(timeout=60)  # a hang guard, not a measurement

        assert code == 128 + signum
        assert _left(family, pgid) == [], "left running after the supervisor stopped"
        assert not _up(api_url)
        assert not [port for port in ports if port_in_use(port)]
        text = log_path.read_text()
        assert f"{signal.Signals(signum).name}: stopping airflow and its components" in text
        assert "sluice: airflow stopped" in text
    finally:
        if sup.poll() is None:
            os.kill(sup.pid, signal.SIGKILL)
        if pgid > 0:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pgid, signal.SIGKILL)
        for p in family:
            with contextlib.suppress(psutil.Error):
                p.kill()
