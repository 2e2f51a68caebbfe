"""``sluice airflow``: run the embedded Airflow so that stopping it stops all of it.

The launcher (:mod:`sluice.airflow.runtime.embedded`) starts the API server, then the scheduler, DAG
processor and triggerer as subprocesses; killing one process alone would leave the others
running (the scheduler even ignores SIGTERM). So the supervisor starts the launcher in its own
process group, and on SIGINT, SIGTERM or SIGHUP stops the whole group (SIGTERM, then SIGKILL
after a grace period) plus any descendant that left the group, and waits until none is left.
"""

from __future__ import annotations

import contextlib
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any

from sluice.airflow.runtime.home import check_ports_free, embedded_env
from sluice.airflow.runtime.standalone import EMBEDDED
from sluice.services import processes

#: The ports the embedded Airflow opens (API server, worker and triggerer log servers).
STANDALONE_PORTS = ("SLUICE_AIRFLOW_PORT", "SLUICE_WORKER_LOG_PORT", "SLUICE_TRIGGER_LOG_PORT")
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def _say(text: str) -> None:
    print(text, flush=True)


def _descendants(pid: int) -> list[Any]:
    import psutil

    try:
        return list(psutil.Process(pid).children(recursive=True))
    except psutil.Error:
        return []


def stop_all(proc: subprocess.Popen[bytes], grace_seconds: float, known: list[Any]) -> None:
    """Stop the standalone's process group, then whatever descendant escaped it; wait for all.

    Args:
        proc: The standalone (leader of its process group).
        grace_seconds: Time between SIGTERM and SIGKILL.
        known: Descendants seen while it ran (``psutil.Process``), in case they left the group.
    """
    import psutil

    family = {p.pid: p for p in [*known, *_descendants(proc.pid)]}
    processes.stop_group(proc.pid, grace_seconds=grace_seconds)
    # A process that called setsid() is outside the group: stop it by pid, the same way.
    left = [p for p in family.values() if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    for p in left:
        with contextlib.suppress(psutil.NoSuchProcess):
            p.terminate()
    _, alive = psutil.wait_procs(left, timeout=grace_seconds)
    for p in alive:
        with contextlib.suppress(psutil.NoSuchProcess):
            p.kill()
    psutil.wait_procs(alive, timeout=5)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=5)


def _watch(proc: subprocess.Popen[bytes], received: list[int], grace_seconds: float, say: Callable[[str], None]) -> int:
    """Wait until the launcher exits or a stop signal arrives, then stop everything it started.

    Returns:
        The launcher's exit code, or 128 + the signal number when stopped by a signal.
    """
    known: list[Any] = []
    while proc.poll() is None and not received:
        known = _descendants(proc.pid) or known
        time.sleep(0.5)
    if received:
        name = signal.Signals(received[0]).name
        say(f"sluice: {name}: stopping airflow and its components (up to {grace_seconds:.0f}s)")
    stop_all(proc, grace_seconds, known)
    if received:
        say("sluice: airflow stopped")
        return 128 + received[0]
    say(f"sluice: airflow exited with code {proc.returncode}")
    return int(proc.returncode or 0)


def run_standalone(
    project_dir: Path,
    grace_seconds: float = 20.0,
    say: Callable[[str], None] | None = None,
    env: dict[str, str] | None = None,
) -> int:
    """Run the embedded Airflow for the project until it exits or this process is told to stop.

    Output goes to this process's terminal. The ports are checked first, so a port held by
    another process is a clear error instead of a component dying later in the output.

    Args:
        project_dir: The project (its ``.airflow`` home and ``dags/``).
        grace_seconds: Time the components get to stop before SIGKILL.
        say: Where the supervisor's own messages go (default: stdout, flushed at once so they
            stay in order with Airflow's output).
        env: The environment to start with (default: :func:`embedded_env` of the project).

    Returns:
        The launcher's exit code, or 128 + the signal number when stopped by a signal.

    Raises:
        PortError: A port of :data:`STANDALONE_PORTS` is in use or not a port.
    """
    if say is None:
        say = _say
    env = embedded_env(project_dir) if env is None else env
    check_ports_free(STANDALONE_PORTS, env)
    received: list[int] = []

    def on_signal(signum: int, frame: FrameType | None) -> None:
        received.append(signum)

    previous = {s: signal.signal(s, on_signal) for s in STOP_SIGNALS}
    try:
        proc = subprocess.Popen(
            [sys.executable, *EMBEDDED],
            env=env,
            cwd=project_dir,
            stdin=subprocess.DEVNULL,
            # Its own group: Ctrl-C reaches only this supervisor, which then stops all of it.
            start_new_session=True,
        )
        say(
            f"sluice: airflow (pid {proc.pid}) on http://localhost:{env['AIRFLOW__API__PORT']}; "
            "Ctrl-C stops all of its processes"
        )
        return _watch(proc, received, grace_seconds, say)
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
