"""A bench or demo stopped with SIGTERM still stops every server it started."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
from tests.conftest import REPO

SCRIPT = """
import sys, time
from pathlib import Path
from sluice.services import processes

processes.exit_on_sigterm()
child = processes.start([sys.executable, "-c", "import time; time.sleep(300)"], Path(sys.argv[1]))
try:
    print(child.pid, flush=True)
    time.sleep(300)
finally:
    processes.stop_group(child.pid, grace_seconds=5)
"""


def _gone(pid: int, timeout: float = 30) -> bool:
    try:
        psutil.Process(pid).wait(timeout=timeout)
    except psutil.NoSuchProcess:
        return True
    except psutil.TimeoutExpired:
        return False
    return True


def test_sigterm_runs_the_finally_that_stops_the_children(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-c", SCRIPT, str(tmp_path / "child.log")], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    child = int(proc.stdout.readline())
    assert psutil.pid_exists(child)

    proc.send_signal(signal.SIGTERM)

    assert proc.wait(timeout=60) == 143
    assert _gone(child), "the child outlived its parent's SIGTERM"


@pytest.mark.integration
def test_an_interrupted_serving_bench_leaves_no_model_server_running(tmp_path: Path) -> None:
    """``bench/run.py`` killed with SIGTERM while its model servers run stops them (it did not)."""
    env = dict(os.environ, TMPDIR=str(tmp_path))
    proc = psutil.Popen(
        [sys.executable, str(REPO / "bench" / "run.py"), "--only", "serving", "--quick"],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    results = (REPO / "bench" / "results.json").read_bytes()
    servers: list[psutil.Process] = []
    try:
        deadline = time.monotonic() + 600
        while not servers and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(1)
            servers = [
                p for p in _descendants(proc) if "serve" in " ".join(_cmdline(p)) and "sluice.cli" in _cmdline(p)
            ]
        assert servers, "the bench never started its model server"

        proc.send_signal(signal.SIGTERM)

        assert proc.wait(timeout=120) == 143
        assert all(_gone(p.pid) for p in servers), "a model server outlived the interrupted bench"
    finally:
        for p in [proc, *_descendants(proc)]:
            if p.is_running():
                os.killpg(p.pid, signal.SIGKILL) if p.pid == proc.pid else p.kill()
    assert (REPO / "bench" / "results.json").read_bytes() == results, "an interrupted bench wrote results"


def _descendants(proc: psutil.Process) -> list[psutil.Process]:
    try:
        return list(proc.children(recursive=True))
    except psutil.NoSuchProcess:
        return []


def _cmdline(p: psutil.Process) -> list[str]:
    try:
        return list(p.cmdline())
    except psutil.Error:
        return []
